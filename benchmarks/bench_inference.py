"""Virtual planes per second of the inference engine: ``python -m benchmarks.bench_inference``.

Runs on CUDA when available (and always on CPU unless ``--cuda-only``). The network is the
shipped demo architecture with random weights: speed does not depend on the weights.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from datetime import date

import numpy as np
import torch

from mm_deepz.engine import Predictor
from mm_deepz.model import UNetConfig
from mm_deepz.modelfile import DeepZModel, ModelCard, OpticsSpec

OPTICS = OpticsSpec(pixel_size_um=0.325, na=0.75, wavelength_em_um=0.525, immersion_index=1.0)


def _model(n_planes: int, base: int, depth: int) -> DeepZModel:
    offsets = (0.0,) if n_planes == 1 else (-2.0, 2.0)
    return DeepZModel.new(ModelCard(UNetConfig(n_planes, base, depth), offsets, 10.0, OPTICS))


def bench_case(device: str, size: int, n_targets: int, n_planes: int, base: int = 16, depth: int = 3,
               repeats: int = 2, **predictor_kw) -> dict:
    """Planes/s (best of ``repeats`` after a warm-up) for one configuration."""
    p = Predictor(_model(n_planes, base, depth), device, **predictor_kw)
    rng = np.random.default_rng(0)
    planes = (rng.random((n_planes, size, size)) * 3000 + 100).astype(np.uint16)
    plane_z = (0.0,) if n_planes == 1 else (-2.0, 2.0)
    targets = np.linspace(-8, 8, n_targets)
    p.predict_stack(planes, plane_z, targets[: min(2, n_targets)])  # warm-up
    best = float("inf")
    if p.device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    for _ in range(repeats):
        t0 = time.perf_counter()
        p.predict_stack(planes, plane_z, targets)
        best = min(best, time.perf_counter() - t0)
    row = {"device": p.device.type, "frame": size, "planes_out": n_targets, "planes_in": n_planes,
           "net": f"UNet(base={base}, depth={depth})", "batch": p.batch_size, "tile": p.tile_size,
           "stack_s": round(best, 3), "planes_per_s": round(n_targets / best, 2)}
    if p.device.type == "cuda":
        row["peak_gpu_mb"] = round(torch.cuda.max_memory_allocated() / 2**20)
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--quick", action="store_true", help="small frames only (CI smoke run)")
    ap.add_argument("--cuda-only", action="store_true")
    ap.add_argument("--out", default=None, help="write the rows as JSON here")
    args = ap.parse_args()
    devices = (["cuda"] if torch.cuda.is_available() else []) + ([] if args.cuda_only else ["cpu"])
    cases = [(256, 5, 1)] if args.quick else [(256, 21, 1), (512, 21, 1), (512, 21, 2), (512, 41, 1), (2048, 21, 1)]
    rows = []
    for dev in devices:
        for size, nt, npl in cases:
            rows.append(bench_case(dev, size, nt, npl, repeats=1 if size >= 2048 and dev == "cpu" else 2))
            print(json.dumps(rows[-1]), flush=True)
    meta = {"date": date.today().isoformat(), "torch": torch.__version__, "cpu": platform.machine(),
            "threads": torch.get_num_threads(),
            "gpu": torch.cuda.get_device_name() if torch.cuda.is_available() else None}
    print(json.dumps(meta))
    if args.out:
        with open(args.out, "w") as f:
            json.dump({"meta": meta, "rows": rows}, f, indent=2)


if __name__ == "__main__":
    main()
