"""What goes into the model and what comes out: plain arrays, no torch (the acquisition's
bookkeeping handles them without loading the model)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..normalization import IntensityScale


@dataclass
class PlaneBundle:
    """The measured planes of one (time point, position, channel) and the wanted virtual planes."""

    key: tuple[int, ...]
    planes: np.ndarray  # (n, y, x)
    plane_z_um: tuple[float, ...]
    target_z_um: np.ndarray
    meta: dict[str, Any] = field(default_factory=dict)


@dataclass
class VirtualStack:
    """Synthesized planes (z, y, x) with where they lie and how they were made."""

    data: np.ndarray
    z_um: np.ndarray  # absolute z of each virtual plane (surface DPMs: the surface's mean z)
    plane_z_um: tuple[float, ...]  # z of the measured input planes
    scale: IntensityScale
    meta: dict[str, Any] = field(default_factory=dict)
