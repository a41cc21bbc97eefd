"""Where a camera frame's time goes in a Deep-Z run, on both runners (#33).

``python -m benchmarks.hook_path [--size 256] [--time-points 80] [--out docs/hook_path.json]``
``python -m benchmarks.hook_path --parts [--time-points 600] [--repeats 3] [--out docs/hook_parts.json]``

A Deep-Z acquisition on the simulator, the model's work left out (as when a GPU keeps up: the
virtual stacks are still written), on pycromanager's runner and on pymmcore-plus's MDA runner. Each
frame's way through mm-deepz is timed where it happens: the whole of :meth:`DeepZHooks.frame` (the
frame recorded, its time point's planes handed to the model), and inside it the recorder's write of
the measured plane. The camera's frame rate is taken from the frames' arrival. The first frames (the
simulator's caches) are left out.

``--parts`` attributes the gap to plain pycromanager instead: the camera replayed (it costs no CPU),
runs alternate between plain pycromanager, the whole Deep-Z run and Deep-Z runs with parts of mm-deepz
taken out (:data:`PARTS`: the virtual stacks' writes, then also the measured planes' recording); each
row has the frame rate (median and range of the repeats) and the process's CPU time per frame.
"""

from __future__ import annotations

import argparse
import json
import logging
import resource
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from acquisition_hooks import AcquisitionRequest
from acquisition_hooks.hooks import DeepZHooks
from acquisition_hooks.request import SimulatorSpec
from acquisition_hooks.start import prepare
from acquisition_hooks.virtual import VirtualResults
from mm_deepz.io import Recorder
from mm_deepz.io.images import ImageStore

from .acquisition import SKIP, _instant, deepz_run, plain_fps
from .common import machine

logger = logging.getLogger(__name__)


def _ms(values: list[float]) -> dict[str, float]:
    ms = np.asarray(values[SKIP:]) * 1000
    return {"median": round(float(np.median(ms)), 2), "p90": round(float(np.percentile(ms, 90)), 2)}


def run_one(runner: str, size: int, time_points: int, output: Path) -> dict[str, Any]:
    """One run on ``runner`` (``pycromanager`` or ``mda``): per-frame times of the hook and the write."""
    hook: list[float] = []
    write: list[float] = []
    arrived: list[float] = []
    frame, store_write = DeepZHooks.frame, ImageStore.write

    def timed_frame(self: DeepZHooks, kind: str, t: int, zi: int, p: int, image: np.ndarray) -> None:
        arrived.append(time.perf_counter())
        frame(self, kind, t, zi, p, image)
        hook.append(time.perf_counter() - arrived[-1])

    def timed_write(self: ImageStore, image: str, p: int, t: int, index: Any, data: np.ndarray) -> None:
        t0 = time.perf_counter()
        store_write(self, image, p, t, index, data)
        if image == "measured":
            write.append(time.perf_counter() - t0)

    request = AcquisitionRequest(
        output=output, time_points=time_points, microscope=SimulatorSpec(frame=size), device="cpu"
    )
    prepared = prepare(request)
    DeepZHooks.frame, ImageStore.write = timed_frame, timed_write  # type: ignore[method-assign]
    try:
        with prepared.microscope() as core:
            acq = prepared.acquisition(core)
            _instant(acq.predictor)
            summary = acq.run_mda() if runner == "mda" else acq.run()
    finally:
        DeepZHooks.frame, ImageStore.write = frame, store_write  # type: ignore[method-assign]
    stamps = arrived[SKIP:]
    return {
        "runner": runner,
        "frame": size,
        "time_points": summary.time_points,
        "fps": round((len(stamps) - 1) / (stamps[-1] - stamps[0]), 1),
        "hook_ms": _ms(hook),
        "measured_write_ms": _ms(write),
        "virtual_made": summary.planes_synthesized // max(1, len(prepared.plan.requested_z())),
    }


@contextmanager
def _without(*methods: tuple[type, str]) -> Iterator[None]:
    """The ``methods`` (class, name) made to do nothing for the duration."""
    kept = [(cls, name, getattr(cls, name)) for cls, name in methods]
    try:
        for cls, name, _ in kept:
            setattr(cls, name, lambda *a, **k: None)
        yield
    finally:
        for cls, name, method in kept:
            setattr(cls, name, method)


#: the reference of ``--parts``
PLAIN = "plain pycromanager (NDTiff)"
#: Deep-Z runs with parts of mm-deepz taken out (the model's work is left out in all): what each does
#: without, cumulatively
PARTS: dict[str, tuple[tuple[type, str], ...]] = {
    "deepz": (),
    "without the virtual stacks": ((VirtualResults, "submit"),),
    "without the virtual stacks and the measured planes' recording": (
        (VirtualResults, "submit"),
        (Recorder, "write_plane"),
    ),
}


def _deepz_without(
    methods: tuple[tuple[type, str], ...], size: int, time_points: int, out: Path
) -> dict[str, Any]:
    """A Deep-Z run (model left out, camera replayed) without ``methods``: :func:`deepz_run`'s figures."""
    with _without(*methods):
        return deepz_run(size, time_points, out / "run.ome.zarr", "cpu", model_on_cpu=False, replay=True)


def _cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def parts(size: int, time_points: int, repeats: int, folder: Path) -> list[dict[str, Any]]:
    """Frame rates (pycromanager's runner, camera replayed) of plain pycromanager and of each of
    :data:`PARTS`, ``repeats`` rounds alternating; with the process's CPU milliseconds per frame."""
    arms: dict[str, Callable[[Path], dict[str, Any]]] = {
        PLAIN: lambda out: {"fps": plain_fps(size, time_points, out / "plain", True), "virtual_made": 0}
    }
    for name, methods in PARTS.items():
        arms[name] = partial(_deepz_without, methods, size, time_points)
    fps: dict[str, list[float]] = {name: [] for name in arms}
    cpu: dict[str, list[float]] = {name: [] for name in arms}
    made: dict[str, int] = {}
    for r in range(repeats):
        for i, (name, arm) in enumerate(arms.items()):
            (run_folder := folder / f"{r}-{i}").mkdir()
            c0 = _cpu_s()
            run = arm(run_folder)
            fps[name].append(float(run["fps"]))
            made[name] = int(run["virtual_made"])
            cpu[name].append((_cpu_s() - c0) / time_points * 1000)
            logger.warning("%s: %.1f frames/s", name, fps[name][-1])
    plain = float(np.median(fps[PLAIN]))
    return [
        {
            "run": name,
            "fps_median": round(float(np.median(v)), 1),
            "fps_range": [round(min(v), 1), round(max(v), 1)],
            "of_plain": round(float(np.median(v)) / plain, 3),
            "cpu_ms_per_frame": round(float(np.median(cpu[name])), 2),
            "virtual_made": made[name],
        }
        for name, v in fps.items()
    ]


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    """Both runners, one after the other (or, with ``--parts``, the parts of the gap); the rows as JSON."""
    ap = argparse.ArgumentParser(prog="python -m benchmarks.hook_path", description=__doc__)
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--time-points", type=int, default=None, help="80; with --parts 600")
    ap.add_argument("--parts", action="store_true", help="attribute the gap to plain pycromanager")
    ap.add_argument("--repeats", type=int, default=3, help="rounds of --parts")
    ap.add_argument("--out", type=Path, help="docs/hook_path.json; with --parts docs/hook_parts.json")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    logging.getLogger("acquisition_hooks").setLevel(logging.ERROR)
    out = args.out or Path("docs/hook_parts.json" if args.parts else "docs/hook_path.json")
    with tempfile.TemporaryDirectory(dir=".") as tmp:
        if args.parts:
            rows = parts(args.size, args.time_points or 600, args.repeats, Path(tmp))
        else:
            rows = []
            for runner in ("pycromanager", "mda"):
                output = Path(tmp) / f"{runner}.ome.zarr"
                rows.append(run_one(runner, args.size, args.time_points or 80, output))
                logger.warning("%s", rows[-1])
    command = "python -m benchmarks.hook_path " + " ".join(argv if argv is not None else sys.argv[1:])
    out.write_text(json.dumps({"machine": machine(), "command": command, "rows": rows}, indent=2))
    return rows


if __name__ == "__main__":
    main()
