"""Inference: virtual planes per second, the engine vs a plain eager loop, and peak memory."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from mm_deepz.engine import Predictor
from mm_deepz.modelfile import load_model

from .common import best_time, demo_model, peak_memory

logger = logging.getLogger(__name__)


def _planes(n_planes: int, size: int) -> np.ndarray:
    rng = np.random.default_rng(0)
    return (rng.random((n_planes, size, size)) * 3000 + 100).astype(np.uint16)


def eager_stack(
    predictor: Predictor, planes: np.ndarray, plane_z: tuple[float, ...], targets: np.ndarray
) -> None:
    """The plain way: one network call per virtual plane, float32, NCHW, no tiles, no batching."""
    net, zr = predictor.model.network, predictor.model.card.z_range_um
    x = torch.from_numpy(planes.astype(np.float32) / 3000).to(predictor.device)
    with torch.no_grad():
        for z in targets:
            dpm = torch.stack([torch.full_like(x[0], (z - pz) / zr) for pz in plane_z])
            inp = torch.stack([x, dpm], dim=1).reshape(1, -1, *x.shape[1:]).contiguous()
            net(inp).cpu()


def case(
    device: str,
    size: int,
    n_out: int,
    n_in: int,
    measure_planes: int | None = None,
    eager: bool = False,
    architecture: str = "unet",
    model_file: Path | None = None,
    tile_size: int | None = None,
) -> dict:
    """One row: planes/s of the engine (over ``measure_planes`` of the ``n_out`` when given; an encode-once
    generator is always timed over the whole stack, which its one encoding serves), for a random-weight
    generator of ``architecture`` or a trained ``model_file`` (its own widths); ``tile_size``: the engine's
    tiles (default: the device's)."""
    model = demo_model(n_in, architecture=architecture) if model_file is None else load_model(model_file)
    architecture = model.card.architecture.kind
    predictor = Predictor(model, device, tile_size=tile_size)
    cuda = predictor.device.type == "cuda"
    planes = _planes(n_in, size)
    plane_z = (0.0,) if n_in == 1 else (-2.0, 2.0)
    n = measure_planes or n_out
    targets = np.linspace(-8, 8, n_out)[:n]
    predictor.predict_stack(planes, plane_z, targets[:1])  # warm-up (allocations, kernels)
    repeats = 1 if n * size * size > 2e7 and not cuda else 2
    with peak_memory("cuda" if cuda else "cpu") as mem:
        t = best_time(
            lambda: predictor.predict_stack(planes, plane_z, targets), repeats, warmup=False, cuda=cuda
        )
    row = {
        "architecture": architecture if model_file is None else f"{architecture} ({model_file.name})",
        "device": predictor.device.type,
        "frame": size,
        "planes_in": n_in,
        "planes_out": n_out,
        "planes_timed": n,
        "batch": predictor.batch_size,
        "tile": predictor.tile_size,
        "planes_per_s": round(n / t, 2),
        "stack_s": round(n_out * t / n, 2),
        "peak_mb": round(mem["peak_mb"]),
    }
    if eager:
        model.network.to(memory_format=torch.contiguous_format)
        te = best_time(
            lambda: eager_stack(predictor, planes, plane_z, targets), repeats, warmup=True, cuda=cuda
        )
        row["eager_planes_per_s"] = round(n / te, 2)
        row["engine_vs_eager"] = round(te / t, 2)
    logger.info("inference %s", row)
    return row


#: the engine's phases (``torch.profiler.record_function`` labels in :mod:`mm_deepz.engine.predictor`)
PHASES = ("mm_deepz.normalize", "mm_deepz.network", "mm_deepz.to_host", "mm_deepz.to_counts")


def profile(device: str, size: int, architecture: str, out: Path, tile_size: int | None = None) -> dict:
    """One 2-plane stack of 21 planes of ``size``² under torch's profiler (after a warm-up stack): the
    seconds of each engine phase (:data:`PHASES`) and the profiler's table of
    operators (``out/profile_<architecture>_<device>_<size>.txt``): where a stack's time goes on a GPU."""
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as torch_profile

    predictor = Predictor(demo_model(2, architecture=architecture), device, tile_size=tile_size)
    cuda = predictor.device.type == "cuda"
    planes, targets = _planes(2, size), np.linspace(-8, 8, 21)
    predictor.predict_stack(planes, (-2.0, 2.0), targets)
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
    with torch_profile(activities=activities) as prof:
        predictor.predict_stack(planes, (-2.0, 2.0), targets)
        if cuda:
            torch.cuda.synchronize()
    events = prof.key_averages()
    phases = {e.key: round(e.cpu_time_total / 1e6, 3) for e in events if e.key in PHASES}
    sort = "self_cuda_time_total" if cuda else "self_cpu_time_total"
    name = f"profile_{architecture}_{predictor.device.type}_{size}.txt"
    out.mkdir(parents=True, exist_ok=True)
    (out / name).write_text(events.table(sort_by=sort, row_limit=30))
    row = {"architecture": architecture, "device": predictor.device.type, "frame": size,
           "tile": predictor.tile_size, "batch": predictor.batch_size, "phases_s": phases,
           "table": name}  # fmt: skip
    logger.info("profile %s", row)
    return row


def run(
    quick: bool,
    devices: list[str],
    side_by_side: bool = False,
    models: Sequence[Path] = (),
    tile_size: int | None = None,
) -> list[dict]:
    """All inference rows for the given devices (``side_by_side``: only the two generators on the same
    2-plane stacks of 21 planes, each timed whole; ``models``: these trained 2-plane files instead;
    ``tile_size``: the engine's tiles, else each device's default)."""
    eo = "encode-once"
    if models:
        sizes = (128,) if quick else (512, 2048)
        return [
            case(dev, size, 21, 2, model_file=path, tile_size=tile_size)
            for dev in devices
            for size in sizes
            for path in models
        ]
    if side_by_side:
        cases = [(size, 21, 2, None, False, arch) for size in (512, 2048) for arch in ("unet", eo)]
    elif quick:
        cases = [(128, 5, 1, None, True, "unet"), (128, 5, 1, None, True, eo)]
    else:
        cases = [
            (512, 21, 1, None, True, "unet"),
            (512, 41, 1, None, False, "unet"),
            (512, 21, 2, None, False, "unet"),
            (512, 41, 2, None, False, "unet"),
            (2048, 21, 1, 3, True, "unet"),
            (2048, 41, 1, 3, False, "unet"),
            (2048, 21, 2, 3, False, "unet"),
            # side by side: the same 2-plane stacks, each timed whole
            (512, 21, 2, None, True, eo),
            (512, 41, 2, None, False, eo),
            (2048, 21, 2, None, False, "unet"),
            (2048, 21, 2, None, True, eo),
        ]
    rows = []
    for dev in devices:
        for size, n_out, n_in, timed, eager, arch in cases:
            gpu = dev == "cuda"
            timed_over = None if gpu or arch == eo else timed
            rows.append(case(dev, size, n_out, n_in, timed_over, eager, arch, tile_size=tile_size))
    return rows


def main(argv: list[str] | None = None) -> int:
    """``python -m benchmarks.inference [--device cuda] [--quick] --out DIR``: the inference rows alone.

    It needs only torch and the engine (not zarr, pycromanager or the simulator's core), so it runs on
    a bare GPU machine where the full suite's dependencies are not installed; it writes
    ``inference.json`` and ``inference.md`` (the suite's inference table) to DIR.
    """
    import argparse
    import json

    from .common import machine
    from .report import inference_table, measured_on

    ap = argparse.ArgumentParser(prog="python -m benchmarks.inference", description=main.__doc__)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--device", action="append", help="cuda and/or cpu (default: cuda if present, and cpu)")
    ap.add_argument("--quick", action="store_true", help="small sizes (a smoke run; figures meaningless)")
    ap.add_argument(
        "--side-by-side",
        action="store_true",
        help="only the U-Net and the encode-once generator, same stacks",
    )
    ap.add_argument(
        "--model",
        action="append",
        type=Path,
        default=[],
        help="side by side, these trained 2-plane model files (at their own widths), not random weights",
    )
    ap.add_argument(
        "--tile-size",
        type=int,
        help="the engine's tiles in px (default: the device's; 2048 is a whole 2048² frame in one tile)",
    )
    ap.add_argument(
        "--profile",
        action="store_true",
        help="instead of the rows: one 2-plane stack of 21 planes per generator under torch's profiler "
        "(2048², 128² with --quick): each engine phase's seconds and the operators' table",
    )
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    devices = args.device or ((["cuda"] if torch.cuda.is_available() else []) + ["cpu"])
    measured = machine()
    args.out.mkdir(parents=True, exist_ok=True)
    if args.profile:
        size = 128 if args.quick else 2048
        profiles = [profile(dev, size, arch, args.out, args.tile_size) for dev in devices
                    for arch in ("unet", "encode-once")]  # fmt: skip
        summary = {"machine": measured, "profiles": profiles}
        (args.out / "profile.json").write_text(json.dumps(summary, indent=2))
        return 0
    rows = run(args.quick, devices, args.side_by_side, args.model, args.tile_size)
    (args.out / "inference.json").write_text(json.dumps({"machine": measured, "rows": rows}, indent=2))
    (args.out / "inference.md").write_text(
        "\n".join([measured_on(measured), "", *inference_table(rows)]) + "\n"
    )
    logger.info("wrote %s and %s", args.out / "inference.json", args.out / "inference.md")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
