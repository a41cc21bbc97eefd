"""Re-synthesis of many runs at once on Dask distributed (``mm-deepz infer RUN... | FOLDER``).

A batch is planned on the client from the runs' records: one task per run, or per range of its
time points (``time_points_per_task``). Tasks go to a Dask cluster: a ``LocalCluster`` on this
machine (one worker per GPU, or per group of cores) or an existing scheduler. The tasks of one run
run one after another (each depends on the one before, so no worker idles waiting for the run's
writer lock), and each takes the lock itself (:class:`~mm_deepz.io.claim.ContainerLock`, waiting a
while for a live acquisition to let it go). Every stack is marked complete as it is written and a
task makes only what its run's record still lacks, so a task retried after a failure or a killed
worker, or a batch started again, makes nothing twice: what is done stays done.

With one worker and no scheduler the tasks run in this process, one after another.
"""

from __future__ import annotations

import logging
import os
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mm_deepz.errors import DeepZError
from mm_deepz.io import read_progress
from mm_deepz.io.claim import ZARR_MARKERS, is_run, real_path
from mm_deepz.io.record import measured_not_recorded

from .infer import InferSummary, image_for_model, infer_missing, run_model, stacks_to_make

if TYPE_CHECKING:
    from distributed import LocalCluster

logger = logging.getLogger(__name__)

#: how long a task waits for another writer of its run (a live acquisition) before it fails (and is
#: retried)
LOCK_WAIT_S = 30.0
#: times Dask runs a failed task again before the batch reports it
RETRIES = 2
#: CPU cores per local worker (each worker's torch threads); measured in docs/scaling.md
CORES_PER_WORKER = 2


@dataclass(frozen=True)
class InferTask:
    """One task of a batch: the stacks of some time points of one run."""

    run: Path
    #: the time points to make; None: all the run left, with the measured planes its record lacks
    time_points: tuple[int, ...] | None
    #: stacks planned (the batch's progress total)
    stacks: int


@dataclass
class BatchSummary:
    """What a batch did, run by run."""

    #: each run's task summaries, in order
    done: dict[Path, list[InferSummary]] = field(default_factory=dict)
    #: the runs whose task failed (after its retries), and why
    failed: dict[Path, str] = field(default_factory=dict)
    seconds: float = 0.0
    #: where it ran: "this process", or the Dask scheduler's address
    where: str = "this process"


def find_runs(paths: Iterable[Path]) -> list[Path]:
    """The runs named, each once: a run (or a zarr that planning refuses by its reason), or the runs
    anywhere inside a folder (not inside a run, not in hidden folders such as a replaced run held
    aside)."""
    found: list[Path] = []
    for path in map(Path, paths):
        if not path.is_dir() or any((path / marker).exists() for marker in ZARR_MARKERS):
            found.append(path)  # a run, or what its reader refuses with the reason (planning opens it)
            continue
        inside: list[Path] = []
        for folder, dirs, _ in os.walk(path):
            dirs[:] = sorted(d for d in dirs if not d.startswith("."))
            if is_run(folder):
                inside.append(Path(folder))
                dirs[:] = []
        if not inside:
            raise DeepZError(f"{path} holds no mm-deepz run (a folder with a run's zarr.json).")
        found += inside
    unique = {real_path(p): p for p in found}
    return list(unique.values())


def plan_batch(
    runs: Sequence[Path], model_path: Path | None = None, time_points_per_task: int | None = None
) -> list[InferTask]:
    """The tasks that make what ``runs`` lack for ``model_path`` (None: each run's own model), read from
    their records: the whole run as one task where its record lacks measured planes on disk (they are
    recorded first)."""
    if time_points_per_task is not None and time_points_per_task < 1:
        raise DeepZError(f"--time-points-per-task must be 1 or more, got {time_points_per_task}.")
    models: dict[str, Any] = {}
    tasks: list[InferTask] = []
    for run in runs:
        record = read_progress(run)
        key = str(model_path or (record.get("model") or {}).get("path"))
        if key not in models:
            models[key] = run_model(record, model_path)  # a missing model is refused before any work
        todo = stacks_to_make(record, image_for_model(record, models[key]))
        if measured_not_recorded(run, record):
            tasks.append(InferTask(run, None, len(todo)))
            continue
        times = sorted({t for t, _ in todo})  # every position of a time point in one task
        size = time_points_per_task or len(times) or 1
        # a run with nothing to make still gets its task: it brings a killed run's OME-XML up to date
        for i in range(0, max(1, len(times)), size):
            share = tuple(times[i : i + size])
            tasks.append(InferTask(run, share or None, sum(t in share for t, _ in todo)))
    return tasks


def _local_workers(device: str, n_runs: int) -> int:
    """Workers of a LocalCluster: one per GPU for a GPU device, else one per ``CORES_PER_WORKER`` cores;
    at most one per run (a run has one writer at a time)."""
    import torch

    if device != "cpu" and torch.cuda.is_available():
        per_device = torch.cuda.device_count() if device in ("auto", "cuda") else 1
    else:
        per_device = (os.cpu_count() or 1) // CORES_PER_WORKER
    return max(1, min(n_runs, per_device))


def worker_device(device: str) -> str:
    """The device of this Dask worker: ``auto`` / ``cuda`` on a machine with several GPUs take the GPU
    of the worker's number (a LocalCluster names its workers 0, 1, ...); anything else as given."""
    import torch

    n = torch.cuda.device_count() if device in ("auto", "cuda") else 0
    if n < 2:
        return device
    from distributed import get_worker

    name = get_worker().name
    return f"cuda:{int(name) % n}" if str(name).isdigit() else device


def _run_task(
    task: InferTask,
    model_path: Path | None,
    device: str,
    threads: int | None,
    topic: str,
    _after: object = None,
) -> InferSummary:
    """One task on a Dask worker (``_after``: the result of the run's task before, an ordering edge)."""
    from distributed import get_worker

    if threads:
        import torch

        torch.set_num_threads(threads)
    worker = get_worker()

    def report(run: Path) -> None:  # each stack, on the batch's event topic
        worker.log_event(topic, {"run": str(run)})

    return _make(task, model_path, worker_device(device), report)


def _make(
    task: InferTask, model_path: Path | None, device: str, progress: Callable[[Path], None] | None
) -> InferSummary:
    """What ``task`` asks for, made here (``progress`` told the run's path at each stack)."""
    return infer_missing(
        task.run,
        model_path,
        device,
        progress=None if progress is None else lambda done, total: progress(task.run),
        time_points=task.time_points,
        wait_s=LOCK_WAIT_S,
    )


def run_batch(
    tasks: Sequence[InferTask],
    model_path: Path | None = None,
    device: str = "auto",
    workers: int | None = None,
    scheduler: str | None = None,
    progress: Callable[[Path], None] | None = None,
) -> BatchSummary:
    """Make every stack of ``tasks`` (:func:`plan_batch`): on the Dask scheduler at ``scheduler``, else
    on a LocalCluster of ``workers`` (default :func:`_local_workers`), or in this process with one
    worker. ``progress`` is called with a run's path for each stack made."""
    t0 = time.perf_counter()
    if workers is None:
        workers = 1 if scheduler else _local_workers(device, len({t.run for t in tasks}))
    if workers < 1:
        raise DeepZError(f"--workers must be 1 or more, got {workers}.")
    if scheduler is None and workers == 1:
        summary = _here(tasks, model_path, device, progress)
    else:
        summary = _on_dask(tasks, model_path, device, workers, scheduler, progress)
    summary.seconds = time.perf_counter() - t0
    return summary


def _here(
    tasks: Sequence[InferTask], model_path: Path | None, device: str, progress: Callable[[Path], None] | None
) -> BatchSummary:
    """The batch in this process, task after task (a run's later tasks skipped once one failed)."""
    summary = BatchSummary()
    for task in tasks:
        if task.run in summary.failed:
            continue
        try:
            done = _make(task, model_path, device, progress)
        except DeepZError as e:
            summary.failed[task.run] = str(e)
            logger.error("%s: %s", task.run, e)
            continue
        summary.done.setdefault(task.run, []).append(done)
    return summary


def local_cluster(workers: int) -> LocalCluster:
    """A Dask cluster of ``workers`` processes on this machine, one task at a time each."""
    import dask
    from distributed import LocalCluster

    # Dask starts workers with MALLOC_TRIM_THRESHOLD_=65536 (and leaves it in this process's environment):
    # glibc then hands every freed tensor back to the system and maps it again, and a stack takes 1.6x
    # as long (docs/scaling.md)
    os.environ.pop("MALLOC_TRIM_THRESHOLD_", None)
    with dask.config.set({"distributed.nanny.pre-spawn-environ.MALLOC_TRIM_THRESHOLD_": None}):
        return LocalCluster(
            n_workers=workers,
            threads_per_worker=1,
            processes=True,
            dashboard_address=None,
            silence_logs=logging.ERROR,
        )


def _on_dask(
    tasks: Sequence[InferTask],
    model_path: Path | None,
    device: str,
    workers: int,
    scheduler: str | None,
    progress: Callable[[Path], None] | None,
) -> BatchSummary:
    """The batch on Dask: each run's tasks chained, retried, gathered as they finish."""
    from distributed import Client, as_completed

    cluster = local_cluster(workers) if scheduler is None else None
    # local workers share the cores: torch's threads are split between them
    threads = max(1, (os.cpu_count() or 1) // workers) if cluster is not None else None
    topic = f"mm-deepz-infer-{uuid.uuid4().hex}"
    summary = BatchSummary()
    try:
        with Client(cluster if cluster is not None else scheduler) as client:
            summary.where = client.scheduler.address if scheduler is None else scheduler
            if progress is not None:
                client.subscribe_topic(topic, lambda event: progress(Path(event[1]["run"])))
            last: dict[Path, Any] = {}  # each run's latest task: the next one runs after it
            futures, run_of = [], {}
            for task in tasks:
                last[task.run] = future = client.submit(
                    _run_task,
                    task,
                    model_path,
                    device,
                    threads,
                    topic,
                    last.get(task.run),
                    retries=RETRIES,
                    pure=False,
                )
                futures.append(future)
                run_of[future.key] = task.run
            for future in as_completed(futures):
                run = run_of[future.key]
                if future.status == "finished":
                    summary.done.setdefault(run, []).append(future.result())
                elif run not in summary.failed:  # the run's later tasks fail with the same error
                    error = future.exception()
                    summary.failed[run] = str(error) if isinstance(error, DeepZError) else repr(error)
                    logger.error("%s: %s", run, summary.failed[run])
            if progress is not None:
                client.unsubscribe_topic(topic)
    finally:
        if cluster is not None:
            cluster.close()
    return summary


def infer_runs(
    paths: Iterable[Path],
    model_path: Path | None = None,
    device: str = "auto",
    workers: int | None = None,
    scheduler: str | None = None,
    time_points_per_task: int | None = None,
) -> BatchSummary:
    """Make what the runs at ``paths`` (runs or folders of runs) lack: ``mm-deepz infer`` from Python."""
    tasks = plan_batch(find_runs(paths), model_path, time_points_per_task)
    return run_batch(tasks, model_path, device, workers, scheduler)
