"""Neuron analysis cost per time point: 3D detection of one z-stack, and linking, by frame size."""

from __future__ import annotations

import time

import numpy as np
import pandas as pd

import simulators as sim
from mm_deepz.neurons import detect_neurons, link_tracks


def analysis_cost(size: int, depth: int = 21, time_points: int = 4) -> dict:
    """Median seconds to detect the neurons of one ``depth``-plane stack at ``size``², and to link
    ``time_points`` of them (per time point)."""
    world = sim.SimWorld(sim.worm(seed=190), sensor_shape=(size, size), seed=190, drift_um_per_s=(0.5, 0.0))
    z = np.linspace(-10, 10, depth)
    stacks = [world.scan(z, 100, "confocal", float(k)) for k in range(time_points)]
    detect_s, found = [], []
    for k, stack in enumerate(stacks):
        t0 = time.perf_counter()
        d = detect_neurons(stack, (float(z[1] - z[0]), 0.325, 0.325), z0_um=float(z[0]))
        detect_s.append(time.perf_counter() - t0)
        d["t"] = k
        found.append(d)
    t0 = time.perf_counter()
    tracks = link_tracks(pd.concat(found, ignore_index=True))
    link_s = time.perf_counter() - t0
    return {
        "frame": size,
        "planes": depth,
        "neurons_per_stack": round(float(np.mean([len(d) for d in found])), 1),
        "detect_s": round(float(np.median(detect_s)), 3),
        "link_s_per_time_point": round(link_s / time_points, 4),
        "tracks": int(tracks["track"].nunique()) if len(tracks) else 0,
    }


def run(quick: bool) -> list[dict]:
    """The section's rows."""
    return [analysis_cost(64, 9, 2)] if quick else [analysis_cost(256), analysis_cost(512)]


if __name__ == "__main__":
    for row in run(False):
        print(row)
