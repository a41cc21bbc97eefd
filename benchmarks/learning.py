"""Learning efficiency: the U-Net and the encode-once generator trained from scratch at about equal compute.

``python -m benchmarks.learning --out runs/le --jobs 2`` (docs/models.md, "Encode once"):

1. the shipped 2-plane model's training and validation stacks (``benchmarks.gpu_train``'s, simulated
   when missing) and blind specimens never trained on (worms with their neurons' truth, a bead slide);
2. trains each arm of :data:`ARMS` with the shipped recipe (2 planes 4 µm apart, ±12 µm, batch 6, peak
   rate 2e-3, float32 on the CPU), each for its ``--steps`` (chosen so that the arms cost about the same
   CPU time; the cards record what each cost: ``train_cpu_seconds``);
3. scores both blind with ``mm-deepz evaluate`` (SSIM, PCC, neuron F1 per band) and the apparent depth
   of their virtual planes (``benchmarks.depth_probe``), and writes ``learning.json``, ``learning.md``,
   ``depth.png`` and ``learning.png``: validation PCC against CPU hours and against supervised target
   planes, from the cards' learning curves.

A run resumes from its checkpoint when run again; ``--jobs 2`` trains the arms side by side (one thread
each: the CPU time each used is what the curves plot); ``--arm NAME`` (repeatable) trains and scores only
those arms. Run it beside other work with ``nice``.

An arm of :data:`LEGS` is trained leg by leg on the way to its ``--steps`` (``--steps
encode-once-d16-k4=11700`` runs the legs its checkpoint has not reached, in turn).

A long arm outlives a session only through git (a new machine starts with no ``runs/``): its checkpoint
is committed to :data:`CHECKPOINTS` at a session's end, and a run whose ``--out`` lacks it starts from
that copy.
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch

from benchmarks.depth_probe import plot, probe
from benchmarks.depth_probe import table as depth_table
from benchmarks.finetune import evaluate, table
from benchmarks.gpu_train import (
    D16_K4_BF16,
    ENCODE_ONCE,
    FINE_TUNE_LR,
    SHIPPED_FT_LR,
    TWO_PLANES,
    _mz,
    pair_specs,
    simulate,
    train_command,
)
from mm_deepz.model import EncodeOnceConfig
from mm_deepz.modelfile import DeepZModel, load_model
from mm_deepz.shipped import shipped_model_path
from simulators.training_data import make_stack_pair, write_stack_pair

logger = logging.getLogger("benchmarks.learning")

#: each arm's generator options (the U-Net is the shipped one's)
ARMS: dict[str, list[str]] = {
    "unet": ["--architecture", "unet"],
    "encode-once": [*ENCODE_ONCE, "--decoder-channels", "8", "--targets-per-sample", "4"],
    "encode-once-d16-k4": [*ENCODE_ONCE, "--decoder-channels", "16", "--targets-per-sample", "4"],
    "encode-once-d16-k2": [*ENCODE_ONCE, "--decoder-channels", "16", "--targets-per-sample", "2"],
    # the leading arm again, its networks in bfloat16 on the CPU (the loss stays float32): 1.36x faster
    # steps at one thread (1.28 against 1.75 s, side by side, session 21), one schedule from scratch to
    # 8000 steps, then legs given by --steps (9000, 12000, 15600, 20000, 24000, 28000, 32000: docs/models.md);
    # the arm carried on
    "encode-once-d16-k4-bf16": list(D16_K4_BF16),
    # the recipe changed where the bfloat16 arm flattened (32000 steps, session 27): its step-32000
    # checkpoint carried on with every distance from the nearest measured plane drawn equally often, so
    # that a third of the targets are 6-10 µm away (24 % before), the band it still lags in
    "encode-once-d16-k4-bf16-balanced": [*D16_K4_BF16, "--balance-defocus"],
    # the rule fixed before the balanced arm's scoring sent the compute here (session 28: far band 0.23
    # against 0.19, not > 0.05 better): the decoder's coarse levels widened to 64 channels (16-32-64-64-64,
    # 0.76 M parameters, 1.4x the decoder's arithmetic), from scratch, one schedule to 8000 steps first
    "encode-once-d16m64-k4-bf16-balanced": [*D16_K4_BF16, "--decoder-max", "64", "--balance-defocus"],
}
#: arms that carry on another arm's training with a changed recipe: they start from its committed checkpoint
CARRIED_FROM = {"encode-once-d16-k4-bf16-balanced": "encode-once-d16-k4-bf16"}
#: arms fine-tuned from another arm's last weights (``train --init``, a fresh schedule at a fine-tune's peak
#: rate, :data:`FINE_TUNE_LR`), the parent grown first where a growth is named (none: as it is): a
#: self-attention block of 4 heads at the encoder's bottleneck, or the decoder's coarse levels widened to
#: 64 channels, each starting as the identity. Paired tests of what global context or decoder width add
#: to a trained network, without the plateau every run from scratch crosses first (session 29)
GROWN: dict[str, tuple[str, Callable[[DeepZModel], DeepZModel] | None, list[str]]] = {
    "encode-once-d16-k4-bf16-balanced-ft": ("encode-once-d16-k4-bf16-balanced", None, []),
    "encode-once-d16-k4-bf16-balanced-attention-ft": (
        "encode-once-d16-k4-bf16-balanced",
        lambda model: with_attention(model, 4),
        [],
    ),
    "encode-once-d16m64-k4-bf16-balanced-ft": (
        "encode-once-d16-k4-bf16-balanced",
        lambda model: with_wider_decoder(model, 64),
        ["--decoder-max", "64"],  # what its card's settings say (the architecture is the grown model's)
    ),
}
ARMS |= {arm: ARMS[parent] + options for arm, (parent, _, options) in GROWN.items()}
#: arms that train the shipped 2-plane U-Net's weights on (``train --init`` its file, at
#: :data:`~benchmarks.gpu_train.SHIPPED_FT_LR`, in bfloat16 as its last leg): the lineage whose curve still
#: rises where the encode-once generator's has flattened (session 30, docs/models.md "Where each
#: generator is heading")
FROM_SHIPPED = {"unet-shipped-ft"}
ARMS |= {"unet-shipped-ft": ["--architecture", "unet", "--precision", "bf16"]}
#: steps of each arm by default: about equal CPU time (~2000 CPU-thread seconds) on this project's 2-core
#: machine, one thread each (the first two arms measured before the uniform-DPM fast path of 2026-12-02)
STEPS = {
    "unet": 3200,
    "encode-once": 1700,
    "encode-once-d16-k4": 1250,
    "encode-once-d16-k2": 2400,
    "encode-once-d16-k4-bf16": 32000,
    "encode-once-d16-k4-bf16-balanced": 36000,
    "encode-once-d16m64-k4-bf16-balanced": 8000,
    "encode-once-d16-k4-bf16-balanced-ft": 2000,
    "encode-once-d16-k4-bf16-balanced-attention-ft": 2000,
    "encode-once-d16m64-k4-bf16-balanced-ft": 2000,
    "unet-shipped-ft": 24000,
}
#: the legs an arm is trained in on the way to its steps, each re-entering a one-cycle schedule over its
#: own budget: how the float32 encode-once arm's curve was made (sessions 17-20), trained so again
LEGS = {"encode-once-d16-k4": (1250, 2600, 3900, 7800, 11700)}


#: committed checkpoints of the arms carried from session to session
CHECKPOINTS = Path(__file__).with_name("checkpoints")


def simulate_blind(folder: Path) -> None:
    """Blind specimens (worms 100-103 with their neurons, bead slide 120; never trained on)."""
    if (folder / ".complete").exists():
        return
    for _, spec in pair_specs("blind", "worm", range(100, 104), 256) + pair_specs(
        "blind", "beads", (120,), 256
    ):
        write_stack_pair(make_stack_pair(spec), folder, f"{spec.phantom}_{spec.seed:04d}")
    (folder / ".complete").write_text("simulated by benchmarks.learning\n")


def train(arm: str, data: Path, out: Path, steps: int) -> Path:
    """Train (or continue) one arm to ``steps`` steps, through its :data:`LEGS` below them; its model file."""
    model = out / f"{_stem(arm)}.pt"
    checkpoint = model.with_suffix(".ckpt")
    if not checkpoint.exists():
        committed = CHECKPOINTS / checkpoint.name
        if not committed.exists() and arm in CARRIED_FROM:  # a changed recipe: its parent's last weights
            committed = CHECKPOINTS / f"{_stem(CARRIED_FROM[arm])}.ckpt"
        if committed.exists():
            logger.info("%s: resuming from the committed checkpoint %s", arm, committed)
            out.mkdir(parents=True, exist_ok=True)
            shutil.copy2(committed, checkpoint)
    precision = [] if "--precision" in ARMS[arm] else ["--precision", "auto"]
    lr = SHIPPED_FT_LR if arm in FROM_SHIPPED else FINE_TUNE_LR if arm in GROWN else "2e-3"
    options = [*TWO_PLANES, *ARMS[arm], "--batch-size", "6", "--lr", lr, *precision]
    for leg in [n for n in LEGS.get(arm, ()) if n < steps] + [steps]:
        if steps_done(model) >= leg:
            continue
        start = ["--resume"] if checkpoint.exists() else ["--overwrite"]
        if arm in GROWN and not checkpoint.exists():
            start += ["--init", str(grown_parent(arm, out))]
        elif arm in FROM_SHIPPED and not checkpoint.exists():
            start += ["--init", str(shipped_model_path(2))]
        _mz(
            train_command(data, model, leg, 128, 200, "cpu", [*options, *start]),
            model.with_suffix(".log"),
            threads=1,
        )
    return model


def grown_parent(arm: str, out: Path) -> Path:
    """The model a :data:`GROWN` arm starts from (``<arm>.parent.pt``, made once): its parent arm's last
    weights (that arm trained in ``out``), grown as the arm says."""
    path = out / f"{_stem(arm)}.parent.pt"
    if path.exists():
        return path
    parent_arm, growth, _ = GROWN[arm]
    parent = out / f"{_stem(parent_arm)}.pt"
    if not parent.with_suffix(".ckpt").exists():
        raise FileNotFoundError(
            f"{arm} starts from {parent_arm}'s last weights, which {out} lacks: train that arm there first "
            f"(python -m benchmarks.learning --out {out} --arm {parent_arm})."
        )
    model = load_model(last_weights(parent))
    (growth(model) if growth is not None else model).save(path)
    return path


def with_attention(model: DeepZModel, heads: int) -> DeepZModel:
    """An encode-once ``model`` with a self-attention block of ``heads`` heads added at its bottleneck, its
    other weights the same: the same images until the block learns (it starts as the identity)."""
    config = model.card.architecture
    if not isinstance(config, EncodeOnceConfig) or config.attention_heads:
        raise ValueError(f"attention is added to an encode-once model without it, not {config.describe()}")
    grown = _regrown(model, f"self-attention, {heads} heads, added", attention_heads=heads)
    missing, unexpected = grown.network.load_state_dict(model.network.state_dict(), strict=False)
    block = f"bottom.{len(grown.network.bottom) - 1}."
    if unexpected or not all(key.startswith(block) for key in missing):
        raise RuntimeError(f"growing {model.path} did not keep its weights: {missing}, {unexpected}")
    return grown


def with_wider_decoder(model: DeepZModel, decoder_max: int) -> DeepZModel:
    """An encode-once ``model`` whose decoder levels are widened up to ``decoder_max`` channels, making the
    same images (Net2Net-style: each layer's old weights where its old channels now sit, the new channels
    initialised as a fresh network's, and every old channel blind to the new ones until training opens
    them; new channels then learn through the gradients of the weights that read them)."""
    config = model.card.architecture
    if not isinstance(config, EncodeOnceConfig) or decoder_max < config.decoder_max:
        raise ValueError(f"an encode-once decoder is widened, not narrowed: {config.describe()}")
    grown = _regrown(model, f"decoder widened to {decoder_max} channels", decoder_max=decoder_max)
    old, new = model.network.state_dict(), grown.network.state_dict()
    with torch.no_grad():
        for name, weights in new.items():
            if weights.shape == old[name].shape:
                weights.copy_(old[name])
                continue
            # a transposed convolution's weights are (in, out, ...), a convolution's (out, in, ...)
            out_dim, in_dim = (1, 0) if name.startswith("up.") and weights.ndim > 1 else (0, 1)
            halves = ".net.2." in name  # FiLM's scales | shifts
            out = _placed(old[name].shape[out_dim], weights.shape[out_dim], halves)
            if weights.ndim == 1:
                weights[out] = old[name]
                continue
            concatenated = name.startswith("merge.") and name.endswith(".0.weight")  # upsampled | features
            inputs = _placed(old[name].shape[in_dim], weights.shape[in_dim], concatenated)
            seen = weights.index_select(out_dim, out)
            seen.index_fill_(in_dim, _others(inputs, weights.shape[in_dim]), 0.0)  # old channels: no new ones
            seen.index_copy_(in_dim, inputs, old[name])
            weights.index_copy_(out_dim, out, seen)
    grown.network.load_state_dict(new)
    return grown


def _regrown(model: DeepZModel, note: str, **changes: Any) -> DeepZModel:
    """A fresh model of ``model``'s card with its architecture changed as ``changes`` say; its provenance
    the parent's, with ``note`` saying how it grew."""
    card = model.card.model_copy(update={"architecture": replace(model.card.architecture, **changes)})
    grown = DeepZModel.new(card)
    grown.card.provenance = {**model.card.provenance, "grown": note}
    return grown


def _placed(old: int, new: int, halves: bool) -> torch.Tensor:
    """Where a layer's ``old`` channels sit among its ``new`` ones: first, or where the channels are two
    halves (a concatenation, FiLM's scales and shifts), first in each half."""
    if not halves:
        return torch.arange(old)
    return torch.cat([torch.arange(old // 2), new // 2 + torch.arange(old // 2)])


def _others(placed: torch.Tensor, n: int) -> torch.Tensor:
    """The channels of ``n`` that are not ``placed``."""
    keep = torch.ones(n, dtype=torch.bool)
    keep[placed] = False
    return keep.nonzero().flatten()


def _stem(arm: str) -> str:
    """The name an arm's files (model, checkpoint, log) share, here and in :data:`CHECKPOINTS`."""
    return arm.replace("-", "_")


def steps_done(model: Path) -> int:
    """Steps an arm has trained: its model file's, or its checkpoint's where that went further."""
    done = load_model(model).card.provenance.get("steps_done", 0) if model.exists() else 0
    checkpoint = model.with_suffix(".ckpt")
    if checkpoint.exists():
        done = max(done, int(torch.load(checkpoint, map_location="cpu", weights_only=False)["step"]))
    return int(done)


def last_weights(model: Path) -> Path:
    """``model`` with its checkpoint's last weights instead of its best validation loss's, written beside
    it (``<arm>.last.pt``): where the validation loss is flat, the best loss's weights fall behind the
    rise of the later steps (the bfloat16 arm's leg to 28000 kept step 22400's; docs/models.md)."""
    checkpoint = torch.load(model.with_suffix(".ckpt"), map_location="cpu", weights_only=False)
    last = load_model(model)
    last.network.load_state_dict(checkpoint["net"])
    last.card.metrics = {"validation_loss": round(float(checkpoint["history"][-1]["val_loss"]), 5)}
    path = model.with_suffix(".last.pt")
    last.save(path)
    return path


def curves(models: dict[str, Path], png: Path) -> None:
    """Validation PCC against CPU hours and against supervised target planes, one line per arm."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 4), sharey=True)
    for arm, path in models.items():
        history = load_model(path).card.provenance["history"]
        pcc = [h["val_pcc"] for h in history]
        axes[0].plot([h["cpu_seconds"] / 3600 for h in history], pcc, marker=".", label=arm)
        axes[1].plot([h["supervised_planes"] / 1000 for h in history], pcc, marker=".", label=arm)
    axes[0].set_xlabel("training compute (CPU-thread hours)")
    axes[1].set_xlabel("target planes supervised (thousands)")
    axes[0].set_ylabel("validation PCC (whole frames)")
    for ax in axes:
        ax.grid(alpha=0.3)
        ax.legend()
    fig.suptitle("Learning efficiency, 2 planes, from scratch (benchmarks.learning)")
    fig.tight_layout()
    fig.savefig(png, dpi=110)
    plt.close(fig)


def compute_row(path: Path) -> dict[str, Any]:
    """What a model's training cost and reached: steps, CPU hours, supervised planes, validation PCC."""
    prov = load_model(path).card.provenance
    last = prov["history"][-1]
    return {
        "steps": prov["steps_done"],
        "cpu_hours": prov["train_cpu_seconds"] / 3600,
        "supervised_planes": last["supervised_planes"],
        "val_pcc_last": last["val_pcc"],
        "val_pcc_best": max(h["val_pcc"] for h in prov["history"]),
    }


def compute_table(rows: dict[str, dict[str, Any]]) -> str:
    """The markdown table of what each arm cost and its validation PCC."""
    lines = [
        "| generator | steps | CPU-thread hours | target planes supervised | validation PCC (last / best) |",
        "| --- | --- | --- | --- | --- |",
    ]
    for arm, r in rows.items():
        lines.append(
            f"| {arm} | {r['steps']} | {r['cpu_hours']:.2f} | {r['supervised_planes']} "
            f"| {r['val_pcc_last']:.3f} / {r['val_pcc_best']:.3f} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    """Simulate what is missing, train both arms, score them blind, write the tables and curves."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("runs/le"))
    parser.add_argument("--data", type=Path, default=Path("runs/data/gpu"), help="Training stacks.")
    defaults = ", ".join(f"{a}={n}" for a, n in STEPS.items())
    parser.add_argument("--steps", action="append", default=[], help=f"ARM=N (defaults: {defaults}).")
    parser.add_argument("--jobs", type=int, default=1, help="Arms trained side by side (one thread each).")
    parser.add_argument("--arm", action="append", choices=list(ARMS), help="Only these arms (default: all).")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    steps = STEPS | {k: int(v) for k, v in (s.split("=", 1) for s in args.steps)}
    simulate(args.data, "full")
    simulate_blind(args.out / "blind")
    arms = args.arm or list(ARMS)
    with ThreadPoolExecutor(max(1, args.jobs)) as pool:
        models = dict(
            zip(arms, pool.map(lambda a: train(a, args.data, args.out, steps[a]), arms), strict=True)
        )
    rows = {arm: compute_row(path) for arm, path in models.items()}
    # each arm twice: the weights of its best validation loss, and its last
    lasts = {arm: last_weights(path) for arm, path in models.items()}
    scores = {}
    for arm, path in models.items():
        trained = rows[arm]["steps"]
        scores[arm] = {"steps": trained, "summary": evaluate(arm, path, args.out, args.out)}
        last = evaluate(f"{arm}-last", lasts[arm], args.out, args.out)
        scores[f"{arm} (last weights)"] = {"steps": trained, "summary": last}
    # where the U-Net gets with ~15x the compute: the shipped 2-plane model on the same blind specimens
    shipped = load_model(shipped_model_path(2))
    scores["shipped U-Net (reference, not trained here)"] = {
        "steps": shipped.card.provenance["steps_done"],
        "summary": evaluate("shipped", shipped_model_path(2), args.out, args.out),
    }
    # whether each arm's virtual planes show their own depth (the blind worms, beside the shipped model)
    depth = probe([*models.values(), *lasts.values(), shipped_model_path(2)], args.out / "blind")
    plot(depth, args.out / "depth.png")
    curves(models, args.out / "learning.png")
    bands = {name: r["bands"] for name, r in depth.items()}
    (args.out / "learning.json").write_text(
        json.dumps({"compute": rows, "blind": scores, "depth": bands}, indent=2)
    )
    text = compute_table(rows) + "\n" + table(scores) + "\n" + depth_table(depth)
    (args.out / "learning.md").write_text(text)
    logger.info("wrote %s\n%s", args.out / "learning.md", text)


if __name__ == "__main__":
    main()
