"""Where a camera frame's time goes in a Deep-Z run, on both runners (#33).

``python -m benchmarks.hook_path [--size 256] [--time-points 80] [--out docs/hook_path.json]``

A Deep-Z acquisition on the simulator, the model's work left out (as when a GPU keeps up: the
virtual stacks are still written), on pycromanager's runner and on pymmcore-plus's MDA runner. Each
frame's way through mm-deepz is timed where it happens: the whole of :meth:`DeepZHooks.frame` (the
frame recorded, its time point's planes handed to the model), and inside it the recorder's write of
the measured plane. The camera's frame rate is taken from the frames' arrival. The first frames (the
simulator's caches) are left out.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from acquisition_hooks import AcquisitionRequest
from acquisition_hooks.hooks import DeepZHooks
from acquisition_hooks.request import SimulatorSpec
from acquisition_hooks.start import prepare
from mm_deepz.io.images import ImageStore

from .acquisition import SKIP, _instant
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


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    """Both runners, one after the other; the rows as JSON."""
    ap = argparse.ArgumentParser(prog="python -m benchmarks.hook_path", description=__doc__)
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--time-points", type=int, default=80)
    ap.add_argument("--out", type=Path, default=Path("docs/hook_path.json"))
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    logging.getLogger("acquisition_hooks").setLevel(logging.ERROR)
    rows = []
    with tempfile.TemporaryDirectory(dir=".") as tmp:
        for runner in ("pycromanager", "mda"):
            rows.append(run_one(runner, args.size, args.time_points, Path(tmp) / f"{runner}.ome.zarr"))
            logger.warning("%s", rows[-1])
    command = "python -m benchmarks.hook_path " + " ".join(argv if argv is not None else sys.argv[1:])
    args.out.write_text(json.dumps({"machine": machine(), "command": command, "rows": rows}, indent=2))
    return rows


if __name__ == "__main__":
    main()
