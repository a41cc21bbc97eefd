"""Acquisition overhead: frames per second of one simulated time-lapse, plain pycromanager vs Deep-Z.

Both runs take the same frames with the same hardware settings (one 10 ms widefield plane
per time point at the stack centre: z, light path and exposure set by each event, as fast as
possible) on the same simulated microscope: plain pycromanager stores them with its own storage
(NDTiff) on the same disk; the Deep-Z run turns each 21-plane request into that one plane
through the hooks, writes it to the OME-Zarr recorder and synthesizes the virtual stack in the
background. The frame rate counts from the first to the last frame.
"""

from __future__ import annotations

import logging
import tempfile
import time
from pathlib import Path

import numpy as np
from pycromanager import Acquisition

import simulators as sim
from acquisition_hooks import AcquisitionRequest
from mm_deepz.bridge import start_simulator

logger = logging.getLogger(__name__)

EXPOSURE_MS = 10.0


def _world(size: int) -> sim.SimWorld:
    return sim.SimWorld(sim.worm(seed=100), sensor_shape=(size, size), seed=100)


def plain_fps(size: int, frames: int, directory: Path) -> float:
    """Frames per second of pycromanager alone (NDTiff storage)."""
    stamps: list[float] = []

    def stamp(image: np.ndarray, metadata: dict) -> tuple:
        stamps.append(time.perf_counter())
        return image, metadata

    events = [{"axes": {"time": t}, "z": 0.0, "exposure": EXPOSURE_MS, "config_group": ["Channel", "Widefield"]}
              for t in range(frames)]
    with start_simulator(_world(size)), Acquisition(directory=str(directory), name="plain", show_display=False,
                                                    image_process_fn=stamp) as acq:
        acq.acquire(events)
    return (len(stamps) - 1) / (stamps[-1] - stamps[0])


def deepz_run(size: int, frames: int, output: Path, device: str) -> dict:
    """Frames per second, virtual stacks made and their latency, with the Deep-Z hooks and recorder."""
    request = AcquisitionRequest(output, time_points=frames, frame=size, device=device, exposure_ms=EXPOSURE_MS)
    model, plan = request.prepare()
    stamps: dict[int, float] = {}
    latency: list[float] = []

    def on_image(kind: str, t: int, zi: int, image: np.ndarray) -> None:
        stamps[t] = time.perf_counter()

    def on_virtual(t: int, stack: object) -> None:  # called once the stack is on disk
        latency.append(time.perf_counter() - stamps[t])

    with request.microscope() as core:
        summary = request.acquisition(core, model, plan, on_image=on_image, on_virtual=on_virtual).run()
    times = [stamps[t] for t in sorted(stamps)]
    return {"fps": (len(times) - 1) / (times[-1] - times[0]), "virtual_made": len(latency),
            "virtual_missing": summary.virtual_missing,
            "latency_median_s": float(np.median(latency)) if latency else None}


def run(quick: bool, device: str) -> dict:
    """The overhead row: fps with and without the hooks, their ratio, latency."""
    size, frames = (128, 10) if quick else (256, 50)
    with tempfile.TemporaryDirectory(dir=".") as tmp:
        plain = plain_fps(size, frames, Path(tmp))
        deepz = deepz_run(size, frames, Path(tmp) / "deepz.ome.zarr", device)
    row = {"frame": size, "frames": frames, "exposure_ms": EXPOSURE_MS, "plain_fps": round(plain, 1),
           "deepz_fps": round(deepz["fps"], 1), "ratio": round(deepz["fps"] / plain, 3),
           "virtual_made": deepz["virtual_made"], "virtual_missing": deepz["virtual_missing"],
           "latency_median_s": round(deepz["latency_median_s"], 3) if deepz["latency_median_s"] else None}
    logger.info("acquisition %s", row)
    return row
