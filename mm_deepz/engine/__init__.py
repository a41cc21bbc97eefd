"""Inference: normalization, tiling, the predictor and the background worker.

The names below are imported on first use: the data the acquisition hands around
(:class:`PlaneBundle`, :class:`VirtualStack`) loads without torch.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

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


def __getattr__(name: str) -> Any:
    if name in _WHERE:
        return getattr(import_module(_WHERE[name], __name__), name)
    raise AttributeError(f"module 'mm_deepz.engine' has no attribute {name!r}")


__all__ = [
    "InferenceWorker",
    "IntensityScale",
    "PlaneBundle",
    "Predictor",
    "VirtualStack",
    "WorkerStats",
    "resolve_device",
]
