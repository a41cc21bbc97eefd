"""Several models' blind tests side by side (``mm-deepz compare``): one table, one plot.

Each input is the report folder (or its ``metrics.json``) that ``mm-deepz evaluate`` wrote. The
reports must have scored the same stacks: a comparison over different specimens says nothing.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from mm_deepz.errors import ReportError
from mm_deepz.neurons import BANDS as NEURON_BANDS
from mm_deepz.neurons import band_name

from .report import _plt, _save

#: defocus (µm) from which a virtual plane counts as far from the stack centre ("far PCC")
FAR_UM = 6.0
#: the neuron F1 keys of an evaluation summary, one per defocus band, and their labels
BANDS = tuple(f"f1 {band_name(lo, hi)}" for lo, hi in NEURON_BANDS)
BAND_LABELS = tuple(f"{lo:g}-{hi:g} µm" for lo, hi in NEURON_BANDS)
#: the summary fields a comparison reads
FIELDS = ("pairs", "defocus_um", "methods", "mean_ssim", "mean_pcc", "mean_psnr")


def read_summary(path: Path) -> dict[str, Any]:
    """The summary of an evaluation report (its folder or its ``metrics.json``)."""
    file = path / "metrics.json" if path.is_dir() else path
    try:
        summary = json.loads(file.read_text()).get("summary")
    except FileNotFoundError:
        raise ReportError(
            f"{path}: no metrics.json; run `mm-deepz evaluate MODEL STACKS --output {path}`."
        ) from None
    except (ValueError, AttributeError, UnicodeDecodeError) as e:
        raise ReportError(f"{file} is not an mm-deepz evaluation report ({e}).") from None
    missing = [k for k in FIELDS if k not in summary] if isinstance(summary, dict) else ["summary"]
    if missing:
        raise ReportError(f"{file} is not an mm-deepz evaluation report (it has no {', '.join(missing)}).")
    return dict(summary)


def compare_reports(reports: dict[str, Path]) -> dict[str, dict[str, Any]]:
    """Read every report; refuse a set that did not score the same stacks."""
    if not reports:
        raise ReportError(
            "No reports to compare: give the report folders of `mm-deepz evaluate` (its --output)."
        )
    summaries = {name: read_summary(path) for name, path in reports.items()}
    first_name, first = next(iter(summaries.items()))
    for name, s in summaries.items():
        if sorted(s["pairs"]) != sorted(first["pairs"]) or s["defocus_um"] != first["defocus_um"]:
            raise ReportError(
                f"{name} scored {', '.join(s['pairs'])} but {first_name} scored {', '.join(first['pairs'])}"
                " (or other defocus planes): evaluate every model on the same stacks."
            )
    return summaries


def far_pcc(summary: dict[str, Any]) -> float:
    """Mean PCC of the virtual planes at least ``FAR_UM`` from the stack centre."""
    d = np.abs(np.asarray(summary["defocus_um"]))
    pcc = np.asarray(summary["methods"]["virtual"]["pcc"])
    return float(pcc[d >= FAR_UM].mean()) if (d >= FAR_UM).any() else float("nan")


def comparison_markdown(summaries: dict[str, dict[str, Any]]) -> str:
    """One row per model: mean SSIM / PCC / PSNR, far PCC, bead FWHM ratios, neuron F1, brightness r."""
    head = (
        f"| model | SSIM | PCC | PCC at ≥ {FAR_UM:.0f} µm | PSNR dB | bead FWHM ratio lat. / ax. "
        f"| neuron F1 all ({' / '.join(b.removesuffix(' µm') for b in BAND_LABELS)} µm) | brightness r |"
    )
    lines = [head, "|" + " --- |" * 8]
    for name, s in summaries.items():
        b, nr = s.get("beads") or {}, s.get("neurons") or {}
        beads = f"{b['lateral_ratio']:.2f} / {b['axial_ratio']:.2f}" if b else "–"
        neurons = f"{nr['f1 all']:.2f} ({' / '.join(f'{nr[k]:.2f}' for k in BANDS)})" if nr else "–"
        r = f"{nr['brightness_r']:.2f}" if nr else "–"
        lines.append(
            f"| {name} | {s['mean_ssim']['virtual']:.3f} | {s['mean_pcc']['virtual']:.3f} | "
            f"{far_pcc(s):.3f} | {s['mean_psnr']['virtual']:.1f} | {beads} | {neurons} | {r} |"
        )
    return "\n".join(lines) + "\n"


def plot_comparison(summaries: dict[str, dict[str, Any]], out: Path) -> Path:
    """PCC against defocus for each model (scanned widefield dashed), and neuron F1 per band."""
    plt = _plt()
    fig, (ax, bx) = plt.subplots(
        1,
        2,
        figsize=(13, 5 + 0.2 * len(summaries)),
        gridspec_kw={"width_ratios": [3, 2]},
        layout="constrained",
    )
    first = next(iter(summaries.values()))
    ax.plot(first["defocus_um"], first["methods"]["widefield"]["pcc"], "k--", lw=1, label="scanned widefield")
    width = 0.8 / len(summaries)
    for i, (name, s) in enumerate(summaries.items()):
        ax.plot(s["defocus_um"], s["methods"]["virtual"]["pcc"], "o-", ms=3, color=f"C{i}", label=name)
        if nr := s.get("neurons"):
            bx.bar(
                np.arange(len(BANDS)) + i * width, [nr[k] for k in BANDS], width, color=f"C{i}", label=name
            )
    ax.set_xlabel("defocus from the stack centre (µm)")
    ax.set_ylabel("PCC with the reference")
    ax.grid(alpha=0.3)
    # the legend goes below the plot, where it hides no curve
    ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.13), ncol=2)
    bx.set_xticks(np.arange(len(BANDS)) + 0.4 - width / 2, BAND_LABELS)
    bx.set_ylabel("neuron F1 (from the measured planes)")
    bx.set_ylim(0, 1)
    bx.grid(alpha=0.3, axis="y")
    out.parent.mkdir(parents=True, exist_ok=True)
    stacks = ", ".join(first["pairs"])
    return _save(fig, out, f"Blind test, same stacks ({stacks})", dpi=100)
