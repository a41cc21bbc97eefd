"""Scaling: time and memory against frame size, stack depth and positions; a profile of the hot path."""

from __future__ import annotations

import cProfile
import logging
import pstats
import tempfile
import time
from pathlib import Path

import numpy as np

from acquisition_hooks import AcquisitionRequest
from acquisition_hooks.request import SimulatorSpec
from acquisition_hooks.start import prepare
from mm_deepz.engine import Predictor
from mm_deepz.io import Geometry, Recorder

from .common import demo_model, peak_memory
from .writing import camera_frames

logger = logging.getLogger(__name__)


def stack_cost(size: int, depth: int) -> dict:
    """Seconds and peak memory (MB) of one virtual stack of ``depth`` planes at ``size``²."""
    predictor = Predictor(demo_model(1), "cpu")
    planes = (np.random.default_rng(0).random((1, size, size)) * 3000 + 100).astype(np.uint16)
    targets = np.linspace(-8, 8, depth)
    predictor.predict_stack(planes, (0.0,), targets[:1])
    with peak_memory() as mem:
        t0 = time.perf_counter()
        predictor.predict_stack(planes, (0.0,), targets)
        seconds = time.perf_counter() - t0
    return {"frame": size, "depth": depth, "stack_s": round(seconds, 3), "peak_mb": round(mem["peak_mb"])}


def positions_cost(n_positions: int, time_points: int, device: str) -> dict:
    """Seconds per time point and peak memory of a Deep-Z time-lapse over ``n_positions`` fields."""
    xy = tuple((200.0 * i, 0.0) for i in range(n_positions))
    with tempfile.TemporaryDirectory(dir=".") as tmp:
        request = AcquisitionRequest(
            output=Path(tmp) / "p.ome.zarr",
            time_points=time_points,
            microscope=SimulatorSpec(frame=128),
            device=device,
            positions_xy_um=xy if n_positions > 1 else None,
        )
        prepared = prepare(request)
        with prepared.microscope() as core, peak_memory() as mem:
            summary = prepared.acquisition(core).run()
    return {
        "positions": n_positions,
        "time_points": time_points,
        "s_per_time_point": round(summary.seconds / time_points, 3),
        "peak_mb": round(mem["peak_mb"]),
        "virtual_missing": summary.virtual_missing,
    }


def profile_hot_path(size: int, time_points: int, top: int = 8) -> list[dict]:
    """cProfile of what every Deep-Z time point costs: record the plane, synthesize and record the stack."""
    frame = camera_frames(size, 1)[0]
    predictor = Predictor(demo_model(1), "cpu")
    z = np.arange(-10.0, 10.5, 1.0)
    with tempfile.TemporaryDirectory(dir=".") as tmp:
        rec = Recorder(Path(tmp) / "prof.ome.zarr", Geometry(tuple(z), 0.325, 0.0, frame.shape))
        profiler = cProfile.Profile()
        profiler.enable()
        for t in range(time_points):
            rec.write_plane("measured", t, 10, frame)
            rec.mark_complete("measured", t, planes=[10])
            stack = predictor.predict_stack(frame[None], (0.0,), z, out_dtype=np.float32)
            rec.write_stack("virtual", t, stack.data)
            rec.mark_complete("virtual", t)
        profiler.disable()
    stats = pstats.Stats(profiler)
    total = sum(v[2] for v in stats.stats.values())  # type: ignore[attr-defined]
    rows = sorted(((func, v[2]) for func, v in stats.stats.items()), key=lambda r: -r[1])  # type: ignore[attr-defined]
    return [
        {"function": f"{Path(f[0]).name}:{f[2]}", "self_s": round(s, 3), "share": round(s / total, 3)}
        for f, s in rows[:top]
    ]


def run(quick: bool, device: str) -> dict:
    """All scaling rows and the profile."""
    sizes, depths = ((64, 128), (11, 21)) if quick else ((128, 256, 512, 1024), (11, 21, 41))
    out = {
        "frame_size": [stack_cost(s, 21) for s in sizes],
        "depth": [stack_cost(128 if quick else 256, d) for d in depths],
        "positions": [positions_cost(n, 3 if quick else 5, device) for n in ((1, 2) if quick else (1, 2, 4))],
        "profile": profile_hot_path(128 if quick else 256, 2 if quick else 5),
    }
    logger.info("scaling %s", out)
    return out
