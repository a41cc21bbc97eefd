"""The evaluation report: metrics.json and PNG plots."""

from __future__ import annotations

import json
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

import numpy as np

from .evaluate import METHODS, PairEvaluation

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

COLORS = {"virtual": "tab:green", "repeated": "tab:gray", "widefield": "tab:blue"}
LABELS = {"virtual": "Deep-Z virtual", "repeated": "input plane repeated", "widefield": "scanned widefield"}


def _plt() -> ModuleType:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig: Figure, path: Path, title: str, dpi: int = 80) -> Path:
    fig.suptitle(title)
    fig.savefig(path, dpi=dpi)
    _plt().close(fig)
    return path


def _image(ax: Axes, img: np.ndarray, title: str | None = None, **kw: Any) -> None:
    ax.imshow(img, cmap="magma", vmin=0, vmax=1, **kw)
    ax.set_xticks([])
    ax.set_yticks([])
    if title:
        ax.set_title(title)


def write_report(summary: dict[str, Any], evals: list[PairEvaluation], directory: str | Path) -> list[Path]:
    """Write metrics.json and the plots; returns the files written."""
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    files = [d / "metrics.json"]
    per_pair = {
        e.name: {
            "defocus_um": e.defocus_um.tolist(),
            **{m: {k: v.tolist() for k, v in e.metrics[m].items()} for m in METHODS},
            "beads": e.beads,
            "neurons": e.neurons,
            "apparent_um": e.apparent_um.tolist() if e.apparent_um is not None else None,
            "surface": ({k: v for k, v in e.surface.items() if k != "images"} if e.surface else None),
        }
        for e in evals
    }
    files[0].write_text(json.dumps({"summary": summary, "pairs": per_pair}, indent=2))
    files.append(d / "summary.md")
    files[-1].write_text(summary_markdown(summary))
    files.append(_metric_plot(summary, d / "metrics_vs_defocus.png"))
    if summary.get("neurons"):
        files.append(_neuron_plot(summary, d / "neurons_f1.png"))
    for e in evals:
        stem = e.name.replace("/", "_")  # a pairs dataset's pairs are DATASET/FIELD
        files.append(_montage(e, d / f"montage_{stem}.png"))
        files.append(_xz(e, d / f"xz_{stem}.png"))
        if e.surface:
            files.append(_surface(e, e.surface, d / f"surface_{stem}.png"))
    return files


def _neuron_plot(summary: dict[str, Any], path: Path) -> Path:
    """Neuron F1 per defocus band: the model (bar: pooled; whisker: lowest to highest specimen), its
    parent and the widefield scan, each band marked PASS / FAIL as the verdict has it."""
    plt = _plt()
    nr = summary["neurons"]
    parent = (summary.get("parent") or {}).get("neurons") or {}
    keys = [k for k in nr if k.startswith("f1 ")]
    x = np.arange(len(keys))
    fig, ax = plt.subplots(figsize=(3.5 + 1.6 * len(keys), 4), constrained_layout=True)
    value = np.array([nr[k] for k in keys], float)
    spread = np.array([nr.get(f"spread {k}", [v, v]) for k, v in zip(keys, value, strict=True)], float)
    ax.bar(x - 0.27, value, 0.27, color=COLORS["virtual"], label="this model")
    ax.errorbar(x - 0.27, value, yerr=[value - spread[:, 0], spread[:, 1] - value], fmt="none", ecolor="k")
    if parent:
        ax.bar(x, [parent.get(k, np.nan) for k in keys], 0.27, color="#999999", label="parent")
    if all(f"widefield {k}" in nr for k in keys):
        ax.bar(
            x + 0.27,
            [nr[f"widefield {k}"] for k in keys],
            0.27,
            color=COLORS["widefield"],
            label="widefield scan",
        )
    for i, row in enumerate(r for r in summary.get("verdict", []) if r["what"].startswith("neuron")):
        marks = [f"{who[3:]}: {row[who]}" for who in ("vs_parent", "vs_widefield") if row[who]]
        ax.annotate("\n".join(marks), (i, 1.02), ha="center", va="bottom", fontsize=7)
    ax.set_xticks(x, [k.removeprefix("f1 ").replace(" um", " µm") for k in keys])
    ax.set_xlabel("distance from the nearest measured plane")
    ax.set_ylabel("neuron F1")
    ax.set_ylim(0, 1.25)
    ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=8)
    return _save(fig, path, f"neurons found vs {', '.join(nr['reference'])} ({nr['pairs']} specimens)")


def _metric_plot(summary: dict[str, Any], path: Path) -> Path:
    plt = _plt()
    d = np.asarray(summary["defocus_um"])
    fig, axes = plt.subplots(1, 4, figsize=(19, 4.2), constrained_layout=True)
    for ax, metric in zip(axes, ("ssim", "pcc", "psnr", "nrmse"), strict=True):
        for m in METHODS:
            ax.plot(d, summary["methods"][m][metric], "o-", ms=3, color=COLORS[m], label=LABELS[m])
        ax.set_xlabel("defocus from the stack centre (µm)")
        ax.set_title(metric.upper() + (" (dB)" if metric == "psnr" else ""))
        ax.grid(alpha=0.3)
    axes[0].legend()
    return _save(
        fig, path, f"Blind test vs mechanically scanned reference ({len(summary['pairs'])} stacks)", 90
    )


def _montage(e: PairEvaluation, path: Path) -> Path:
    plt = _plt()
    n = len(e.defocus_um)
    picks = np.unique(np.linspace(0, n - 1, 5).round().astype(int))
    fig, axes = plt.subplots(3, len(picks), figsize=(3 * len(picks), 9), constrained_layout=True)
    rows = (("widefield (scanned)", e.widefield), ("Deep-Z virtual", e.virtual), ("reference", e.reference))
    for r, (label, st) in enumerate(rows):
        for c, k in enumerate(picks):
            _image(axes[r, c], st[k], f"{e.defocus_um[k]:+.0f} µm" if r == 0 else None)
        axes[r, 0].set_ylabel(label)
    return _save(fig, path, f"{e.name}: input plane(s) at 0 µm; virtual planes vs reference")


def _xz(e: PairEvaluation, path: Path) -> Path:
    plt = _plt()
    y = int(np.argmax(e.reference.max(axis=0).max(axis=1)))
    fig, axes = plt.subplots(3, 1, figsize=(8, 7), constrained_layout=True)
    for ax, (label, st) in zip(
        axes, (("widefield", e.widefield), ("virtual", e.virtual), ("reference", e.reference)), strict=True
    ):
        ax.imshow(
            st[:, y, :],
            cmap="magma",
            vmin=0,
            vmax=1,
            aspect="auto",
            extent=(0, st.shape[2], e.defocus_um[-1], e.defocus_um[0]),
        )
        ax.set_ylabel(f"{label}\nz (µm)")
    axes[-1].set_xlabel("x (pixels)")
    return _save(fig, path, f"{e.name}: XZ section at y = {y}")


def _surface(e: PairEvaluation, s: dict[str, Any], path: Path) -> Path:
    plt = _plt()
    fig, axes = plt.subplots(1, 4, figsize=(16, 4.4), constrained_layout=True)
    panels = (
        ("input plane", e.input_planes[0] / max(float(e.input_planes[0].max()), 1.0)),
        (f"uniform DPM (SSIM {s['uniform_dpm']['ssim']:.3f})", s["images"]["uniform_dpm"]),
        (f"matching DPM (SSIM {s['matching_dpm']['ssim']:.3f})", s["images"]["matching_dpm"]),
        ("reference on the surface", s["images"]["reference"]),
    )
    for ax, (title, img) in zip(axes, panels, strict=True):
        _image(ax, img, title)
    lo, hi = s["height_range_um"]
    return _save(fig, path, f"{e.name}: refocusing onto a surface spanning {lo:+.1f} to {hi:+.1f} µm")


def summary_markdown(summary: dict[str, Any]) -> str:
    """Markdown tables of the summary (per-defocus SSIM/PSNR, depth placement, beads, surfaces)."""
    ms = summary["methods"]
    cols = [("ssim", "SSIM", ".3f"), ("pcc", "PCC", ".3f"), ("psnr", "PSNR (dB)", ".1f")]
    head = " | ".join(
        f"{label} {who}" for _, label, _ in cols for who in ("virtual", "repeated", "widefield")
    )
    lines = [f"| defocus (µm) | {head} |", "|" + " --- |" * (1 + 3 * len(cols))]
    for i, dz in enumerate(summary["defocus_um"]):
        cells = " | ".join(f"{ms[m][k][i]:{fmt}}" for k, _, fmt in cols for m in METHODS)
        lines.append(f"| {dz:+.0f} | {cells} |")
    means = " | ".join(
        (f"**{summary['mean_' + k][m]:{fmt}}**" if m == "virtual" else f"{summary['mean_' + k][m]:{fmt}}")
        for k, _, fmt in cols
        for m in METHODS
    )
    lines += [
        f"| **mean** | {means} |",
        "",
        (
            "repeated = the measured input plane at every depth; widefield = the mechanically scanned "
            "widefield plane at that depth. Each stack is matched to the percentile-normalized reference by "
            "one least-squares scale and offset before scoring (as CARE scores restorations)."
        ),
        "",
        "Smallest lead of the virtual stack over the better baseline, at any defocus: "
        + ", ".join(f"{label} {summary['margin_over_baselines'][k]:+{fmt}}" for k, label, fmt in cols)
        + ".",
    ]
    if placed := summary.get("depth_placement"):
        lines += [
            "",
            (
                "| distance from the stack centre | virtual planes | at their depth (within one z step) "
                "| median depth error (µm) |"
            ),
            "| --- | --- | --- | --- |",
            *(
                f"| {band.replace(' um', ' µm')} | {p['planes']} | {p['within_one_step']:.2f} "
                f"| {p['median_error_um']:g} |"
                for band, p in placed.items()
                if p["planes"]
            ),
            "",
            (
                "A virtual plane's apparent depth is that of the reference plane it matches best (Pearson); "
                "a network that only sharpens the nearest measured plane is at its depth only next to it."
            ),
        ]
    if b := summary.get("beads"):
        lines += [
            "",
            f"| beads (n = {b['n_beads']}) | virtual | reference | ratio |",
            "| --- | --- | --- | --- |",
            (
                f"| lateral FWHM (µm) | {b['virtual_lateral_um']:.2f} | {b['reference_lateral_um']:.2f} "
                f"| {b['lateral_ratio']:.2f} |"
            ),
            (
                f"| axial FWHM (µm) | {b['virtual_axial_um']:.2f} | {b['reference_axial_um']:.2f} "
                f"| {b['axial_ratio']:.2f} |"
            ),
        ]
    if nr := summary.get("neurons"):
        bands = [k for k in nr if k.startswith("f1 ")]
        lines += [
            "",
            f"| neurons ({nr['pairs']} worm stacks; reference: {', '.join(nr['reference'])}) | "
            + " | ".join(b.replace("f1 ", "F1 ").replace(" um", " µm") for b in bands)
            + " | brightness r |",
            "|" + " --- |" * (len(bands) + 2),
            "| virtual | " + " | ".join(f"{nr[b]:.2f}" for b in bands) + f" | {nr['brightness_r']:.2f} |",
        ]
        if all(f"widefield {b}" in nr for b in bands):
            lines.append(
                "| widefield scan | " + " | ".join(f"{nr['widefield ' + b]:.2f}" for b in bands) + " | |"
            )
        if all(f"spread {b}" in nr for b in bands):
            lines.append(
                "| virtual, lowest-highest specimen | "
                + " | ".join("{:.2f}-{:.2f}".format(*nr[f"spread {b}"]) for b in bands)
                + " | |"
            )
    if rows := summary.get("verdict"):
        from .verdict import MARGIN, verdict_lines

        lines += ["", f"Verdict (pass: at most {MARGIN} below the comparator):", ""]
        lines += [f"- {line}" for line in verdict_lines(rows)]
    if surf := summary.get("surfaces"):
        lines += [
            "",
            (
                "| surface | height range (µm) | SSIM matching DPM | SSIM uniform DPM "
                "| PCC matching | PCC uniform |"
            ),
            "|" + " --- |" * 6,
        ]
        for name, r in surf.items():
            lo, hi = r["height_range_um"]
            lines.append(
                f"| {name} | {lo:+.1f} to {hi:+.1f} | {r['matching_dpm']['ssim']:.3f} "
                f"| {r['uniform_dpm']['ssim']:.3f} | {r['matching_dpm']['pcc']:.3f} "
                f"| {r['uniform_dpm']['pcc']:.3f} |"
            )
    return "\n".join(lines) + "\n"
