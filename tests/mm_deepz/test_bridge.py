"""The pycromanager bridge refuses what cannot work, with a reason."""

import socket

import pytest

from mm_deepz.bridge import BridgeError, connect_micromanager, start_simulator


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")  # pyjavaz's socket thread
def test_no_micro_manager_on_the_port_is_a_clear_error():
    port = _free_port()
    with pytest.raises(BridgeError, match=f"No Micro-Manager answered on port {port}"):
        connect_micromanager(port=port, timeout_ms=300)


def test_one_python_backend_core_at_a_time(world):
    with start_simulator(world):
        with pytest.raises(BridgeError, match="already active"):
            start_simulator(world)
        with pytest.raises(BridgeError, match="simulator core is active"):
            connect_micromanager()
    with start_simulator(world) as again:  # closing really released it
        assert again.core.getCameraDevice() == "Camera"


def test_a_closed_session_frees_its_microscope(tmp_path):
    # pycromanager's suite with a fresh microscope per test grew by ~370 MB a test (15 GB by its
    # 48th): each core kept its own bound methods, a cycle the SWIG core never let the collector break,
    # so every closed session held its core, world and image buffer. A closed session is freed
    import gc
    import weakref

    from pycromanager import Acquisition, multi_d_acquisition_events

    import simulators

    with start_simulator(simulators.SimWorld(sensor_shape=(64, 64))) as session:
        core, world = weakref.ref(session.core), weakref.ref(session.world)
        with Acquisition(str(tmp_path), "acq", show_display=False) as acq:  # the engine has used it
            acq.acquire(multi_d_acquisition_events(num_time_points=3))
        acq.get_dataset().close()
    del session, acq
    gc.collect()
    assert core() is None and world() is None


def test_third_party_internals_are_where_they_were_verified():
    # the private APIs the bridge and the simulator's core build on, checked against what is installed:
    # a pycromanager, mmpycorex or pymmcore-plus that moved them fails here, naming the versions
    from importlib.metadata import requires

    from mm_deepz import bridge
    from simulators import core

    cores, engine = bridge._internals()
    assert isinstance(cores, list) and callable(engine.get_instance)
    core.check_unicore()
    pins = [p.replace(" ", "") for p in requires("mm-deepz")]  # as installed from pyproject.toml
    for name, verified in {
        **bridge.VERIFIED_WITH,
        **core.VERIFIED_WITH,
    }.items():  # bounded by what was verified
        assert any(p.startswith(f"{name}") and f"<={verified}" in p.split(";")[0] for p in pins), name


def test_moved_internals_are_refused_by_name(monkeypatch):
    from mmpycorex import launcher
    from pymmcore_plus.experimental.unicore import UniMMCore

    from simulators import core

    monkeypatch.setattr(launcher, "_PYMMCORES", None)  # as if mmpycorex kept its cores elsewhere
    with pytest.raises(
        BridgeError, match=r"verified with \(pycromanager .*, verified 1\.0\.2.*install pycromanager=="
    ):
        start_simulator()

    class Moved(UniMMCore):  # as if a release renamed _start_sequence's parameters
        def _start_sequence(self, camera, count):  # type: ignore[override]
            pass

    monkeypatch.setattr(core, "UniMMCore", Moved)
    with pytest.raises(
        core.IncompatibleCoreError, match=r"changed UniMMCore\._start_sequence.*pymmcore-plus=="
    ):
        core.load_demo_core()


@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")  # pyjavaz's socket thread
def test_moved_python_backend_internals_do_not_stand_in_the_way_of_micro_manager(monkeypatch):
    # users with hardware run on the Java backend, which needs none of the internals the simulator uses
    from mmpycorex import launcher

    monkeypatch.setattr(launcher, "_PYMMCORES", None)
    port = _free_port()
    with pytest.raises(BridgeError, match=f"No Micro-Manager answered on port {port}"):
        connect_micromanager(port=port, timeout_ms=300)


def test_the_next_frame_of_a_running_sequence_is_waited_for_not_spun_for(world):
    # pycromanager's Python engine asks for a sequence's next frame in a loop that does not pause: when
    # the buffer is empty, the adapter sleeps (letting a camera whose frames are made in Python make
    # them) before it says so, and a frame that is there comes at once
    import time

    from mm_deepz.bridge import POP_WAIT_S

    with start_simulator(world) as session:
        core = session.core
        core.setExposure(500.0)  # the simulated camera takes its exposure's time, as a real one does
        core.startSequenceAcquisition(2, 0.0, True)
        try:
            started = time.monotonic()
            with pytest.raises(IndexError, match="empty"):  # still MMCore's answer for an empty buffer
                core.pop_next_tagged_image()
            assert time.monotonic() - started >= POP_WAIT_S
            while not core.getRemainingImageCount():
                time.sleep(0.01)
            frame = core.pop_next_tagged_image()
            assert frame.pix.shape == (core.getImageHeight(), core.getImageWidth()) and frame.pix.any()
        finally:
            core.stopSequenceAcquisition()
