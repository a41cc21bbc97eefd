"""The report of ``mm-deepz pairs check``: ``checks.json`` and ``checks.png``, read in a minute."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import numpy as np

from .check import CheckLimits, PairCheck
from .stacks import Stack


def write_check_report(
    checks: list[PairCheck], stacks: dict[str, tuple[Stack, Stack]], out: Path, limits: CheckLimits
) -> list[Path]:
    """Write the checks (JSON) and a picture: each pair's registration confidence and structure above
    noise against the limits, and the projections of the quarantined pairs with their first reason."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out.mkdir(parents=True, exist_ok=True)
    doc = {
        "limits": limits.__dict__,
        "passed": [c.name for c in checks if c.passed],
        "quarantined": {c.name: c.reasons for c in checks if not c.passed},
        "pairs": [c.to_json() for c in checks],
    }
    json_path = out / "checks.json"
    json_path.write_text(json.dumps(doc, indent=2))
    bad = [c for c in checks if not c.passed][:6]
    fig = plt.figure(figsize=(12, 4.2 + 3.2 * bool(bad)), constrained_layout=True)
    grid = fig.add_gridspec(2 if bad else 1, max(2, 2 * len(bad)), height_ratios=[2, 2] if bad else [1])
    ax = fig.add_subplot(grid[0, : max(1, grid.ncols // 2)])
    colours = ["tab:green" if c.passed else "tab:red" for c in checks]
    ax.bar(range(len(checks)), [c.confidence for c in checks], color=colours)
    ax.axhline(limits.min_confidence, color="k", ls="--", lw=1)
    ax.set(
        ylabel="registration confidence", xlabel="pair", ylim=(min(0.0, *(c.confidence for c in checks)), 1.0)
    )
    ax.set_title(f"{len(doc['passed'])} of {len(checks)} pairs pass (red: quarantined)")
    ax2 = fig.add_subplot(grid[0, max(1, grid.ncols // 2) :])
    ax2.scatter([c.contrast["input"] for c in checks], [c.contrast["target"] for c in checks], c=colours)
    ax2.axvline(limits.min_contrast_input, color="k", ls="--", lw=1)
    ax2.axhline(limits.min_contrast_target, color="k", ls="--", lw=1)
    ax2.set(xscale="log", yscale="log", xlabel="input: structure / noise", ylabel="target: structure / noise")
    for i, c in enumerate(bad):
        a, b = stacks[c.name]
        for j, (stack, what) in enumerate(((a, "input"), (b, "target"))):
            axi = fig.add_subplot(grid[1, 2 * i + j])
            axi.imshow(np.asarray(stack.data).max(0), cmap="gray")
            axi.set_axis_off()
            axi.set_title(f"{c.name}: {what}", fontsize=7)
            if j == 0:  # the first reason, under the pair
                axi.text(
                    1.0,
                    -0.08,
                    textwrap.fill(c.reasons[0].split(":")[0], 34),
                    transform=axi.transAxes,
                    ha="center",
                    va="top",
                    fontsize=7,
                    color="tab:red",
                )
    png = out / "checks.png"
    fig.savefig(png, dpi=110)
    plt.close(fig)
    return [json_path, png]
