"""Fault injection: whatever fails (model, memory, disk, camera, user, input), measured data survives
and the user is told what happened. The simulator, pycromanager and the shipped model, CPU."""

import _thread
import errno
import itertools
import re
import signal
import threading
import time

import numpy as np
import pytest
import torch
import zarr
from helpers import disk_fails_after_measured_planes, per_block, tiny_model
from ome_zarr.io import parse_url
from ome_zarr.reader import Reader
from typer.testing import CliRunner

import simulators as sim
from acquisition_hooks import DeepZAcquisition, DeepZHooks, DeepZPlan, RunSettings
from benchmarks.common import rss_mb
from mm_deepz.cli import app
from mm_deepz.engine import InferenceWorker, Predictor
from mm_deepz.errors import InferenceError
from mm_deepz.io import Geometry, Recorder, image_group_path, open_container, read_progress
from mm_deepz.io.record import measured_not_recorded
from mm_deepz.modelfile import load_model
from mm_deepz.shipped import shipped_model_path

Z = (-10.0, 10.0, 1.0)


def _acquisition(session, tmp_path, time_points=4, **settings):
    model = load_model(shipped_model_path(1))
    return DeepZAcquisition(
        session.core,
        model,
        DeepZPlan.for_model(model, *Z),
        RunSettings(output=tmp_path / "run.ome.zarr", time_points=time_points, device="cpu", **settings),
    )


def _per_block() -> int:
    """Time points due at once that go to the camera as one sequence, at the shipped 1-plane plan's."""
    return per_block(DeepZPlan.for_model(load_model(shipped_model_path(1)), *Z).anchor_exposure_ms)


def _measured(path):
    node = next(iter(Reader(parse_url(str(path / image_group_path(open_container(path), "measured"))))()))
    return np.asarray(node.data[0])


def _no_worker_threads():
    return not any(t.name == "deepz-inference" and t.is_alive() for t in threading.enumerate())


# -- 1. the model fails --------------------------------------------------------------------
def test_model_errors_nan_and_oom_mid_run_lose_no_measured_plane(session, tmp_path):
    run = _acquisition(session, tmp_path, time_points=5)
    predictor, calls = run.predictor, itertools.count()
    good_stack, good_decoder = predictor.predict_stack, predictor._decoder

    def faulty_stack(*args, **kwargs):
        i = next(calls)
        if i == 1:
            raise RuntimeError("CUDA error: an illegal memory access was encountered")
        if i == 2:
            predictor._decoder = lambda enc, dpm: torch.full((*dpm.shape[:2], *enc.shape[-2:]), float("nan"))
        if i == 3:  # runs out of memory with more than one virtual plane per batch
            predictor._decoder = lambda enc, dpm: (
                (_ for _ in ()).throw(torch.cuda.OutOfMemoryError("out of memory"))
                if dpm.shape[1] > 1
                else good_decoder(enc, dpm)
            )
        try:
            return good_stack(*args, **kwargs)
        finally:
            predictor._decoder = good_decoder

    predictor.predict_stack = faulty_stack
    summary = run.run()
    measured = _measured(tmp_path / "run.ome.zarr")
    assert (measured[:, 0, 0].reshape(5, -1).max(axis=1) > 0).all()  # every time point's plane is on disk
    prog = read_progress(tmp_path / "run.ome.zarr")
    assert prog["completed"]["measured"] == [0, 1, 2, 3, 4]
    assert prog["completed"]["virtual"] == [0, 3, 4]  # t=3 recovered by smaller batches
    assert "illegal memory access" in prog["virtual_missing"]["1"] and "NaN" in prog["virtual_missing"]["2"]
    assert summary.virtual_missing == 2 and len(summary.errors) == 2 and summary.stop_reason is None
    listing = CliRunner().invoke(app, ["info", str(tmp_path / "run.ome.zarr")], env={"COLUMNS": "300"}).output
    assert listing.count("illegal memory access") == 1 and listing.count("NaN") == 1  # each reason once
    assert predictor.batch_size == 1  # the smaller batch is kept for later stacks


def test_out_of_memory_retries_with_smaller_batches_and_gives_the_same_planes():
    model = tiny_model()
    planes = np.random.default_rng(0).integers(100, 3000, (1, 64, 64)).astype(np.uint16)
    z = np.linspace(-4, 4, 9)
    reference = Predictor(model, "cpu", batch_size=8).predict_stack(planes, (0.0,), z).data
    predictor = Predictor(model, "cpu", batch_size=8)
    decoder = predictor._decoder

    def small_memory(encoded, dpm):
        if dpm.shape[1] > 2:  # more than two virtual planes at once
            raise RuntimeError(
                "[enforce fail at alloc_cpu.cpp:116] DefaultCPUAllocator: can't allocate memory"
            )
        return decoder(encoded, dpm)

    predictor._decoder = small_memory
    np.testing.assert_array_equal(predictor.predict_stack(planes, (0.0,), z).data, reference)
    assert predictor.batch_size == 2
    predictor._decoder = lambda enc, dpm: (_ for _ in ()).throw(torch.cuda.OutOfMemoryError("out of memory"))
    with pytest.raises(InferenceError, match="Out of memory even one virtual plane"):
        predictor.predict_stack(planes, (0.0,), z)


# -- 2. the disk fails ---------------------------------------------------------------------
@pytest.mark.parametrize(
    ("code", "words"), [(errno.ENOSPC, "the disk is full"), (errno.EACCES, "Permission")]
)
def test_disk_full_or_unwritable_stops_cleanly_and_keeps_what_was_written(
    session, tmp_path, monkeypatch, code, words
):
    disk_fails_after_measured_planes(monkeypatch, 2, code)  # from the third measured plane on
    block = _per_block()
    run = _acquisition(session, tmp_path, time_points=block + 6)  # a block due at once, and more
    t0 = time.monotonic()
    summary = run.run()
    assert time.monotonic() - t0 < 60 and _no_worker_threads()
    monkeypatch.undo()
    assert summary.stop_reason and str(tmp_path / "run.ome.zarr") in summary.stop_reason
    assert words in summary.stop_reason and re.search(
        r"\(\d+(\.\d)? (bytes|KB|MB|GB|TB) free\)", summary.stop_reason
    )
    # the third plane's write failed; at most the block already under way (one camera sequence, a
    # quarter second) was exposed after it, the block queued behind it was dropped
    assert session.world.dose.exposures <= block
    prog = read_progress(tmp_path / "run.ome.zarr")
    # both written time points are accounted for: in the record, or (the record trails the frames by up
    # to a second, and the full disk took its last write) on disk where `info` names them
    recorded = prog["completed"]["measured"]
    assert sorted(set(recorded) | set(measured_not_recorded(tmp_path / "run.ome.zarr", prog))) == [0, 1]
    measured = _measured(tmp_path / "run.ome.zarr")
    assert (measured[:2, 0, 0].reshape(2, -1).max(axis=1) > 0).all()


# -- 3. the acquisition is aborted ------------------------------------------------------------
@pytest.fixture
def python_sigint():
    """Ctrl-C as in a terminal: Python's own SIGINT handler raises KeyboardInterrupt. A library loaded
    by an earlier test may have replaced it in this process, and ``interrupt_main`` then does nothing."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, previous)


def test_ctrl_c_ends_threads_and_leaves_a_consistent_container(session, tmp_path, python_sigint):
    def interrupt(kind, t, zi, image):
        if t == 1:
            _thread.interrupt_main()  # what Ctrl-C does to the main thread

    run = _acquisition(session, tmp_path, time_points=8, interval_s=0.2)
    run.events.image.connect(interrupt)
    summary = run.run()
    assert summary.aborted, summary
    assert summary.stop_reason == "aborted by the user", summary.stop_reason
    assert _no_worker_threads()
    prog = read_progress(tmp_path / "run.ome.zarr")
    # t=1 and at most the time point already sent to the camera (on a busy machine) are finished
    done = prog["completed"]["measured"]
    assert prog["finished"] and done in ([0, 1], [0, 1, 2]), done
    assert prog["completed"]["virtual"] == done  # the measured bundles were still synthesized
    assert _measured(tmp_path / "run.ome.zarr").shape[0] == len(done)


def test_panel_stop_ends_the_run_promptly(qtbot, tmp_path):
    from acquisition_hooks import AcquisitionRequest, SimulatorSpec
    from gui import DeepZPanel

    panel = DeepZPanel(
        AcquisitionRequest(
            output=tmp_path / "run.ome.zarr",
            time_points=50,
            interval_s=0.5,
            microscope=SimulatorSpec(frame=64),
            device="cpu",
        )
    )
    qtbot.addWidget(panel)
    with qtbot.waitSignal(panel.runner.image, timeout=60_000):
        panel.start()
    with qtbot.waitSignal(panel.runner.finished, timeout=30_000):
        qtbot.mouseClick(panel.controls.stop_button, 1)
    assert panel.summary.aborted and panel.summary.time_points < 50
    assert panel.runner.wait(5) and _no_worker_threads()
    assert read_progress(tmp_path / "run.ome.zarr")["finished"]


def test_a_failing_display_callback_does_not_stop_the_acquisition(session, tmp_path):
    def broken(*args):
        raise ValueError("the viewer crashed")

    run = _acquisition(
        session,
        tmp_path,
        time_points=3,
    )
    run.events.image.connect(broken)
    run.events.virtual.connect(broken)
    summary = run.run()
    assert summary.time_points == 3 and summary.planes_synthesized == 63
    assert summary.errors == ["display callback failed: ValueError: the viewer crashed"]


def test_a_camera_error_does_not_hang_the_run(session, tmp_path, monkeypatch):
    snap, calls = sim.devices.SimCamera.snap, itertools.count()

    def flaky(self, buffer):
        if next(calls) == 1:
            raise RuntimeError("camera: lost connection")
        return snap(self, buffer)

    monkeypatch.setattr(sim.devices.SimCamera, "snap", flaky)
    run = _acquisition(session, tmp_path, time_points=3)
    summary = run.run()
    prog = read_progress(tmp_path / "run.ome.zarr")
    # a microscope error is an error (issue #38): the run stops at once, naming it, and keeps t=0; it
    # does not wait out the time-point timeout (120 s here) nor go on as if nothing happened
    assert prog["completed"]["measured"] == [0] and prog["finished"] and prog["aborted"]
    # the three time points are one camera sequence, which the camera ended: its own error is in the
    # log (the core's sequence thread), the stop reason names the camera
    assert summary.stop_reason is not None and "camera 'Camera'" in summary.stop_reason
    assert "sequence of frames ended" in summary.stop_reason
    assert summary.planes_requested <= 3 * 21
    assert session.world.dose.exposures == 1  # t=0: nothing exposed after the error


def test_an_error_escaping_the_run_still_finishes_the_container_with_what_was_measured(
    session, tmp_path, monkeypatch
):
    # something the run does not handle (here an error while the second time point's events are made)
    # propagates to the caller; leaving the `with` block finishes the container, keeps t=0 whole and
    # records why it stopped
    import acquisition_hooks.run as run_module

    events = run_module.pycromanager_events

    block = _per_block()  # the first block of time points due at once is with the camera meanwhile

    def failing(sequence, t):
        if t == block:
            raise RuntimeError("pycromanager: the acquisition engine stopped")
        return events(sequence, t)

    monkeypatch.setattr(run_module, "pycromanager_events", failing)
    with (
        pytest.raises(RuntimeError, match="engine stopped"),
        _acquisition(session, tmp_path, time_points=block + 1) as run,
    ):
        run.run()
    prog = read_progress(tmp_path / "run.ome.zarr")
    assert prog["finished"] and prog["aborted"]
    first = list(range(block))
    assert prog["completed"]["measured"] == first and prog["completed"]["virtual"] == first
    assert prog["summary"]["stop_reason"] == "RuntimeError: pycromanager: the acquisition engine stopped"
    assert prog["summary"]["seconds"] > 0 and _no_worker_threads()
    Recorder(
        tmp_path / "run.ome.zarr", Geometry((0.0,), 0.325, 0.0, (8, 8)), overwrite=True
    ).finish()  # released


# -- 4. bad input --------------------------------------------------------------------------
@pytest.fixture
def hooks(tmp_path):
    """Hooks with a real recorder and worker, fed frames directly (no microscope)."""
    plan = DeepZPlan(z_start_um=-4.0, z_end_um=4.0, z_step_um=1.0)
    recorder = Recorder(tmp_path / "h.ome.zarr", Geometry(tuple(plan.requested_z()), 0.325, 0.0, (64, 64)))
    worker = InferenceWorker(Predictor(tiny_model(z_range_um=4.0), "cpu"))
    h = DeepZHooks(plan, recorder, worker)
    yield h
    worker.close()


def _anchor(hooks, t, frame):
    hooks.rewrite_event({"axes": {"time": t, "z": 4}})  # fixes the time point's mode
    return hooks.image_process_fn(frame, {"Axes": {"time": t, "z": 4, "deepz": "anchor"}})


def _worm_frame(seed=0):
    rng = np.random.default_rng(seed)
    return (rng.poisson(200, (64, 64)) + 100).astype(np.uint16)


@pytest.mark.parametrize(
    "frame",
    [np.zeros((32, 64), np.uint16), np.full((64, 64), 2.5, np.float32), np.full((64, 64), 70000, np.int32)],
    ids=["roi-changed", "float", "over-16-bit"],
)
def test_frames_that_do_not_fit_are_kept_aside_not_dropped(hooks, frame, tmp_path):
    _anchor(hooks, 0, _worm_frame())
    assert _anchor(hooks, 1, frame) is None  # nothing raised into the acquisition engine
    hooks.worker.close()
    hooks.recorder.close()  # the run's end writes the record (during the run: at most every second)
    root = zarr.open_group(str(tmp_path / "h.ome.zarr"), mode="r")
    kept = root["rejected/measured_t1_z4_p0"]
    np.testing.assert_array_equal(kept[...], frame)
    assert "does not fit" in kept.attrs["reason"] or "not uint16" in kept.attrs["reason"]
    prog = read_progress(tmp_path / "h.ome.zarr")
    assert prog["completed"]["virtual"] == [0] and "rejected" in prog["virtual_missing"]["1"]
    assert hooks.stats.rejected_frames == 1


def test_saturated_input_is_flagged_and_still_synthesized(hooks, tmp_path):
    frame = _worm_frame()
    frame[:8, :] = 4095  # a 12-bit camera at full scale over 12 % of the frame
    _anchor(hooks, 0, frame)
    hooks.worker.close()
    hooks.recorder.close()  # the run's end writes the record (during the run: at most every second)
    prog = read_progress(tmp_path / "h.ome.zarr")
    assert prog["completed"]["virtual"] == [0]
    assert "saturated" in prog["warnings"][0] and "12.5 %" in prog["warnings"][0]


def test_empty_frames_give_a_missing_virtual_stack_with_the_reason(hooks, tmp_path):
    _anchor(hooks, 0, np.zeros((64, 64), np.uint16))
    hooks.worker.close()
    hooks.recorder.close()  # the run's end writes the record (during the run: at most every second)
    prog = read_progress(tmp_path / "h.ome.zarr")
    assert prog["completed"]["measured"] == [0] and prog["completed"]["virtual"] == []
    assert "flat" in prog["virtual_missing"]["0"] and "shutter" in prog["virtual_missing"]["0"]


def test_a_config_file_with_unknown_devices_is_a_clear_error(tmp_path):
    cfg = tmp_path / "bad.cfg"
    cfg.write_text(sim.DEMO_CONFIG.read_text().replace("SimZStage", "SimFocusDrive"))
    with pytest.raises(sim.ConfigError, match="SimFocusDrive") as e:
        sim.load_demo_core(config=cfg)
    assert "SimZStage" in str(e.value)  # the message lists the devices there are


# -- 5. reading what an interrupted run left -----------------------------------------------
def test_an_interrupted_container_reads_and_reports_its_complete_time_points(session, tmp_path):
    block = _per_block()
    run = _acquisition(session, tmp_path, time_points=block + 6)
    run.events.image.connect(lambda kind, t, zi, image: run.abort() if t == 2 else None)
    run.run()
    done = read_progress(tmp_path / "run.ome.zarr")["completed"]["measured"]
    # the abort takes effect after the block under way (time points due at once, one camera sequence of
    # a quarter second): its frames still arrive, the block queued behind it is dropped
    assert done == list(range(len(done))) and 3 <= len(done) <= block
    measured = _measured(tmp_path / "run.ome.zarr")  # ome_zarr's reader (what napari's plugin uses)
    n = len(done)
    assert measured.shape[0] == n and (measured[:, 0, 0].reshape(n, -1).max(axis=1) > 0).all()
    out = CliRunner().invoke(app, ["info", str(tmp_path / "run.ome.zarr")])
    assert out.exit_code == 0 and f"0-{done[-1]}" in out.output and "abort" in out.output


# -- 6. load ---------------------------------------------------------------------------------
@pytest.mark.slow
def test_a_long_run_keeps_memory_flat_and_loses_no_frame(session, tmp_path):
    run = _acquisition(session, tmp_path, time_points=150)
    rss = {}
    run.events.image.connect(
        lambda kind, t, zi, image: rss.setdefault(t, rss_mb()) if t in (30, 149) else None
    )
    summary = run.run()
    prog = read_progress(tmp_path / "run.ome.zarr")
    assert summary.planes_measured == 150 and prog["completed"]["measured"] == list(range(150))
    assert summary.virtual_missing + summary.planes_synthesized // 21 == 150  # every bundle accounted for
    assert rss[149] - rss[30] < 40, rss  # MB; bounded queues, nothing kept per time point
