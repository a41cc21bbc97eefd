"""Camera noise, light dose and photobleaching of the simulated microscope."""

import numpy as np
import pytest

import simulators as sim


def test_closed_shutter_gives_dark_frames_and_no_dose(world):
    world.shutter_open = False
    img = world.expose(50.0)
    assert img.mean() == pytest.approx(world.camera.offset_adu, abs=0.5)
    assert world.dose.dose_mJ == 0.0


def test_dose_counts_power_times_exposure(world):
    world.shutter_open = True
    world.light_power_mW = 20.0
    for _ in range(3):
        world.expose(50.0)
    assert world.dose.dose_mJ == pytest.approx(3 * 20.0 * 50.0 / 1000)
    assert world.dose.exposures == 3


def test_photobleaching_follows_dose(world):
    world.shutter_open = True
    world.bleach_dose_mJ = 2.0
    before = world.expected_photons(10.0, t_s=0.0).sum()
    world.light_power_mW = 50.0
    world.expose(40.0)  # 2 mJ
    world.light_power_mW = 10.0
    after = world.expected_photons(10.0, t_s=0.0).sum()
    assert world.bleach_factor == pytest.approx(np.exp(-1.0))
    assert after / before == pytest.approx(np.exp(-1.0), rel=1e-4)


def test_signal_scales_with_exposure_and_noise_is_poisson(world):
    world.shutter_open = True
    world.camera = sim.CameraModel(read_noise_e=0.0, gain_adu_per_e=1.0, quantum_efficiency=1.0, offset_adu=0)
    expected = world.expected_photons(10.0, t_s=0.0)
    assert world.expected_photons(20.0, t_s=0.0).sum() == pytest.approx(2 * expected.sum(), rel=1e-4)
    world.bleach_dose_mJ = 1e12  # no bleaching between the repeated frames
    frames = np.stack([world.expose(10.0).astype(float) for _ in range(30)])
    bright = expected > 20
    ratio = frames.var(axis=0)[bright].mean() / frames.mean(axis=0)[bright].mean()
    assert ratio == pytest.approx(1.0, rel=0.15)  # variance = mean for shot noise


def test_counts_saturate_at_bit_depth(world):
    world.shutter_open = True
    world.camera = sim.CameraModel(bit_depth=10)
    img = world.expose(5000.0)
    assert img.max() == 1023


def test_neuron_activity_changes_the_specimen_over_time(world):
    a = world.expected_photons(10.0, t_s=0.0)
    b = world.expected_photons(10.0, t_s=120.0)
    assert np.abs(a - b).max() > 0.05 * a.max()


def test_phantoms_are_reproducible_and_seeded():
    assert np.array_equal(sim.worm(seed=3).emitters.xyz, sim.worm(seed=3).emitters.xyz)
    assert not np.array_equal(sim.worm(seed=3).emitters.xyz, sim.worm(seed=4).emitters.xyz)
    with pytest.raises(ValueError, match="Unknown phantom"):
        sim.make_phantom("cell")


def test_a_replaying_camera_renders_each_state_once_and_still_counts_the_dose(world):
    # benchmarks of the software's own rate: frames cost no rendering, as on a real camera
    world.shutter_open = True
    world.replay_frames = 2
    first = [world.expose(10.0) for _ in range(6)]
    assert not np.array_equal(first[0], first[1])  # two noise draws rendered ...
    assert all(any(f is r for r in first[:2]) for f in first[2:])  # ... then handed out in turn
    assert not first[0].flags.writeable  # nobody may change a frame handed out again
    assert world.dose.exposures == 6  # the light still reaches the specimen
    world.z_um = 4.0  # another focus is another state: rendered anew
    elsewhere = world.expose(10.0)
    assert all(elsewhere is not f for f in first) and world.expose(10.0) is not elsewhere
    world.replay_frames = None  # rendered again, a new draw every time
    assert not any(np.array_equal(world.expose(10.0), world.expose(10.0)) for _ in range(2))
