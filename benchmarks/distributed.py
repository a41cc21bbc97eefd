"""Beyond one process: batch re-synthesis on Dask (1 vs N workers) and torchrun training (1 vs N processes).

``python -m benchmarks.distributed [--workers 2] [--runs 4] [--frame 256] [--out docs/scaling.json]``

- **infer**: ``--runs`` simulated Deep-Z runs with their virtual stacks struck from their records, made
  again by one batch (``acquisition_hooks.batch``) in this process (torch on every core) and on a
  LocalCluster of 2..N workers (the cores split between them); the cluster's start is timed apart.
- **train**: the same global batch and seed in 1 process (every core) and under ``torchrun`` with
  2..N processes (gloo, the cores split); steps per second from the model card, and the largest
  difference between the learning curves.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

logger = logging.getLogger(__name__)


def make_runs(root: Path, n_runs: int, frame: int, time_points: int) -> list[Path]:
    """``n_runs`` finished simulated runs with the shipped 1-plane model, their virtual stacks struck from
    their records (so a batch makes them all)."""
    import simulators as sim
    from acquisition_hooks import DeepZAcquisition, DeepZPlan, RunSettings
    from mm_deepz.bridge import start_simulator
    from mm_deepz.modelfile import load_model
    from mm_deepz.shipped import shipped_model_path

    model = load_model(shipped_model_path(1))
    runs = []
    for i in range(n_runs):
        world = sim.SimWorld(sim.worm(seed=200 + i), sensor_shape=(frame, frame), seed=200 + i)
        path = root / f"worm{i}.ome.zarr"
        with start_simulator(world) as session:
            plan = DeepZPlan.for_model(model, -10, 10, 1)
            DeepZAcquisition(
                session.core, model, plan, RunSettings(output=path, time_points=time_points, device="cpu")
            ).run()
        meta = json.loads((path / "zarr.json").read_text())
        meta["attributes"]["mm_deepz"]["completed"]["virtual"] = []
        (path / "zarr.json").write_text(json.dumps(meta))
        runs.append(path)
    return runs


def infer_rows(n_runs: int, frame: int, time_points: int, max_workers: int) -> list[dict]:
    """Seconds and stacks per second of one batch over the same runs, per worker count."""
    from acquisition_hooks.batch import find_runs, local_cluster, plan_batch, run_batch

    rows = []
    with tempfile.TemporaryDirectory(dir=".") as tmp:
        source = Path(tmp) / "source"
        make_runs(source, n_runs, frame, time_points)
        for workers in range(1, max_workers + 1):
            lab = Path(tmp) / f"w{workers}"
            shutil.copytree(source, lab)
            tasks = plan_batch(find_runs([lab]))
            stacks = sum(t.stacks for t in tasks)
            start_s = 0.0
            if workers > 1:  # the cluster's start, apart (run_batch starts its own)
                t0 = time.perf_counter()
                local_cluster(workers).close()
                start_s = time.perf_counter() - t0
            summary = run_batch(tasks, device="cpu", workers=workers)
            assert not summary.failed, summary.failed
            rows.append(
                {
                    "workers": workers,
                    "where": "this process" if workers == 1 else f"LocalCluster, {workers} processes",
                    "runs": n_runs,
                    "frame": frame,
                    "stacks": stacks,
                    "seconds": round(summary.seconds, 1),
                    "cluster_start_s": round(start_s, 1),
                    "stacks_per_s": round(stacks / summary.seconds, 2),
                    # time inside the tasks' stack making, over all workers (the rest: starting workers,
                    # importing torch, loading the model, opening the runs)
                    "making_s": round(sum(s.seconds for parts in summary.done.values() for s in parts), 1),
                }
            )
            logger.warning("infer: %s", rows[-1])
    base = rows[0]["seconds"]
    for row in rows:
        row["speedup"] = round(base / row["seconds"], 2)
    return rows


def train_rows(max_processes: int, steps: int, batch: int) -> list[dict]:
    """Steps per second of the same training (global batch, seed) in 1..N processes, and how far their
    learning curves part."""
    from mm_deepz.modelfile import load_model
    from simulators.training_data import PairSpec, make_stack_pair, write_stack_pair

    rows: list[dict] = []
    cores = os.cpu_count() or 1
    with tempfile.TemporaryDirectory(dir=".") as tmp:
        data = Path(tmp) / "pairs"
        for seed in range(4):
            spec = PairSpec(phantom="worm", seed=300 + seed, shape=(128, 128), z_half_range_um=6, z_step_um=1)
            write_stack_pair(make_stack_pair(spec), data, f"worm_{seed}")
        base: np.ndarray | None = None
        for n in range(1, max_processes + 1):
            out = Path(tmp) / f"p{n}.pt"
            args = ["train", str(data), "--steps", str(steps), "--val-every", str(steps // 2)]
            args += ["--z-range", "6", "--batch-size", str(batch), "--patch", "64", "--device", "cpu"]
            launch = [sys.executable, "-m", "mm_deepz"]
            if n > 1:
                launch = [sys.executable, "-m", "torch.distributed.run", "--standalone"]
                launch += [f"--nproc-per-node={n}", "-m", "mm_deepz"]
            env = {**os.environ, "OMP_NUM_THREADS": str(max(1, cores // n))}
            subprocess.run([*launch, *args, "--output", str(out)], check=True, env=env, capture_output=True)
            prov = load_model(out).card.provenance
            curve = np.array([(h["train_loss"], h["val_loss"]) for h in prov["history"]])
            base = curve if base is None else base
            parted = float(np.max(np.abs(curve - base) / np.abs(base)))
            rows.append(
                {
                    "processes": n,
                    "threads_each": max(1, cores // n),
                    "global_batch": batch,
                    "steps": steps,
                    "seconds": prov["train_seconds"],
                    "steps_per_s": round(steps / prov["train_seconds"], 2),
                    "curve_rel_diff": float(f"{parted:.1e}"),
                }
            )
            logger.warning("train: %s", rows[-1])
    for row in rows:
        row["speedup"] = round(rows[0]["seconds"] / row["seconds"], 2)
    return rows


def main(argv: list[str] | None = None) -> dict:
    """Run both measurements; write them as JSON to ``--out``."""
    ap = argparse.ArgumentParser(prog="python -m benchmarks.distributed", description=__doc__)
    ap.add_argument("--workers", type=int, default=2, help="the most Dask workers / torchrun processes")
    ap.add_argument("--runs", type=int, default=4)
    ap.add_argument("--frame", type=int, default=256)
    ap.add_argument("--time-points", type=int, default=4)
    ap.add_argument("--steps", type=int, default=60)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--out", type=Path, default=Path("docs/scaling.json"))
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    from .common import machine

    results = {
        "machine": machine(),
        "command": "python -m benchmarks.distributed " + " ".join(argv if argv is not None else sys.argv[1:]),
        "infer": infer_rows(args.runs, args.frame, args.time_points, args.workers),
        "train": train_rows(args.workers, args.steps, args.batch),
    }
    args.out.write_text(json.dumps(results, indent=2))
    logger.warning("wrote %s", args.out)
    return results


if __name__ == "__main__":
    main()
