"""The C. elegans experiment, on simulated worms never used in training: does a virtual stack
let a biologist find the same neurons, at the same places, with the same activity, as a
mechanically scanned stack?

A crawling, GCaMP-active worm is imaged over a time-lapse by five methods: Deep-Z from
1 and 2 widefield planes (each model given), a scanned confocal stack, a scanned widefield
stack, and the input plane alone. Every method's stacks go through the same neuron analysis
(:mod:`mm_deepz.neurons`), scored against the simulator's truth: detection precision / recall
/ F1 by defocus band, localisation error, the fraction of neurons tracked over >= 90 % of the
time points without an identity switch, and the correlation of each tracked neuron's trace
with its true activity. Light dose per time point is the exposure the method needs.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..engine import Predictor
from ..modelfile import DeepZModel
from ..neurons import (
    BANDS,
    DetectionConfig,
    band_name,
    detect_neurons,
    detection_scores,
    link_tracks,
    pool_detection_scores,
    tracking_scores,
)

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ExperimentConfig:
    """The specimens and the time-lapse (µm, ms, s)."""

    seeds: tuple[int, ...] = (160, 161)
    time_points: int = 12
    interval_s: float = 1.0
    #: the worm crawls this fast (x, y); (0, 0) keeps it still
    drift_um_per_s: tuple[float, float] = (0.4, -0.2)
    frame: int = 256
    z_half_range_um: float = 10.0
    z_step_um: float = 1.0
    widefield_exposure_ms: float = 10.0
    confocal_exposure_ms: float = 100.0
    n_neurons: int = 200
    detection: DetectionConfig = field(default_factory=DetectionConfig)


def run_experiment(
    models: dict[str, DeepZModel], cfg: ExperimentConfig, device: str = "auto", progress: object | None = None
) -> dict[str, Any]:
    """Scores of every method over every worm (see the module docstring)."""
    import simulators as sim
    from simulators.truth import neuron_truth

    z = np.arange(-cfg.z_half_range_um, cfg.z_half_range_um + cfg.z_step_um / 2, cfg.z_step_um)
    predictors = {name: Predictor(m, device) for name, m in models.items()}
    methods = [*models, "scanned confocal", "scanned widefield", "input plane alone"]
    measured_z = {
        name: tuple(float(o) for o in np.asarray(m.card.input_offsets_um) - np.mean(m.card.input_offsets_um))
        for name, m in models.items()
    }
    measured_z |= {"scanned confocal": tuple(z), "scanned widefield": tuple(z), "input plane alone": (0.0,)}
    # one banding for every method: a neuron's distance from the stack centre, where Deep-Z measures
    # (the 2-plane models' planes, at the centre ± 2 µm, lie in the first band)
    centre = (0.0,)
    exposure = {name: len(measured_z[name]) * cfg.widefield_exposure_ms for name in models}
    exposure |= {
        "scanned confocal": len(z) * cfg.confocal_exposure_ms,
        "scanned widefield": len(z) * cfg.widefield_exposure_ms,
        "input plane alone": cfg.widefield_exposure_ms,
    }
    detections: dict[str, list[pd.DataFrame]] = {m: [] for m in methods}
    truths: list[dict[int, dict[str, Any]]] = []
    per_worm_tracks: dict[str, list[Any]] = {m: [] for m in methods}
    for seed in cfg.seeds:
        world = sim.SimWorld(
            sim.worm(seed=seed, n_neurons=cfg.n_neurons),
            sensor_shape=(cfg.frame, cfg.frame),
            seed=seed,
            drift_um_per_s=cfg.drift_um_per_s,
        )
        truth_by_t: dict[int, dict[str, Any]] = {}
        worm_dets: dict[str, list[pd.DataFrame]] = {m: [] for m in methods}
        for k in range(cfg.time_points):
            t_s = k * cfg.interval_s
            truth = neuron_truth(world, t_s, margin_um=1.0)
            keep = np.abs(truth["z_um"]) <= cfg.z_half_range_um
            truth_by_t[k] = {key: v[keep] for key, v in truth.items()}
            wide = world.scan(z, cfg.widefield_exposure_ms, "widefield", t_s)
            stacks = {
                "scanned confocal": world.scan(z, cfg.confocal_exposure_ms, "confocal", t_s),
                "scanned widefield": wide,
                "input plane alone": wide[[int(np.argmin(np.abs(z)))]],
            }
            for name, predictor in predictors.items():
                idx = [int(np.argmin(np.abs(z - zm))) for zm in measured_z[name]]
                stacks[name] = predictor.predict_stack(
                    wide[idx], tuple(float(z[i]) for i in idx), z, out_dtype=np.float32
                ).data
            for name, stack in stacks.items():
                z0 = 0.0 if name == "input plane alone" else float(z[0])
                d = detect_neurons(
                    stack,
                    (cfg.z_step_um, world.optics.pixel_size_um, world.optics.pixel_size_um),
                    z0_um=z0,
                    config=cfg.detection,
                )
                d["t"], d["time_s"] = k, t_s
                worm_dets[name].append(d)
            if progress is not None:
                progress()  # type: ignore[operator]
        truths.append(truth_by_t)
        for name in methods:
            detections[name].extend(worm_dets[name])
            per_worm_tracks[name].append(tracking_scores(link_tracks(pd.concat(worm_dets[name])), truth_by_t))
    results: dict[str, Any] = {"config": {**asdict(cfg), "detection": asdict(cfg.detection)}, "methods": {}}
    for name in methods:
        results["methods"][name] = {
            "exposure_ms_per_time_point": exposure[name],
            "measured_planes": len(measured_z[name]),
            "detection": _pooled_detection(detections[name], truths, centre),
            "tracking": _pooled_tracking(per_worm_tracks[name]),
        }
    return results


def _pooled_detection(
    dets: list[pd.DataFrame], truths: list[dict[int, dict[str, Any]]], measured_z: tuple[Any, ...]
) -> dict[str, Any]:
    """Precision / recall / F1 over all time points of all worms (counts summed, then scored)."""
    refs = [truth_by_t[k] for truth_by_t in truths for k in sorted(truth_by_t)]
    return pool_detection_scores(
        [detection_scores(d, r, measured_z) for d, r in zip(dets, refs, strict=True)]
    )


def _pooled_tracking(per_worm: list[dict[str, Any]]) -> dict[str, Any]:
    n = sum(w["neurons"] for w in per_worm)
    tracked = sum(w["tracked_fraction"] * w["neurons"] for w in per_worm if w["neurons"])
    rs = [w["trace_r_median"] for w in per_worm if np.isfinite(w["trace_r_median"])]
    return {
        "neurons": n,
        "tracked_fraction": tracked / n if n else float("nan"),
        "identity_switches": sum(w["identity_switches"] for w in per_worm),
        "trace_r_median": float(np.mean(rs)) if rs else float("nan"),
    }


def results_table(results: dict[str, Any]) -> str:
    """The Markdown table a biologist reads (one row per method)."""
    bands = [band_name(lo, hi) for lo, hi in BANDS]
    head = (
        "| method | exposure / time point | F1 all | "
        + " | ".join(f"F1 {b.replace(' um', ' µm')}" for b in bands)
        + " | precision / recall | localisation error z / y / x (µm) | tracked ≥ 90 % | identity switches "
        "| trace r |"
    )
    lines = [head, "|" + " --- |" * (head.count("|") - 1)]
    for name, r in results["methods"].items():
        d, tr = r["detection"], r["tracking"]
        loc = d.get("localisation_error_um", {})
        lines.append(
            f"| {name} | {r['exposure_ms_per_time_point']:g} ms | {d['all']['f1']:.2f} | "
            + " | ".join(f"{d[b]['f1']:.2f}" if b in d and np.isfinite(d[b]["f1"]) else "–" for b in bands)
            + f" | {d['all']['precision']:.2f} / {d['all']['recall']:.2f} | "
            f"{loc.get('z', float('nan')):.2f} / {loc.get('y', float('nan')):.2f} / "
            f"{loc.get('x', float('nan')):.2f}"
            f" | {tr['tracked_fraction']:.2f} | {tr['identity_switches']} | {tr['trace_r_median']:.2f} |"
        )
    return "\n".join(lines)


def write_results(results: dict[str, Any], out: Path) -> list[Path]:
    """``neurons.json``, ``neurons.md`` (the table) and ``neurons_f1.png`` in ``out``; their paths."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out.mkdir(parents=True, exist_ok=True)
    paths = [out / "neurons.json", out / "neurons.md", out / "neurons_f1.png"]
    paths[0].write_text(json.dumps(results, indent=2, default=float))
    paths[1].write_text(results_table(results) + "\n")
    bands = [band_name(lo, hi) for lo, hi in BANDS]
    fig, ax = plt.subplots(figsize=(8, 4), constrained_layout=True)
    width = 0.8 / len(results["methods"])
    for i, (name, r) in enumerate(results["methods"].items()):
        f1 = [r["detection"].get(b, {}).get("f1", float("nan")) for b in bands]
        ax.bar(
            np.arange(len(bands)) + i * width,
            f1,
            width,
            label=f"{name} ({r['exposure_ms_per_time_point']:g} ms)",
        )
    ax.set_xticks(
        np.arange(len(bands)) + width * (len(results["methods"]) - 1) / 2,
        [f"{b.replace(' um', ' µm')} from the stack centre" for b in bands],
    )
    ax.set_ylabel("neuron detection F1")
    ax.set_ylim(0, 1.3)
    ax.set_yticks(np.linspace(0, 1, 6))
    ax.legend(fontsize=8, ncol=2, loc="upper center")
    ax.set_title("Neurons found, by depth from the stack centre (simulated crawling worms, blind)")
    fig.savefig(paths[2], dpi=90)
    plt.close(fig)
    return paths
