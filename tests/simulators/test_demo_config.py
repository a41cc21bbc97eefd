"""The simulator as a drop-in for Micro-Manager's demo configuration (``simulators/mmconfig_demo.cfg``).

A conformance suite in the manner of pycromanager's own acquisition tests (which run against
``MMConfig_demo.cfg``): the same names, the public ``Acquisition`` API, and for every frame a
check that it was taken at the z, channel and exposure asked for, which the demo camera cannot
show (its images do not depend on the hardware) and the simulator can.
"""

from __future__ import annotations

import subprocess
import sys
import time

import numpy as np
import pytest
import useq
from pycromanager import Acquisition, multi_d_acquisition_events

import simulators as sim
from mm_deepz.bridge import start_simulator
from simulators.spectra import REFERENCE

CHANNELS = ["DAPI", "FITC", "Rhodamine", "Cy5"]


@pytest.fixture
def demo_world() -> sim.SimWorld:
    """A still 64x64 worm field (seed 104): pixels depend on the hardware, not on when they are taken."""
    return sim.SimWorld(sim.worm(seed=104, activity=False), sensor_shape=(64, 64), seed=104)


@pytest.fixture
def demo_core(demo_world):
    c = sim.load_demo_core(demo_world, config=sim.MM_DEMO_CONFIG)
    yield c
    sim.release_core(c)


@pytest.fixture
def demo(demo_world):
    """The demo-like configuration as pycromanager's (Python-backend) core."""
    with start_simulator(demo_world, config=sim.MM_DEMO_CONFIG) as session:
        yield session


def _acquire(events, hook=None, **kwargs):
    """Run ``events`` with pycromanager's Acquisition; every (image, metadata) and what the hook saw."""
    frames, seen = [], []

    def keep(image, metadata):
        frames.append((image.copy(), metadata))

    def record(event):
        seen.append(event)
        return event if hook is None else hook(event)

    with Acquisition(
        directory=None,
        name="conformance",
        show_display=False,
        image_process_fn=keep,
        pre_hardware_hook_fn=record,
        **kwargs,
    ) as acq:
        acq.acquire(events)
    return frames, seen


def _efficiency(core, group: str, preset: str) -> float:
    """The specimen's relative brightness in a preset, read back from the simulated world."""
    core.setConfig(group, preset)
    return sim.world_of(core).channel_efficiency


def _best_z(img: np.ndarray, world: sim.SimWorld, candidates) -> float:
    scores = [
        np.corrcoef(img.ravel().astype(float), world.expected_photons(1.0, z_um=z).ravel())[0, 1]
        for z in candidates
    ]
    return candidates[int(np.argmax(scores))]


# -- names and properties ---------------------------------------------------------------------


def test_demo_config_names_devices_groups_and_presets(demo_core):
    core = demo_core
    assert {
        "Camera",
        "Dichroic",
        "Emission",
        "Excitation",
        "Objective",
        "Z",
        "Path",
        "XY",
        "Shutter",
        "LED",
    } <= set(core.getLoadedDevices())
    assert {"Camera", "Channel", "Channel-Multiband", "LightPath", "Objective", "System"} <= set(
        core.getAvailableConfigGroups()
    )
    assert set(CHANNELS) <= set(core.getAvailableConfigs("Channel"))
    assert set(core.getAvailableConfigs("Channel-Multiband")) == set(CHANNELS)
    assert set(core.getAvailableConfigs("Camera")) == {"HighRes", "MedRes", "LowRes"}
    assert set(core.getAvailableConfigs("Objective")) == {"10X", "20X", "40X"}
    assert set(core.getAvailableConfigs("LightPath")) == {"Camera-left", "Camera-right", "Eyepiece"}
    for prop in ("Binning", "PixelType", "BitDepth", "OnCameraCCDXSize", "OnCameraCCDYSize", "Exposure"):
        assert core.hasProperty("Camera", prop)
    assert core.getProperty("Z", "UseSequences") == "No"
    assert core.getChannelGroup() == "Channel"
    assert core.getCameraDevice() == "Camera" and core.getFocusDevice() == "Z"


def test_property_values_are_accepted_as_text_as_micro_manager_sends_them(demo_core):
    core = demo_core
    for prop, value in (("BitDepth", "12"), ("RealTime", "0"), ("Binning", "2"), ("PixelType", "16bit")):
        core.setProperty("Camera", prop, value)
        assert core.getProperty("Camera", prop) == value
        assert value in core.getAllowedPropertyValues("Camera", prop)
    core.setProperty("LED", "State", "1")
    assert core.getProperty("LED", "Label") == "Blue"
    core.setProperty("Camera", "BitDepth", 14)  # a Python number still works
    assert core.getImageBitDepth() == 14
    with pytest.raises(RuntimeError, match="not allowed"):
        core.setProperty("Camera", "BitDepth", "13")


def test_bit_depth_and_pixel_type_are_what_the_images_are(demo_core):
    core = demo_core
    core.setExposure(200)  # bright enough to saturate the narrow converters
    for bits, dtype in ((8, np.uint8), (10, np.uint16), (16, np.uint16)):
        core.setProperty("Camera", "BitDepth", str(bits))
        assert core.getImageBitDepth() == bits
        assert core.getBytesPerPixel() == np.dtype(dtype).itemsize
        core.snapImage()
        img = core.getImage()
        assert img.dtype == dtype and img.max() <= 2**bits - 1
    assert core.getProperty("Camera", "PixelType") == "16bit"
    core.setConfig("Camera", "LowRes")  # binning 4, 8 bits, as the demo's LowRes
    assert core.getProperty("Camera", "PixelType") == "8bit"
    core.snapImage()
    assert core.getImage().shape == (16, 16) and core.getImage().dtype == np.uint8


def test_sensor_size_roi_binning_and_objectives_shape_the_images(demo_core):
    core = demo_core
    core.setProperty("Camera", "OnCameraCCDXSize", "96")
    core.setProperty("Camera", "OnCameraCCDYSize", "80")
    core.snapImage()
    assert core.getImage().shape == (80, 96) and (core.getImageWidth(), core.getImageHeight()) == (96, 80)
    core.setROI(8, 4, 40, 30)
    core.snapImage()
    assert core.getImage().shape == (30, 40)
    core.clearROI()
    core.setProperty("Camera", "Binning", "2")
    assert core.getPixelSizeUm() == pytest.approx(0.65)
    core.setProperty("Camera", "Binning", "1")
    for objective, pixel_um in (("10X", 0.65), ("20X", 0.325), ("40X", 0.1625)):
        core.setConfig("Objective", objective)
        assert core.getPixelSizeUm() == pytest.approx(pixel_um)
        assert sim.world_of(core).optics.pixel_size_um == pytest.approx(pixel_um)


def test_core_and_world_agree_after_load_and_after_the_world_changes(demo_world):
    demo_world.modality = "confocal"  # a reused world left in the confocal path
    core = sim.load_demo_core(demo_world, config=sim.MM_DEMO_CONFIG)
    try:
        assert core.getProperty("SpinningDisk", "Label") == "Widefield" == demo_world.modality.title()
        demo_world.modality = "confocal"  # changed behind the core's back
        assert core.getProperty("SpinningDisk", "Label") == "Confocal"
        assert core.getCurrentConfig("Channel") == "Confocal"
        core.setConfig("LightPath", "Eyepiece")  # the image goes to the eyepiece: the camera sees its offset
        core.setExposure(100)
        core.snapImage()
        assert core.getImage().mean() == pytest.approx(demo_world.camera.offset_adu, abs=1.0)
    finally:
        sim.release_core(core)


def test_the_first_frame_after_load_costs_an_exposure_not_the_optics(demo_world, monkeypatch):
    # #37 item 7: a freshly loaded world computed its optics at the first frame (a 1000 ms snap took
    # 1.98 s), so pycromanager's abort tests saw no frame before their abort. A camera is ready once
    # loaded: the first snap finds the optics for the current focus and light path made
    from simulators.optics import RadialOTF

    core = sim.load_demo_core(demo_world, config=sim.MM_DEMO_CONFIG)
    made = []
    original = RadialOTF.intensity_psf

    def count(self, defocus_um, modality):
        made.append((defocus_um, modality))
        return original(self, defocus_um, modality)

    monkeypatch.setattr(RadialOTF, "intensity_psf", count)
    try:
        core.setExposure(50)
        core.snapImage()
        assert core.getImage().max() > demo_world.camera.offset_adu + 20  # the specimen, not a blank
        assert made == []
    finally:
        sim.release_core(core)


def test_channels_see_the_gfp_specimen_through_their_filters(demo_core):
    core = demo_core
    core.setExposure(50)
    signal = {}
    for preset in CHANNELS:
        core.setConfig("Channel", preset)
        core.snapImage()
        signal[preset] = core.getImage().astype(float).mean() - 100.0
    assert _efficiency(core, "Channel", "FITC") == pytest.approx(REFERENCE.efficiency())
    assert signal["FITC"] > 5.0
    for other in ("DAPI", "Rhodamine", "Cy5"):
        assert signal[other] < 0.05 * signal["FITC"]


# -- pycromanager's Acquisition API on the demo-like configuration ------------------------------


def test_timelapse_takes_its_time_points_at_the_interval(demo):
    frames, seen = _acquire(multi_d_acquisition_events(num_time_points=4, time_interval_s=0.3))
    assert all(isinstance(e, dict) for e in seen)  # an interval > 0 is not sequenced
    assert [md["Axes"]["time"] for _, md in frames] == [0, 1, 2, 3]
    t = [float(md["SimTime-s"]) for _, md in frames]
    assert min(np.diff(t)) >= 0.25


def test_timelapse_without_interval_is_one_hardware_sequence(demo):
    frames, seen = _acquire(multi_d_acquisition_events(num_time_points=6, time_interval_s=0))
    assert len(seen) == 1 and isinstance(seen[0], list) and len(seen[0]) == 6
    assert len(frames) == 6


def test_multi_d_frames_are_taken_at_their_z_channel_and_exposure(demo):
    core, world = demo.core, demo.world
    efficiency = {ch: _efficiency(core, "Channel", ch) for ch in ("DAPI", "FITC")}
    events = multi_d_acquisition_events(
        num_time_points=2,
        time_interval_s=0,
        channel_group="Channel",
        channels=["DAPI", "FITC"],
        channel_exposures_ms=[5, 20],
        z_start=0,
        z_end=4,
        z_step=2,
        order="tcz",
    )
    frames, _ = _acquire(events)
    assert len(frames) == 2 * 2 * 3
    for img, md in frames:
        axes = md["Axes"]
        assert float(md["SimZ-um"]) == pytest.approx(2.0 * axes["z"])
        assert float(md["SimChannelEfficiency"]) == pytest.approx(efficiency[axes["channel"]], rel=1e-4)
        assert float(md["Exposure"]) == {"DAPI": 5, "FITC": 20}[axes["channel"]]
        assert img.shape == (64, 64)
    fitc = [img for img, md in frames if md["Axes"]["channel"] == "FITC"]
    assert [_best_z(img, world, [0.0, 2.0, 4.0]) for img in fitc[:3]] == [0.0, 2.0, 4.0]


def test_sequenced_z_stack_steps_the_stage_on_each_exposure(demo):
    demo.core.setProperty("Z", "UseSequences", "Yes")
    frames, seen = _acquire(multi_d_acquisition_events(z_start=-6, z_end=6, z_step=3))
    assert len(seen) == 1 and isinstance(seen[0], list) and len(seen[0]) == 5
    zs = [float(md["SimZ-um"]) for _, md in frames]
    assert zs == [-6.0, -3.0, 0.0, 3.0, 6.0]
    assert [_best_z(img, demo.world, [-6.0, -3.0, 0.0, 3.0, 6.0]) for img, _ in frames] == zs


def test_unsequenced_z_stack_when_the_stage_does_not_sequence(demo):
    frames, seen = _acquire(multi_d_acquisition_events(z_start=0, z_end=2, z_step=1))
    assert all(isinstance(e, dict) for e in seen)
    assert [float(md["SimZ-um"]) for _, md in frames] == [0.0, 1.0, 2.0]


def test_sequenced_z_stack_can_be_aborted_mid_sequence(demo):
    demo.core.setProperty("Z", "UseSequences", "Yes")
    demo.core.setExposure(50)
    frames = []
    events = multi_d_acquisition_events(z_start=0, z_end=199, z_step=1)
    start = time.monotonic()
    with Acquisition(
        directory=None, name="abort", show_display=False, image_process_fn=lambda img, md: frames.append(md)
    ) as acq:
        acq.acquire(events)
        while not frames and time.monotonic() - start < 60:  # the sequence is under way
            time.sleep(0.05)
        aborted_at = time.monotonic()
        acq.abort()
    assert 0 < len(frames) < 200
    assert time.monotonic() - aborted_at < 5.0  # the rest of 200 frames at 50 ms would take ~10 s
    assert [float(md["SimZ-um"]) for md in frames] == [float(i) for i in range(len(frames))]


def test_callbacks_see_every_event_and_can_change_it(demo):
    def to_z3(event):
        event["z"] = 3.0 if "z" in event else event.get("z")
        return event

    frames, seen = _acquire(multi_d_acquisition_events(z_start=0, z_end=2, z_step=1), hook=to_z3)
    assert len(seen) == 3
    assert [float(md["SimZ-um"]) for _, md in frames] == [3.0, 3.0, 3.0]


def test_image_size_roi_binning_and_bit_depth_changes_reach_the_acquisition(demo):
    core = demo.core
    core.setProperty("Camera", "OnCameraCCDXSize", "128")
    core.setProperty("Camera", "OnCameraCCDYSize", "96")
    core.setProperty("Camera", "Binning", "2")
    frames, _ = _acquire(multi_d_acquisition_events(num_time_points=2))
    assert [img.shape for img, _ in frames] == [(48, 64)] * 2
    core.setProperty("Camera", "Binning", "1")
    core.setROI(0, 0, 40, 20)
    core.setProperty("Camera", "BitDepth", "8")
    frames, _ = _acquire(multi_d_acquisition_events(num_time_points=2))
    assert all(img.shape == (20, 40) and img.dtype == np.uint8 for img, _ in frames)


def test_positions_move_the_field_of_view(demo):
    frames, _ = _acquire(multi_d_acquisition_events(xy_positions=((0, 0), (30, 0))))
    assert len(frames) == 2
    assert [md["XPosition_um_Intended"] for _, md in frames] == [0, 30]
    assert not np.array_equal(frames[0][0], frames[1][0])


def test_saved_acquisition_reads_back_with_channel_names(demo, tmp_path):
    events = multi_d_acquisition_events(channel_group="Channel", channels=["DAPI", "FITC"])
    with Acquisition(directory=str(tmp_path), name="saved", show_display=False) as acq:
        acq.acquire(events)
    dataset = acq.get_dataset()
    try:
        assert set(dataset.get_channel_names()) == {"DAPI", "FITC"}
        fitc = dataset.read_image(channel="FITC").astype(float)
        dapi = dataset.read_image(channel="DAPI").astype(float)
        assert fitc.mean() - 100 > 10 * max(dapi.mean() - 100, 0.1)
    finally:
        dataset.close()


# -- pymmcore-plus's MDA runner: channel and z hardware sequences ------------------------------


def test_pymmcore_plus_sequences_z_and_led_channels_in_one_triggered_run(demo_core):
    core = demo_core
    core.setProperty("Z", "UseSequences", "Yes")
    core.setProperty("LED", "Sequence", "On")
    core.setConfig("Filters", "Multiband")
    efficiency = {ch: _efficiency(core, "Channel-Multiband", ch) for ch in ("DAPI", "FITC")}
    assert efficiency["FITC"] > 3 * efficiency["DAPI"]
    frames = []
    core.mda.events.frameReady.connect(lambda img, event, meta: frames.append((event, meta)))
    seq = useq.MDASequence(
        channels=[{"group": "Channel-Multiband", "config": c} for c in ("DAPI", "FITC")],
        z_plan={"range": 4, "step": 2},
        axis_order="tpzc",
    )
    assert [type(e).__name__ for e in core.mda.engine.event_iterator(iter(seq))] == ["SequencedEvent"]
    core.mda.run(seq)
    assert len(frames) == 6
    for event, meta in frames:
        camera = meta.get("camera_metadata", meta)
        assert float(camera["SimZ-um"]) == pytest.approx(event.z_pos)
        expected = efficiency[event.channel.config]
        assert float(camera["SimChannelEfficiency"]) == pytest.approx(expected, rel=1e-4)


# -- a script's own exit status ---------------------------------------------------------------

EXIT_SCRIPT = """
import sys
import simulators as sim
core = sim.load_demo_core(sim.SimWorld(sensor_shape=(64, 64)), config=sim.MM_DEMO_CONFIG)
core.setProperty("Camera", "BitDepth", "12")
core.snapImage()
core.unloadAllDevices()
sys.exit(3)
"""


def test_a_script_exits_with_its_own_status_after_unloading_the_core():
    """MMCore's notification thread used to abort the process at exit (status 134) about 4 times in 5."""
    codes = [
        subprocess.run(
            [sys.executable, "-c", EXIT_SCRIPT], check=False, capture_output=True, timeout=120
        ).returncode
        for _ in range(4)
    ]
    assert codes == [3, 3, 3, 3]


@pytest.mark.slow
def test_cli_refuses_a_missing_configuration_and_one_with_connect(tmp_path):
    out = tmp_path / "run.ome.zarr"
    for args, reason in (
        ([str(tmp_path / "none.cfg")], "none.cfg does not exist"),
        (["mmdemo", "--connect"], "Load Hardware Configuration"),
    ):
        cli = [sys.executable, "-c", "from mm_deepz.cli import main; main()"]
        res = subprocess.run(
            [*cli, "acquire", "-o", str(out), "--config", *args],
            check=False,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert res.returncode == 2 and reason in res.stderr and res.stderr.startswith("mm-deepz: error:")
    assert not out.exists()
