"""Long-run load: ``python -m benchmarks.load [--time-points 500]``.

A Deep-Z time-lapse of many time points on small simulated frames, as fast as possible: counts
frames requested vs written (none may be lost), virtual stacks made vs missing (when the model
is slower than the camera, its stacks wait in a backlog made from the planes on disk, after the
run if need be; nothing is dropped),
and the process's memory at the start, a tenth of the way in and at the end (it must stay flat).
"""

from __future__ import annotations

import argparse
import json
import logging
import tempfile
import time
from pathlib import Path

import numpy as np

from acquisition_hooks import AcquisitionRequest
from acquisition_hooks.request import SimulatorSpec
from acquisition_hooks.start import prepare
from mm_deepz.io import image_array, open_container, read_progress

from .common import rss_mb


def run(time_points: int, frame: int = 64, device: str = "auto") -> dict:
    """Run the long time-lapse and return its figures."""
    memory: dict[str, float] = {"before_mb": rss_mb()}
    checkpoints = {time_points // 10: "at_10pct_mb", time_points - 1: "at_end_mb"}

    def on_image(kind: str, t: int, zi: int, image: np.ndarray) -> None:
        if t in checkpoints:
            memory[checkpoints[t]] = rss_mb()

    with tempfile.TemporaryDirectory(dir=".") as tmp:
        out = Path(tmp) / "load.ome.zarr"
        request = AcquisitionRequest(
            output=out, time_points=time_points, microscope=SimulatorSpec(frame=frame), device=device
        )
        prepared = prepare(request)
        t0 = time.perf_counter()
        with prepared.microscope() as core:
            summary = prepared.acquisition(core, on_image=on_image).run()
        seconds = time.perf_counter() - t0
        written = image_array(open_container(out), "measured")  # the input plane of every time point
        frames_on_disk = int(sum(np.asarray(written[t, 0, 0]).any() for t in range(written.shape[0])))
        complete = len(read_progress(out)["completed"]["measured"])
    return {
        "time_points": time_points,
        "frame": frame,
        "seconds": round(seconds, 1),
        "frames_requested": time_points,
        "frames_measured": summary.planes_measured,
        "frames_on_disk": frames_on_disk,
        "time_points_complete": complete,
        "frames_lost": time_points - frames_on_disk,
        "virtual_made": summary.planes_synthesized // 21,
        "virtual_missing": summary.virtual_missing,
        **{k: round(v, 1) for k, v in memory.items()},
        "growth_after_10pct_mb": round(memory["at_end_mb"] - memory["at_10pct_mb"], 1),
    }


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.load", description=__doc__)
    ap.add_argument("--time-points", type=int, default=500)
    ap.add_argument("--frame", type=int, default=64)
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.ERROR)
    print(json.dumps(run(args.time_points, args.frame), indent=2))


if __name__ == "__main__":
    main()
