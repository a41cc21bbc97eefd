"""No virtual stack is ever lost: a backlog when the model is slower than the camera, and
`mm-deepz infer` after a kill, with another model, and after being interrupted itself."""

from __future__ import annotations

import os
import signal
import subprocess
import time

import numpy as np
import pytest
import torch
import yaozarrs
import zarr
from helpers import disk_fails_after_measured_planes, measured_chunks_prefix, start_acquire
from ome_types import from_xml
from ome_zarr.utils import find_multiscales
from typer.testing import CliRunner

from acquisition_hooks import DeepZAcquisition, DeepZPlan, RunSettings
from acquisition_hooks.cli import _ranges
from acquisition_hooks.infer import infer_missing
from mm_deepz.cli import app
from mm_deepz.engine import Predictor
from mm_deepz.io import NotAContainerError, image_array, open_container, read_progress
from mm_deepz.modelfile import load_model
from mm_deepz.shipped import shipped_model_path

Z = (-10.0, 10.0, 1.0)


@pytest.mark.slow
def test_a_model_slower_than_the_camera_loses_no_virtual_stack(session, tmp_path):
    model = load_model(shipped_model_path(1))
    run = DeepZAcquisition(
        session.core,
        model,
        DeepZPlan.for_model(model, *Z),
        RunSettings(output=tmp_path / "run.ome.zarr", time_points=8, device="cpu", max_pending=1),
    )
    fast = run.predictor.predict_stack

    def slow(*a, **k):
        time.sleep(0.4)  # a model ~10x slower than this camera
        return fast(*a, **k)

    run.predictor.predict_stack = slow
    frames, drained = [], []
    run.events.image.connect(lambda kind, t, zi, plane: frames.append(time.monotonic()))
    t0 = time.monotonic()
    summary = run.run(backlog_progress=lambda done, total: drained.append((done, total)))
    total = time.monotonic() - t0
    # the camera never waited for the model: every plane was taken long before the model finished
    assert len(frames) == 8 and frames[-1] - t0 < 0.5 * total, (frames[-1] - t0, total)
    assert (
        drained and drained[-1][0] == drained[-1][1] > 0
    )  # the backlog was made after the run, with progress
    assert (
        summary.virtual_missing == 0 and summary.virtual_pending == 0 and summary.planes_synthesized == 8 * 21
    )
    assert run.hooks.stats.virtual_deferred >= 4  # most stacks could not be taken when their planes arrived
    prog = read_progress(tmp_path / "run.ome.zarr")
    assert prog["completed"]["virtual"] == list(range(8)) and not prog.get("virtual_pending")
    # a stack made from the backlog is what the model makes of the planes on disk
    root = zarr.open_group(str(tmp_path / "run.ome.zarr"), mode="r")
    t = 5
    planes = np.asarray(image_array(root, "measured")[t, 0])  # the input plane (z = 0)
    expected = Predictor(model, "cpu").predict_stack(
        planes, (0.0,), np.arange(-10, 10.5, 1.0), out_dtype=np.float32
    )
    np.testing.assert_allclose(
        np.asarray(image_array(root, "virtual")[t, 0]), expected.data, rtol=1e-5, atol=1e-3
    )


def _measured(out) -> int:
    """Time points measured so far by a run in another process (0 before its container exists or while
    its record is being rewritten)."""
    try:
        return len(read_progress(out)["completed"]["measured"])
    except (NotAContainerError, ValueError, KeyError):
        return 0


@pytest.mark.slow
def test_after_kill_9_infer_completes_the_container(tmp_path):
    out = tmp_path / "killed.ome.zarr"
    proc = start_acquire(
        out,
        "--frame",
        "64",
        "-t",
        "40",
        "--interval",
        "0.5",
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline and _measured(out) < 3:
        time.sleep(0.1)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    before = read_progress(out)
    measured = before["completed"]["measured"]
    assert len(measured) >= 3 and not before["finished"]
    # info lists every measured time point without its stack, not only the recorded backlog: the stack
    # the model was making when the run died is recorded nowhere else (#37 item 1)
    todo = sorted(set(measured) - set(before["completed"]["virtual"]))
    listing = CliRunner().invoke(app, ["info", str(out)], env={"COLUMNS": "300"}).output
    row = [line for line in listing.splitlines() if "virtual stacks still to make" in line]
    assert bool(row) == bool(todo), listing
    if todo:
        assert f" {_ranges(todo)} (`mm-deepz infer` makes them)" in row[0]
    res = CliRunner().invoke(app, ["infer", str(out), "--device", "cpu"])  # the dead run's lock is gone
    assert res.exit_code == 0, res.output
    after = read_progress(out)
    # what the record had, and what it trailed by (the last second's planes on disk, recovered by infer)
    assert set(measured) <= set(after["completed"]["measured"])
    measured = after["completed"]["measured"]
    assert after["completed"]["virtual"] == measured and not after.get("virtual_pending")
    virtual = image_array(open_container(out), "virtual")
    assert (
        virtual.shape[0] >= max(measured) + 1
        and (np.asarray(virtual[measured, 0]).max(axis=(1, 2, 3)) > 0).all()
    )
    # the OME-XML (what Bio-Formats shows) says what the arrays hold, not what the killed run's start
    # wrote (SizeT 1, #37 item 1)
    sizes = {
        img.name: img.pixels.size_t for img in from_xml((out / "OME" / "METADATA.ome.xml").read_text()).images
    }
    root = open_container(out)
    assert sizes["measured"] == image_array(root, "measured").shape[0] >= 3
    assert sizes["virtual"] == virtual.shape[0]


def test_another_models_stacks_land_beside_the_runs_with_their_provenance(tmp_path):
    out = tmp_path / "run.ome.zarr"
    res = CliRunner().invoke(app, ["acquire", "-o", str(out), "-t", "2", "--frame", "64", "--device", "cpu"])
    assert res.exit_code == 0, res.output
    run_virtual = np.asarray(image_array(open_container(out), "virtual")[:])
    other = tmp_path / "retrained.pt"
    model = load_model(shipped_model_path(1))
    with torch.no_grad():
        for p in model.network.parameters():
            p.mul_(0.5)  # another model (as a retrained one would be)
    model.save(other)
    summary = infer_missing(out, other, "cpu")
    assert summary.image == "virtual_retrained" and summary.made == 2
    root = zarr.open_group(str(out), mode="r")
    np.testing.assert_array_equal(
        image_array(root, "virtual")[:], run_virtual
    )  # the run's own stacks untouched
    assert image_array(root, "virtual_retrained").shape == run_virtual.shape
    yaozarrs.validate_zarr_store(out)  # the added image joins the collection
    assert [name for _, name, _ in find_multiscales(out)] == [
        "measured",
        "virtual",
        "virtual_retrained",
    ]  # (no blind checks: no reference image)
    # the run's own images still say what they are (the collection was rewritten by the other run)
    channels = {
        img.name: img.pixels.channels[0]
        for img in from_xml((out / "OME" / "METADATA.ome.xml").read_text()).images
    }
    assert "deepz_1plane" in channels["virtual"].name and channels["measured"].emission_wavelength == 525
    assert "retrained" in channels["virtual_retrained"].name
    assert not np.array_equal(image_array(root, "virtual_retrained")[:], run_virtual)
    models = read_progress(out)["virtual_models"]
    assert models["virtual_retrained"]["sha256"] == load_model(other).sha256
    assert read_progress(out)["completed"]["virtual_retrained"] == [0, 1]
    listing = CliRunner().invoke(app, ["info", str(out)]).output
    assert "virtual_retrained: complete time points" in listing


def test_an_interrupted_infer_goes_on_where_it_stopped(tmp_path):
    out = tmp_path / "run.ome.zarr"
    res = CliRunner().invoke(app, ["acquire", "-o", str(out), "-t", "4", "--frame", "64", "--device", "cpu"])
    assert res.exit_code == 0, res.output
    other = tmp_path / "other.pt"
    model = load_model(shipped_model_path(1))
    model.card.metrics = {"note": "a copy with another checksum"}
    model.save(other)

    def interrupt(done, total):
        if done == 1:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        infer_missing(out, other, "cpu", progress=interrupt)
    assert read_progress(out)["completed"]["virtual_other"] == [0]
    again = infer_missing(out, other, "cpu")
    assert again.already == 1 and again.made == 3
    assert read_progress(out)["completed"]["virtual_other"] == [0, 1, 2, 3]


def test_infer_refuses_a_run_whose_model_is_gone_and_a_busy_run(tmp_path):
    out = tmp_path / "run.ome.zarr"
    res = CliRunner().invoke(
        app,
        [
            "acquire",
            "-o",
            str(out),
            "-t",
            "1",
            "--frame",
            "64",
            "--device",
            "cpu",
            "--model",
            str(_copy_model(tmp_path)),
        ],
    )
    assert res.exit_code == 0, res.output
    os.remove(tmp_path / "mine.pt")
    res = CliRunner().invoke(app, ["infer", str(out)])
    assert "is not here: give one with --model" in str(res.exception)


def _copy_model(tmp_path):
    path = tmp_path / "mine.pt"
    path.write_bytes(shipped_model_path(1).read_bytes())
    return path


def test_after_a_real_disk_full_infer_recovers_planes_the_record_missed(session, tmp_path, monkeypatch):
    # a real full disk fails every write from some moment on: a plane is written, then the record's
    # update (zarr.json) fails, so the record misses planes that are on disk
    model = load_model(shipped_model_path(1))
    run = DeepZAcquisition(
        session.core,
        model,
        DeepZPlan.for_model(model, *Z),
        RunSettings(output=tmp_path / "run.ome.zarr", time_points=6, device="cpu"),
    )
    disk_fails_after_measured_planes(monkeypatch, 3)
    summary = run.run()
    monkeypatch.undo()  # the disk was freed
    assert summary.stop_reason and "disk is full" in summary.stop_reason
    measured = zarr.open_array(tmp_path / "run.ome.zarr" / measured_chunks_prefix().removesuffix("c/"))
    on_disk = [t for t in range(measured.shape[0]) if measured[t].any()]  # camera counts: never all 0
    recorded = read_progress(tmp_path / "run.ome.zarr")["completed"]["measured"]
    assert on_disk == [0, 1, 2] and recorded != on_disk  # the record missed a plane that is on disk
    result = infer_missing(tmp_path / "run.ome.zarr", None, "cpu")
    assert result.recovered == len(set(on_disk) - set(recorded))
    prog = read_progress(tmp_path / "run.ome.zarr")
    assert prog["completed"]["measured"] == on_disk and prog["completed"]["virtual"] == on_disk


def test_info_lists_the_stacks_a_killed_run_was_making_and_infer_makes_exactly_those(tmp_path):
    # a kill -9 while the model works leaves measured time points with no stack and no record of a
    # backlog: info must still list them (#37 item 1), and infer makes those and no others
    out = tmp_path / "run.ome.zarr"
    res = CliRunner().invoke(app, ["acquire", "-o", str(out), "-t", "4", "--frame", "64", "--device", "cpu"])
    assert res.exit_code == 0, res.output
    root = zarr.open_group(str(out), mode="r+")
    record = dict(root.attrs["mm_deepz"])
    record["completed"] = {**record["completed"], "virtual": [0, 3]}  # 1 and 2 were in the model
    record["finished"] = False
    root.attrs["mm_deepz"] = record
    listing = CliRunner().invoke(app, ["info", str(out)], env={"COLUMNS": "300"}).output
    assert "virtual stacks still to make" in listing and " 1-2 (`mm-deepz infer` makes them)" in listing
    summary = infer_missing(out, None, "cpu")
    assert (summary.made, summary.already) == (2, 2)
    listing = CliRunner().invoke(app, ["info", str(out)], env={"COLUMNS": "300"}).output
    assert "still to make" not in listing


def test_info_names_measured_planes_a_kill_left_out_of_the_record(tmp_path):
    # #37 item 1: after a kill between a plane's write and the record's, `info` listed what the record
    # said; the planes on disk were named nowhere until `mm-deepz infer`
    from mm_deepz.io import Geometry, Recorder

    out = tmp_path / "cut.ome.zarr"
    geometry = Geometry(z_um=(-1.0, 0.0, 1.0), pixel_size_um=0.5, interval_s=1.0, shape_yx=(8, 8))
    rec = Recorder(out, geometry)
    for t in (0, 1):
        rec.write_plane("measured", t, 1, np.full((8, 8), 120 + t, np.uint16))
    rec.mark_complete("measured", 0, planes=[1])  # t=1's record never came: killed here
    rec.close()
    listing = CliRunner().invoke(app, ["info", str(out)], env={"COLUMNS": "300"}).output
    assert "measured, not yet recorded" in listing and "│ 1 (on disk" in listing
