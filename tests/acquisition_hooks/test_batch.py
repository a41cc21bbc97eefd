"""`mm-deepz infer RUN... | FOLDER`: many runs re-synthesized on Dask distributed (``batch``)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from helpers import cli, deepz_run, env_with_root

from acquisition_hooks import batch
from acquisition_hooks.batch import find_runs, plan_batch, run_batch
from mm_deepz.errors import DeepZError
from mm_deepz.io import image_array, open_container, read_progress

TIME_POINTS = 6
#: a process that holds a run open for writing (prints "writing" once it does)
REOPEN = (
    "import sys, time; from mm_deepz.io import Recorder; r = Recorder.reopen(sys.argv[1]); "
    "print('writing', flush=True); time.sleep(120)"
)


def _strike_virtual(run: Path, keep: int = 0) -> None:
    """The run's record, as if its model had made only its first ``keep`` stacks (a backlog left)."""
    meta = json.loads((run / "zarr.json").read_text())
    done = meta["attributes"]["mm_deepz"]["completed"]
    done["virtual"] = done["virtual"][:keep]
    (run / "zarr.json").write_text(json.dumps(meta))


def _virtual(run: Path) -> np.ndarray:
    return np.asarray(image_array(open_container(run), "virtual"))


@pytest.fixture(scope="module")
def made(tmp_path_factory):
    """Three finished runs and their virtual stacks as the acquisition made them."""
    import simulators as sim
    from mm_deepz.bridge import start_simulator

    root = tmp_path_factory.mktemp("runs")
    world = sim.SimWorld(sim.worm(seed=103, activity=False), sensor_shape=(64, 64), seed=103)
    with start_simulator(world) as session:
        for i in range(3):
            deepz_run(session, root / f"day{i}" / f"worm{i}.ome.zarr", TIME_POINTS)
    return root, {run.name: _virtual(run) for run in root.rglob("*.ome.zarr")}


@pytest.fixture
def backlog(made, tmp_path):
    """A copy of the three runs with their virtual stacks struck from their records."""
    root, _ = made
    shutil.copytree(root, tmp_path / "lab")
    runs = sorted((tmp_path / "lab").rglob("*.ome.zarr"))
    for run in runs:
        _strike_virtual(run)
    return tmp_path / "lab", runs


def _chunk_times(run: Path, time_points: list[int]) -> dict[str, int]:
    """Modification times of the virtual image's chunk files of ``time_points``."""
    folder = read_progress(run)["images"]["virtual"][0]
    return {
        str(f): f.stat().st_mtime_ns
        for t in time_points
        for f in (run / folder / "0" / "c" / str(t)).rglob("*")
        if f.is_file()
    }


@pytest.mark.slow
def test_a_batch_on_two_workers_makes_each_missing_stack_once_and_survives_a_killed_worker(made, backlog):
    from distributed import Client, LocalCluster

    _, original = made
    lab, runs = backlog
    tasks = plan_batch(find_runs([lab]), time_points_per_task=2)
    assert len(tasks) == 3 * TIME_POINTS // 2 and sum(t.stacks for t in tasks) == 3 * TIME_POINTS
    ticks: list[Path] = []
    result = {}
    with (
        LocalCluster(n_workers=2, threads_per_worker=1, dashboard_address=None) as cluster,
        Client(cluster) as client,
    ):
        worker = threading.Thread(
            target=lambda: result.update(
                summary=run_batch(
                    tasks, device="cpu", scheduler=cluster.scheduler_address, progress=ticks.append
                )
            )
        )
        worker.start()
        # kill -9 a worker while it makes a stack of a run that has some stacks already
        killed, before = None, {}
        deadline = time.monotonic() + 120
        while killed is None and time.monotonic() < deadline and worker.is_alive():
            busy = [address for address, keys in client.processing().items() if keys]
            done = {run: read_progress(run)["completed"]["virtual"] for run in runs}
            if busy and any(0 < len(d) < TIME_POINTS for d in done.values()):
                pid = client.run(os.getpid, workers=busy[:1])[busy[0]]
                os.kill(pid, signal.SIGKILL)
                killed = pid
                before = {run: _chunk_times(run, d) for run, d in done.items()}
            time.sleep(0.05)
        worker.join(240)
    assert killed is not None, "no worker was busy mid-run"
    summary = result["summary"]
    assert not summary.failed and summary.where == cluster.scheduler_address
    for run in runs:
        record = read_progress(run)
        assert record["completed"]["virtual"] == list(range(TIME_POINTS))
        # the same stacks the acquisition made (the same model on the same measured planes)
        np.testing.assert_allclose(_virtual(run), original[run.name], atol=1e-3)
        # nothing written twice: the stacks complete when the worker died were not made again
        now = _chunk_times(run, list(range(TIME_POINTS)))
        assert {f: now[f] for f in before[run]} == before[run]
    # the batch's progress came from the workers, stack by stack (the dead worker's last reports may be
    # lost with it, and the one it was making counts twice: the command line ends its bar from the summary)
    assert set(ticks) == set(runs) and 3 * TIME_POINTS - 3 <= len(ticks) <= 3 * TIME_POINTS + 1
    # what is done stays done: a second batch has nothing to make
    from acquisition_hooks import infer_runs

    again = infer_runs([lab], device="cpu")
    assert not again.failed and sum(s.made for parts in again.done.values() for s in parts) == 0
    assert sum(s.already for parts in again.done.values() for s in parts) == 3 * TIME_POINTS


def test_an_interrupted_batch_goes_on_where_it_stopped(made, backlog):
    _, original = made
    lab, runs = backlog

    def interrupt(run: Path) -> None:
        ticks.append(run)
        if len(ticks) == TIME_POINTS + 2:  # the first run and two stacks of the second
            raise KeyboardInterrupt

    ticks: list[Path] = []
    with pytest.raises(KeyboardInterrupt):
        run_batch(plan_batch(find_runs([lab])), device="cpu", workers=1, progress=interrupt)
    assert [len(read_progress(run)["completed"]["virtual"]) for run in runs] == [TIME_POINTS, 2, 0]
    tasks = plan_batch(find_runs([lab]))
    assert [t.stacks for t in tasks] == [0, TIME_POINTS - 2, TIME_POINTS]
    summary = run_batch(tasks, device="cpu", workers=1)
    assert [sum(s.made for s in summary.done.get(run, [])) for run in runs] == [
        0,
        TIME_POINTS - 2,
        TIME_POINTS,
    ]
    for run in runs:
        np.testing.assert_allclose(_virtual(run), original[run.name], atol=1e-3)


@pytest.mark.slow
def test_a_run_that_fails_is_reported_by_name_and_the_others_are_made(backlog, capsys, monkeypatch):
    lab, runs = backlog
    monkeypatch.setattr(batch, "LOCK_WAIT_S", 0.5)
    # another process writing the second run (a live acquisition, an `infer` in another terminal)
    holder = subprocess.Popen(
        [sys.executable, "-c", REOPEN, str(runs[1])], stdout=subprocess.PIPE, text=True, env=env_with_root()
    )
    assert holder.stdout is not None and holder.stdout.readline().strip() == "writing"
    try:
        code, err = cli(capsys, monkeypatch, "infer", str(lab), "--device", "cpu", "--workers", "1")
    finally:
        holder.kill()
        holder.wait()
    assert code == 2
    assert f"failed {runs[1]}: " in err and "is being written by process" in err
    assert "mm-deepz: error: 1 of 3 runs failed (listed above)" in err
    done = [read_progress(run)["completed"]["virtual"] for run in runs]
    assert done == [list(range(TIME_POINTS)), [], list(range(TIME_POINTS))]
    # the writer gone, the batch again makes only what it could not
    code, err = cli(capsys, monkeypatch, "infer", str(lab), "--device", "cpu", "--workers", "1")
    assert code == 0, err
    assert read_progress(runs[1])["completed"]["virtual"] == list(range(TIME_POINTS))


def test_runs_are_found_in_folders_once_and_nothing_else_is_taken(backlog, tmp_path):
    lab, runs = backlog
    (lab / "notes").mkdir()
    (lab / "notes" / "other.zarr").mkdir()
    (lab / "notes" / "other.zarr" / "zarr.json").write_text('{"zarr_format": 3, "node_type": "group"}')
    shutil.copytree(runs[0], lab / ".worm0.ome.zarr.replaced-1")  # a replaced run held aside
    assert find_runs([lab, runs[0], lab / "day0"]) == runs
    (tmp_path / "empty").mkdir()
    with pytest.raises(DeepZError, match="holds no mm-deepz run"):
        find_runs([tmp_path / "empty"])
    with pytest.raises(DeepZError, match="time-points-per-task must be 1 or more"):
        plan_batch(runs, time_points_per_task=0)
    with pytest.raises(DeepZError, match="workers must be 1 or more"):
        run_batch(plan_batch(runs), workers=0)


@pytest.mark.slow
def test_the_command_line_runs_a_folder_on_its_own_local_cluster(made, backlog, capsys, monkeypatch):
    from mm_deepz.cli import main

    _, original = made
    lab, runs = backlog
    monkeypatch.setattr(sys, "argv", ["mm-deepz", "infer", str(lab), "--device", "cpu", "--workers", "2"])
    with pytest.raises(SystemExit) as ended:
        main()
    assert ended.value.code == 0
    out = capsys.readouterr().out
    assert "3 of 3 runs done in" in out and "(tcp://127.0.0.1:" in out, out
    assert out.count(f"{TIME_POINTS} virtual stacks made into image virtual of") == 3
    for run in runs:
        assert read_progress(run)["completed"]["virtual"] == list(range(TIME_POINTS))
        np.testing.assert_allclose(_virtual(run), original[run.name], atol=1e-3)
