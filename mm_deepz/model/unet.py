"""The Deep-Z generators: U-Nets fed with measured planes and their DPMs.

Two architectures, both torch-only (this file is also a bioimage.io package's architecture source):

- :class:`DeepZUNet`, the classic Deep-Z generator: planes and DPMs enter together, so every
  virtual plane costs a whole network pass;
- :class:`DeepZEncodeOnce`: an encoder sees the measured planes once, a light decoder conditioned on
  the DPM at every level makes each virtual plane from that encoding (docs/models.md, "Encode once").

Both offer ``encode(planes)`` and ``decode(encoded, dpm)`` (the engine and training use only these)
and ``forward(x)`` on planes interleaved with their DPMs (the discriminator's, tiling's and the
package's view).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal, cast

import torch
import torch.nn.functional as F
from torch import nn

#: pixels of reflection added around every frame or tile: the network then sees the frame's outermost
#: pixels with neighbours on all sides, as it saw every pixel in training (without it the
#: outermost row came out noisy, ~1 ADU rms against ~0.05 inside)
MARGIN = 4


class _Levels:
    """The encoder levels both generators' configurations share: input planes, width of the first
    level, number of down-samplings and the widest level (``None``: doubling at every level)."""

    n_planes: int
    base_channels: int
    depth: int
    max_channels: int | None

    def _check_levels(self) -> None:
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
        """Channels at each (encoder) level, the bottleneck last."""
        cap = self.max_channels or self.base_channels * 2**self.depth
        return [min(self.base_channels * 2**i, cap) for i in range(self.depth + 1)]

    @property
    def multiple(self) -> int:
        """Frame sizes must be multiples of this (padding is added otherwise)."""
        return int(2**self.depth)

    @property
    def min_size(self) -> int:
        """The smallest frame side the network takes (smaller frames are padded up to it)."""
        return self.multiple


@dataclass(frozen=True)
class UNetConfig(_Levels):
    """Architecture: input planes, width of the first level, number of down-samplings and the
    widest level (``None``: doubling at every level).

    Capping the width lets a deeper network gather light from a wider blur disk (the
    receptive field doubles with each level) at a small cost in parameters.
    """

    n_planes: int = 1
    base_channels: int = 16
    depth: int = 3
    max_channels: int | None = None
    kind: Literal["unet"] = "unet"

    def __post_init__(self) -> None:
        self._check_levels()

    def describe(self) -> str:
        """The architecture in a few words (model cards, packages)."""
        return f"U-Net (depth {self.depth}, width {self.base_channels}): one whole pass per virtual plane"


def interleave(planes: torch.Tensor, dpm: torch.Tensor) -> torch.Tensor:
    """Planes (B, n, H, W) and K DPMs each, (B, K, n, H, W) or uniform (B, K, n, 1, 1) -> (B*K, 2n, H, W):
    every plane followed by its DPM, the classic generator's (and the discriminator's) input."""
    b, k, n = dpm.shape[:3]
    h, w = planes.shape[-2:]
    shape = (b, k, n, h, w)
    return torch.stack([planes[:, None].expand(shape), dpm.expand(shape)], dim=3).reshape(b * k, 2 * n, h, w)


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

    def encode(self, planes: torch.Tensor) -> torch.Tensor:
        """Nothing to encode once: planes and DPMs enter the network together."""
        return planes

    def decode(self, encoded: Any, dpm: torch.Tensor) -> torch.Tensor:
        """(B, K, H, W): the image on each of the K DPMs (B, K, n, H, W; uniform ones may be (B, K, n, 1,
        1)), a whole pass per DPM."""
        b, k = dpm.shape[:2]
        out: torch.Tensor = self(interleave(encoded, dpm))
        return out.view(b, k, *encoded.shape[-2:])


@dataclass(frozen=True)
class EncodeOnceConfig(_Levels):
    """The encode-once generator: the encoder's levels (as :class:`UNetConfig`'s), the decoder's width
    at full resolution (doubling per level up to ``decoder_max``) and the bottleneck's context: the
    dilations of its residual context blocks (each widens the view by its dilation times 2**depth px
    per side) and, with ``attention_heads`` > 0, a self-attention block after them (every bottleneck
    pixel sees the whole frame or tile).
    """

    n_planes: int = 1
    base_channels: int = 16
    depth: int = 4
    max_channels: int | None = 64
    decoder_channels: int = 8
    decoder_max: int = 32
    dilations: tuple[int, ...] = (2, 4)
    attention_heads: int = 0
    kind: Literal["encode-once"] = "encode-once"

    def __post_init__(self) -> None:
        self._check_levels()
        if not 4 <= self.decoder_channels <= self.decoder_max:
            raise ValueError(
                f"decoder_channels must be >= 4 and <= decoder_max, got {self.decoder_channels} and "
                f"{self.decoder_max}."
            )
        if any(d < 1 for d in self.dilations):
            raise ValueError(f"dilations must be >= 1, got {list(self.dilations)}.")
        width = self.widths[-1]
        if self.attention_heads < 0 or (self.attention_heads and width % self.attention_heads):
            raise ValueError(
                f"attention_heads must be 0 (no attention) or divide the bottleneck's {width} channels, "
                f"got {self.attention_heads}."
            )

    @property
    def min_size(self) -> int:
        """The smallest frame side: a bottleneck wider than the largest dilation (its reflected padding)."""
        return self.multiple * (max(self.dilations, default=0) + 1)

    @property
    def decoder_widths(self) -> list[int]:
        """The decoder's channels at each level."""
        return [min(self.decoder_channels * 2**i, self.decoder_max) for i in range(self.depth + 1)]

    def describe(self) -> str:
        """The architecture in a few words (model cards, packages)."""
        context = [f"dilations {','.join(map(str, self.dilations))}"] if self.dilations else []
        context += [f"attention, {self.attention_heads} heads"] if self.attention_heads else []
        return (
            f"encode-once (encoder depth {self.depth}, width {self.base_channels}; bottleneck context: "
            f"{'; '.join(context) or 'none'}; decoder width {self.decoder_channels}): the planes encoded "
            "once per stack, each virtual plane decoded"
        )


class _Context(nn.Module):
    """A residual pair of dilated convolutions: a wider view at the bottleneck for a few parameters."""

    def __init__(self, width: int, dilation: int):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(width, width, 3, padding=dilation, dilation=dilation, padding_mode="reflect"),
            nn.LeakyReLU(0.1, inplace=True),
            nn.Conv2d(width, width, 3, padding=dilation, dilation=dilation, padding_mode="reflect"),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = F.leaky_relu(x + self.body(x), 0.1)
        return out


class _Attention(nn.Module):
    """Self-attention over the bottleneck's pixels (a pre-norm transformer block): every pixel sees the
    whole frame or tile. Positions enter through a depthwise convolution before it (a conditional
    position encoding, valid at any frame size); the block starts as the identity (the position
    encoding's, the attention's and the MLP's last layers at zero), so it can be added to a trained
    encoder without changing what it does."""

    def __init__(self, width: int, heads: int):
        super().__init__()
        self.position = nn.Conv2d(width, width, 3, padding=1, groups=width, padding_mode="reflect")
        self.norm_attention = nn.LayerNorm(width)
        self.attention = nn.MultiheadAttention(width, heads, batch_first=True)
        self.norm_mlp = nn.LayerNorm(width)
        last = nn.Linear(2 * width, width)
        self.mlp = nn.Sequential(nn.Linear(width, 2 * width), nn.GELU(), last)
        for p in (*self.position.parameters(), *self.attention.out_proj.parameters(), *last.parameters()):
            nn.init.zeros_(p)

    def attend(self, tokens: torch.Tensor) -> torch.Tensor:
        """``self.attention(tokens, tokens, tokens)`` through ``scaled_dot_product_attention``, which
        takes a memory-efficient kernel on the CPU as on a GPU: the module's own path built the whole
        attention matrix on the CPU (a 2048² frame's 16384 bottleneck pixels: +4.6 GB, 15 s)."""
        mha = self.attention
        b, n, c = tokens.shape
        qkv = F.linear(tokens, mha.in_proj_weight, mha.in_proj_bias).view(b, n, 3, mha.num_heads, -1)
        q, k, v = qkv.permute(2, 0, 3, 1, 4)  # each (B, heads, n, C / heads)
        attended = F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(b, n, c)
        out: torch.Tensor = mha.out_proj(attended)
        return out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        tokens = (x + self.position(x)).flatten(2).transpose(1, 2)  # (B, h*w, C)
        tokens = tokens + self.attend(self.norm_attention(tokens))
        tokens = tokens + self.mlp(self.norm_mlp(tokens))
        out: torch.Tensor = tokens.transpose(1, 2).reshape(b, c, h, w)
        return out


class _Film(nn.Module):
    """Per-pixel scale and shift of a level's features from that level's DPMs (tilted surfaces keep
    their per-pixel distances)."""

    def __init__(self, n_planes: int, width: int, hidden: int = 16):
        super().__init__()
        last = nn.Conv2d(hidden, 2 * width, 1)
        for p in last.parameters():  # starts as the identity: decoding begins from the encoding
            nn.init.zeros_(p)
        self.net = nn.Sequential(nn.Conv2d(n_planes, hidden, 1), nn.LeakyReLU(0.1, inplace=True), last)

    def affine(self, dpm: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The per-channel factor (1 + scale) and shift of each of N DPMs (N, n, h, w): (N, C, h, w) each."""
        scale, shift = self.net(dpm).chunk(2, dim=1)
        return 1 + scale, shift

    def forward(self, features: torch.Tensor, dpm: torch.Tensor, k: int) -> torch.Tensor:
        """``features`` (B, C, h, w) under each of the K DPMs (B*K, n, h, w) -> (B*K, C, h, w)."""
        factor, shift = self.affine(dpm)
        out: torch.Tensor = features[:, None] * factor.unflatten(0, (-1, k)) + shift.unflatten(0, (-1, k))
        return out.flatten(0, 1)


def _merge_uniform(
    merge: nn.Sequential, up: torch.Tensor, features: torch.Tensor, film: _Film, dpm: torch.Tensor
) -> torch.Tensor:
    """``merge(cat([up, film(features, dpm, k)]))`` for uniform DPMs (B*K, n, 1, 1), without the
    concatenation or the scaled and shifted map: a per-channel affine map commutes with reflection
    padding and a convolution is linear, so each DPM's factor folds into the first convolution's weights
    on the features' half (one grouped convolution of each sample's features for its K DPMs) and its
    shift into a constant. The same image to float precision; a decoder pass 30 % faster on the CPU."""
    first = cast(nn.Conv2d, merge[0])
    py, px = cast(tuple[int, int], first.padding)

    def pad(x: torch.Tensor) -> torch.Tensor:  # as the convolution pads (reflection)
        return F.pad(x, (px, px, py, py), mode=first.padding_mode)

    w_up, w_feat = first.weight.split([up.shape[1], features.shape[1]], dim=1)
    factor, shift = (a.flatten(1) for a in film.affine(dpm))  # (B*K, C)
    b, c = features.shape[:2]
    out: torch.Tensor = F.conv2d(pad(up), w_up, first.bias)
    weights = (w_feat[None] * factor[:, None, :, None, None]).flatten(0, 1)  # (B*K*C_out, C, 3, 3)
    padded = pad(features)
    folded = F.conv2d(padded.reshape(1, b * c, *padded.shape[-2:]), weights, groups=b)
    out = out + folded.view(len(dpm), -1, *out.shape[-2:]) + (shift @ w_feat.sum((2, 3)).T)[..., None, None]
    for layer in list(merge)[1:]:
        out = layer(out)
    return out


class DeepZEncodeOnce(nn.Module):
    """Encode the measured planes once, decode every virtual plane from that encoding.

    The encoder (the U-Net's down path on the planes alone, with dilated context blocks and optionally
    self-attention at its bottleneck) runs once per measured frame and leaves one projected feature map
    per level. The decoder, much narrower, starts from the bottleneck's map and climbs the levels; at
    each it scales and shifts the level's map per pixel by a function of that level's DPM
    (:class:`_Film`, average-pooled like the U-Net's DPMs), so tilted and curved surfaces still work.
    A stack of Z planes costs one encoder pass and Z decoder passes; in training one encoding
    supervises several target planes. The output is a residual on the mean of the input planes, as in
    :class:`DeepZUNet`.
    """

    def __init__(self, config: EncodeOnceConfig):
        super().__init__()
        self.config = config
        n, widths, dec = config.n_planes, config.widths, config.decoder_widths
        self.down = nn.ModuleList()
        cin = n
        for w in widths[:-1]:
            self.down.append(_block(cin, w))
            cin = w
        self.bottom = nn.Sequential(
            _block(widths[-2], widths[-1]),
            *(_Context(widths[-1], d) for d in config.dilations),
            *([_Attention(widths[-1], config.attention_heads)] if config.attention_heads else []),
        )
        self.project = nn.ModuleList(nn.Conv2d(w, v, 1) for w, v in zip(widths, dec, strict=True))
        self.film = nn.ModuleList(_Film(n, v) for v in dec)
        self.start = _block(dec[-1], dec[-1])
        self.up = nn.ModuleList()
        self.merge = nn.ModuleList()
        for v_hi, v_lo in zip(reversed(dec[1:]), reversed(dec[:-1]), strict=True):
            self.up.append(nn.ConvTranspose2d(v_hi, v_lo, 2, stride=2))
            self.merge.append(_block(2 * v_lo, v_lo))
        self.head = nn.Conv2d(dec[0], 1, 1)
        self.pool = nn.AvgPool2d(2)

    def encode(self, planes: torch.Tensor) -> list[torch.Tensor]:
        """Planes (B, n, H, W) -> the decoder's feature map at each level (finest first) and, last, the
        planes' mean (the residual's base)."""
        maps = []
        h = planes
        for block in self.down:
            h = block(h)
            maps.append(h)
            h = self.pool(h)
        maps.append(self.bottom(h))
        return [p(m) for p, m in zip(self.project, maps, strict=True)] + [planes.mean(dim=1, keepdim=True)]

    def decode(self, encoded: Any, dpm: torch.Tensor) -> torch.Tensor:
        """(B, K, H, W): the image on each of the K DPMs (B, K, n, H, W) of every encoded sample. Uniform
        DPMs may be given as (B, K, n, 1, 1): their scales and shifts are then computed once per level
        and folded into the merging convolutions (:func:`_merge_uniform`; the same result, without
        per-pixel maps)."""
        b, k = dpm.shape[:2]
        uniform = dpm.shape[-2:] == (1, 1)
        dpms = [dpm.flatten(0, 1)]
        for _ in range(self.config.depth):
            dpms.append(dpms[-1] if uniform else self.pool(dpms[-1]))
        *maps, base = encoded
        h = self.start(self.film[-1](maps[-1], dpms[-1], k))
        level = self.config.depth - 1
        for up, merge in zip(self.up, self.merge, strict=True):
            if uniform:
                film = cast(_Film, self.film[level])
                h = _merge_uniform(cast(nn.Sequential, merge), up(h), maps[level], film, dpms[level])
            else:
                h = merge(torch.cat([up(h), self.film[level](maps[level], dpms[level], k)], dim=1))
            level -= 1
        out: torch.Tensor = self.head(h).unflatten(0, (b, k))[:, :, 0] + base
        return out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The image at each DPM's surface, from ``x``: measured planes interleaved with their DPMs."""
        out: torch.Tensor = self.decode(self.encode(x[:, 0::2]), x[:, None, 1::2])
        return out


#: an architecture's configuration, as a model card names it
GeneratorConfig = UNetConfig | EncodeOnceConfig
#: each architecture's name (a card's ``architecture.kind``) and its configuration
ARCHITECTURES: dict[str, type[UNetConfig | EncodeOnceConfig]] = {
    "unet": UNetConfig,
    "encode-once": EncodeOnceConfig,
}


def generator_config(values: dict[str, Any]) -> GeneratorConfig:
    """The configuration a card's ``architecture`` describes (no ``kind``: the U-Net, as in cards before
    the encode-once generator)."""
    kind = values.get("kind", "unet")
    if kind not in ARCHITECTURES:
        raise ValueError(f"unknown architecture {kind!r}: this mm-deepz knows {', '.join(ARCHITECTURES)}")
    fields: dict[str, Any] = {
        k: tuple(v) if isinstance(v, list) else v for k, v in values.items() if k != "kind"
    }
    return ARCHITECTURES[kind](**fields)


def build_generator(config: GeneratorConfig) -> DeepZUNet | DeepZEncodeOnce:
    """The (untrained) network of an architecture."""
    return DeepZEncodeOnce(config) if isinstance(config, EncodeOnceConfig) else DeepZUNet(config)


class DeepZPackaged(nn.Module):
    """The generator as a bioimage.io package runs it: planes and DPMs as two tensors.

    ``planes``: the measured planes, normalized, (B, n, H, W); ``dpm_um``: each plane's digital
    propagation matrix in µm, (B, n, H, W) (target surface minus the plane's depth, per pixel).
    Frames are reflect-padded by :data:`MARGIN` as mm-deepz's engine pads them (sizes: multiples of
    ``2**depth``), so the package makes mm-deepz's image to the border. This file is the package's
    architecture source (``mm_deepz.zoo``): it imports nothing but torch.
    """

    def __init__(self, z_range_um: float, **architecture: Any):
        """``architecture``: the card's (:func:`generator_config`); packages made before the encode-once
        generator name a U-Net's fields without ``kind``."""
        super().__init__()
        self.unet = build_generator(generator_config(architecture))
        self.z_range_um = float(z_range_um)

    def forward(self, planes: torch.Tensor, dpm_um: torch.Tensor) -> torch.Tensor:
        """The image on each DPM's surface, (B, 1, H, W), in the planes' normalized units."""
        x = torch.stack([planes, dpm_um / self.z_range_um], dim=2).flatten(1, 2)
        m, extra = MARGIN, (-2 * MARGIN) % self.unet.config.multiple  # constants: traceable at any size
        out: torch.Tensor = self.unet(F.pad(x, (m, m + extra, m, m + extra), mode="reflect"))
        return out[..., m : -(m + extra), m : -(m + extra)]
