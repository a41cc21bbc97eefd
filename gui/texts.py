"""What the panel writes for people: a model card in a few lines, the run's timing, and the core's
messages with command-line options replaced by what to do in the panel."""

from __future__ import annotations

import datetime
from pathlib import Path
from typing import Any

from acquisition_hooks.estimate import duration_text, when_text
from mm_deepz.modelfile import DeepZModel


def card_text(model: DeepZModel) -> str:
    """A model card in a few lines: inputs, trained range, optics, modalities, metrics."""
    c = model.card
    o = c.optics
    optics = ", ".join(
        f"{k} {v:g}"
        for k, v in (("NA", o.na), ("λem µm", o.wavelength_em_um), ("n", o.immersion_index))
        if v is not None
    )
    lines = [
        f"{Path(model.path or 'unsaved model').name}  (sha256 {str(model.sha256)[:12]})",
        f"inputs: {c.n_planes} plane(s) at {', '.join(f'{z:+g}' for z in c.input_offsets_um)} µm",
        f"generator: {c.architecture.describe()}",
        f"trained range: ±{c.z_range_um:g} µm from an input plane",
        f"optics: pixel {o.pixel_size_um:g} µm" + (f", {optics}" if optics else ""),
        f"{c.input_modality} → {c.target_modality}",
    ]
    lines += metric_lines(c.metrics)
    trained = c.provenance.get("steps_done"), c.provenance.get("hardware")
    if trained[0]:
        lines.append(f"trained {trained[0]} steps on {trained[1]}")
    return "\n".join(lines)


def metric_lines(metrics: dict[str, Any]) -> list[str]:
    """The card's figures, rounded and explained (the blind test against its two baselines)."""
    lines = []
    blind = metrics.get("blind") or {}
    if blind:
        lines.append(
            f"blind test ({len(blind.get('pairs', []))} specimens never trained on), virtual "
            "(repeated input plane, scanned widefield stack):"
        )
        for key, name, unit, digits in (
            ("ssim", "SSIM", "", 3),
            ("pcc", "PCC", "", 3),
            ("psnr", "PSNR", " dB", 1),
        ):
            m = blind.get(f"mean_{key}") or {}
            if m:
                lines.append(
                    f"  {name} {m['virtual']:.{digits}f}{unit} ({m['repeated']:.{digits}f}, "
                    f"{m['widefield']:.{digits}f})"
                )
        if margin := blind.get("margin_over_baselines"):
            leads = ", ".join(
                f"{name} {margin[key]:+.{digits}f}"
                for key, name, digits in (("ssim", "SSIM", 3), ("pcc", "PCC", 3), ("psnr", "PSNR", 2))
                if key in margin
            )
            lines.append(
                f"  smallest lead over the better baseline at any defocus: {leads} "
                "(negative: a baseline is better at some defocus)"
            )
    lines += [f"{k.replace('_', ' ')}: {v:.4g}" for k, v in metrics.items() if isinstance(v, float)]
    return lines


#: what the core's messages call a command-line option, in the panel's own words
PANEL_WORDS = {
    "(--overwrite; the panel asks)": "(tick \u201creplace an existing container\u201d; the panel asks "
    "before replacing)",
    "or pass --model": "or choose a model file",
    "with --model": "in the model field",
    "(--channel-group)": "(start the panel with `mm-deepz gui --channel-group NAME`)",
    "with --input-preset": "with `mm-deepz gui --input-preset NAME`",
    "with --reference-preset": "with `mm-deepz gui --reference-preset NAME`",
}


def in_panel_words(message: str) -> str:
    """A message with command-line options replaced by what to do in the panel."""
    for cli, panel in PANEL_WORDS.items():
        message = message.replace(cli, panel)
    return message


def timing_text(done: int, total: int, elapsed_s: float, interval_s: float) -> str:
    """``next time point in 3 s · ETA 14:05 today (12 min)`` from the run's progress so far; a time point
    that is late says so (the interval is not kept)."""
    if total <= 0 or done >= total:
        return ""
    parts = []
    if interval_s > 0:
        due = done * interval_s - elapsed_s
        if due >= -1.0:
            parts.append(f"next time point in {max(0.0, due):.0f} s")
        else:
            parts.append(f"t={done} is {-due:.0f} s late: the {interval_s:g} s interval is not kept")
        left = max(0.0, (total - 1) * interval_s - elapsed_s) + (elapsed_s / done if done else interval_s)
        left = max(left, elapsed_s / done * (total - done) if done else 0.0)
    elif done:
        left = elapsed_s / done * (total - done)  # as fast as possible: at the pace so far
    else:
        return "first time point…"
    now = datetime.datetime.now()
    eta = now + datetime.timedelta(seconds=left)
    parts.append(f"ETA {when_text(eta, now)} ({duration_text(left)})")
    return " · ".join(parts)
