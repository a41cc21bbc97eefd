"""Intensity normalization of network inputs and its inverse on outputs.

Inputs are scaled so that the ``low_percentile`` (1 %) of the measured planes maps to 0 and
the ``high_percentile`` (99.99 %) to 1 (all planes of one bundle share one scale, so their relative
brightness is kept). Network outputs are mapped back with the same scale: virtual images
are in the input camera's units (ADU, offset included), clipped to the output dtype's range
(0-65535 for uint16) and rounded.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .errors import InputError

#: Default percentiles mapped to 0 and 1. The upper one is high because fluorescence images are
#: often sparse (beads, neurons, confocal sections): at 99.8 % a few bright objects would map
#: to hundreds of units and dominate every loss and metric.
LOW_PERCENTILE = 1.0
HIGH_PERCENTILE = 99.99


@dataclass(frozen=True)
class IntensityScale:
    """Affine map between camera counts and network units."""

    low: float
    high: float

    @classmethod
    def of(
        cls,
        data: np.ndarray,
        low_percentile: float = LOW_PERCENTILE,
        high_percentile: float = HIGH_PERCENTILE,
    ) -> IntensityScale:
        """The scale mapping ``data``'s percentiles to 0 and 1 (any data, flat included)."""
        low, high = np.percentile(data, [low_percentile, high_percentile])
        return cls(float(low), float(high))

    @classmethod
    def from_planes(
        cls,
        planes: np.ndarray,
        low_percentile: float = LOW_PERCENTILE,
        high_percentile: float = HIGH_PERCENTILE,
    ) -> IntensityScale:
        """The scale of a bundle of measured planes; refuses NaN/Inf and empty (flat) input."""
        scale = cls.of(planes, low_percentile, high_percentile)
        if not np.isfinite([scale.low, scale.high]).all():
            raise InputError("Input planes contain NaN or Inf values.")
        if scale.high - scale.low < 1e-6:
            raise InputError(
                f"Input planes are flat (all ≈ {scale.low:g}): is the shutter closed or the sample out of "
                "view?"
            )
        return scale

    @property
    def span(self) -> float:
        """high - low, at least 1e-6 (a flat image maps to 0, not to infinity)."""
        return max(self.high - self.low, 1e-6)

    def forward(self, x: np.ndarray) -> np.ndarray:
        """Camera counts -> network units (float32)."""
        out: np.ndarray = (np.asarray(x, np.float32) - np.float32(self.low)) / np.float32(self.span)
        return out

    def inverse(self, y: np.ndarray) -> np.ndarray:
        """Network units -> camera counts (float32)."""
        out: np.ndarray = np.asarray(y, np.float32) * np.float32(self.span) + np.float32(self.low)
        return out

    def to_counts(self, y: np.ndarray, dtype: np.dtype | type = np.uint16) -> np.ndarray:
        """Network units -> camera counts in ``dtype`` (:func:`to_dtype` of :meth:`inverse`), one plane
        at a time: no temporaries the size of a whole stack (21 planes of 2048²: 0.2 s against 0.56 s
        here, and about 1 GB less at the peak)."""
        y = np.asarray(y)
        out = np.empty(y.shape, dtype)
        planes, counts = y.reshape(-1, *y.shape[-2:]), out.reshape(-1, *y.shape[-2:])
        for i, plane in enumerate(planes):
            counts[i] = to_dtype(self.inverse(plane), dtype)
        return out


def to_dtype(img: np.ndarray, dtype: np.dtype | type = np.uint16) -> np.ndarray:
    """Round and clip float counts into an integer camera dtype (float dtypes pass through)."""
    dtype = np.dtype(dtype)
    if dtype.kind == "f":
        return img.astype(dtype)
    info = np.iinfo(dtype)
    return np.asarray(np.clip(np.rint(img), info.min, info.max), dtype)
