"""The simulator as a real Micro-Manager core: config file, pymmcore-plus MDA, pycromanager."""

import numpy as np
import pytest
import useq
from pycromanager import Acquisition, multi_d_acquisition_events

import simulators as sim


def _best_matching_z(img: np.ndarray, world: sim.SimWorld, candidates, modality="widefield") -> float:
    """The focus whose noise-free render correlates best with ``img``."""
    scores = [
        np.corrcoef(
            img.ravel().astype(float), world.expected_photons(1.0, z_um=z, modality=modality).ravel()
        )[0, 1]
        for z in candidates
    ]
    return candidates[int(np.argmax(scores))]


def test_config_file_gives_micro_manager_devices_and_groups(core):
    assert {"Camera", "Z", "XY", "Shutter", "LightPath", "Objective"} <= set(core.getLoadedDevices())
    assert core.getCameraDevice() == "Camera" and core.getFocusDevice() == "Z"
    assert set(core.getAvailableConfigs("Channel")) == {"Widefield", "Confocal"}
    assert core.getChannelGroup() == "Channel"
    assert core.getPixelSizeUm() == pytest.approx(0.325)
    core.setProperty("Camera", "Binning", "2")
    assert core.getPixelSizeUm() == pytest.approx(0.65)
    assert core.getImageWidth() == 64


def test_channel_preset_switches_modality_and_images_depend_on_focus(core, world):
    core.setConfig("Channel", "Confocal")
    assert world.modality == "confocal"
    core.setConfig("Channel", "Widefield")
    core.setExposure(50)
    candidates = [-8.0, -4.0, 0.0, 4.0, 8.0]
    for z in (-4.0, 4.0):
        core.setPosition(z)
        core.snapImage()
        assert _best_matching_z(core.getImage(), world, candidates) == z
    assert world.dose.exposures == 2  # auto-shutter opened the light for each snap


def test_waiting_for_the_system_waits_for_a_busy_device(core, monkeypatch):
    # MDA waits for the system after setting up every event: a busy stage is waited for, each device
    # in turn (no thread pool per call, which cost an unsequenced MDA run 4 ms an event)
    import time

    from simulators.devices import SimZStage

    until = time.monotonic() + 0.2
    monkeypatch.setattr(SimZStage, "busy", lambda self: time.monotonic() < until)
    assert core.deviceBusy("Z") and core.systemBusy()
    core.waitForSystem()
    assert time.monotonic() >= until and not core.systemBusy()
    until = time.monotonic() + 0.2
    core.waitForDeviceType(core.getDeviceType("Z"))
    assert time.monotonic() >= until


def test_pymmcore_plus_mda_runs_on_the_simulator(core, world):
    frames = []
    core.mda.events.frameReady.connect(lambda img, event, meta: frames.append((event, img)))
    seq = useq.MDASequence(
        channels=["Widefield"],
        z_plan={"range": 8, "step": 4},
        time_plan={"interval": 0, "loops": 2},
        axis_order="tpcz",
    )
    core.mda.run(seq)
    assert len(frames) == 6
    for event, img in frames:
        assert img.shape == (128, 128)
        assert _best_matching_z(img, world, [-4.0, 0.0, 4.0]) == pytest.approx(event.z_pos)
    assert world.dose.exposures == 6


def test_pycromanager_acquisition_images_depend_on_z_and_t(pycro, world):
    world.bleach_dose_mJ = 1.0  # strong bleaching makes time visible in the mean signal
    got = []

    def keep(image, metadata):
        got.append((metadata["Axes"], image.copy()))
        return image, metadata

    events = multi_d_acquisition_events(num_time_points=3, z_start=-4, z_end=4, z_step=4)
    with Acquisition(directory=None, name="sim", image_process_fn=keep, show_display=False) as acq:
        acq.acquire(events)
    assert len(got) == 9
    for axes, img in got:
        assert img.shape == (128, 128) and img.dtype == np.uint16
        assert _best_matching_z(img, world, [-4.0, 0.0, 4.0]) == [-4.0, 0.0, 4.0][axes["z"]]
    signal = [np.mean([im.astype(float).mean() - 100 for ax, im in got if ax["time"] == t]) for t in range(3)]
    assert signal[0] > signal[1] > signal[2]  # photobleaching by the light of earlier time points
    assert world.dose.exposures == 9
