"""Nothing a user types or a second process does destroys data (issue: overwrite safety, one writer
per container, non-finite input). Real subprocesses for the two-writer, kill -9 and signal cases."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import zarr
from helpers import run_cli, start_holder
from typer.testing import CliRunner

from acquisition_hooks import AcquisitionRequest, DeepZAcquisition, DeepZPlan, RunSettings, prepare
from mm_deepz.cli import app
from mm_deepz.errors import DeepZError, HardwareError, SettingsError
from mm_deepz.io import (
    ContainerLockedError,
    Geometry,
    NotAContainerError,
    OutputExistsError,
    Recorder,
    read_progress,
)
from mm_deepz.modelfile import load_model
from mm_deepz.shipped import shipped_model_path

GEOM = Geometry(z_um=(-1.0, 0.0, 1.0), pixel_size_um=0.5, interval_s=1.0, shape_yx=(8, 8))


def _finished_container(path: Path, value: int = 7) -> Path:
    rec = Recorder(path, GEOM, {"plan": {"marker": value}})
    rec.write_plane("measured", 0, 1, np.full((8, 8), value, np.uint16))
    rec.mark_complete("measured", 0, planes=[1])
    rec.finish()
    return path


def _user_folder(path: Path) -> Path:
    (path / "src").mkdir(parents=True)
    (path / "thesis.tex").write_text("four years of work")
    (path / "src" / "analysis.py").write_text("print('results')")
    return path


_mm_deepz = run_cli


# -- 1. --overwrite replaces only an mm-deepz container ------------------------------------------
def test_overwrite_never_deletes_a_folder_mm_deepz_did_not_write(tmp_path):
    folder = _user_folder(tmp_path / "p")
    res = _mm_deepz("acquire", "-o", str(folder), "--overwrite", "-t", "1", "--frame", "64")
    assert res.returncode == 2, res.stderr
    assert "did not write" in res.stderr and "Traceback" not in res.stderr
    assert (folder / "thesis.tex").read_text() == "four years of work"
    assert (folder / "src" / "analysis.py").exists() and sorted(p.name for p in folder.iterdir()) == [
        "src",
        "thesis.tex",
    ]


def test_the_current_folder_is_never_an_output(tmp_path):
    _user_folder(tmp_path / "work")
    res = _mm_deepz("acquire", "-o", ".", "--overwrite", "-t", "1", cwd=tmp_path / "work")
    assert res.returncode == 2 and "current folder" in res.stderr and "Traceback" not in res.stderr
    assert (tmp_path / "work" / "thesis.tex").exists()
    with pytest.raises(OutputExistsError, match="current folder"):
        prepare(AcquisitionRequest(output=Path(".."), overwrite=True))  # nor a folder that holds it


# -- 2. one writer per container ----------------------------------------------------------------
_holder = start_holder


@pytest.mark.slow
def test_a_second_writer_is_refused_naming_the_holder_and_a_killed_one_leaves_no_stale_lock(tmp_path):
    path = tmp_path / "run.ome.zarr"
    a = _holder(path)
    try:
        for overwrite in (False, True):
            with pytest.raises(ContainerLockedError, match=f"process {a.pid} on"):
                Recorder(path, GEOM, overwrite=overwrite)
        res = _mm_deepz("acquire", "-o", str(path), "--overwrite", "-t", "1", "--frame", "64")
        assert res.returncode == 2 and f"process {a.pid}" in res.stderr and "Traceback" not in res.stderr
        assert read_progress(path)["plan"] == {"marker": 1}  # A's container is untouched
    finally:
        a.kill()  # kill -9: no cleanup runs in A
        a.wait()
    rec = Recorder(path, GEOM, {"plan": {"marker": 2}}, overwrite=True)  # the dead writer's lock is gone
    rec.write_plane("measured", 0, 1, np.ones((8, 8), np.uint16))
    rec.finish()
    assert read_progress(path)["plan"] == {"marker": 2}


# -- 3. non-finite and absurd values are refused before anything moves ---------------------------
BAD_VALUES = ("nan", "inf", "-inf", "1e300", "-1", "0", "100000000")
#: request field, type, and which values are valid (the documented limits; others must be refused)
NUMERIC = {
    "exposure_ms": (float, lambda v: 0 < v <= 10_000),
    "power_mW": (float, lambda v: 0 < v <= 10_000),
    "interval_s": (float, lambda v: 0 <= v <= 86_400),
    "z_step_um": (float, lambda v: 0 < v <= 20),  # -10..10 µm: a larger step is a one-plane stack
    "z_start_um": (float, lambda v: -10_000 <= v < 10),
    "z_end_um": (float, lambda v: -10 < v <= 10_000),
    "time_points": (int, lambda v: 1 <= v <= 1_000_000),
    "frame": (int, lambda v: 32 <= v <= 4096),
    "planes": (int, lambda v: v in (1, 2)),
    "blind_check_every": (int, lambda v: v >= 0),
    "seed": (int, lambda v: v >= 0),
}


#: the settings of the simulator (``AcquisitionRequest.microscope``)
SIMULATOR = ("frame", "seed")


def _sweep_cases():
    for name, (kind, valid) in NUMERIC.items():
        for text in BAD_VALUES:
            if kind is int and not text.lstrip("-").isdigit():
                continue  # typer refuses what is not an integer for integer options itself
            value = kind(float(text))
            yield pytest.param(name, value, not valid(value), id=f"{name}={text}")


@pytest.mark.parametrize(("name", "value", "refused"), list(_sweep_cases()))
def test_every_numeric_setting_refuses_non_finite_huge_negative_and_zero(tmp_path, name, value, refused):
    # checked when the request is made and before the microscope opens (prepare() loads the model;
    # nothing moves): a refusal is one SettingsError line naming the problem; a valid value passes
    microscope = {"frame": 64}
    settings = {"output": tmp_path / "r.ome.zarr", "time_points": 2, "microscope": microscope}
    (microscope if name in SIMULATOR else settings)[name] = value
    try:
        prepare(AcquisitionRequest(**settings))
    except SettingsError as e:
        assert refused, f"{name}={value} is valid but was refused: {e}"
        assert "\n" not in str(e) and "Invalid acquisition settings" in str(e)
        return
    except DeepZError as e:  # a valid setting whose plan does not fit the model (off its grid or range)
        assert not refused and "\n" not in str(e), e
        return
    assert not refused, f"{name}={value} was accepted"


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["--exposure", "nan"], "exposure must be a finite number"),
        (["--position", "nan,nan"], "position 1 must be a finite number"),
        (["--z-step", "0.0001"], "200,001 planes"),
        (["--z-step", "50"], "the stack would be one plane"),
        (["-t", "1000000000"], "time points must be 1 to 1,000,000"),
        (["--frame", "100000"], "32 to 4096 pixels"),
        (["--planes", "1", "--model", str(shipped_model_path(2))], "takes 2"),
    ],
)
@pytest.mark.slow
def test_cli_refuses_in_one_line_with_exit_2(tmp_path, args, words):
    res = _mm_deepz("acquire", "-o", str(tmp_path / "r.ome.zarr"), *args)
    assert res.returncode == 2, (res.stdout, res.stderr)
    assert words in res.stderr and "Traceback" not in res.stderr
    assert not (tmp_path / "r.ome.zarr").exists()  # nothing was created


# -- 4. hardware that lacks what the run needs ---------------------------------------------------
@pytest.mark.parametrize(
    ("plan_kw", "words"),
    [
        ({"channel_group": "LightPathGroup"}, "no config group 'LightPathGroup'"),
        ({"input_preset": "WF"}, "no preset 'WF' for the widefield input"),
        ({"reference_preset": "SpinningDisk", "blind_check_every": 2}, "no preset 'SpinningDisk'"),
    ],
)
def test_missing_presets_are_refused_before_anything_moves(session, tmp_path, plan_kw, words):
    model = load_model(shipped_model_path(1))
    plan = DeepZPlan.for_model(model, -10, 10, 1, **plan_kw)
    exposures = session.world.dose.exposures
    with pytest.raises(HardwareError, match=words):
        DeepZAcquisition(session.core, model, plan, RunSettings(output=tmp_path / "r.ome.zarr", device="cpu"))
    assert session.world.dose.exposures == exposures and not (tmp_path / "r.ome.zarr").exists()


def test_renamed_presets_run(session, tmp_path):
    # a microscope whose presets have other names: the run uses the names the user gives
    core = session.core
    core.defineConfig("Channel", "WF", "LightPath", "Label", "Widefield")
    model = load_model(shipped_model_path(1))
    plan = DeepZPlan.for_model(model, -10, 10, 1, input_preset="WF")
    summary = DeepZAcquisition(
        core, model, plan, RunSettings(output=tmp_path / "r.ome.zarr", time_points=1, device="cpu")
    ).run()
    assert summary.time_points == 1 and summary.planes_measured == 1


# -- 5. the summary of a run that completed nothing -------------------------------------------------
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP])
@pytest.mark.slow
def test_summary_prints_when_no_time_point_completed(tmp_path, sig):
    # SIGTERM (kill) or SIGHUP (a closed terminal) in the first time point: handled like Ctrl-C, the
    # table and the reason print, exit 1
    proc = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "from mm_deepz.cli import main; main()",
            "acquire",
            "-o",
            str(tmp_path / "r.ome.zarr"),
            "-t",
            "50",
            "--interval",
            "2",
            "--frame",
            "64",
            "--device",
            "cpu",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "COLUMNS": "200"},
    )
    deadline = time.monotonic() + 90
    while not (tmp_path / "r.ome.zarr" / "zarr.json").exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    time.sleep(0.5)
    proc.send_signal(sig)
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 1, out
    assert "Traceback" not in out and f"stopped by {sig.name}" in out and "time points complete" in out
    assert "nanx" not in out
    prog = read_progress(tmp_path / "r.ome.zarr")
    assert prog["finished"] and prog["aborted"]


# -- 7. misuse of info / preview / evaluate gets one line ------------------------------------------
@pytest.mark.slow
def test_info_and_preview_refuse_what_is_not_a_run(tmp_path):
    (tmp_path / "empty").mkdir()
    (tmp_path / "file.txt").write_text("x")
    other = zarr.create_group(str(tmp_path / "other.zarr"))  # another tool's zarr
    other.attrs["multiscales"] = []
    for target, words in (
        (tmp_path / "missing", "does not exist"),
        (tmp_path / "empty", "empty folder"),
        (tmp_path / "file.txt", "is a file"),
        (tmp_path / "other.zarr", "not a container"),
    ):
        for cmd in ("info", "preview"):
            res = _mm_deepz(
                cmd, str(target), *(["--output", str(tmp_path / "p.png")] if cmd == "preview" else [])
            )
            assert res.returncode == 2 and words in res.stderr and "Traceback" not in res.stderr, (
                cmd,
                res.stderr,
            )
    with pytest.raises(NotAContainerError):
        read_progress(tmp_path / "other.zarr")


@pytest.mark.slow
def test_preview_names_missing_time_points_and_virtual_stacks(tmp_path):
    path = _finished_container(tmp_path / "run.ome.zarr")  # measured t=0 only, no virtual stack
    for t, words in (("99", "was not measured"), ("-1", "was not measured"), ("0", "has no virtual stack")):
        res = _mm_deepz("preview", str(path), "--time-index", t, "--output", str(tmp_path / "p.png"))
        assert res.returncode == 2 and words in res.stderr and "Traceback" not in res.stderr, res.stderr
    assert "complete time points are 0" in _mm_deepz("preview", str(path), "--time-index", "3").stderr


def test_evaluate_refuses_a_report_file_and_swapped_modalities_before_working(tmp_path):
    (tmp_path / "report").write_text("not a folder")
    model = str(shipped_model_path(1))
    res = CliRunner().invoke(app, ["evaluate", model, str(tmp_path), "--output", str(tmp_path / "report")])
    assert "is a file" in str(res.exception)
    res = CliRunner().invoke(
        app,
        ["evaluate", model, str(tmp_path), "--input-modality", "confocal", "--target-modality", "widefield"],
    )
    assert "turns widefield into confocal" in str(res.exception)


@pytest.mark.parametrize("runner", ["pycromanager", "mda"])
def test_stopping_a_run_during_an_exposure_keeps_that_frame(tmp_path, runner):
    # light that reached the specimen is data: pycromanager's own abort returned without reading out a
    # frame it had exposed (1 frame lost in every stopped run of benchmarks.sustained)
    import simulators as sim
    from mm_deepz.bridge import simulated_core

    world = sim.SimWorld(sim.worm(seed=103, activity=False), sensor_shape=(64, 64), seed=103)
    model = load_model(shipped_model_path(1))
    settings = RunSettings(output=tmp_path / "run.ome.zarr", time_points=50, device="cpu")
    plan = DeepZPlan.for_model(model, -10, 10, 1)
    runs: list[DeepZAcquisition] = []  # the run, once made
    exposed: list[float] = []
    expose = world.expose

    def camera(exposure_ms: float, binning: int = 1) -> np.ndarray:
        if runs:
            exposed.append(exposure_ms)
            if len(exposed) == 5:  # the stop arrives while the camera exposes
                runs[0].stop("stopped during an exposure")
        return expose(exposure_ms, binning)

    world.expose = camera  # type: ignore[method-assign]

    with simulated_core(world, runner) as core:
        runs.append(DeepZAcquisition(core, model, plan, settings))
        summary = runs[0].run_mda() if runner == "mda" else runs[0].run()
    assert summary.stop_reason == "stopped during an exposure" and 5 <= len(exposed) < 50
    record = read_progress(tmp_path / "run.ome.zarr")
    assert len(record["planes_measured"]) == len(exposed)  # every frame exposed is on disk
