"""Patch discriminator for adversarial Deep-Z training (PatchGAN-style)."""

from __future__ import annotations

import torch
from torch import nn


class PatchDiscriminator(nn.Module):
    """Scores overlapping patches of (condition, image) pairs as real or synthesized.

    Input channels: the generator's input (planes and DPMs) plus the candidate image.
    """

    def __init__(self, in_channels: int, base_channels: int = 16, n_layers: int = 3):
        super().__init__()
        layers: list[nn.Module] = [nn.Conv2d(in_channels, base_channels, 4, 2, 1), nn.LeakyReLU(0.2, True)]
        c = base_channels
        for _ in range(1, n_layers):
            layers += [nn.Conv2d(c, 2 * c, 4, 2, 1), nn.GroupNorm(4, 2 * c), nn.LeakyReLU(0.2, True)]
            c *= 2
        layers += [nn.Conv2d(c, 1, 3, 1, 1)]
        self.net = nn.Sequential(*layers)

    def forward(self, condition: torch.Tensor, image: torch.Tensor) -> torch.Tensor:
        """Per patch, how real ``image`` looks as the target of ``condition`` (the input planes and DPMs)."""
        out: torch.Tensor = self.net(torch.cat([condition, image], dim=1))
        return out
