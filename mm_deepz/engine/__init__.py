"""Inference: normalization, tiling, the predictor and the background worker.

The names below are imported on first use: the data the acquisition hands around
(:class:`PlaneBundle`, :class:`VirtualStack`) loads without torch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..lazy import lazy_exports

if TYPE_CHECKING:
    from ..normalization import IntensityScale
    from .bundle import PlaneBundle, VirtualStack
    from .predictor import Predictor, resolve_device
    from .worker import InferenceWorker, WorkerStats

#: public name -> the module that defines it
_WHERE = {
    "IntensityScale": "..normalization",
    "PlaneBundle": ".bundle",
    "VirtualStack": ".bundle",
    "Predictor": ".predictor",
    "resolve_device": ".predictor",
    "InferenceWorker": ".worker",
    "WorkerStats": ".worker",
}

__getattr__ = lazy_exports(__name__, _WHERE)


__all__ = [
    "InferenceWorker",
    "IntensityScale",
    "PlaneBundle",
    "Predictor",
    "VirtualStack",
    "WorkerStats",
    "resolve_device",
]
