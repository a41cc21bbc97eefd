"""Inference: normalization, tiling, the predictor and the background worker."""

from ..normalization import IntensityScale
from .predictor import Predictor, VirtualStack, resolve_device
from .worker import InferenceWorker, PlaneBundle, WorkerStats

__all__ = [
    "InferenceWorker",
    "IntensityScale",
    "PlaneBundle",
    "Predictor",
    "VirtualStack",
    "WorkerStats",
    "resolve_device",
]
