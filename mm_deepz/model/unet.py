"""The Deep-Z generator: a U-Net fed with measured planes and their DPMs."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

#: pixels of reflection added around every frame or tile: the network then sees the frame's outermost
#: pixels with neighbours on all sides, as it saw every pixel in training (without it the
#: outermost row came out noisy, ~1 ADU rms against ~0.05 inside)
MARGIN = 4


@dataclass(frozen=True)
class UNetConfig:
    """Architecture: input planes, width of the first level, number of down-samplings and the
    widest level (``None``: doubling at every level).

    Capping the width lets a deeper network gather light from a wider blur disk (the
    receptive field doubles with each level) at a small cost in parameters.
    """

    n_planes: int = 1
    base_channels: int = 16
    depth: int = 3
    max_channels: int | None = None

    def __post_init__(self) -> None:
        if self.n_planes not in (1, 2):
            raise ValueError(f"Deep-Z takes 1 or 2 input planes, not {self.n_planes}.")
        if self.base_channels < 4 or self.depth < 1:
            raise ValueError("base_channels must be >= 4 and depth >= 1.")
        if self.max_channels is not None and self.max_channels < self.base_channels:
            raise ValueError(
                f"max_channels ({self.max_channels}) must be >= base_channels ({self.base_channels})."
            )

    @property
    def widths(self) -> list[int]:
        """Channels at each level, the bottleneck last."""
        cap = self.max_channels or self.base_channels * 2**self.depth
        return [min(self.base_channels * 2**i, cap) for i in range(self.depth + 1)]

    @property
    def multiple(self) -> int:
        """Frame sizes must be multiples of this (padding is added otherwise)."""
        return int(2**self.depth)


def _block(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, padding=1, padding_mode="reflect"),
        nn.LeakyReLU(0.1, inplace=True),
        nn.Conv2d(cout, cout, 3, padding=1, padding_mode="reflect"),
        nn.LeakyReLU(0.1, inplace=True),
    )


class DeepZUNet(nn.Module):
    """U-Net: channels are (plane_1, dpm_1[, plane_2, dpm_2]); output is one plane.

    Convolutions pad by reflection: with zero padding, networks trained on patches learn to
    lean on the patch border and behave differently on whole frames. The DPMs are also fed,
    average-pooled, to every level of the encoder, the bottleneck and the decoder: the
    propagation distance then conditions the deep features directly instead of only the first
    convolution. The output is a residual on the mean of the input planes,
    which keeps the identity (zero propagation, same modality) easy to learn.
    """

    def __init__(self, config: UNetConfig):
        super().__init__()
        self.config = config
        widths = config.widths
        n = config.n_planes
        self.down = nn.ModuleList()
        cin = 2 * n
        for i, w in enumerate(widths[:-1]):
            self.down.append(_block(cin + (n if i else 0), w))
            cin = w
        self.bottom = _block(widths[-2] + n, widths[-1])
        self.up = nn.ModuleList()
        self.merge = nn.ModuleList()
        for w_hi, w_lo in zip(reversed(widths[1:]), reversed(widths[:-1]), strict=True):
            self.up.append(nn.ConvTranspose2d(w_hi, w_lo, 2, stride=2))
            self.merge.append(_block(2 * w_lo + n, w_lo))
        self.head = nn.Conv2d(widths[0], 1, 1)
        self.pool = nn.AvgPool2d(2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The image at each DPM's surface, from ``x``: measured planes interleaved with their DPMs."""
        planes, dpm = x[:, 0::2], x[:, 1::2]
        dpms = [dpm]
        for _ in range(self.config.depth):
            dpms.append(self.pool(dpms[-1]))
        skips = []
        h = x
        for i, block in enumerate(self.down):
            h = block(h if i == 0 else torch.cat([h, dpms[i]], dim=1))
            skips.append(h)
            h = self.pool(h)
        h = self.bottom(torch.cat([h, dpms[-1]], dim=1))
        level = self.config.depth - 1
        for up, merge, skip in zip(self.up, self.merge, reversed(skips), strict=True):
            h = merge(torch.cat([up(h), skip, dpms[level]], dim=1))
            level -= 1
        out: torch.Tensor = self.head(h) + planes.mean(dim=1, keepdim=True)
        return out


class DeepZPackaged(nn.Module):
    """The generator as a bioimage.io package runs it: planes and DPMs as two tensors.

    ``planes``: the measured planes, normalized, (B, n, H, W); ``dpm_um``: each plane's digital
    propagation matrix in µm, (B, n, H, W) (target surface minus the plane's depth, per pixel).
    Frames are reflect-padded by :data:`MARGIN` as mm-deepz's engine pads them (sizes: multiples of
    ``2**depth``), so the package makes mm-deepz's image to the border. This file is the package's
    architecture source (``mm_deepz.zoo``): it imports nothing but torch.
    """

    def __init__(
        self, n_planes: int, base_channels: int, depth: int, max_channels: int | None, z_range_um: float
    ):
        super().__init__()
        self.unet = DeepZUNet(UNetConfig(n_planes, base_channels, depth, max_channels))
        self.z_range_um = float(z_range_um)

    def forward(self, planes: torch.Tensor, dpm_um: torch.Tensor) -> torch.Tensor:
        """The image on each DPM's surface, (B, 1, H, W), in the planes' normalized units."""
        x = torch.stack([planes, dpm_um / self.z_range_um], dim=2).flatten(1, 2)
        m, extra = MARGIN, (-2 * MARGIN) % self.unet.config.multiple  # constants: traceable at any size
        out: torch.Tensor = self.unet(F.pad(x, (m, m + extra, m, m + extra), mode="reflect"))
        return out[..., m : -(m + extra), m : -(m + extra)]
