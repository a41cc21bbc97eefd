"""3D detection of neuron centres in a z-stack (trackpy), in physical units.

trackpy's ``locate`` finds blobs of a given size per axis with sub-pixel / sub-plane
centroids and a background-subtracted integrated brightness (``mass``). Voxels are
anisotropic (0.325 µm lateral, 1 µm axial here): the expected neuron size is given in µm and
turned into odd pixel diameters per axis, and the centres come back in µm.

The brightness threshold is relative to the stack: a blob is kept when its mass stands
``min_snr`` robust standard deviations above the masses of background blobs, so the same
settings work for widefield, confocal and virtual stacks of any brightness.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
import pandas as pd

from ..errors import DeepZError

#: columns of a detection table (µm, and trackpy's brightness measures)
COLUMNS = ("z_um", "y_um", "x_um", "mass", "signal")


class NeuronAnalysisError(DeepZError):
    """Data the neuron analysis cannot use (not a z-stack, no physical units, empty)."""


@dataclass(frozen=True)
class DetectionConfig:
    """Expected neuron size (µm) and how strict the detection is."""

    diameter_um: float = 3.0
    axial_diameter_um: float = 4.0
    #: how far (robust standard deviations of all candidate masses) a neuron's mass stands out
    min_snr: float = 4.0
    #: blobs closer than this (µm, lateral) are one neuron
    separation_um: float = 2.5
    #: and a neuron's mass must reach this fraction of the bright candidates' (see :func:`detect_neurons`)
    relative_mass: float = 0.15

    def __post_init__(self) -> None:
        for name in ("diameter_um", "axial_diameter_um", "min_snr", "separation_um", "relative_mass"):
            v = getattr(self, name)
            if not np.isfinite(v) or v <= 0:
                raise NeuronAnalysisError(f"{name} must be a positive number, got {v}.")


def _odd(n: float) -> int:
    k = max(3, round(n))
    return k if k % 2 else k + 1


def detect_neurons(
    stack: np.ndarray,
    voxel_um: tuple[float, float, float],
    z0_um: float = 0.0,
    config: DetectionConfig | None = None,
) -> pd.DataFrame:
    """Neuron centres of one (z, y, x) stack, in µm (z from ``z0_um``; y, x from the frame's corner).

    ``voxel_um``: (z step, pixel height, pixel width) in µm. A single plane (1, y, x) is searched
    in 2D and its neurons placed at ``z0_um``: what a lone input plane can tell.
    """
    import trackpy as tp

    cfg = config or DetectionConfig()
    stack = np.asarray(stack)
    if stack.ndim != 3 or min(stack.shape) == 0:
        raise NeuronAnalysisError(
            f"Neuron detection needs a z-stack (z, y, x); got an array of shape {stack.shape}."
        )
    dz, dy, dx = (float(v) for v in voxel_um)
    if not all(np.isfinite(v) and v > 0 for v in (dz, dy, dx)):
        raise NeuronAnalysisError(f"Voxel size must be positive µm, got {voxel_um}.")
    data = np.nan_to_num(stack.astype(np.float32), nan=0.0, posinf=0.0, neginf=0.0)
    flat = data.shape[0] == 1
    if flat:
        data = data[0]
    diameter = (_odd(cfg.axial_diameter_um / dz),) * (not flat) + (
        _odd(cfg.diameter_um / dy),
        _odd(cfg.diameter_um / dx),
    )
    if any(d > n for d, n in zip(diameter, data.shape, strict=True)):
        diameter = tuple(min(d, n if n % 2 else n - 1) for d, n in zip(diameter, data.shape, strict=True))
        if min(diameter) < 3:
            raise NeuronAnalysisError(
                f"A stack of shape {data.shape} is too small to find neurons of {cfg.diameter_um:g} µm in."
            )
    span = float(np.percentile(data, 99.99) - np.percentile(data, 1))
    if span <= 0:
        return pd.DataFrame({c: np.empty(0) for c in COLUMNS})
    data = (data - np.percentile(data, 1)) / span * 1000.0  # trackpy's filters like a fixed scale
    sep = (max(1, cfg.axial_diameter_um / dz / 2),) * (not flat) + (
        cfg.separation_um / dy,
        cfg.separation_um / dx,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        # the noise of the filtered stack (robust: most voxels are background) sets the threshold:
        # a neuron's mass must stand min_snr noise levels above what noise summed over its mask gives
        filtered = tp.bandpass(data, 1, diameter, threshold=-np.inf)
        sigma = float(np.median(np.abs(filtered - np.median(filtered)))) * 1.4826
        mask_voxels = np.pi / 6 * np.prod(diameter)
        minmass = cfg.min_snr * max(sigma, 1e-6) * np.sqrt(mask_voxels)
        found = tp.locate(data, diameter, separation=sep, preprocess=True, minmass=minmass)
    if flat:
        found["z"] = 0.0
    found = found.dropna(subset=["z", "y", "x", "mass"])
    if found.empty:
        return pd.DataFrame({c: np.empty(0) for c in COLUMNS})
    # out-of-focus haze passes the noise test in widefield stacks but is an order of magnitude
    # fainter than any in-focus neuron: keep what reaches a fraction of the bright neurons' mass, the
    # 95th percentile of the candidates' or, where haze makes most candidates (a sparse field: 840 haze
    # blobs beside 8 neurons in a simulated 256-px widefield stack), the median of the ten brightest
    mass = found["mass"].to_numpy()
    bright = max(float(np.percentile(mass, 95)), float(np.median(np.sort(mass)[-10:])))
    keep = found[mass > cfg.relative_mass * bright]
    out = pd.DataFrame(
        {
            "z_um": z0_um + keep["z"].to_numpy() * dz,
            "y_um": keep["y"].to_numpy() * dy,
            "x_um": keep["x"].to_numpy() * dx,
            "mass": keep["mass"].to_numpy() * span / 1000.0,
            "signal": keep["signal"].to_numpy() * span / 1000.0,
        }
    )
    return out.reset_index(drop=True)
