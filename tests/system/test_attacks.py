"""The second adversarial round (issue #38): each case is an attack a clumsy user or a hostile file
makes, and asserts the exit code, a one-line message, and that no byte of the user's data changed.
Real subprocesses where a second writer, a signal or the environment is the attack."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
import tifffile
import torch
from helpers import cli, deepz_run, per_block, run_cli, start_acquire, start_holder

import simulators as sim
from acquisition_hooks import DeepZAcquisition, DeepZPlan, RunSettings
from acquisition_hooks.infer import infer_missing
from mm_deepz.errors import ModelFileError
from mm_deepz.io import (
    ContainerLockedError,
    Geometry,
    OutputExistsError,
    OutputPathError,
    Recorder,
    read_progress,
)
from mm_deepz.modelfile import load_model
from mm_deepz.shipped import shipped_model_path
from mm_deepz.training.stacks import StackDataError, read_stack

GEOM = Geometry(z_um=(-1.0, 0.0, 1.0), pixel_size_um=0.5, interval_s=1.0, shape_yx=(8, 8))


# -- helpers -------------------------------------------------------------------------------------
def snapshot(folder: Path) -> dict[str, str]:
    """Every file under ``folder`` (links not followed) with its content's hash: what must not change."""
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file() and not p.is_symlink() and not p.name.endswith(".lock")  # mm-deepz's own lock files
    }


def run_container(path: Path, time_points: int = 3, value: int = 7) -> Path:
    """A finished run of ``time_points`` measured planes and virtual stacks (no model needed)."""
    rec = Recorder(path, GEOM, {"plan": {"marker": value}})
    for t in range(time_points):
        rec.write_plane("measured", t, 1, np.full((8, 8), value + t, np.uint16))
        rec.mark_complete("measured", t, planes=[1])
        rec.write_stack("virtual", t, np.full((len(GEOM.z_um), 8, 8), value + t, np.float32))
        rec.mark_complete("virtual", t)
    rec.finish()
    return path


mm_deepz = run_cli


def one_line_error(stderr: str, *words: str) -> None:
    lines = [line for line in stderr.splitlines() if line.startswith("mm-deepz: error:")]
    assert len(lines) == 1 and "Traceback" not in stderr, stderr
    for w in words:
        assert w in lines[0], (w, lines[0])


@pytest.fixture
def writer(tmp_path):
    """A second process writing ``tmp_path/run.ome.zarr`` (killed at the end)."""
    path = tmp_path / "run.ome.zarr"
    proc = start_holder(path)
    yield path, proc
    proc.kill()
    proc.wait()


# -- 1. nesting never destroys a run -------------------------------------------------------------
@pytest.mark.parametrize("inner", ["inner.ome.zarr", "0/0/c/x.ome.zarr", "OME/y.ome.zarr"])
def test_a_run_is_never_created_inside_another(tmp_path, capsys, monkeypatch, inner):
    outer = run_container(tmp_path / "outer.ome.zarr")
    before = snapshot(tmp_path)
    code, err = cli(capsys, monkeypatch, "acquire", "-o", str(outer / inner), "-t", "1", "--frame", "64")
    assert code == 2
    one_line_error(err, "inside the mm-deepz run", str(outer.resolve()))
    assert snapshot(tmp_path) == before
    with pytest.raises(OutputPathError, match="never written inside another container"):
        Recorder(outer / inner, GEOM)


@pytest.mark.parametrize("writing", [False, True], ids=["finished inner run", "inner run being written"])
def test_overwrite_never_deletes_a_run_nested_inside(tmp_path, writing):
    # nested the way the first round found it possible (here by hand, as it can no longer be made)
    outer = run_container(tmp_path / "outer.ome.zarr")
    inner = run_container(tmp_path / "inner.ome.zarr", value=3)
    shutil.move(inner, outer / "inner.ome.zarr")
    if not writing:
        (tmp_path / ".inner.ome.zarr.lock").unlink()
    else:  # its writer's lock file lies inside the outer run
        shutil.move(tmp_path / ".inner.ome.zarr.lock", outer / ".inner.ome.zarr.lock")
    before = snapshot(tmp_path)
    with pytest.raises(OutputExistsError, match="holds another run or another writer's lock"):
        Recorder(outer, GEOM, overwrite=True)
    assert snapshot(tmp_path) == before


# -- 2. --overwrite with settings the microscope refuses keeps the old run ------------------------
def test_overwrite_with_an_exposure_the_camera_refuses_keeps_the_old_run(tmp_path, capsys, monkeypatch):
    old = run_container(tmp_path / "run.ome.zarr")
    before = snapshot(tmp_path)
    for exposure in ("0.001", "1e-9"):
        code, err = cli(
            capsys,
            monkeypatch,
            "acquire",
            "--overwrite",
            "-o",
            str(old),
            "--exposure",
            exposure,
            "--frame",
            "64",
        )
        assert code == 2
        one_line_error(err, "outside what camera 'Camera' takes (0.01 to 10000 ms)")
    assert snapshot(tmp_path) == before


def test_a_device_failing_mid_run_stops_it_naming_the_device_and_keeps_the_old_run(
    session, tmp_path, monkeypatch
):
    old = run_container(tmp_path / "run.ome.zarr")
    before = snapshot(tmp_path)
    model = load_model(shipped_model_path(1))
    run = DeepZAcquisition(
        session.core,
        model,
        DeepZPlan.for_model(model, -10, 10, 1),
        RunSettings(output=old, time_points=60, device="cpu", overwrite=True),
    )  # the settings check passed: the camera takes 10 ms

    def broken(self, exposure):
        raise RuntimeError("camera cable unplugged")

    monkeypatch.setattr(sim.devices.SimCamera, "set_exposure", broken)  # then the camera fails
    summary = run.run()
    monkeypatch.undo()
    assert summary.stop_reason is not None and summary.time_points == 0
    # pycromanager's engine sets the exposure while it changes channels: it names that command
    assert "failed a device command (changing channels, config group 'Channel')" in summary.stop_reason
    assert "after 6 tries" in summary.stop_reason and "\n" not in summary.stop_reason
    # stopped in the first block of time points due at once (a quarter second of exposures; the second
    # block queued behind it, then dropped), not after a timeout each
    assert summary.planes_requested <= 2 * per_block(run.plan.anchor_exposure_ms) * 21 < 60 * 21
    assert any("earlier run" in w and "back in place" in w for w in summary.warnings)
    assert snapshot(tmp_path) == before  # nothing measured: the run it was to replace is back


# -- 3. every alias of a container is the same container -----------------------------------------
def test_aliases_of_a_container_being_written_are_refused(writer, tmp_path, capsys, monkeypatch):
    path, proc = writer
    (tmp_path / "link.ome.zarr").symlink_to(path)
    before = snapshot(tmp_path)
    for alias in (tmp_path / "link.ome.zarr", path / "0" / ".."):
        with pytest.raises(ContainerLockedError, match=f"process {proc.pid}"):
            infer_missing(alias, shipped_model_path(1), "cpu")
        code, err = cli(
            capsys, monkeypatch, "acquire", "--overwrite", "-o", str(alias), "-t", "1", "--frame", "64"
        )
        assert code == 2
        one_line_error(err, f"process {proc.pid}")
    assert snapshot(tmp_path) == before
    assert read_progress(path)["completed"]["measured"] == [0]
    assert not list((path / "0").glob(".*.lock"))  # no stray lock file in an image folder


def test_a_bind_mount_of_a_container_being_written_is_refused(writer, tmp_path):
    path, _ = writer
    mount = tmp_path / "mnt.ome.zarr"
    mount.mkdir()
    if (
        os.geteuid() != 0
        or subprocess.run(["mount", "--bind", str(path), str(mount)], check=False).returncode
    ):
        pytest.skip("bind mounts need root")  # CI runs as root
    try:
        with pytest.raises(ContainerLockedError, match="through another path to the same folder"):
            Recorder.reopen(mount)
    finally:
        subprocess.run(["umount", str(mount)], check=True)
    assert read_progress(path)["completed"]["measured"] == [0]


# -- 4. signals, any number, end a run cleanly ---------------------------------------------------
def _acquire(tmp_path: Path, *args: str, **kw) -> subprocess.Popen:
    return start_acquire(
        tmp_path / "r.ome.zarr",
        *args,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "COLUMNS": "200"},
        **kw,
    )


def _wait_for_backlog(proc: subprocess.Popen, out: list[str]) -> None:
    for line in proc.stdout:
        out.append(line)
        if "could not take during the run" in line:
            return
    raise AssertionError("".join(out))


@pytest.mark.slow
def test_repeated_signals_during_the_backlog_end_cleanly_and_record_what_is_pending(tmp_path):
    # 256-px frames as fast as possible: the CPU model falls behind, and the backlog is made after the run
    proc = _acquire(tmp_path, "-t", "12", "--frame", "256")
    out: list[str] = []
    _wait_for_backlog(proc, out)
    for sig in (signal.SIGTERM, signal.SIGTERM, signal.SIGINT, signal.SIGTERM):
        proc.send_signal(sig)
        time.sleep(0.2)
    out.append(proc.communicate(timeout=180)[0])
    text = "".join(out)
    assert proc.returncode == 1, text  # not -6 (SIGABRT)
    assert "terminate called" not in text and "Traceback" not in text
    assert "stopped by SIGTERM" in text and "already stopping" in text
    prog = read_progress(tmp_path / "r.ome.zarr")
    assert prog["finished"] and prog["aborted"]
    made, pending = prog["completed"]["virtual"], prog.get("virtual_pending", {})
    assert sorted(made + [int(k) for k in pending]) == prog["completed"]["measured"] == list(range(12))


@pytest.mark.slow
def test_sigint_stops_a_run_started_with_sigint_ignored_and_one_signal_makes_the_backlog(tmp_path):
    # a shell's `&` starts the run with SIGINT ignored: it is re-armed like SIGTERM and SIGHUP
    proc = _acquire(
        tmp_path,
        "-t",
        "12",
        "--frame",
        "256",
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN),
    )
    out: list[str] = []
    _wait_for_backlog(proc, out)
    proc.send_signal(signal.SIGINT)  # once: the backlog is still made
    out.append(proc.communicate(timeout=300)[0])
    assert proc.returncode == 1 and "stopped by SIGINT" in "".join(out), "".join(out)
    prog = read_progress(tmp_path / "r.ome.zarr")
    assert prog["completed"]["virtual"] == prog["completed"]["measured"] == list(range(12))
    assert not prog.get("virtual_pending")


# -- 5. hostile or damaged containers ------------------------------------------------------------
def _edit_record(path: Path, edit) -> None:
    meta = json.loads((path / "zarr.json").read_text())
    edit(meta["attributes"])
    (path / "zarr.json").write_text(json.dumps(meta))


def _nested(depth: int) -> str:
    return (
        '{"zarr_format": 3, "node_type": "group", "attributes": {"mm_deepz": '
        + "[" * depth
        + "]" * depth
        + "}}"
    )


DAMAGE = {
    "record is a string": lambda p: _edit_record(p, lambda a: a.update(mm_deepz="hello")),
    "completed missing": lambda p: _edit_record(p, lambda a: a["mm_deepz"].pop("completed")),
    "completed holds a string": lambda p: _edit_record(
        p, lambda a: a["mm_deepz"]["completed"].update(measured=["x"])
    ),
    "bad record key": lambda p: _edit_record(
        p, lambda a: a["mm_deepz"]["planes_measured"].update({"../../x": [1]})
    ),
    "image path escapes": lambda p: _edit_record(
        p, lambda a: a["mm_deepz"]["images"].update(measured=["../../etc"])
    ),
    "50k nested lists": lambda p: (p / "zarr.json").write_text(_nested(50_000)),
    "NaN in the record": lambda p: (p / "zarr.json").write_text(
        (p / "zarr.json").read_text().replace('"finished": true', '"finished": NaN')
    ),
    "truncated zarr.json": lambda p: (p / "zarr.json").write_text((p / "zarr.json").read_text()[:50]),
    "negative shape": lambda p: _edit_json(
        p / "0" / "0" / "zarr.json", lambda m: m.update(shape=[-3, 1, 3, 8, 8])
    ),
    "146 TiB shape": lambda p: _edit_json(
        p / "0" / "0" / "zarr.json", lambda m: m.update(shape=[3, 1, 3, 2**22, 2**22])
    ),
    "z step 1e-12": lambda p: _edit_json(p / "1" / "zarr.json", _set_scale(2, 1e-12)),
    "infinite scale": lambda p: (
        _edit_json(p / "1" / "zarr.json", _set_scale(3, "INF")),
        (p / "1" / "zarr.json").write_text((p / "1" / "zarr.json").read_text().replace('"INF"', "Infinity")),
    ),
    "pixel type object": lambda p: _edit_json(
        p / "0" / "0" / "zarr.json", lambda m: m.update(data_type="object")
    ),
}


def _edit_json(path: Path, edit) -> None:
    meta = json.loads(path.read_text())
    edit(meta)
    path.write_text(json.dumps(meta))


def _set_scale(axis: int, value: float):
    def edit(meta):
        meta["attributes"]["ome"]["multiscales"][0]["datasets"][0]["coordinateTransformations"][0]["scale"][
            axis
        ] = value

    return edit


@pytest.mark.parametrize("damage", list(DAMAGE))
def test_a_damaged_container_is_one_line_for_every_reader(tmp_path, capsys, monkeypatch, damage):
    path = run_container(tmp_path / "run.ome.zarr")
    DAMAGE[damage](path)
    before = snapshot(tmp_path)
    for args in (
        ["info", str(path)],
        ["preview", str(path), "--output", str(tmp_path / "p.png")],
        ["infer", str(path), "--model", str(shipped_model_path(1)), "--device", "cpu"],
        ["track", str(path)],
    ):
        code, err = cli(capsys, monkeypatch, *args)
        assert code == 2, (args, err)
        one_line_error(err)
    assert snapshot(tmp_path) == before


def _corrupt_time_point(array: Path, t: int) -> None:
    """Overwrite the start of each plane of time point ``t`` in the array's shard (index at its start)."""
    meta = json.loads((array / "zarr.json").read_text())
    shard_t, n_c, n_z = meta["chunk_grid"]["configuration"]["chunk_shape"][:3]
    inner_z = meta["codecs"][0]["configuration"]["chunk_shape"][2]
    shard = array / "c" / str(t // shard_t) / "0" / "0" / "0" / "0"
    data = bytearray(shard.read_bytes())
    per_t = n_c * n_z // inner_z
    for k in range((t % shard_t) * per_t, (t % shard_t + 1) * per_t):
        offset, length = np.frombuffer(bytes(data[16 * k : 16 * k + 16]), "<u8")
        assert offset != 2**64 - 1 and length > 17  # the plane is there
        data[int(offset) : int(offset) + 17] = b"not a blosc chunk"
    shard.write_bytes(bytes(data))


def test_foreign_files_stray_and_corrupt_chunks_are_reported_and_skipped(
    session, tmp_path, capsys, monkeypatch
):
    path = deepz_run(session, tmp_path / "run.ome.zarr", time_points=4)

    # its virtual stacks struck from the record, and its last measured time point (as a failed record
    # write leaves it): infer recovers t=3 from the shards, reports what else it found there, and makes
    # the stacks again from the measured planes
    def strike(attrs):
        run = attrs["mm_deepz"]
        run["completed"].update(virtual=[], measured=[0, 1, 2])
        run["planes_measured"].pop("3")

    _edit_record(path, strike)
    chunks = path / "0" / "0" / "c"
    (chunks / ".DS_Store").write_bytes(b"\x00\x00\x00\x01Bud1")  # Finder's
    (chunks / "._0").write_bytes(b"AppleDouble")
    shutil.copytree(chunks / "0", chunks / "999999")  # a stray shard far beyond the array
    _corrupt_time_point(path / "0" / "0", 1)
    code, err = cli(capsys, monkeypatch, "infer", str(path), "--device", "cpu")
    assert code == 1 and "Traceback" not in err, err
    assert "skipped t=1, p=0: its measured planes cannot be read" in err
    assert "ignored 3 file(s)" in err
    prog = read_progress(path)
    assert prog["completed"]["virtual"] == [0, 2, 3]  # the corrupt t=1 did not block 2 and 3
    assert prog["completed"]["measured"] == [0, 1, 2, 3] and "1" in prog["virtual_missing"]
    assert (chunks / ".DS_Store").read_bytes() == b"\x00\x00\x00\x01Bud1"  # left as it is
    code, err = cli(
        capsys, monkeypatch, "preview", str(path), "--time-index", "1", "--output", str(tmp_path / "p.png")
    )
    assert code == 2
    one_line_error(err, "time point 1 of image", "cannot be read")
    code, _ = cli(
        capsys, monkeypatch, "preview", str(path), "--time-index", "2", "--output", str(tmp_path / "p.png")
    )
    assert code == 0  # the rest of the run reads


MUTATIONS = (
    lambda v, rng: None,
    lambda v, rng: -1,
    lambda v, rng: 10**18,
    lambda v, rng: "x" * int(rng.integers(0, 5)),
    lambda v, rng: [v, v],
    lambda v, rng: {"k": v},
    lambda v, rng: 1e-300,
    lambda v, rng: True,
)


def _paths(node, prefix=()):
    yield prefix
    if isinstance(node, dict):
        for k, v in node.items():
            yield from _paths(v, (*prefix, k))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from _paths(v, (*prefix, i))


@pytest.mark.slow
def test_metadata_fuzzer_never_gets_past_the_readers_as_a_traceback(session, tmp_path, capsys, monkeypatch):
    # 150 seeded mutations of the record and the arrays' metadata: each reader either reads the run or
    # refuses it in one line (exit 2); nothing else escapes, and nothing is written
    base = deepz_run(session, tmp_path / "base.ome.zarr", time_points=1)
    files = [Path("zarr.json"), Path("0/zarr.json"), Path("0/0/zarr.json"), Path("1/zarr.json")]
    rng = np.random.default_rng(38)
    outcomes = {0: 0, 2: 0}
    for i in range(150):
        path = tmp_path / f"f{i}.ome.zarr"
        shutil.copytree(base, path)
        target = path / files[i % len(files)]
        meta = json.loads(target.read_text())
        where = list(_paths(meta))[1:]
        key = where[int(rng.integers(len(where)))]
        node = meta
        for k in key[:-1]:
            node = node[k]
        node[key[-1]] = MUTATIONS[int(rng.integers(len(MUTATIONS)))](node[key[-1]], rng)
        target.write_text(json.dumps(meta))
        before = snapshot(path)
        for args in (["info", str(path)], ["preview", str(path), "--output", str(tmp_path / "p.png")]):
            code, err = cli(capsys, monkeypatch, *args)
            assert code in (0, 2), (key, args, err)
            if code == 2:
                one_line_error(err)
            outcomes[code] += 1
        assert snapshot(path) == before, key
        shutil.rmtree(path)
    assert outcomes[2] > 50 and outcomes[0] > 10  # both kinds of mutation were met


# -- 6. other bad input: one line each -----------------------------------------------------------
def _card_with(tmp_path: Path, **card_changes) -> Path:
    blob = torch.load(shipped_model_path(2), map_location="cpu", weights_only=True)
    card = json.loads(blob["card"])
    for dotted, value in card_changes.items():
        node = card
        *parents, last = dotted.split("__")
        for k in parents:
            node = node[k]
        node[last] = value
    blob["card"] = json.dumps(card)
    out = tmp_path / "edited.pt"
    torch.save(blob, out)
    return out


@pytest.mark.parametrize(
    ("change", "words"),
    [
        ({"optics__pixel_size_um": float("nan")}, "optics.pixel_size_um"),
        ({"optics__na": 7.0}, "optics.na"),
        ({"input_offsets_um": [float("nan"), 2.0]}, "input_offsets_um"),
        ({"input_offsets_um": [2.0, -2.0]}, "must increase"),
        ({"z_range_um": 1e9}, "z_range_um"),
        ({"normalization": {"low_percentile": 99.0, "high_percentile": 1.0}}, "normalization"),
    ],
)
def test_model_cards_with_impossible_numbers_are_refused(tmp_path, change, words):
    with pytest.raises(ModelFileError, match=words):
        load_model(_card_with(tmp_path, **change))


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["--frame", "0"], "size"),
        (["--frame", "-5"], "size"),
        (["--frame", "100000"], "size"),
        (["--z-step", "0"], "z_step_um"),
        (["--z-step", "-1"], "z_step_um"),
        (["--z-step", "nan"], "z_step_um"),
        (["--z-half-range", "1e9"], "z_range_um"),
        (["--z-half-range", "nan"], "z_range_um"),
        (["--widefield-exposure", "-1"], "widefield_exposure_ms"),
        (["--phantom", "cat"], "phantom"),
        (["--n", "-1"], "n:"),
        (["--z-half-range", "10", "--z-step", "0.001"], "20,001 planes"),
    ],
)
def test_simulate_pairs_refuses_bad_values_before_simulating(tmp_path, capsys, monkeypatch, args, words):
    code, err = cli(capsys, monkeypatch, "simulate", "pairs", "-o", str(tmp_path / "out"), *args)
    assert code == 2
    one_line_error(err, "Invalid simulation settings", words)
    assert not (tmp_path / "out").exists()


def test_simulate_pairs_refuses_a_file_as_its_folder(tmp_path, capsys, monkeypatch):
    (tmp_path / "notes.txt").write_text("mine")
    code, err = cli(capsys, monkeypatch, "simulate", "pairs", "-o", str(tmp_path / "notes.txt"), "--n", "1")
    assert code == 2
    one_line_error(err, "is a file")
    assert (tmp_path / "notes.txt").read_text() == "mine"


def test_nan_pixels_in_a_training_stack_are_refused_by_name(tmp_path):
    data = np.ones((5, 16, 16), np.float32)
    data[2, 3, 3] = np.nan
    tifffile.imwrite(
        tmp_path / "s_widefield.ome.tif", data, metadata={"PhysicalSizeX": 0.3, "PhysicalSizeZ": 1.0}
    )
    with pytest.raises(StackDataError, match="1 pixel\\(s\\) are NaN or infinite"):
        read_stack(tmp_path / "s_widefield.ome.tif")


@pytest.mark.parametrize(
    ("output", "env", "words"),
    [
        ("a" * 300 + ".ome.zarr", {}, "at most 255"),
        ("notes.txt/run.ome.zarr", {}, "is a file, so no output can be made under it"),
        ("/proc/run.ome.zarr", {}, "/proc does not take new files"),
        (
            "run.ome.zarr",
            {"HOME": "/proc", "XDG_DATA_HOME": ""},
            "Set HOME (or XDG_DATA_HOME) to a writable folder",
        ),
    ],
)
@pytest.mark.slow
def test_environment_and_path_problems_are_named_in_one_line(tmp_path, output, env, words):
    (tmp_path / "notes.txt").write_text("mine")
    before = snapshot(tmp_path)
    res = mm_deepz(
        "acquire", "-o", output, "-t", "1", "--frame", "64", cwd=tmp_path, env={**os.environ, **env}
    )
    assert res.returncode == 2, res.stderr
    one_line_error(res.stderr, words)
    assert snapshot(tmp_path) == before


def test_track_refuses_a_run_being_written_before_analysing(writer, tmp_path, capsys, monkeypatch):
    path, proc = writer
    before = snapshot(tmp_path)
    code, err = cli(capsys, monkeypatch, "track", str(path), "--image", "measured")
    assert code == 2
    one_line_error(err, f"process {proc.pid}")
    assert snapshot(tmp_path) == before  # no partial CSV or PNG
