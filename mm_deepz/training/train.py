"""Training a Deep-Z model from registered stack pairs (``mm-deepz train``)."""

from __future__ import annotations

import logging
import math
import platform
import subprocess
import sys
import time
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from pydantic import Field, model_validator
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from typing_extensions import override

from .. import __version__
from ..devices import Device
from ..engine.predictor import resolve_device
from ..errors import DeepZError
from ..metrics import pcc_torch, ssim_torch
from ..model import (
    ARCHITECTURES,
    DeepZEncodeOnce,
    DeepZUNet,
    EncodeOnceConfig,
    GeneratorConfig,
    PatchDiscriminator,
    UNetConfig,
    generator_config,
    interleave,
)
from ..modelfile import DeepZModel, ModelCard, OpticsSpec
from ..settings import Settings
from .blind import specimen_pattern
from .distributed import Ranks, process_group
from .sampler import PatchSampler, SamplingConfig
from .stacks import PairedStack, dataset_summary

logger = logging.getLogger(__name__)

#: the encode-once bottleneck's context mechanisms (``--context``): their dilations and attention heads
CONTEXTS: dict[str, tuple[tuple[int, ...], int]] = {
    "dilated": (EncodeOnceConfig.dilations, 0),
    "attention": ((), 4),
    "none": ((), 0),
}
#: extra L1 weight per unit of (patch-normalized) target intensity
FOREGROUND_WEIGHT = 4.0
#: smallest target contrast a patch is normalized by (target units; background-only patches
#: are not blown up to full contrast)
CONTRAST_FLOOR = 0.02


class TrainConfig(Settings):
    """Everything that defines a training run, validated on creation (:class:`DeepZError` naming each
    problem); ``mm-deepz train --config FILE`` reads it from JSON, ``--schema`` prints its JSON schema."""

    what: ClassVar[str] = "training configuration"

    n_planes: int = 1
    plane_separation_um: float = 4.0
    z_range_um: float = 10.0
    #: the generator: "unet" (planes and DPM enter together) or "encode-once" (docs/models.md)
    architecture: str = "unet"
    base_channels: int = 16
    depth: int = 3
    #: widest U-Net level (None: doubling at every level); lets deeper networks stay small
    max_channels: int | None = None
    #: the encode-once decoder's width at full resolution, doubling per level up to ``decoder_max``
    decoder_channels: int = 8
    decoder_max: int = 32
    #: the encode-once bottleneck's view beyond its depth (:data:`CONTEXTS`): dilated residual blocks,
    #: self-attention, or none (the capped depth alone)
    context: str = "dilated"
    #: target planes supervised per crop (the encode-once generator encodes the crop once for all)
    targets_per_sample: int = 1
    patch: int = 128
    batch_size: int = 6
    steps: int = 2000
    lr: float = 2e-3
    weight_decay: float = 1e-4
    #: weight of (1 - Pearson correlation) per patch: what makes the network localize sparse
    #: structure (pixel losses alone are satisfied by a dim blur; see docs/models.md)
    pcc_weight: float = 1.0
    #: SSIM and a light patch-GAN term keep peaks at the target's height and suppress input
    #: structure at depths where the target has none (the shipped models' recipe)
    ssim_weight: float = 1.0
    adversarial_weight: float = 0.05
    #: draw every target distance from the nearest input plane equally often (more far-defocus
    #: training targets; validation unchanged), instead of every (stack, anchor, target) triple
    balance_defocus: bool = False
    val_fraction: float = 0.2
    val_every: int = 250
    #: stop after this many validations without improvement (0 = never; long one-cycle runs
    #: pass through noisy high-learning-rate stretches that are not the end of learning)
    patience: int = 5
    seed: int = 0
    device: Device = "auto"
    #: "auto": bfloat16 autocast on CUDA, float32 on the CPU; "bf16" also on a CPU with AMX (2.4-3.5x
    #: faster steps here, `python -m benchmarks.training_step`; a 2-plane run that went NaN with the loss
    #: under autocast trains since the loss is float32, docs/models.md); or "fp32"
    precision: str = "auto"
    input_modality: str = "widefield"
    target_modality: str = "confocal"
    #: the optics the card records (wavelength, NA ...); empty: the stacks' own
    optics: dict[str, Any] = Field(default_factory=dict)
    #: which pairs are one specimen (a regular expression whose first group names it), so validation
    #: holds out whole specimens; None: each pair is its own
    specimen_pattern: str | None = None

    @model_validator(mode="after")
    def _check(self) -> TrainConfig:
        if self.n_planes not in (1, 2):
            raise ValueError(f"n_planes must be 1 or 2, got {self.n_planes}.")
        if self.architecture not in ARCHITECTURES:
            raise ValueError(
                f"architecture must be one of {', '.join(ARCHITECTURES)}, got {self.architecture!r}."
            )
        if self.context not in CONTEXTS:
            raise ValueError(f"context must be one of {', '.join(CONTEXTS)}, got {self.context!r}.")
        if self.context != "dilated" and self.architecture != "encode-once":
            raise ValueError(f"context {self.context!r} is an encode-once option; the U-Net has none.")
        if not 1 <= self.targets_per_sample <= 64:
            raise ValueError(f"targets_per_sample must be 1 to 64, got {self.targets_per_sample}.")
        try:
            self.generator()
        except ValueError as e:
            raise ValueError(f"The {self.architecture} generator cannot be built: {e}") from None
        if self.n_planes == 2 and self.plane_separation_um <= 0:
            raise ValueError("A 2-plane model needs a positive plane separation.")
        if self.patience < 0:
            raise ValueError(f"patience must be >= 0 (0 = no early stopping), got {self.patience}.")
        for name in (
            "plane_separation_um",
            "z_range_um",
            "lr",
            "weight_decay",
            "pcc_weight",
            "ssim_weight",
            "adversarial_weight",
            "val_fraction",
        ):
            if not math.isfinite(getattr(self, name)):
                raise ValueError(f"{name} must be a finite number, got {getattr(self, name)}.")
        for name in ("z_range_um", "steps", "batch_size", "patch", "lr", "val_every"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}.")
        for name in ("weight_decay", "pcc_weight", "ssim_weight", "adversarial_weight"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} cannot be negative, got {getattr(self, name)}.")
        if self.patch % 2**self.depth or self.patch < 2 ** (self.depth + 1):
            raise ValueError(
                f"The patch ({self.patch} px) must be a multiple of {2**self.depth} and at least "
                f"{2 ** (self.depth + 1)} px for a depth-{self.depth} U-Net: use a larger --patch "
                "or a smaller --depth."
            )
        if self.patch < (least := self.generator().min_size):
            raise ValueError(
                f"The patch ({self.patch} px) is smaller than the {self.architecture} generator's "
                f"{least} px (its bottleneck must be wider than its dilated context): use --patch "
                f"{least} or more, or --context none."
            )
        if self.precision not in ("auto", "bf16", "fp32"):
            raise ValueError(f"precision must be auto, bf16 or fp32, got {self.precision!r}.")
        if not 0 <= self.val_fraction < 1:
            raise ValueError(f"val_fraction must be in [0, 1), got {self.val_fraction}.")
        try:
            specimen_pattern(self.specimen_pattern)
        except DeepZError as e:
            raise ValueError(str(e)) from None
        return self

    def generator(self) -> GeneratorConfig:
        """The architecture these settings describe."""
        if self.architecture == "encode-once":
            dilations, heads = CONTEXTS[self.context]
            return EncodeOnceConfig(
                self.n_planes,
                self.base_channels,
                self.depth,
                self.max_channels,
                self.decoder_channels,
                self.decoder_max,
                dilations=dilations,
                attention_heads=heads,
            )
        return UNetConfig(self.n_planes, self.base_channels, self.depth, self.max_channels)

    @property
    def plane_offsets_um(self) -> tuple[float, ...]:
        """Offsets of the input planes around the anchor (µm)."""
        if self.n_planes == 1:
            return (0.0,)
        half = self.plane_separation_um / 2
        return (-half, half)


def read_train_config(path: Path) -> dict[str, Any]:
    """The settings of a ``--config`` JSON file (validated when they make a :class:`TrainConfig`)."""
    import json

    try:
        settings = json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise DeepZError(f"The training configuration {path} does not exist.") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise DeepZError(
            f"The training configuration {path} is not readable JSON ({e}): write an object of "
            "settings, as `mm-deepz train --schema` describes."
        ) from None
    if not isinstance(settings, dict):
        raise DeepZError(
            f"The training configuration {path} holds a {type(settings).__name__}, not an object of "
            "settings (`mm-deepz train --schema` describes them)."
        )
    return settings


@dataclass
class TrainResult:
    """What a run produced."""

    model: DeepZModel
    history: list[dict[str, Any]]
    best_val_loss: float
    steps_done: int
    seconds: float


def _device_name(device: torch.device) -> str:
    """The GPU's or the processor's name, for the card."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return platform.processor() or platform.machine()


def _git_commit() -> str:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            timeout=5,
            check=False,
            cwd=Path(__file__).parent,
        )
        return out.stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def split_pairs(
    pairs: list[PairedStack], val_fraction: float, seed: int, pattern: str | None = None
) -> tuple[list[PairedStack], list[PairedStack]]:
    """Hold out whole specimens for validation (at least one when there are two or more): every pair of
    a specimen (``pattern``, see :mod:`.blind`; by default each pair is one) goes to the same
    side, so the time points of one worm never validate a model trained on its others."""
    from .blind import by_specimen

    groups = list(by_specimen(pairs, specimen_pattern(pattern)).values())
    order = np.random.default_rng(seed).permutation(len(groups))
    n_val = round(val_fraction * len(groups))
    if val_fraction > 0 and len(groups) > 1:
        n_val = max(1, n_val)
    val = [p for i in order[:n_val] for p in groups[i]]
    train = [p for i in order[n_val:] for p in groups[i]]
    return train, val


def _loss(pred: torch.Tensor, y: torch.Tensor, cfg: TrainConfig) -> torch.Tensor:
    """Foreground-weighted L1, (1 - correlation) and optionally SSIM, in units of each target
    patch's own contrast.

    Confocal targets are sparse: scaled by their stack's brightest spots, most patches span a
    few hundredths, and pixel losses are then satisfied by a dim blur that correlates worse
    with the target than the input does. Measured against the patch's own range (at least
    ``CONTRAST_FLOOR``) every patch's structure counts; the correlation term rewards putting
    structure where the target has it.
    """
    lo = y.amin(dim=(2, 3), keepdim=True)
    span = (y.amax(dim=(2, 3), keepdim=True) - lo).clamp(min=CONTRAST_FLOOR)
    pn, yn = (pred - lo) / span, (y - lo) / span
    loss = ((1 + FOREGROUND_WEIGHT * yn) * (pn - yn).abs()).mean()
    if cfg.pcc_weight:
        loss = loss + cfg.pcc_weight * (1 - pcc_torch(pn, yn))
    if cfg.ssim_weight:
        loss = loss + cfg.ssim_weight * (1 - ssim_torch(pn, yn))
    return loss


class EncodeDecode(torch.nn.Module):
    """A generator as one module that takes the planes and their DPMs: what DistributedDataParallel
    wraps (it averages the gradients of what runs through its ``forward``)."""

    def __init__(self, net: DeepZUNet | DeepZEncodeOnce):
        super().__init__()
        self.net = net

    @override
    def forward(self, planes: torch.Tensor, dpm: torch.Tensor) -> torch.Tensor:
        """``planes`` (B, n, H, W) on each of their K DPMs (B, K, n, H, W): (B, K, H, W), encoded once."""
        return self.net.decode(self.net.encode(planes), dpm)


def generator_loss(
    generate: torch.nn.Module,
    disc: torch.nn.Module | None,
    planes: torch.Tensor,
    dpm: torch.Tensor,
    y: torch.Tensor,
    cfg: TrainConfig,
    amp: bool,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The predictions of ``generate`` (an :class:`EncodeDecode`, or its DDP) for ``planes`` (B, n, H, W)
    on each of their K DPMs (B, K, n, H, W), as (B*K, 1, H, W), and the generator's loss against ``y``
    (the same shape): the planes are encoded once.

    With ``amp`` the networks run in bfloat16 autocast, but the loss is always computed in float32
    outside it: under autocast SSIM's convolutions would run in bfloat16, where its local variances
    (differences of large, nearly equal sums) cancel into noise and its denominators reach zero;
    that made bfloat16 training of the 2-plane recipe go to NaN.
    """
    with torch.autocast(planes.device.type, dtype=torch.bfloat16, enabled=amp):
        pred = generate(planes, dpm).flatten(0, 1)[:, None]
        realism = disc(interleave(planes, dpm), pred) if disc is not None else None
    loss = _loss(pred.float(), y, cfg)
    if realism is not None:
        loss = loss + cfg.adversarial_weight * ((realism.float() - 1) ** 2).mean()
    return pred, loss


def check_output_model(out: Path, resume: bool, overwrite: bool) -> None:
    """Refuse, before training, a model path that is a folder or would replace a model unasked."""
    out = Path(out)
    ckpt = out.with_suffix(".ckpt")
    if out.is_dir():
        raise DeepZError(
            f"--output {out} is a folder: give the model file's name (e.g. {out / 'deepz_model.pt'})."
        )
    if resume:
        if not ckpt.exists():
            raise DeepZError(f"Nothing to resume: {ckpt} does not exist.")
        return
    existing = [p for p in (out, ckpt) if p.exists()]
    if existing and not overwrite:
        raise DeepZError(
            f"{' and '.join(map(str, existing))} already exist: continue that run with --resume, "
            "replace it with --overwrite, or choose another --output."
        )


def load_parent(path: Path, cfg: TrainConfig) -> DeepZModel:
    """The model ``train --init`` fine-tunes: refused (:class:`DeepZError`) when its input planes are
    not the ones this training asks for."""
    from ..modelfile import PLANE_OFFSET_ATOL_UM, load_model

    parent = load_model(path)
    theirs, ours = parent.card.input_offsets_um, cfg.plane_offsets_um
    if len(theirs) != len(ours):
        raise DeepZError(
            f"--init {path} is a {len(theirs)}-plane model but this training asks for {len(ours)} plane(s): "
            f"use --planes {len(theirs)}, or a {len(ours)}-plane model to start from."
        )
    if any(abs(a - b) > PLANE_OFFSET_ATOL_UM for a, b in zip(theirs, ours, strict=True)):
        raise DeepZError(
            f"--init {path} was trained with its input planes at {list(theirs)} µm, this training asks for "
            f"{list(ours)} µm: use --separation {theirs[-1] - theirs[0]:g}."
        )
    if abs(parent.card.z_range_um - cfg.z_range_um) > 1e-6:
        raise DeepZError(
            f"--init {path} was trained for targets up to {parent.card.z_range_um:g} µm from its input "
            f"planes (its defocus units), this training asks for {cfg.z_range_um:g} µm: use --z-range "
            f"{parent.card.z_range_um:g}."
        )
    depth = parent.card.architecture.depth
    if cfg.patch % 2**depth:
        raise DeepZError(
            f"--init {path} is a depth-{depth} U-Net: the patch ({cfg.patch} px) must be a multiple of "
            f"{2**depth} px."
        )
    return parent


def parent_provenance(parent: DeepZModel) -> dict[str, Any]:
    """What a fine-tuned model's card says of the model it started from."""
    prov = parent.card.provenance
    return {
        "path": str(parent.path),
        "sha256": parent.sha256,
        "steps_done": prov.get("steps_done"),
        "train_seconds": prov.get("train_seconds"),
        "legs": prov.get("legs", []),
        "metrics": parent.card.metrics,
        "card": parent.card.model_dump(mode="json", exclude={"provenance"}),
    }


def _check_z_range(pairs: list[PairedStack], cfg: TrainConfig) -> None:
    """The trained range must be one the stacks cover: a card never claims more than the data had."""
    offsets = np.asarray(cfg.plane_offsets_um)
    reach = max(float(p.z_um[-1] - p.z_um[0]) - float(offsets[-1] - offsets[0]) for p in pairs)
    if cfg.z_range_um > reach + 1e-6:
        raise DeepZError(
            f"--z-range {cfg.z_range_um:g} µm is more than the stacks cover: the farthest target "
            f"plane is {reach:g} µm from the input plane(s). Use --z-range {reach:g} or less, or "
            "acquire deeper stacks."
        )


def train(
    pairs: list[PairedStack],
    cfg: TrainConfig,
    out: Path,
    resume: bool = False,
    command: str | None = None,
    val_pairs: list[PairedStack] | None = None,
    init: Path | None = None,
) -> TrainResult:
    """Train a model on ``pairs`` and save it to ``out`` (checkpoints next to it).

    ``val_pairs``: a fixed validation set (``cfg.val_fraction`` is then not used); by default
    whole stacks of ``pairs`` are held out. ``init``: fine-tune that model file (its architecture
    and weights; the card records it as the parent) instead of starting from random weights.
    Under torchrun the processes share each global batch (:mod:`.distributed`).
    """
    ranks = Ranks.from_env()
    ranks.share(cfg.batch_size)  # refused before any work where the batch does not split
    device = ranks.device(resolve_device(cfg.device))
    if device.type == "cuda":
        torch.cuda.set_device(device)
    with process_group(ranks, device):
        return _train(pairs, cfg, Path(out), resume, command, val_pairs, init, ranks, device)


def _train(
    pairs: list[PairedStack],
    cfg: TrainConfig,
    out: Path,
    resume: bool,
    command: str | None,
    val_pairs: list[PairedStack] | None,
    init: Path | None,
    ranks: Ranks,
    device: torch.device,
) -> TrainResult:
    """:func:`train` in one of its processes."""
    torch.manual_seed(cfg.seed)
    if val_pairs:
        train_pairs = pairs
        pairs = [*pairs, *val_pairs]
    else:
        train_pairs, val_pairs = split_pairs(pairs, cfg.val_fraction, cfg.seed, cfg.specimen_pattern)
    _check_z_range(train_pairs, cfg)
    sampler, (val_x, val_y) = _samplers(train_pairs, val_pairs, cfg)
    parent = load_parent(init, cfg) if init is not None and not resume else None
    ckpt_path = out.with_suffix(".ckpt")
    ck = (
        torch.load(ckpt_path, map_location=device, weights_only=True)
        if resume and ckpt_path.exists()
        else None
    )
    model = _new_model(pairs, cfg, parent, _trained_as(ck, cfg, ckpt_path) if ck is not None else None)
    net = model.network.to(device)
    opt = torch.optim.AdamW(net.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    disc: PatchDiscriminator | None = None
    d_opt: torch.optim.AdamW | None = None
    if cfg.adversarial_weight > 0:
        disc = PatchDiscriminator(2 * cfg.n_planes + 1).to(device)
        d_opt = torch.optim.AdamW(disc.parameters(), lr=cfg.lr / 2)
    amp = _use_bf16(cfg.precision, device)
    net = net.to(memory_format=torch.channels_last)  # type: ignore[call-overload]  # documented; not in torch's stubs
    generate = ranks.wrap(EncodeDecode(net))  # the gradients averaged over the processes
    critic = ranks.wrap(disc) if disc is not None else None  # (the generator's loss reads the bare critic)
    share = ranks.share(cfg.batch_size)
    step, best, bad_evals, history = 0, math.inf, 0, []
    earlier_seconds = 0.0  # training time of the runs this one resumes
    earlier_cpu = 0.0  # and their CPU time
    earlier_legs: list[dict[str, Any]] = []  # their commands and step ranges (a resumed run's full recipe)
    best_state = {k: v.detach().clone() for k, v in net.state_dict().items()}
    parent_record = parent_provenance(parent) if parent is not None else None
    if ck is not None:
        parent_record = ck.get("parent")
        _load_checkpoint(ck, net, opt, disc, d_opt, cfg)
        step, best, history = ck["step"], ck["best"], ck["history"]
        earlier_seconds = float(ck.get("seconds", 0.0))
        earlier_cpu = float(ck.get("cpu_seconds", 0.0))
        earlier_legs = list(ck.get("legs", []))
        best_state = ck["best_state"]
        sampler.rng = np.random.default_rng(cfg.seed + step)
        logger.info("Resumed from %s at step %d", ckpt_path, step)
    # this leg's length and peak (a resumed leg's may differ from the last one's), from where training stands
    sched = _one_cycle(opt, cfg.lr, max(cfg.steps, step + 1), start_step=step)
    t0, c0 = time.perf_counter(), time.process_time()
    command = command or " ".join(sys.argv)
    first_step = step

    def legs() -> list[dict[str, Any]]:
        this = {
            "command": command,
            "steps": [first_step, step],
            "lr": cfg.lr,
            "seconds": round(time.perf_counter() - t0, 1),
            "world_size": ranks.world_size,
        }
        return [*earlier_legs, this]

    columns = (
        TextColumn("[bold]training"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total}"),
        TextColumn("{task.fields[info]}"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
    )
    with Progress(*columns, transient=False, disable=not ranks.main) as progress:
        task = progress.add_task("train", total=cfg.steps, completed=step, info="")
        while step < cfg.steps:
            net.train()
            # every process draws the whole global batch (the same one) and trains on its share
            planes, dpm, y = (t[share] for t in sampler.sample(cfg.batch_size, cfg.targets_per_sample))
            planes = planes.to(device, non_blocking=True).contiguous(memory_format=torch.channels_last)
            dpm = dpm.to(device, non_blocking=True)[..., None, None]  # uniform: (B, K, n, 1, 1)
            y = y.to(device, non_blocking=True).flatten(0, 1)[:, None]
            pred, loss = generator_loss(generate, disc, planes, dpm, y, cfg, amp)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(net.parameters(), 1.0)
            opt.step()
            sched.step()
            if critic is not None and d_opt is not None:
                _critic_step(critic, d_opt, interleave(planes, dpm), y, pred, amp)
            step += 1
            if step % cfg.val_every == 0 or step == cfg.steps:
                # the main process validates; every process follows its figures
                figures = ranks.from_main(_validate(net, val_x, val_y, device, cfg) if ranks.main else None)
                assert figures is not None  # the main process's
                val, val_pcc = figures
                history.append(
                    {
                        "step": step,
                        "lr": sched.get_last_lr()[0],
                        "train_loss": ranks.mean(loss.item()),  # the whole batch's
                        "val_loss": val,
                        "val_pcc": round(val_pcc, 5),
                        "seconds": round(earlier_seconds + time.perf_counter() - t0, 2),
                        # compute spent (this process's CPU time over all legs): fair between runs that
                        # shared the machine, the learning-efficiency axis (docs/models.md)
                        "cpu_seconds": round(earlier_cpu + time.process_time() - c0, 1),
                        "supervised_planes": step * cfg.batch_size * cfg.targets_per_sample,
                    }
                )
                if ranks.main:
                    logger.info(
                        "step %d: train loss %.4f, validation loss %.4f (best %.4f)",
                        step,
                        history[-1]["train_loss"],
                        val,
                        min(best, val),
                    )
                if val < best - 1e-4:
                    best, bad_evals = val, 0
                    best_state = {k: v.detach().clone() for k, v in net.state_dict().items()}
                else:
                    bad_evals += 1
                ck = {
                    "net": net.state_dict(),
                    "opt": opt.state_dict(),
                    "step": step,
                    "best": best,
                    "history": history,
                    "best_state": best_state,
                    "seconds": earlier_seconds + time.perf_counter() - t0,
                    "cpu_seconds": earlier_cpu + time.process_time() - c0,
                    "legs": legs(),
                    "parent": parent_record,
                    "architecture": model.card.model_dump(mode="json")["architecture"],
                }
                if disc is not None and d_opt is not None:
                    ck |= {"disc": disc.state_dict(), "d_opt": d_opt.state_dict()}
                if ranks.main:  # written once
                    torch.save(ck, ckpt_path)
                if cfg.patience and bad_evals >= cfg.patience:
                    logger.info(
                        "Early stop at step %d: validation loss did not improve %d times", step, bad_evals
                    )
                    progress.update(task, completed=step, info=f"val {val:.4f} (early stop)")
                    break
            if step % 50 == 0:  # reading the loss waits for the device: not at every step
                progress.update(task, completed=step, info=f"loss {loss.item():.4f} best val {best:.4f}")
        progress.update(task, completed=step)  # where it ended (a log shows the bar's last state)
    seconds = earlier_seconds + time.perf_counter() - t0  # the whole training, over all resumes
    devices = ranks.gather(f"{device}: {_device_name(device)}")
    net.load_state_dict(best_state)
    net.eval().cpu()
    model.card.provenance = {
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "mm_deepz_version": __version__,
        "git_commit": _git_commit(),
        "command": command,
        "legs": legs(),
        "train_config": cfg.model_dump(),
        "steps_done": step,
        "train_seconds": round(seconds, 1),
        "train_cpu_seconds": round(earlier_cpu + time.process_time() - c0, 1),
        "hardware": f"{device.type}: {_device_name(device)}, {torch.get_num_threads()} threads",
        # the processes of this leg (torchrun) and the device of each
        "world_size": ranks.world_size,
        "devices": devices,
        "torch": torch.__version__,
        "data": dataset_summary(pairs),
        "validation_pairs": [p.name for p in val_pairs],
        "history": history,  # the learning curve (mm-deepz curves), every leg's
        **({"parent": parent_record} if parent_record else {}),
    }
    model.card.metrics = {"validation_loss": round(best, 5)}
    if ranks.main:
        model.save(out)
        logger.info("Saved %s (best validation loss %.4f, %d steps, %.0f s)", out, best, step, seconds)
    return TrainResult(model, history, best, step, seconds)


def _samplers(
    train_pairs: list[PairedStack], val_pairs: list[PairedStack], cfg: TrainConfig
) -> tuple[PatchSampler, tuple[torch.Tensor, torch.Tensor]]:
    """The training crops' sampler, and the fixed validation batch: whole frames (what inference sees),
    not training-sized patches."""
    sampling = SamplingConfig(
        cfg.plane_offsets_um, cfg.z_range_um, cfg.patch, balance_defocus=cfg.balance_defocus
    )
    sampler = PatchSampler(train_pairs, sampling, seed=cfg.seed)
    val_source = val_pairs or train_pairs
    frame = min(min(p.inputs.data.shape[1:]) for p in val_source)
    val_sampling = replace(sampling, patch=frame, foreground_fraction=0.0)
    return sampler, PatchSampler(val_source, val_sampling).fixed_batch(12, seed=cfg.seed + 1)


def _trained_as(ck: dict[str, Any], cfg: TrainConfig, path: Path) -> GeneratorConfig:
    """The architecture a checkpoint's run trains: its own record (checkpoints written before it kept one:
    their parent's where the run is a fine-tune, else the settings'). A run that is not a fine-tune is
    refused when the settings now describe another architecture."""
    parent = ck.get("parent") or {}
    values = ck.get("architecture") or parent.get("card", {}).get("architecture")
    ours = cfg.generator()
    if values is None:
        return ours
    theirs = generator_config(dict(values))
    if not parent and theirs != ours:
        raise DeepZError(
            f"{path} was trained as {theirs.describe()}; these settings describe {ours.describe()}. "
            "Resume with the architecture options the run started with."
        )
    return theirs


def _new_model(
    pairs: list[PairedStack],
    cfg: TrainConfig,
    parent: DeepZModel | None,
    architecture: GeneratorConfig | None = None,
) -> DeepZModel:
    """The model to train: its card from the settings (or ``architecture``, a resumed run's) and the
    stacks' optics (card percentiles: the defaults), its weights the parent's where it is fine-tuned."""
    known = {**pairs[0].meta.get("optics", {}), **cfg.optics}
    optics = OpticsSpec(
        pixel_size_um=pairs[0].pixel_size_um,
        **{k: known.get(k) for k in ("na", "wavelength_em_um", "immersion_index")},
    )
    card = ModelCard(
        architecture=parent.card.architecture if parent is not None else architecture or cfg.generator(),
        input_offsets_um=cfg.plane_offsets_um,
        z_range_um=cfg.z_range_um,
        optics=optics,
        input_modality=cfg.input_modality,
        target_modality=cfg.target_modality,
    )
    model = DeepZModel.new(card, seed=cfg.seed)
    if parent is not None:
        model.network.load_state_dict(parent.network.state_dict())
    return model


def _load_checkpoint(
    ck: dict[str, Any],
    net: torch.nn.Module,
    opt: torch.optim.Optimizer,
    disc: PatchDiscriminator | None,
    d_opt: torch.optim.Optimizer | None,
    cfg: TrainConfig,
) -> None:
    """The generator, the critic and their optimizers as a checkpoint left them."""
    net.load_state_dict(ck["net"])
    opt.load_state_dict(ck["opt"])
    if disc is not None and d_opt is not None and "disc" in ck:  # the critic goes on where it stopped
        disc.load_state_dict(ck["disc"])
        d_opt.load_state_dict(ck["d_opt"])
        for group in d_opt.param_groups:  # the saved state carries the last leg's rate
            group["lr"] = cfg.lr / 2


def _critic_step(
    critic: torch.nn.Module,
    d_opt: torch.optim.Optimizer,
    x: torch.Tensor,
    y: torch.Tensor,
    pred: torch.Tensor,
    amp: bool,
) -> None:
    """One step of the patch-GAN critic (least squares): real pairs toward 1, generated toward 0."""
    with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=amp):
        # real and fake in one pass: one forward per backward, as DDP wants
        real, fake = critic(torch.cat([x, x]), torch.cat([y, pred.detach()])).chunk(2)
    d_loss = ((real.float() - 1) ** 2).mean() + (fake.float() ** 2).mean()
    d_opt.zero_grad(set_to_none=True)
    d_loss.backward()
    d_opt.step()


def _use_bf16(precision: str, device: torch.device) -> bool:
    """Whether training steps autocast to bfloat16 (``auto``: on CUDA only)."""
    if precision == "bf16" and device.type == "cpu" and not _cpu_has_bf16():
        logger.warning(
            "This CPU has no bfloat16 instructions (AMX or AVX512-BF16): bf16 is emulated, ~9x slower "
            "than float32 (measured on an AMD EPYC with AVX2). --precision fp32 is faster here."
        )
    if precision != "auto":
        return precision == "bf16"
    return device.type == "cuda"


def _cpu_has_bf16() -> bool:
    """Whether the CPU computes bfloat16 natively (Linux's CPU flags; elsewhere assumed so)."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return True
    return "amx_bf16" in flags or "avx512_bf16" in flags


def _one_cycle(
    opt: torch.optim.Optimizer, lr: float, total_steps: int, start_step: int = 0
) -> torch.optim.lr_scheduler.OneCycleLR:
    """A one-cycle schedule peaking at ``lr`` over ``total_steps``, positioned at ``start_step``.

    torch positions a schedule (``last_epoch``) with the peak stored in the optimizer's groups; a
    resumed optimizer carries the last leg's peak there, so this leg's peak is written first.
    """
    # a warm-up of at least two steps: torch divides by its length (shorter runs raised ZeroDivisionError)
    warm = min(0.75, max(0.1, 2 / total_steps))
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=total_steps, pct_start=warm)
    if start_step:
        sched = torch.optim.lr_scheduler.OneCycleLR(
            opt, max_lr=lr, total_steps=total_steps, pct_start=warm, last_epoch=start_step - 1
        )
    return sched


@torch.no_grad()
def _validate(
    net: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, device: torch.device, cfg: TrainConfig
) -> tuple[float, float]:
    """The validation loss and mean Pearson correlation with the targets, on whole frames."""
    net.eval()
    losses, pccs = [], []
    for i in range(0, len(x), 4):
        xb, yb = x[i : i + 4].to(device), y[i : i + 4].to(device)
        pred = net(xb).float()
        losses.append(float(_loss(pred, yb, cfg)) * len(xb))
        pccs.append(float(pcc_torch(pred, yb)) * len(xb))
    return sum(losses) / len(x), sum(pccs) / len(x)
