"""The package's documentation (README.md) and cover, written from the model card."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ..modelfile import DeepZModel


def readme(model: DeepZModel) -> str:
    """What the model does, how to feed it, what it was trained on and how it scored."""
    card = model.card
    o = card.optics
    p = card.provenance
    optics = ", ".join(
        f"{label} {value:g}{unit}"
        for label, value, unit in (
            ("NA", o.na, ""),
            ("emission", o.wavelength_em_um, " µm"),
            ("immersion index", o.immersion_index, ""),
            ("pixel", o.pixel_size_um, " µm in the sample"),
        )
        if value is not None
    )
    lines = [
        f"# Deep-Z: {card.input_modality} to {card.target_modality}, {card.n_planes} input plane(s)",
        "",
        (
            "Virtual refocusing after Wu, Rivenson et al., Nature Methods 2019 (Deep-Z): from measured "
            f"{card.input_modality} plane(s) and a digital propagation matrix (DPM), the "
            f"{card.target_modality} image on the DPM's surface. A uniform DPM gives a plane at another "
            "depth, many DPMs a virtual z-stack; a tilted or curved DPM refocuses onto that surface. Made "
            "and exported by mm-deepz (`mm-deepz export MODEL -o NAME.zip`)."
        ),
        "",
        "## Inputs and output",
        "",
        (
            f"- `planes` (batch, {card.n_planes}, y, x): the measured plane(s), camera counts, at depths "
            f"{list(card.input_offsets_um)} µm relative to each other (only their spacing matters). They are "
            f"normalized in the package: the {card.normalization['low_percentile']:g}th percentile of all "
            f"planes maps to 0, the {card.normalization['high_percentile']:g}th to 1."
        ),
        (
            f"- `dpm` (batch, {card.n_planes}, y, x), µm: for each plane, per pixel, the depth of the wanted "
            "surface minus the plane's depth (positive: deeper, towards larger stage z). Trained within "
            f"±{card.z_range_um:g} µm; beyond it the output is not to be trusted."
        ),
        "- `virtual` (batch, 1, y, x): the image on that surface, in the planes' normalized units.",
        f"- Sizes: y and x multiples of {card.architecture.multiple} px.",
        f"- Generator: {card.architecture.describe()}.",
        "",
        "## Microscope it was trained for",
        "",
        f"{optics}. Data of another pixel size needs another model (mm-deepz refuses it).",
        "",
        "## Training",
        "",
    ]
    if p:
        lines += [
            (
                f"- steps: {p.get('steps_done', '?')}, {p.get('train_seconds', 0) / 3600:.1f} h "
                f"({p.get('hardware', '?')}, torch {p.get('torch', '?')})"
            ),
            f"- last command: `{p.get('command', '?')}`",
        ]
        if parent := p.get("parent"):
            lines.append(f"- fine-tuned from {parent.get('path', '?')} (sha256 {parent.get('sha256', '?')})")
    else:
        lines.append("- no training record in the card")
    lines += ["", "## Validation", "", "Blind test (specimens never trained on):", ""]
    lines += [*_metrics(card.metrics.get("blind")), ""]
    lines += [
        (
            "The complete model card (every training leg, the data, the validation history) is the "
            "attachment `mm_deepz_card.json`."
        ),
        "",
    ]
    return "\n".join(lines)


def _metrics(blind: dict[str, Any] | None) -> list[str]:
    if not blind:
        return ["Not measured yet (`mm-deepz evaluate MODEL STACKS --write-card` stores it)."]
    rows = [
        "| mean over defocus | virtual | scanned widefield | input repeated |",
        "| --- | --- | --- | --- |",
    ]
    for key, label in (("mean_ssim", "SSIM"), ("mean_pcc", "PCC"), ("mean_psnr", "PSNR (dB)")):
        if key in blind:
            m = blind[key]
            rows.append(f"| {label} | {m['virtual']:.3f} | {m['widefield']:.3f} | {m['repeated']:.3f} |")
    if "pairs" in blind:
        rows += [
            "",
            f"Scored on {len(blind['pairs'])} specimens never trained on: {', '.join(blind['pairs'])}.",
        ]
    return rows


def cover_png(plane: np.ndarray, virtual: np.ndarray, path: Path) -> Path:
    """A 2:1 cover: the measured plane beside the virtual image on the test's tilted surface."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    def stretch(img: np.ndarray) -> np.ndarray:
        lo, hi = np.percentile(img, [1, 99.9])
        out: np.ndarray = np.clip((img - lo) / max(hi - lo, 1e-6), 0, 1)
        return out

    fig, axes = plt.subplots(1, 2, figsize=(8, 4), dpi=100)
    for ax, img, title in ((axes[0], plane, "measured plane"), (axes[1], virtual, "Deep-Z, tilted DPM")):
        ax.imshow(stretch(img), cmap="magma")
        ax.set_title(title)
        ax.axis("off")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path
