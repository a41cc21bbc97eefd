"""Tiled application of a fully convolutional network with overlapping, blended tiles.

Large frames (e.g. 2048x2048) are cut into ``tile``-sized tiles that overlap by
``overlap`` pixels; each output pixel is the weighted mean of the tiles covering it, with
weights that ramp linearly to (almost) zero across the overlap, so seams are invisible
and memory is bounded by one tile's encoding and one batch of its virtual planes.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F

from ..model.unet import MARGIN


def tile_starts(length: int, tile: int, overlap: int) -> list[int]:
    """Start offsets of tiles covering ``length`` with at least ``overlap`` between them."""
    if length <= tile:
        return [0]
    step = tile - overlap
    starts = list(range(0, length - tile, step))
    starts.append(length - tile)
    return starts


def _ramp(n: int, overlap: int, device: torch.device) -> torch.Tensor:
    w = torch.ones(n, device=device)
    if overlap > 0:
        r = (torch.arange(overlap, device=device, dtype=torch.float32) + 0.5) / overlap
        w[:overlap] = r
        w[-overlap:] = torch.minimum(w[-overlap:], r.flip(0))
    return w


def pad_to_multiple(
    x: torch.Tensor, multiple: int, margin: int = MARGIN, minimum: int = 0
) -> tuple[torch.Tensor, tuple[slice, slice]]:
    """Reflect-pad H and W by ``margin``, up to ``minimum`` and up to a multiple; returns the padded
    tensor and the slices of the original pixels in it."""
    h, w = x.shape[-2:]
    m = min(margin, h - 1, w - 1)
    ph, pw = (max(minimum - n - 2 * m, 0) for n in (h, w))
    ph, pw = ph + (-(h + 2 * m + ph)) % multiple, pw + (-(w + 2 * m + pw)) % multiple
    if m or ph or pw:
        mode = "reflect" if min(h, w) > m + max(ph, pw) else "replicate"
        x = F.pad(x, (m, m + pw, m, m + ph), mode=mode)
    return x, (slice(m, m + h), slice(m, m + w))


def run_tiled(
    encode: Callable[[torch.Tensor], Any],
    decode: Callable[[Any, torch.Tensor], torch.Tensor],
    planes: torch.Tensor,
    dpm: torch.Tensor,
    tile: int,
    overlap: int,
    multiple: int,
    batch: int,
    minimum: int = 0,
) -> torch.Tensor:
    """The Z images (Z, H, W) of the measured ``planes`` (1, n, H, W) on the DPMs ``dpm`` (Z, n, H, W), or
    uniform ones (Z, n, 1, 1), tile by tile and blended: each tile's planes are encoded once, then decoded
    ``batch`` DPMs at a time (``decode(encoded, (1, b, n, h, w)) -> (1, b, h, w)``); tiles padded to
    multiples of ``multiple`` and to at least ``minimum`` px a side."""
    z = dpm.shape[0]
    h, w = planes.shape[-2:]
    uniform = dpm.shape[-2:] == (1, 1)
    if (h > tile or w > tile) and tile % multiple:
        raise ValueError(f"Tile size {tile} must be a multiple of {multiple}.")
    out = torch.zeros((z, h, w), device=dpm.device, dtype=torch.float32)
    norm = torch.zeros((h, w), device=dpm.device, dtype=torch.float32)
    for y0 in tile_starts(h, tile, overlap):
        for x0 in tile_starts(w, tile, overlap):
            window = (slice(y0, y0 + tile), slice(x0, x0 + tile))
            padded, (ys, xs) = pad_to_multiple(planes[..., window[0], window[1]], multiple, minimum=minimum)
            encoded = encode(padded)
            th, tw = padded[..., ys, xs].shape[-2:]
            wy = _ramp(th, overlap if th == tile and h > tile else 0, dpm.device)
            wx = _ramp(tw, overlap if tw == tile and w > tile else 0, dpm.device)
            weight = wy[:, None] * wx[None, :]
            for b0 in range(0, z, batch):
                d = dpm[b0 : b0 + batch]
                if not uniform:
                    d, _ = pad_to_multiple(d[..., window[0], window[1]], multiple, minimum=minimum)
                pred = decode(encoded, d[None])[0, :, ys, xs].float()
                out[b0 : b0 + batch, y0 : y0 + th, x0 : x0 + tw] += pred * weight
            norm[y0 : y0 + th, x0 : x0 + tw] += weight
    return out / norm
