"""The evaluation report: metrics.json and PNG plots."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from .evaluate import METHODS, PairEvaluation

COLORS = {"virtual": "tab:green", "repeated": "tab:gray", "widefield": "tab:blue"}
LABELS = {"virtual": "Deep-Z virtual", "repeated": "input plane repeated", "widefield": "scanned widefield"}


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def write_report(summary: dict, evals: list[PairEvaluation], directory: str | Path) -> list[Path]:
    """Write metrics.json and the plots; returns the files written."""
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    files = [d / "metrics.json"]
    per_pair = {e.name: {"defocus_um": e.defocus_um.tolist(),
                         **{m: {k: v.tolist() for k, v in e.metrics[m].items()} for m in METHODS},
                         "beads": e.beads, "surface": ({k: v for k, v in e.surface.items() if k != "images"}
                                                       if e.surface else None)} for e in evals}
    files[0].write_text(json.dumps({"summary": summary, "pairs": per_pair}, indent=2))
    files.append(d / "summary.md")
    files[-1].write_text(summary_markdown(summary))
    files.append(_metric_plot(summary, d / "metrics_vs_defocus.png"))
    for e in evals:
        files.append(_montage(e, d / f"montage_{e.name}.png"))
        files.append(_xz(e, d / f"xz_{e.name}.png"))
        if e.surface:
            files.append(_surface(e, d / f"surface_{e.name}.png"))
    return files


def _metric_plot(summary: dict, path: Path) -> Path:
    plt = _plt()
    d = np.asarray(summary["defocus_um"])
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.2), constrained_layout=True)
    for ax, metric in zip(axes, ("ssim", "psnr", "nrmse"), strict=True):
        for m in METHODS:
            ax.plot(d, summary["methods"][m][metric], "o-", ms=3, color=COLORS[m], label=LABELS[m])
        ax.set_xlabel("defocus from the stack centre (µm)")
        ax.set_title(metric.upper() + (" (dB)" if metric == "psnr" else ""))
        ax.grid(alpha=0.3)
    axes[0].legend()
    fig.suptitle(f"Blind test vs mechanically scanned reference ({len(summary['pairs'])} stacks)")
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def _montage(e: PairEvaluation, path: Path) -> Path:
    plt = _plt()
    n = len(e.defocus_um)
    picks = np.unique(np.linspace(0, n - 1, 5).round().astype(int))
    fig, axes = plt.subplots(3, len(picks), figsize=(3 * len(picks), 9), constrained_layout=True)
    rows = (("widefield (scanned)", e.widefield), ("Deep-Z virtual", e.virtual), ("reference", e.reference))
    for r, (label, st) in enumerate(rows):
        for c, k in enumerate(picks):
            ax = axes[r, c]
            ax.imshow(st[k], cmap="magma", vmin=0, vmax=1)
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0:
                ax.set_title(f"{e.defocus_um[k]:+.0f} µm")
            if c == 0:
                ax.set_ylabel(label)
    fig.suptitle(f"{e.name}: input plane(s) at 0 µm; virtual planes vs reference")
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return path


def _xz(e: PairEvaluation, path: Path) -> Path:
    plt = _plt()
    y = int(np.argmax(e.reference.max(axis=0).max(axis=1)))
    fig, axes = plt.subplots(3, 1, figsize=(8, 7), constrained_layout=True)
    for ax, (label, st) in zip(axes, (("widefield", e.widefield), ("virtual", e.virtual),
                                      ("reference", e.reference)), strict=True):
        ax.imshow(st[:, y, :], cmap="magma", vmin=0, vmax=1, aspect="auto",
                  extent=(0, st.shape[2], e.defocus_um[-1], e.defocus_um[0]))
        ax.set_ylabel(f"{label}\nz (µm)")
    axes[-1].set_xlabel("x (pixels)")
    fig.suptitle(f"{e.name}: XZ section at y = {y}")
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return path


def _surface(e: PairEvaluation, path: Path) -> Path:
    plt = _plt()
    s = e.surface
    fig, axes = plt.subplots(1, 4, figsize=(16, 4.4), constrained_layout=True)
    panels = (("input plane", e.input_planes[0] / max(float(e.input_planes[0].max()), 1.0)),
              (f"uniform DPM (SSIM {s['uniform_dpm']['ssim']:.3f})", s["images"]["uniform_dpm"]),
              (f"matching DPM (SSIM {s['matching_dpm']['ssim']:.3f})", s["images"]["matching_dpm"]),
              ("reference on the surface", s["images"]["reference"]))
    for ax, (title, img) in zip(axes, panels, strict=True):
        ax.imshow(img, cmap="magma", vmin=0, vmax=1)
        ax.set_title(title)
        ax.set_xticks([])
        ax.set_yticks([])
    lo, hi = s["height_range_um"]
    fig.suptitle(f"{e.name}: refocusing onto a surface spanning {lo:+.1f} to {hi:+.1f} µm")
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return path


def summary_markdown(summary: dict) -> str:
    """Markdown tables of the summary (per-defocus SSIM/PSNR, beads, surfaces)."""
    ms = summary["methods"]
    lines = ["| defocus (µm) | SSIM virtual | SSIM repeated input | SSIM scanned widefield "
             "| PSNR virtual (dB) | PSNR repeated | PSNR widefield |", "|" + " --- |" * 7]
    for i, dz in enumerate(summary["defocus_um"]):
        lines.append(f"| {dz:+.0f} | {ms['virtual']['ssim'][i]:.3f} | {ms['repeated']['ssim'][i]:.3f} "
                     f"| {ms['widefield']['ssim'][i]:.3f} | {ms['virtual']['psnr'][i]:.1f} "
                     f"| {ms['repeated']['psnr'][i]:.1f} | {ms['widefield']['psnr'][i]:.1f} |")
    lines.append(f"| **mean** | **{summary['mean_ssim']['virtual']:.3f}** | {summary['mean_ssim']['repeated']:.3f} "
                 f"| {summary['mean_ssim']['widefield']:.3f} | **{summary['mean_psnr']['virtual']:.1f}** "
                 f"| {summary['mean_psnr']['repeated']:.1f} | {summary['mean_psnr']['widefield']:.1f} |")
    lines.append("")
    lines.append(f"Virtual SSIM above both baselines at every defocus: "
                 f"**{summary['virtual_beats_baselines_at_every_defocus']}**")
    if b := summary.get("beads"):
        lines += ["", "| beads (n = %d) | virtual | reference | ratio |" % b["n_beads"], "| --- | --- | --- | --- |",
                  f"| lateral FWHM (µm) | {b['virtual_lateral_um']:.2f} | {b['reference_lateral_um']:.2f} "
                  f"| {b['lateral_ratio']:.2f} |",
                  f"| axial FWHM (µm) | {b['virtual_axial_um']:.2f} | {b['reference_axial_um']:.2f} "
                  f"| {b['axial_ratio']:.2f} |"]
    if surf := summary.get("surfaces"):
        lines += ["", "| surface | height range (µm) | SSIM matching DPM | SSIM uniform DPM "
                  "| PSNR matching | PSNR uniform |", "|" + " --- |" * 6]
        for name, r in surf.items():
            lo, hi = r["height_range_um"]
            lines.append(f"| {name} | {lo:+.1f} to {hi:+.1f} | {r['matching_dpm']['ssim']:.3f} "
                         f"| {r['uniform_dpm']['ssim']:.3f} | {r['matching_dpm']['psnr']:.1f} "
                         f"| {r['uniform_dpm']['psnr']:.1f} |")
    return "\n".join(lines) + "\n"
