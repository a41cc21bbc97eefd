"""Simulator: rendering time of the simulated camera (it bounds every acquisition figure here)."""

from __future__ import annotations

import time

import numpy as np

import simulators as sim


def bench(size: int = 512, planes: int = 21) -> dict:
    """Time the first frame (field set-up) and a z-stack of frames on a live worm."""
    world = sim.SimWorld(sim.worm(seed=7), sensor_shape=(size, size))
    world.shutter_open = True
    t0 = time.perf_counter()
    world.expose(10.0)
    first = time.perf_counter() - t0
    times = []
    for z in np.linspace(-10, 10, planes):
        world.z_um = float(z)
        world.clock_offset_s += 0.2  # a live specimen: new activity every frame
        t0 = time.perf_counter()
        world.expose(10.0)
        times.append(time.perf_counter() - t0)
    return {
        "frame": f"{size}x{size}",
        "first_frame_s": round(first, 3),
        "median_frame_s": round(float(np.median(times)), 4),
        "max_frame_s": round(max(times), 4),
        **first_snap_after_load(size),
    }


def first_snap_after_load(size: int, exposure_ms: float = 100.0) -> dict:
    """Seconds to load the demo configuration on a fresh world, and from then to the first snapped frame
    of ``exposure_ms`` (a camera's first frame comes about one exposure after the start)."""
    from simulators.core import load_demo_core, release_core

    t0 = time.perf_counter()
    core = load_demo_core(sim.SimWorld(sim.worm(seed=7), sensor_shape=(size, size)))
    loaded = time.perf_counter() - t0
    core.setExposure(exposure_ms)
    t0 = time.perf_counter()
    core.snapImage()
    core.getImage()
    snap = time.perf_counter() - t0
    release_core(core)
    return {"load_s": round(loaded, 3), "first_snap_s": round(snap, 3), "snap_exposure_ms": exposure_ms}


def run(quick: bool) -> list[dict]:
    """Rows for the frame sizes of the suite."""
    return [bench(s) for s in ((128,) if quick else (256, 512))]
