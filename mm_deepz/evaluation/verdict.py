"""Pass / fail of a model against its parent and against the widefield scan, band by band.

What a microscopist asks of a fine-tuned model scored blind on their own specimens: does it find
the neurons the confocal scan finds at each distance from the measured planes, as well as the model
it started from, and as well as scanning the widefield stack would? A band passes when the model's
F1 is at least the comparator's less :data:`MARGIN`.
"""

from __future__ import annotations

import math
from typing import Any

#: F1 by which a model may trail a comparator and still pass (about the F1 step of one neuron in a
#: band of ~20: the bands far from focus hold few neurons per specimen)
MARGIN = 0.05


def _judge(value: float, comparator: float | None) -> str | None:
    if comparator is None or not math.isfinite(comparator):
        return None
    if not math.isfinite(value):
        return "fail"
    return "pass" if value >= comparator - MARGIN else "fail"


def verdict(summary: dict[str, Any], parent: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """One row per neuron band (model F1, its spread across specimens, the parent's and the widefield
    scan's F1, pass / fail against each) and one for the mean PCC; empty without neuron scores."""
    nr = summary.get("neurons")
    if not nr:
        return []
    parent_nr = (parent or {}).get("neurons") or {}
    rows = []
    for key in (k for k in nr if k.startswith("f1 ")):
        band = key.removeprefix("f1 ")
        value = float(nr[key])
        p = parent_nr.get(key)
        w = nr.get(f"widefield {key}")
        rows.append(
            {
                "what": f"neuron F1 {band}",
                "model": value,
                "spread": nr.get(f"spread {key}"),
                "parent": p,
                "widefield": w,
                "vs_parent": _judge(value, p),
                "vs_widefield": _judge(value, w),
            }
        )
    pcc = summary["mean_pcc"]
    parent_pcc = (parent or {}).get("mean_pcc", {}).get("virtual")
    rows.append(
        {
            "what": "mean PCC",
            "model": pcc["virtual"],
            "spread": None,
            "parent": parent_pcc,
            "widefield": pcc["widefield"],
            "vs_parent": _judge(pcc["virtual"], parent_pcc),
            "vs_widefield": _judge(pcc["virtual"], pcc["widefield"]),
        }
    )
    return rows


def verdict_lines(rows: list[dict[str, Any]]) -> list[str]:
    """The rows as lines a person reads at a glance."""
    lines = []
    for r in rows:
        text = f"{r['what'].replace(' um', ' µm')}: {r['model']:.2f}"
        if r["spread"]:
            text += f" (specimens {r['spread'][0]:.2f}-{r['spread'][1]:.2f})"
        for who, label in (("parent", "parent"), ("widefield", "widefield scan")):
            if r[f"vs_{who}"] is not None:
                text += f"; {label} {r[who]:.2f}: {r[f'vs_{who}'].upper()}"
        lines.append(text)
    return lines
