"""Shared benchmark tools: timing, peak memory, the demo network with random weights, the machine."""

from __future__ import annotations

import os
import platform
import threading
import time
from collections.abc import Callable
from contextlib import contextmanager
from datetime import date
from importlib.metadata import PackageNotFoundError, version
from typing import Any

import torch

import mm_deepz
from mm_deepz.model import EncodeOnceConfig, UNetConfig
from mm_deepz.modelfile import DeepZModel, ModelCard, OpticsSpec

OPTICS = OpticsSpec(pixel_size_um=0.325, na=0.75, wavelength_em_um=0.525, immersion_index=1.0)
#: a camera whose frames cost no CPU, as a real camera's (computed in its hardware): it renders this many
#: frames per microscope state, then hands them out in turn (``SimWorld.replay_frames``)
REPLAY_FRAMES = 4


def demo_model(n_planes: int = 1, base: int = 16, depth: int = 3, architecture: str = "unet") -> DeepZModel:
    """The shipped U-Net (or the default encode-once generator) with random weights (speed does not depend
    on the weights)."""
    offsets = (0.0,) if n_planes == 1 else (-2.0, 2.0)
    config = (
        EncodeOnceConfig(n_planes) if architecture == "encode-once" else UNetConfig(n_planes, base, depth)
    )
    return DeepZModel.new(
        ModelCard(
            architecture=config,
            input_offsets_um=offsets,
            z_range_um=10.0,
            optics=OPTICS,
        )
    )


def measured_uncompressed(attrs: dict[str, Any]) -> int:
    """Measured planes a run stored uncompressed, as its record counts them (``stored_uncompressed``:
    they came faster than the codec)."""
    return int(attrs.get("stored_uncompressed", {}).get("measured", {}).get("uncompressed", 0))


def rss_mb() -> float:
    """Resident memory of this process (MB)."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096 / 2**20


@contextmanager
def peak_memory(device: str = "cpu", every_s: float = 0.005) -> Any:
    """Peak memory above the start while the block runs (MB): process RSS, or CUDA allocations."""
    result: dict[str, float] = {}
    if device == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
        yield result
        torch.cuda.synchronize()
        result["peak_mb"] = (torch.cuda.max_memory_allocated() - base) / 2**20
        return
    base, peak, stop = rss_mb(), [0.0], threading.Event()

    def sample() -> None:
        while not stop.wait(every_s):
            peak[0] = max(peak[0], rss_mb())

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    try:
        yield result
    finally:
        stop.set()
        thread.join()
        result["peak_mb"] = max(0.0, max(peak[0], rss_mb()) - base)


def best_time(fn: Callable[[], Any], repeats: int = 2, warmup: bool = True, cuda: bool = False) -> float:
    """Best wall time of ``fn`` over ``repeats`` runs (after one warm-up run)."""
    if warmup:
        fn()
    best = float("inf")
    for _ in range(repeats):
        if cuda:
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        fn()
        if cuda:
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - t0)
    return best


def machine() -> dict:
    """What the figures were measured on. Versions come from the installed packages' metadata, so a
    machine without zarr or pycromanager (a bare GPU machine running the inference rows) says so."""

    def installed(name: str) -> str | None:
        try:
            return version(name)
        except PackageNotFoundError:
            return None

    return {
        "date": date.today().isoformat(),
        "cpu": platform.processor() or platform.machine(),
        "cpu_cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "gpu": torch.cuda.get_device_name() if torch.cuda.is_available() else None,
        "versions": {
            "mm_deepz": mm_deepz.__version__,  # the checkout's: it need not be installed
            "torch": torch.__version__,
            "numpy": installed("numpy"),
            "zarr": installed("zarr"),
            "pycromanager": installed("pycromanager"),
            "python": platform.python_version(),
        },
    }
