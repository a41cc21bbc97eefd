"""Digital propagation matrices (DPMs): per pixel, the axial distance to the wanted surface.

A DPM has the frame's shape and holds, for every pixel, the distance in µm from the
*measured* plane to the surface on which the output image should lie (positive = above,
i.e. larger stage Z). A uniform DPM refocuses to a plane; a tilted DPM to an inclined plane;
a surface DPM follows any height map (e.g. a curved specimen).

Distances stay in µm everywhere; :func:`to_network_units` is the one place that converts
them to the network's normalized units.
"""

from __future__ import annotations

import numpy as np

from .errors import ZRangeError


def uniform(shape: tuple[int, int], distance_um: float) -> np.ndarray:
    """A DPM refocusing every pixel by ``distance_um``."""
    return np.full(shape, float(distance_um), np.float32)


def tilted(
    shape: tuple[int, int], distance_um: float, slope_x: float, slope_y: float, pixel_size_um: float
) -> np.ndarray:
    """A DPM for an inclined plane through the frame centre.

    ``slope_x``/``slope_y`` are µm of height per µm of lateral distance (tan of the tilt).
    """
    h, w = shape
    y = (np.arange(h) - (h - 1) / 2) * pixel_size_um
    x = (np.arange(w) - (w - 1) / 2) * pixel_size_um
    return (distance_um + slope_x * x[None, :] + slope_y * y[:, None]).astype(np.float32)


def surface(height_um: np.ndarray, plane_z_um: float) -> np.ndarray:
    """A DPM from a height map (absolute z, µm) for a plane measured at ``plane_z_um``."""
    return np.asarray(np.asarray(height_um, np.float32) - np.float32(plane_z_um), np.float32)


def to_network_units(dpm_um: np.ndarray, z_range_um: float, strict: bool = True) -> np.ndarray:
    """Convert µm to the network's units (distance / trained half-range, so ±1 = range edge).

    With ``strict``, distances beyond the trained range raise :class:`ZRangeError`.
    """
    if z_range_um <= 0:
        raise ValueError(f"Trained z-range must be positive, got {z_range_um}.")
    worst = float(np.max(np.abs(dpm_um))) if np.size(dpm_um) else 0.0
    if strict and worst > z_range_um * (1 + 1e-6):
        raise ZRangeError(
            f"A DPM asks to propagate {worst:.2f} µm but the model was trained for ±{z_range_um:g} µm: "
            f"narrow the virtual z range or train a model over a wider range."
        )
    return np.asarray(np.asarray(dpm_um, np.float32) / np.float32(z_range_um), np.float32)
