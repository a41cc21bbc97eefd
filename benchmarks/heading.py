"""Where each generator is heading: blind figures against training compute, their gain per doubling of
compute, and the compute each would need at that gain to reach #32's neuron goals.

``python -m benchmarks.heading --points docs/learning_heading.json --png docs/img/learning_heading.png``
prints the markdown table of docs/models.md ("Where each generator is heading").

The points are the scored models of each training lineage (a JSON file, each point with its source:
the learning benchmark's tables and cards, `mm-deepz evaluate` reports): training compute in
CPU-thread hours (a U-Net step counted at its measured CPU cost, whatever device ran it), blind mean
PCC and neuron F1 over all planes and 6-10 µm from the nearest measured plane. A lineage's gain is the
least-squares slope of a figure against log2(compute), over its points since its far band first found a
neuron (off the plateau every run crosses first), and over its last doubling of compute alone.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path
from typing import Any

import numpy as np

#: beyond this many CPU-thread hours (a year of one thread) an extrapolation says only "more"
MOST_HOURS = 10_000
#: the figures fitted, their labels and #32's goals
FIGURES = {"f1_far": ("neuron F1, 6-10 µm", 0.85), "f1_all": ("neuron F1, all planes", 0.93)}


def gain(points: list[dict[str, Any]], figure: str, last_doubling: bool = False) -> float:
    """The least-squares gain of ``figure`` per doubling of compute since the far band left zero (or
    over the last doubling of compute only); NaN with fewer than two points."""
    if last_doubling:
        fitted = [p for p in points if p["hours"] >= points[-1]["hours"] / 2]
    else:
        fitted = points[next((i for i, p in enumerate(points) if p["f1_far"] > 0), len(points)) :]
    if len(fitted) < 2:
        return math.nan
    x = np.log2([p["hours"] for p in fitted])
    return float(np.polyfit(x, [p[figure] for p in fitted], 1)[0])


def hours_to(points: list[dict[str, Any]], figure: str, goal: float, per_doubling: float) -> float:
    """The compute (CPU-thread hours) at which ``figure`` reaches ``goal`` from the lineage's last point,
    gaining ``per_doubling`` per doubling; inf where it does not gain."""
    last = points[-1]
    if last[figure] >= goal:
        return float(last["hours"])
    doublings = (goal - last[figure]) / per_doubling if per_doubling > 0 else math.inf
    return float(last["hours"] * 2**doublings) if doublings < 64 else math.inf


def table(lineages: list[dict[str, Any]]) -> str:
    """The markdown table of the lineages to fit (``"fit"``, a run long enough to have a slope): each
    one's last point, gains per doubling and compute to the goals."""
    head = ["lineage", "blind set", "last point: hours, PCC, F1 all (6-10 µm)"]
    for label, goal in FIGURES.values():
        head += [f"{label}: gain per doubling (last doubling)", f"hours to {goal} at either gain"]
    rows = ["| " + " | ".join(head) + " |", "| " + " | ".join(["---"] * len(head)) + " |"]
    for lineage in (lineage for lineage in lineages if lineage.get("fit", True)):
        points = lineage["points"]
        last = points[-1]
        cells = [lineage["name"], lineage["blind_set"]]
        cells.append(f"{last['hours']:.1f}, {last['pcc']:.3f}, {last['f1_all']:.2f} ({last['f1_far']:.2f})")
        for figure, (_, goal) in FIGURES.items():
            since, recent = gain(points, figure), gain(points, figure, last_doubling=True)
            cells.append(f"{since:+.3f} ({recent:+.3f})")
            cells.append(" / ".join(_hours(hours_to(points, figure, goal, g)) for g in (since, recent)))
        rows.append("| " + " | ".join(cells) + " |")
    return "\n".join(rows) + "\n"


def _hours(hours: float) -> str:
    if math.isnan(hours) or math.isinf(hours):
        return "never"
    return f"{hours:,.0f}" if hours <= MOST_HOURS else f"> {MOST_HOURS:,}"


def plot(lineages: list[dict[str, Any]], png: Path) -> None:
    """Blind PCC and neuron F1 (all planes, 6-10 µm) against compute, one line per lineage, the goals."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = {"pcc": ("blind mean PCC", None), **FIGURES}
    fig, axes = plt.subplots(1, len(panels), figsize=(14, 5))
    for lineage in lineages:
        hours = [p["hours"] for p in lineage["points"]]
        style = "--" if lineage.get("other_blind_set") else "-"
        for ax, figure in zip(axes, panels, strict=True):
            values = [p[figure] for p in lineage["points"]]
            ax.plot(hours, values, style, marker="o", ms=4, label=lineage["name"])
    for ax, (label, goal) in zip(axes, panels.values(), strict=True):
        if goal is not None:
            ax.axhline(goal, color="k", lw=0.8, ls=":")
        ax.set_xscale("log", base=2)
        ax.set_xlabel("training compute (CPU-thread hours)")
        ax.set_title(label if goal is None else f"{label} (goal {goal}, dotted)")
        ax.grid(alpha=0.3)
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=2, fontsize=8)
    fig.suptitle("#32: where each generator is heading (dashed: the campaign's blind set, 2 worms)")
    fig.tight_layout(rect=(0, 0.16, 1, 1))
    fig.savefig(png, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--points", type=Path, default=Path("docs/learning_heading.json"))
    parser.add_argument("--png", type=Path, default=Path("docs/img/learning_heading.png"))
    args = parser.parse_args(argv)
    lineages = json.loads(args.points.read_text())["lineages"]
    plot(lineages, args.png)
    print(table(lineages), end="")


if __name__ == "__main__":
    main()
