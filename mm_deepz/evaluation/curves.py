"""Learning curves: a training's validation loss over its steps, every leg marked (``mm-deepz curves``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mm_deepz.errors import DeepZError, ModelFileError

from .report import _plt, _save


def training_record(path: Path) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(validation history, legs) of a model file (its card) or of a training checkpoint (``.ckpt``)."""
    if path.suffix == ".ckpt":
        import torch

        try:
            ck = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as e:
            raise ModelFileError(f"{path} is not a readable training checkpoint ({e}).") from e
        if not isinstance(ck, dict) or "history" not in ck:
            raise ModelFileError(f"{path} is not an mm-deepz training checkpoint (it has no history).")
        return list(ck["history"]), list(ck.get("legs", []))
    from mm_deepz.modelfile import load_model

    provenance = load_model(path).card.provenance
    if not provenance.get("history"):
        raise DeepZError(
            f"{path} carries no training history (models trained before 2026-11-27 do not): plot its "
            f"checkpoint instead ({path.with_suffix('.ckpt')})."
        )
    return list(provenance["history"]), list(provenance.get("legs", []))


def plot_curves(runs: dict[str, Path], out: Path, title: str = "Learning curves") -> Path:
    """Validation (and last-batch training) loss against step for each run, legs' starts dotted."""
    plt = _plt()
    import numpy as np

    fig, ax = plt.subplots(figsize=(9, 4.5))
    shown: list[float] = []
    for i, (name, path) in enumerate(runs.items()):
        history, legs = training_record(path)
        shown += [h["val_loss"] for h in history]
        color = f"C{i}"
        steps = [h["step"] for h in history]
        ax.plot(steps, [h["train_loss"] for h in history], color=color, alpha=0.25, lw=0.8)
        best = min(h["val_loss"] for h in history)
        ax.plot(
            steps, [h["val_loss"] for h in history], color=color, lw=1.6, label=f"{name} (best {best:.3f})"
        )
        for leg in legs[1:]:
            ax.axvline(leg["steps"][0], color=color, ls=":", lw=0.8)
    ax.set_xlabel("step")
    ax.set_ylabel("loss (validation: solid; last training batch: faint)")
    ax.set_yscale("log")
    # a transient divergence (a spike of 1e5 at the peak rate) must not flatten the rest of the curve
    ax.set_ylim(0.9 * min(shown), 2 * float(np.percentile(shown, 95)))
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    out.parent.mkdir(parents=True, exist_ok=True)
    return _save(fig, out, title, dpi=100)
