"""Image formation: a phantom seen through the optics at a focal position.

The specimen is rasterised into object slices (spacing ``dz_um``) on the camera's pixel
grid for one field of view. A frame focused at ``z_f`` is::

    I(x, y) = Σ_s  slice_s(x, y) ⊛ PSF(z_s - z_f)      (circular convolution)

computed as ``irfft2(Σ_s rfft2(slice_s) · OTF(z_s - z_f))``. Slice spectra of the static
parts are computed once per field of view; those of time-varying emitters once per time
bucket (:data:`TIME_BUCKET_S`). The lateral boundary is periodic (light leaving one edge
re-enters at the other), which matters only for structures within a blur radius of the
edge. Results are expected photons per millisecond at the reference light power.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import scipy.fft as sfft
from scipy import ndimage

from .optics import Modality, Optics, OTFGrid, RadialOTF
from .phantoms import Emitters, Phantom, Sheet, Tube

#: activity of dynamic specimens is evaluated at times rounded to this step (s)
TIME_BUCKET_S = 0.1
_WORKERS = -1


@dataclass(frozen=True)
class FieldOfView:
    """Where the camera looks: stage XY (µm), frame shape and pixel size (µm)."""

    center_xy_um: tuple[float, float]
    shape: tuple[int, int]
    pixel_size_um: float

    def pixel_centers(self) -> tuple[np.ndarray, np.ndarray]:
        """x (W,) and y (H,) sample coordinates of the pixel centres in µm."""
        h, w = self.shape
        p = self.pixel_size_um
        x = self.center_xy_um[0] + (np.arange(w) - (w - 1) / 2) * p
        y = self.center_xy_um[1] + (np.arange(h) - (h - 1) / 2) * p
        return x, y


class _FieldCache:
    """Object slices of one phantom in one field of view (static spectra + emitter maps)."""

    def __init__(self, phantom: Phantom, fov: FieldOfView, z: np.ndarray):
        self.fov = fov
        self.z = z
        h, w = fov.shape
        static = np.zeros((len(z), h, w), np.float32)
        if phantom.tube is not None:
            _add_tube(static, phantom.tube, fov, z)
        if phantom.sheet is not None:
            _add_sheet(static, phantom.sheet, fov, z)
        em = phantom.emitters
        rows, cols, vals = _emitter_triplets(em, fov, z)
        dynamic = em.activity is not None
        if not dynamic:
            np.add.at(static.reshape(-1), rows, (vals * em.brightness[cols]).astype(np.float32))
        self.occupied = np.flatnonzero(static.reshape(len(z), -1).any(axis=1))
        self._dyn: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None
        if dynamic:
            self.occupied = np.union1d(self.occupied, np.unique(rows // (h * w)))
            # re-index rows into the stack of occupied slices
            pos = np.searchsorted(self.occupied, rows // (h * w))
            self._dyn = (pos * h * w + rows % (h * w), cols, vals.astype(np.float32))
            self._buffer = np.zeros((len(self.occupied), h, w), np.float32)
        self.static_spectra = sfft.rfft2(static[self.occupied], workers=_WORKERS)
        self._bucket: float | None = None
        self._spectra = self.static_spectra

    def spectra(self, em: Emitters, t_s: float) -> np.ndarray:
        """Slice spectra (occupied slices only) at time ``t_s``."""
        if self._dyn is None:
            return np.asarray(self.static_spectra)
        bucket = round(t_s / TIME_BUCKET_S) * TIME_BUCKET_S
        if bucket != self._bucket:
            rows, cols, vals = self._dyn
            flat = self._buffer.reshape(-1)
            flat[rows] = 0
            np.add.at(flat, rows, vals * em.brightness_at(bucket)[cols].astype(np.float32))
            self._spectra = self.static_spectra + sfft.rfft2(self._buffer, workers=_WORKERS)
            self._bucket = bucket
        return np.asarray(self._spectra)


class Renderer:
    """Renders noise-free images of one phantom through one :class:`Optics`."""

    def __init__(self, phantom: Phantom, optics: Optics, dz_um: float = 0.5):
        self.phantom = phantom
        self.optics = optics
        self.dz_um = dz_um
        lo, hi = phantom.extent_z_um
        self.z = np.arange(math.floor(lo / dz_um), math.ceil(hi / dz_um) + 1) * dz_um
        self._radial = RadialOTF(optics)
        self._grids: dict[tuple[tuple[int, int], float], OTFGrid] = {}
        self._fields: dict[FieldOfView, _FieldCache] = {}

    def _field(self, fov: FieldOfView) -> _FieldCache:
        if (hit := self._fields.get(fov)) is None:
            if len(self._fields) >= 4:  # a few stage positions; oldest goes first
                self._fields.pop(next(iter(self._fields)))
            hit = self._fields[fov] = _FieldCache(self.phantom, fov, self.z)
        return hit

    def _grid(self, fov: FieldOfView) -> OTFGrid:
        key = (fov.shape, fov.pixel_size_um)
        if (hit := self._grids.get(key)) is None:
            hit = self._grids[key] = OTFGrid(self._radial, fov.shape, fov.pixel_size_um)
        return hit

    def render(self, z_focus_um: float, modality: Modality, fov: FieldOfView, t_s: float = 0.0) -> np.ndarray:
        """Expected photons/ms per pixel (float32, ``fov.shape``) focused at ``z_focus_um``."""
        field = self._field(fov)
        grid = self._grid(fov)
        spectra = field.spectra(self.phantom.emitters, t_s)
        acc = np.zeros(spectra.shape[1:], np.complex64)
        for spec, zi in zip(spectra, field.occupied, strict=True):
            acc += spec * grid.otf2d(float(self.z[zi]) - z_focus_um, modality)
        img = sfft.irfft2(acc, s=fov.shape, workers=_WORKERS)
        return np.asarray(np.maximum(img, 0, out=img), dtype=np.float32)


def _axial_weights(z: np.ndarray, z0: float, sigma: float) -> tuple[np.ndarray, np.ndarray]:
    """Slice indices and weights (sum 1) of a Gaussian (or point) at depth z0."""
    dz = z[1] - z[0]
    if sigma < dz / 2:  # point: linear interpolation between two slices
        pos = (z0 - z[0]) / dz
        i = int(np.floor(pos))
        f = pos - i
        idx = np.array([i, i + 1])
        wts = np.array([1 - f, f])
    else:
        idx = np.arange(
            int(np.floor((z0 - 3 * sigma - z[0]) / dz)), int(np.ceil((z0 + 3 * sigma - z[0]) / dz)) + 1
        )
        wts = np.exp(-0.5 * ((z[0] + idx * dz - z0) / sigma) ** 2)
        wts /= wts.sum()
    keep = (idx >= 0) & (idx < len(z))
    return idx[keep], wts[keep]


def _emitter_triplets(
    em: Emitters, fov: FieldOfView, z: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(flat slice-pixel index, emitter index, weight) of every emitter's footprint."""
    h, w = fov.shape
    p = fov.pixel_size_um
    x0 = fov.center_xy_um[0] - (w - 1) / 2 * p
    y0 = fov.center_xy_um[1] - (h - 1) / 2 * p
    rows, cols, vals = [], [], []
    for n, ((x, y, zz), r) in enumerate(zip(em.xyz, em.radius_um, strict=True)):
        sigma = r / 2
        px, py = (x - x0) / p, (y - y0) / p
        s_px = sigma / p
        if s_px < 0.5:  # sub-resolution: bilinear splat
            ix, iy = int(np.floor(px)), int(np.floor(py))
            fx, fy = px - ix, py - iy
            xs = np.array([ix, ix + 1, ix, ix + 1])
            ys = np.array([iy, iy, iy + 1, iy + 1])
            lw = np.array([(1 - fx) * (1 - fy), fx * (1 - fy), (1 - fx) * fy, fx * fy])
        else:
            rad = int(np.ceil(3 * s_px))
            gx = np.arange(int(np.round(px)) - rad, int(np.round(px)) + rad + 1)
            gy = np.arange(int(np.round(py)) - rad, int(np.round(py)) + rad + 1)
            xs, ys = (a.ravel() for a in np.meshgrid(gx, gy))
            lw = np.exp(-0.5 * (((xs - px) ** 2 + (ys - py) ** 2) / s_px**2))
            lw /= lw.sum()
        inside = (xs >= 0) & (xs < w) & (ys >= 0) & (ys < h)
        if not inside.any():
            continue
        xs, ys, lw = xs[inside], ys[inside], lw[inside]
        zi, zw = _axial_weights(z, zz, sigma)
        for i, wz in zip(zi, zw, strict=True):
            rows.append(i * h * w + ys * w + xs)
            cols.append(np.full(len(xs), n))
            vals.append(lw * wz)
    if not rows:
        return np.empty(0, np.int64), np.empty(0, np.int64), np.empty(0)
    return np.concatenate(rows), np.concatenate(cols), np.concatenate(vals)


def _add_tube(out: np.ndarray, tube: Tube, fov: FieldOfView, z: np.ndarray) -> None:
    """Add a uniformly labelled tube (photons/ms per voxel) to the slices ``out``."""
    h, w = fov.shape
    p = fov.pixel_size_um
    pad = int(np.ceil(tube.radius_um / p)) + 2
    x, y = fov.pixel_centers()
    xp = x[0] + (np.arange(-pad, w + pad)) * p
    yp = y[0] + (np.arange(-pad, h + pad)) * p
    mask = np.ones((h + 2 * pad, w + 2 * pad), bool)
    # draw the centreline densely so the distance transform sees a continuous curve
    cl = tube.centerline_xy
    seg = np.linspace(0, 1, 8)[:, None, None]
    dense = (cl[:-1][None] * (1 - seg) + cl[1:][None] * seg).reshape(-1, 2)
    ix = np.round((dense[:, 0] - xp[0]) / p).astype(int)
    iy = np.round((dense[:, 1] - yp[0]) / p).astype(int)
    ok = (ix >= 0) & (ix < mask.shape[1]) & (iy >= 0) & (iy < mask.shape[0])
    if not ok.any():
        return
    mask[iy[ok], ix[ok]] = False
    dist = ndimage.distance_transform_edt(mask)[pad:-pad, pad:-pad] * p
    dz = z[1] - z[0]
    voxel = tube.density * p * p * dz
    for i, zz in enumerate(z):
        out[i] += (dist**2 + (zz - tube.z0_um) ** 2 < tube.radius_um**2) * np.float32(voxel)


def _sheet_texture(sheet: Sheet, xx: np.ndarray, yy: np.ndarray) -> np.ndarray:
    """Deterministic speckle texture in sample coordinates (independent of the FOV)."""
    rng = np.random.default_rng(sheet.texture_seed + 7919)
    k = rng.normal(size=(24, 2))
    k *= (2 * np.pi / sheet.feature_um) / np.linalg.norm(k, axis=1, keepdims=True)
    k *= rng.uniform(0.3, 1.0, size=(24, 1))
    phase = rng.uniform(0, 2 * np.pi, 24)
    field = sum(np.cos(kx * xx + ky * yy + ph) for (kx, ky), ph in zip(k, phase, strict=True))
    field = np.maximum(field / np.sqrt(12), 0)
    return np.asarray(field**2, dtype=np.float32)


def _add_sheet(out: np.ndarray, sheet: Sheet, fov: FieldOfView, z: np.ndarray) -> None:
    """Deposit a thin sheet into the two slices around its height at every pixel."""
    x, y = fov.pixel_centers()
    xx, yy = np.meshgrid(x, y)
    height = sheet.height(xx, yy)
    value = sheet.density * fov.pixel_size_um**2 * _sheet_texture(sheet, xx, yy)
    dz = z[1] - z[0]
    pos = np.asarray((height - z[0]) / dz)
    i0 = np.floor(pos).astype(int)
    f = (pos - i0).astype(np.float32)
    grid = np.indices(height.shape)
    rows, cols = grid[0], grid[1]
    for idx, wt in ((i0, 1 - f), (i0 + 1, f)):
        ok = (idx >= 0) & (idx < len(z))
        np.add.at(out, (idx[ok], rows[ok], cols[ok]), (value * wt)[ok])
