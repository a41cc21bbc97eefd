"""Sustained rate: the simulated camera streaming large frames for minutes, virtual z-stacking on.

``python -m benchmarks.sustained [--minutes 2] [--size 2048] [--fps 100] [--out docs/sustained.json]``

One Deep-Z time-lapse per runner (pycromanager's hooks, pymmcore-plus's MDA) and per model setting
(``left-out``: the model's work left out, as when a GPU keeps up; ``cpu``: the model on this CPU,
slower than the camera, so its stacks wait in the backlog and stay recorded as pending when the run
ends), each for ``--minutes``: one measured plane per time point at the exposure ``1000 / fps`` ms,
as fast as the camera and the software go. The camera replays rendered frames
(``SimWorld.replay_frames``): a real camera computes its frames in hardware, and the simulator takes
0.36 s to render one 2048² frame.

Recorded every second: the camera's frames, the frames on disk, resident memory, open files and the
backlog; and for every frame its latency to disk (from the end of its exposure to the end of its
write). Frames lost: exposed but never written. The time series go to the JSON file, the plots to
``docs/img/sustained.png``.

Before each runner's runs, the same camera's rate without Deep-Z for ``--plain-seconds``: plain
pycromanager (its NDTiff storage) and pymmcore-plus's MDA runner with no writer at all, the ceiling
the camera and the core reach on this machine; each run's ``of_plain`` is its rate over that one.
"""

from __future__ import annotations

import argparse
import itertools
import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

import simulators as sim
from acquisition_hooks import DeepZAcquisition, DeepZPlan, RunSettings
from mm_deepz.bridge import simulated_core
from mm_deepz.io import read_progress
from mm_deepz.modelfile import load_model
from mm_deepz.shipped import shipped_model_path

from .common import REPLAY_FRAMES, machine, measured_uncompressed, rss_mb

logger = logging.getLogger(__name__)


def _open_files() -> int:
    return len(os.listdir("/proc/self/fd"))


class _Watch:
    """Exposure and disk times of every frame, and a sample of the process every second."""

    def __init__(self, exposure_s: float):
        self.exposure_s = exposure_s
        self.exposed: list[float] = []
        self.written: list[float] = []
        self.samples: list[dict[str, float]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, name="sustained-sampler", daemon=True)

    def camera(self, world: sim.SimWorld) -> None:
        """Time every exposure of ``world``'s camera (the end of its exposure)."""
        expose = world.expose

        def timed(exposure_ms: float, binning: int = 1) -> np.ndarray:
            frame = expose(exposure_ms, binning)
            self.exposed.append(time.perf_counter() + self.exposure_s)
            return frame

        world.expose = timed  # type: ignore[method-assign]

    def on_image(self, kind: str, t: int, zi: int, image: np.ndarray) -> None:
        self.written.append(time.perf_counter())

    def start(self, acq: DeepZAcquisition) -> None:
        """Count from here (not the frames the simulator's start took)."""
        self.acq, self.t0 = acq, time.perf_counter()
        del self.exposed[:]
        self._thread.start()

    def _sample(self) -> None:
        while not self._stop.wait(1.0):
            self.samples.append(
                {
                    "s": round(time.perf_counter() - self.t0, 2),
                    "exposed": len(self.exposed),
                    "written": len(self.written),
                    "rss_mb": round(rss_mb()),
                    "open_files": _open_files(),
                    "backlog": self.acq.hooks.virtual.backlog,
                }
            )

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()


def sustained(
    runner: str, model_mode: str, size: int, fps: float, seconds: float, root: Path
) -> dict[str, Any]:
    """One sustained run; its summary and time series."""
    world = sim.SimWorld(sim.worm(seed=100, activity=False), sensor_shape=(size, size), seed=100)
    world.replay_frames = REPLAY_FRAMES
    exposure_ms = 1000.0 / fps
    model = load_model(shipped_model_path(1))
    plan = DeepZPlan.for_model(model, -10, 10, 1, anchor_exposure_ms=exposure_ms)
    watch = _Watch(exposure_ms / 1000)
    watch.camera(world)
    out = root / f"{runner}-{model_mode}.ome.zarr"
    # more time points than the camera can take in the time: the run is stopped when the time is up
    settings = RunSettings(output=out, time_points=int(fps * seconds * 10), device="cpu")

    def run(core: Any) -> dict[str, Any]:
        acq = DeepZAcquisition(core, model, plan, settings, on_image=watch.on_image).open()
        if model_mode == "left-out":
            acq.hooks.virtual.worker = None  # no stack goes to the model, none is made or recorded
        end = threading.Timer(seconds, acq.abort, args=("the sustained test's time is up",))
        watch.start(acq)
        end.start()
        try:
            summary = acq.run_mda() if runner == "mda" else acq.run()
        finally:
            end.cancel()
            watch.stop()
        return {
            "virtual_made": summary.planes_synthesized // len(plan.requested_z()),
            "virtual_pending": summary.virtual_pending,
        }

    with simulated_core(world, runner) as core:
        made = run(core)
    on_disk = sum(f.stat().st_size for f in out.rglob("*") if f.is_file())
    # planes that came faster than the codec are stored uncompressed (the camera never waits for it)
    uncompressed = measured_uncompressed(read_progress(out))
    shutil.rmtree(out)
    n = len(watch.written)
    latency = np.array(watch.written) - np.array(watch.exposed[:n])
    s = watch.samples
    return {
        "runner": runner,
        "model": model_mode,
        "frame": size,
        "camera_fps": fps,
        "seconds": round(s[-1]["s"], 1) if s else 0.0,
        "frames_exposed": len(watch.exposed),
        "frames_written": n,
        "frames_lost": len(watch.exposed) - n,
        "fps": camera_rate(s),
        "latency_ms": {
            "median": round(float(np.median(latency)) * 1000, 1),
            "p99": round(float(np.percentile(latency, 99)) * 1000, 1),
            "max": round(float(latency.max()) * 1000, 1),
        },
        "rss_mb": {"first": s[1]["rss_mb"], "last": s[-1]["rss_mb"], "max": max(x["rss_mb"] for x in s)},
        "open_files": {"first": s[1]["open_files"], "max": max(x["open_files"] for x in s)},
        "mb_on_disk": round(on_disk / 2**20),
        "stored_uncompressed": round(uncompressed / max(n, 1), 3),
        **made,
        "series": s,
    }


def camera_rate(samples: list[dict[str, Any]]) -> float | None:
    """Frames per second the camera exposed while it ran: from the second sample (the first second
    holds the start) to the last one it exposed a frame in (a run that ends waits for the model's stack
    in progress, tens of seconds on the CPU at 2048², with the camera stopped)."""
    s = samples
    last = max((i for i in range(1, len(s)) if s[i]["exposed"] > s[i - 1]["exposed"]), default=0)
    if last <= 1:
        return None
    return round((s[last]["exposed"] - s[1]["exposed"]) / (s[last]["s"] - s[1]["s"]), 1)


def plain_rate(runner: str, size: int, fps: float, seconds: float) -> float:
    """Frames per second of the same replayed camera at the same exposure without Deep-Z: plain
    pycromanager (NDTiff) or pymmcore-plus's MDA runner (no writer), for ``seconds`` of frames."""
    from .acquisition import plain_fps, plain_mda_fps

    frames, exposure_ms = max(int(fps * seconds), 20), 1000.0 / fps
    if runner == "mda":
        return round(plain_mda_fps(size, frames, replay=True, exposure_ms=exposure_ms), 1)
    with tempfile.TemporaryDirectory(dir=".") as tmp:  # one event a call: as one camera sequence, 2048²
        # frames into NDTiff overflow the core's buffer and pycromanager stops ("Sequence buffer overflow")
        return round(plain_fps(size, frames, Path(tmp), True, exposure_ms, per_call=True), 1)


def plot(rows: list[dict[str, Any]], png: Path) -> None:
    """Frames per second, memory and open files over time, one line per run."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(14, 3.8))
    for row in rows:
        s = row["series"]
        t = [x["s"] for x in s]
        rate = [0.0] + [b["exposed"] - a["exposed"] for a, b in itertools.pairwise(s)]
        label = f"{row['runner']}, model {row['model']}"
        line = axes[0].plot(t, rate, label=label)[0]
        if row.get("plain_fps"):
            axes[0].axhline(row["plain_fps"], color=line.get_color(), ls=":", label=f"{row['runner']}, plain")
        axes[1].plot(t, [x["rss_mb"] for x in s], label=label)
        axes[2].plot(t, [x["open_files"] for x in s], label=label)
    axes[0].axhline(rows[0]["camera_fps"], color="grey", ls="--", label="camera rate")
    for ax, what in zip(axes, ("frames per second", "resident memory (MB)", "open files"), strict=True):
        ax.set_xlabel("seconds")
        ax.set_ylabel(what)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.suptitle(f"Sustained Deep-Z acquisition, {rows[0]['frame']}² frames (benchmarks.sustained)")
    fig.tight_layout()
    fig.savefig(png, dpi=100)


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    """Every runner and model setting, each in a fresh process (memory figures of its own); the JSON and
    the plot. With one ``--runner`` and one ``--model``: that run, here."""
    ap = argparse.ArgumentParser(prog="python -m benchmarks.sustained", description=__doc__)
    ap.add_argument("--minutes", type=float, default=2.0, help="per run (10 for the long test)")
    ap.add_argument("--size", type=int, default=2048)
    ap.add_argument("--fps", type=float, default=100.0, help="the camera's rate (exposure 1000/fps ms)")
    ap.add_argument("--runner", action="append", choices=("pycromanager", "mda"))
    ap.add_argument("--model", action="append", choices=("left-out", "cpu"))
    ap.add_argument("--out", type=Path, default=Path("docs/sustained.json"))
    ap.add_argument("--png", default="docs/img/sustained.png", help="the plots ('': none)")
    ap.add_argument("--plain-seconds", type=float, default=20.0, help="plain reference per runner (0: none)")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    logging.getLogger().setLevel(logging.WARNING)  # (an import may have lowered it)
    logging.getLogger("acquisition_hooks").setLevel(logging.ERROR)
    runners, models = args.runner or ["pycromanager", "mda"], args.model or ["left-out", "cpu"]
    rows = []
    with tempfile.TemporaryDirectory(dir=".") as tmp:
        for runner in runners:
            plain = args.plain_seconds and plain_rate(runner, args.size, args.fps, args.plain_seconds)
            for model_mode in models:
                if len(runners) == len(models) == 1 and not plain:
                    row = sustained(runner, model_mode, args.size, args.fps, args.minutes * 60, Path(tmp))
                else:  # each run in a fresh process: memory figures of its own (not the plain run's)
                    part = Path(tmp) / f"{runner}-{model_mode}.json"
                    one = ["--runner", runner, "--model", model_mode, "--out", str(part), "--png", ""]
                    sizes = ["--minutes", str(args.minutes), "--size", str(args.size), "--fps", str(args.fps)]
                    cmd = [sys.executable, "-m", "benchmarks.sustained", *one, *sizes, "--plain-seconds", "0"]
                    subprocess.run(cmd, check=True)
                    row = json.loads(part.read_text())["runs"][0]
                if plain and row["fps"]:
                    row |= {"plain_fps": plain, "of_plain": round(row["fps"] / plain, 3)}
                rows.append(row)
                logger.warning("%s", {k: v for k, v in row.items() if k != "series"})
    command = "python -m benchmarks.sustained " + " ".join(argv if argv is not None else sys.argv[1:])
    args.out.write_text(json.dumps({"machine": machine(), "command": command, "runs": rows}, indent=1))
    if args.png:
        plot(rows, Path(args.png))
    logger.warning("wrote %s", args.out)
    return rows


if __name__ == "__main__":
    main()
