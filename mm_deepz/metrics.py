"""Image-quality metrics shared by the training loss and the blind evaluation.

Stacks are scored as CARE scores restorations (Weigert et al., Nature Methods 2018): the
reference is scaled by its own 1st / 99.99th percentiles (:func:`normalize_stack`), and the
stack under test by the one scale and offset that fit it best to that reference
(:func:`match_affine`, least squares over the whole stack). Scores then measure structure,
not how a method happens to map intensities: a widefield plane's haze, or a virtual stack
whose peaks are a little dim, is not read as a different image. One scale for the whole
stack keeps its axial brightness profile, so a plane that is bright where the reference is
dark still scores badly.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from skimage.metrics import structural_similarity

from .normalization import HIGH_PERCENTILE, LOW_PERCENTILE, IntensityScale


def normalize_stack(
    stack: np.ndarray, low: float = LOW_PERCENTILE, high: float = HIGH_PERCENTILE
) -> np.ndarray:
    """Scale a whole stack so its ``low``/``high`` percentiles map to 0/1 (float32)."""
    return IntensityScale.of(stack, low, high).forward(stack)


def match_affine(pred: np.ndarray, ref: np.ndarray) -> np.ndarray:
    """``a * pred + b`` with the scale and offset that best fit ``ref`` (least squares; float32)."""
    p = pred.astype(np.float64)
    r = ref.astype(np.float64)
    pc = p - p.mean()
    var = float(np.sum(pc * pc))
    a = float(np.sum(pc * (r - r.mean()))) / var if var > 0 else 0.0
    return np.asarray(a * pc + r.mean(), np.float32)


def psnr(pred: np.ndarray, ref: np.ndarray, data_range: float = 1.0) -> float:
    """Peak signal-to-noise ratio (dB)."""
    mse = float(np.mean((pred.astype(np.float64) - ref) ** 2))
    return float(10 * np.log10(data_range**2 / max(mse, 1e-12)))


def nrmse(pred: np.ndarray, ref: np.ndarray) -> float:
    """Root-mean-square error divided by the reference's standard deviation."""
    return float(np.sqrt(np.mean((pred.astype(np.float64) - ref) ** 2)) / max(float(np.std(ref)), 1e-12))


def pcc(pred: np.ndarray, ref: np.ndarray) -> float:
    """Pearson correlation coefficient (insensitive to how dark a sparse image mostly is)."""
    a = pred.astype(np.float64).ravel() - pred.mean()
    b = ref.astype(np.float64).ravel() - ref.mean()
    return float((a @ b) / max(np.sqrt((a @ a) * (b @ b)), 1e-12))


def plane_correlations(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pearson correlation of every plane of ``a`` (n, y, x) with every plane of ``b`` (m, y, x): (n, m)."""

    def unit(x: np.ndarray) -> np.ndarray:
        x = x.reshape(len(x), -1).astype(np.float64)
        x = x - x.mean(axis=1, keepdims=True)
        return np.asarray(x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12))

    return np.asarray(unit(a) @ unit(b).T)


def apparent_depth(virtual: np.ndarray, reference: np.ndarray, reference_z_um: np.ndarray) -> np.ndarray:
    """The depth of the reference plane each virtual plane matches best (Pearson): where its light
    comes from. A network that only sharpens the nearest measured plane shows a staircase."""
    best = np.argmax(plane_correlations(virtual, reference), axis=1)
    return np.asarray(np.asarray(reference_z_um, np.float64)[best])


def ssim(pred: np.ndarray, ref: np.ndarray, data_range: float = 1.0) -> float:
    """Structural similarity (scikit-image, Gaussian window as in Wang et al. 2004)."""
    return float(
        structural_similarity(
            pred.astype(np.float64),
            ref.astype(np.float64),
            data_range=data_range,
            gaussian_weights=True,
            sigma=1.5,
            use_sample_covariance=False,
        )
    )


def plane_scores(pred: np.ndarray, ref: np.ndarray) -> dict[str, np.ndarray]:
    """SSIM, PSNR, NRMSE and PCC of every plane of two normalized (z, y, x) stacks."""
    pairs = list(zip(pred, ref, strict=True))
    return {
        name: np.array([fn(a, b) for a, b in pairs])
        for name, fn in (("ssim", ssim), ("psnr", psnr), ("nrmse", nrmse), ("pcc", pcc))
    }


def matched_scores(pred: np.ndarray, ref_normalized: np.ndarray) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Per-plane scores of ``pred`` (any units) matched to an already normalized reference, and
    the matched stack (score several stacks against one reference without normalizing it again)."""
    matched = match_affine(pred, ref_normalized)
    return plane_scores(matched, ref_normalized), matched


def stack_scores(pred: np.ndarray, ref: np.ndarray) -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray]:
    """Per-plane scores of ``pred`` against ``ref`` (both (z, y, x), any units), and the two
    stacks as scored: the prediction matched to the reference, the reference normalized."""
    refn = normalize_stack(ref)
    scores, matched = matched_scores(pred, refn)
    return scores, matched, refn


def blind_check_scores(virtual: np.ndarray, reference: np.ndarray) -> dict[str, Any]:
    """A blind check's scores as recorded in the container: mean SSIM and PSNR, SSIM per plane."""
    scores, _, _ = stack_scores(virtual, reference)
    return {
        "ssim_mean": float(scores["ssim"].mean()),
        "psnr_mean": float(scores["psnr"].mean()),
        "ssim_per_plane": [round(float(x), 4) for x in scores["ssim"]],
    }


def _gauss_window(size: int = 11, sigma: float = 1.5, device: torch.device | None = None) -> torch.Tensor:
    x = torch.arange(size, dtype=torch.float32, device=device) - size // 2
    g = torch.exp(-(x**2) / (2 * sigma**2))
    g = g / g.sum()
    return (g[:, None] * g[None, :])[None, None]


def ssim_torch(a: torch.Tensor, b: torch.Tensor, data_range: float = 1.0) -> torch.Tensor:
    """Mean SSIM of (B, 1, H, W) batches; differentiable, for the training loss."""
    w = _gauss_window(device=a.device).to(a.dtype)
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    mu_a, mu_b = F.conv2d(a, w), F.conv2d(b, w)
    saa = F.conv2d(a * a, w) - mu_a**2
    sbb = F.conv2d(b * b, w) - mu_b**2
    sab = F.conv2d(a * b, w) - mu_a * mu_b
    s = ((2 * mu_a * mu_b + c1) * (2 * sab + c2)) / ((mu_a**2 + mu_b**2 + c1) * (saa + sbb + c2))
    return s.mean()


def pcc_torch(a: torch.Tensor, b: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """Mean Pearson correlation of the (B, 1, H, W) images of two batches; differentiable."""
    a = a - a.mean(dim=(2, 3), keepdim=True)
    b = b - b.mean(dim=(2, 3), keepdim=True)
    num = (a * b).sum(dim=(2, 3))
    return (num / (a.pow(2).sum(dim=(2, 3)).sqrt() * b.pow(2).sum(dim=(2, 3)).sqrt() + eps)).mean()


def fwhm_1d(profile: np.ndarray, spacing: float = 1.0) -> float:
    """Full width at half maximum of a single-peaked profile (linear interpolation), above its minimum."""
    p = np.asarray(profile, np.float64)
    p = p - p.min()
    i = int(np.argmax(p))
    half = p[i] / 2
    if half <= 0:
        return float("nan")
    left = i
    while left > 0 and p[left] > half:
        left -= 1
    right = i
    while right < len(p) - 1 and p[right] > half:
        right += 1
    if p[left] > half or p[right] > half:
        return float("nan")  # the peak is not contained in the profile
    xl = left + (half - p[left]) / (p[left + 1] - p[left])
    xr = right - 1 + (p[right - 1] - half) / (p[right - 1] - p[right])
    return float((xr - xl) * spacing)
