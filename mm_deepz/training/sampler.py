"""Random training patches from registered stack pairs.

Each sample picks a pair, anchor plane(s) at the model's input offsets, a target plane
within the trained z-range, and a random (flipped / rotated) crop. By default every such
(pair, anchor, target) triple is equally likely, which favours targets near the input planes
(more anchors reach them); with ``balance_defocus`` every distance from the nearest input plane
is equally likely instead. Validation batches are always drawn the default way. Inputs are normalized
exactly as at inference (percentiles of the full input planes, :class:`IntensityScale`);
targets by their whole stack's percentiles, which keeps the axial brightness profile of the
target modality (a confocal plane far from the specimen stays dark).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ..errors import DeepZError
from ..normalization import HIGH_PERCENTILE, LOW_PERCENTILE, IntensityScale
from .stacks import PairedStack


@dataclass(frozen=True)
class SamplingConfig:
    """What the network sees: input-plane offsets (µm), trained z-range (µm), patch size."""

    plane_offsets_um: tuple[float, ...] = (0.0,)
    z_range_um: float = 10.0
    patch: int = 96
    low_percentile: float = LOW_PERCENTILE
    high_percentile: float = HIGH_PERCENTILE
    #: fraction of patches required to show structure in the target (sparse specimens would
    #: otherwise teach the network that "dark" is the answer)
    foreground_fraction: float = 0.9
    foreground_level: float = 0.1
    #: draw every distance of the target from the nearest input plane (in z steps) equally often,
    #: instead of every (pair, anchor, target) triple: more far-defocus targets
    balance_defocus: bool = False


class PatchSampler:
    """Draws training batches (:meth:`sample`) and fixed validation batches (:meth:`fixed_batch`)."""

    def __init__(self, pairs: list[PairedStack], cfg: SamplingConfig, seed: int = 0):
        if not pairs:
            raise DeepZError("No stack pairs to sample from.")
        self.pairs = pairs
        self.cfg = cfg
        self.rng = np.random.default_rng(seed)
        step = pairs[0].inputs.z_step_um
        rel = np.asarray(cfg.plane_offsets_um) - cfg.plane_offsets_um[0]
        idx = rel / step
        if not np.allclose(idx, np.round(idx), atol=1e-3):
            raise DeepZError(
                f"Input plane offsets {cfg.plane_offsets_um} µm are not multiples of the stacks' z step "
                f"{step} µm."
            )
        self.plane_steps = np.round(idx).astype(int)
        self._target_scale = {}
        for p in pairs:
            self._target_scale[p.name] = IntensityScale.of(
                p.target.data, cfg.low_percentile, cfg.high_percentile
            )
            if min(p.inputs.data.shape[1:]) < cfg.patch:
                raise DeepZError(f"{p.name}: frames smaller than the {cfg.patch}-pixel training patch.")
        self._input_scale: dict[tuple[str, int], IntensityScale] = {}
        self.choices = self._enumerate()
        self._by_anchor: dict[tuple[int, int], list[int]] = {}
        for c, (k, a, _) in enumerate(self.choices):
            self._by_anchor.setdefault((k, a), []).append(c)
        if not self.choices:
            raise DeepZError(
                "No anchor/target combination fits: stacks cover "
                f"{pairs[0].z_um[-1] - pairs[0].z_um[0]:.1f} µm, "
                f"planes need {self.plane_steps[-1] * step:.1f} µm plus targets within ±{cfg.z_range_um} µm."
            )
        self._weights = self._balanced_weights() if cfg.balance_defocus else None

    def _enumerate(self) -> list[tuple[int, int, int]]:
        out = []
        for k, p in enumerate(self.pairs):
            z = p.z_um
            n = len(z)
            for a in range(n - self.plane_steps[-1]):
                zi = z[a + self.plane_steps]
                for j in range(n):
                    if np.all(np.abs(z[j] - zi) <= self.cfg.z_range_um + 1e-6):
                        out.append((k, a, j))
        return out

    def defocus_steps(self) -> np.ndarray:
        """Each choice's distance from its target to the nearest input plane, in z steps."""
        return np.array([np.min(np.abs(j - (a + self.plane_steps))) for _, a, j in self.choices])

    def _balanced_weights(self) -> np.ndarray:
        """Choice probabilities under which every defocus distance is equally likely."""
        d = self.defocus_steps()
        counts = np.bincount(d)
        w = 1.0 / counts[d]
        return np.asarray(w / w.sum())

    def input_scale(self, k: int, a: int) -> IntensityScale:
        """The inference-time scale of the input planes at anchor ``a`` of pair ``k``."""
        key = (self.pairs[k].name, a)
        if key not in self._input_scale:
            planes = self.pairs[k].inputs.data[a + self.plane_steps]
            self._input_scale[key] = IntensityScale.from_planes(
                planes, self.cfg.low_percentile, self.cfg.high_percentile
            )
        return self._input_scale[key]

    def sample(self, batch: int, targets: int = 1) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """A random batch of ``batch`` crops, each with ``targets`` target planes of the same anchor:
        planes (B, n, P, P), DPMs in network units (B, K, n) and targets (B, K, P, P), float32."""
        n = len(self.choices)
        picks = (
            self.rng.integers(n, size=batch)
            if self._weights is None
            else self.rng.choice(n, batch, p=self._weights)
        )
        samples = [self.example(*self._with_targets(int(c), targets), rng=self.rng) for c in picks]
        return tuple(torch.from_numpy(np.stack(part)) for part in zip(*samples, strict=True))  # type: ignore[return-value]

    def _with_targets(self, choice: int, targets: int) -> tuple[int, int, list[int]]:
        """Pair, anchor and ``targets`` target planes: the chosen one, then others drawn as choices are
        (without repeats while the anchor has enough)."""
        k, a, j = self.choices[choice]
        if targets == 1:
            return k, a, [j]
        others = [c for c in self._by_anchor[(k, a)] if c != choice]
        p = None
        if self._weights is not None:
            p = self._weights[others] / self._weights[others].sum()
        drawn = self.rng.choice(others, targets - 1, replace=len(others) < targets - 1, p=p)
        return k, a, [j, *(self.choices[int(c)][2] for c in drawn)]

    def _window(self, k: int, j: int, rng: np.random.Generator) -> tuple[slice, slice]:
        """A crop; with probability ``foreground_fraction`` one whose target shows structure."""
        p = self.pairs[k]
        P = self.cfg.patch
        _, h, w = p.inputs.data.shape
        want_fg = rng.random() < self.cfg.foreground_fraction
        scale = self._target_scale[p.name]
        for _ in range(20):
            y0, x0 = rng.integers(0, h - P + 1), rng.integers(0, w - P + 1)
            win = (slice(y0, y0 + P), slice(x0, x0 + P))
            if not want_fg or scale.forward(p.target.data[j][win].max()) > self.cfg.foreground_level:
                break
        return win

    def example(
        self, k: int, a: int, js: list[int], rng: np.random.Generator
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """One crop of pair ``k`` at anchor ``a`` with its target planes ``js`` (the crop shows structure
        in the first): planes (n, P, P), DPMs in network units (K, n), targets (K, P, P)."""
        p = self.pairs[k]
        win = self._window(k, js[0], rng)
        idx = a + self.plane_steps
        planes = self.input_scale(k, a).forward(p.inputs.data[idx][:, win[0], win[1]]).astype(np.float32)
        dpm = ((p.z_um[js][:, None] - p.z_um[idx][None, :]) / self.cfg.z_range_um).astype(np.float32)
        y = self._target_scale[p.name].forward(p.target.data[js][:, win[0], win[1]]).astype(np.float32)
        rot, flip = int(rng.integers(4)), bool(rng.integers(2))
        planes, y = np.rot90(planes, rot, (1, 2)), np.rot90(y, rot, (1, 2))
        if flip:
            planes, y = planes[:, :, ::-1], y[:, :, ::-1]
        return np.ascontiguousarray(planes), dpm, np.ascontiguousarray(y)

    def fixed_batch(self, n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
        """A reproducible batch (validation), one target each: x (B, 2n, P, P), planes interleaved with
        their DPMs, and y (B, 1, P, P)."""
        rng = np.random.default_rng(seed)
        picks = rng.integers(len(self.choices), size=n)
        xs, ys = [], []
        for c in picks:
            k, a, j = self.choices[int(c)]
            planes, dpm, y = self.example(k, a, [j], rng=rng)
            x = np.empty((2 * len(planes), *planes.shape[1:]), np.float32)
            x[0::2], x[1::2] = planes, dpm[0][:, None, None]
            xs.append(x)
            ys.append(y)
        return torch.from_numpy(np.stack(xs)), torch.from_numpy(np.stack(ys))
