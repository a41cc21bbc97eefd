"""Blind evaluation of a Deep-Z model against mechanically scanned reference stacks.

For every held-out pair, the model sees only its measured input plane(s) around the stack
centre and synthesizes the stack; each virtual plane is compared with the reference plane at
the same depth, and with two baselines:

- ``repeated``: the measured input plane itself (what you have without Deep-Z);
- ``widefield``: the mechanically scanned input-modality plane at that depth (what you
  would get by scanning, without the modality transfer).

Scoring follows CARE (:func:`mm_deepz.metrics.stack_scores`,
:func:`~mm_deepz.metrics.matched_scores`): the reference normalized by its percentiles, each
method's stack matched to it by one least-squares scale and offset, so metrics are insensitive
to exposure, offset and modality brightness, not to structure. Beads give lateral and axial
FWHM; sheets with known geometry compare a matching non-uniform DPM with a uniform one. Every pair
also gives each virtual plane's apparent depth (the reference plane it matches best): a network that
only sharpens the nearest measured plane scores well near it and shows a staircase in depth.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy import ndimage

from .. import dpm as dpm_mod
from ..engine import Predictor
from ..metrics import apparent_depth, fwhm_1d, matched_scores, normalize_stack
from ..modelfile import DeepZModel
from ..training.stacks import PairedStack

logger = logging.getLogger(__name__)

METHODS = ("virtual", "repeated", "widefield")
#: what a blind specimen is, for the specimen-specific scores: ``auto`` reads it from the simulator's
#: metadata (nothing for real data), ``neurons`` and ``beads`` say it for data without it
SPECIMENS = ("auto", "neurons", "beads", "none")


@dataclass
class PairEvaluation:
    """Per-defocus metrics of one pair, plus what the report draws."""

    name: str
    defocus_um: np.ndarray
    metrics: dict[str, dict[str, np.ndarray]]  # method -> metric -> per defocus
    input_planes: np.ndarray
    virtual: np.ndarray  # normalized (z, y, x)
    reference: np.ndarray
    widefield: np.ndarray
    beads: dict[str, Any] | None = None
    surface: dict[str, Any] | None = None
    neurons: dict[str, Any] | None = None
    #: the depth (from the centre, µm) of the reference plane each virtual plane matches best
    apparent_um: np.ndarray | None = None
    extra: dict[str, Any] = field(default_factory=dict[str, Any])


def anchor_planes(pair: PairedStack, model: DeepZModel) -> tuple[np.ndarray, int, np.ndarray]:
    """Indices of the measured planes (around the stack centre), the centre index, and the indices of
    the planes the virtual stack is made at (within the model's range of every measured plane)."""
    z = pair.z_um
    c = len(z) // 2
    offs = np.asarray(model.card.input_offsets_um)
    idx = c + np.round((offs - offs.mean()) / pair.inputs.z_step_um).astype(int)
    if idx.min() < 0 or idx.max() >= len(z):
        raise ValueError(f"{pair.name}: stack too short for the model's input planes.")
    dist = np.abs(z[:, None] - z[idx][None, :]).max(axis=1)
    return idx, c, np.flatnonzero(dist <= model.card.z_range_um + 1e-6)


def repeated_planes(planes: np.ndarray, plane_z_um: np.ndarray, target_z_um: np.ndarray) -> np.ndarray:
    """The nearest measured plane at each target depth: what one has without Deep-Z."""
    return np.stack([planes[int(np.argmin(np.abs(plane_z_um - t)))] for t in target_z_um])


def evaluate_pair(
    model: DeepZModel, pair: PairedStack, predictor: Predictor, specimen: str = "auto"
) -> PairEvaluation:
    """Score the virtual stack of one pair against its reference and the baselines.

    ``specimen`` (:data:`SPECIMENS`): neurons are scored against the simulator's truth where the pair
    carries it, else against the neurons found in its scanned reference; beads against the beads of
    the reference."""
    model.check_compatible(pixel_size_um=pair.pixel_size_um)
    idx, c, targets = anchor_planes(pair, model)
    z = pair.z_um
    plane_z = tuple(float(v) for v in z[idx])
    planes = pair.inputs.data[idx]
    virtual = predictor.predict_stack(planes, plane_z, z[targets], out_dtype=np.float32).data
    raw = {
        "virtual": virtual,
        "repeated": repeated_planes(planes, z[idx], z[targets]),
        "widefield": pair.inputs.data[targets],
    }
    ref = normalize_stack(pair.target.data[targets])
    arrays, stacks = {}, {}
    for m in METHODS:
        arrays[m], stacks[m] = matched_scores(raw[m], ref)
    ev = PairEvaluation(
        pair.name, z[targets] - z[c], arrays, planes, stacks["virtual"], ref, stacks["widefield"]
    )
    ev.apparent_um = apparent_depth(virtual, pair.target.data, z - z[c])
    kind = {"neurons": "worm", "beads": "beads", "none": None}.get(
        specimen, pair.meta.get("spec", {}).get("phantom")
    )
    if kind == "beads":
        ev.beads = bead_fwhm(stacks["virtual"], ref, pair.pixel_size_um, pair.inputs.z_step_um)
    if kind == "sheet":
        ev.surface = evaluate_surface(model, pair, predictor, idx)
    if kind == "worm":
        ev.neurons = evaluate_neurons(
            pair, virtual, pair.target.data[targets], z[targets], z[idx], raw["widefield"]
        )
    return ev


def evaluate_neurons(
    pair: PairedStack,
    virtual: np.ndarray,
    reference: np.ndarray,
    z_um: np.ndarray,
    measured_z_um: np.ndarray,
    widefield: np.ndarray,
) -> dict[str, Any]:
    """Neuron detection scores of the virtual stack and of the scanned widefield stack (F1 by defocus
    band from the measured planes) and the virtual stack's brightness read-out (Pearson r of matched
    neurons' mass with their true brightness), against the simulator's truth when the pair carries its
    specimen, else against the neurons found in the scanned reference stack."""
    from ..neurons import detect_neurons, detection_scores, match
    from .truth import true_neurons

    voxel = (float(np.median(np.diff(z_um))), pair.pixel_size_um, pair.pixel_size_um)
    found = detect_neurons(virtual, voxel, z0_um=float(z_um[0]))
    known = true_neurons(
        pair.meta.get("spec") or {}, pair.inputs.data.shape[1:], (float(z_um[0]), float(z_um[-1])), 1.0
    )
    truth, source = (known[0], f"{known[1]} truth") if known is not None else (None, "")
    if truth is None:
        truth = detect_neurons(reference, voxel, z0_um=float(z_um[0]))
        truth = {k: truth[k].to_numpy() for k in ("z_um", "y_um", "x_um")} | {
            "brightness": truth["mass"].to_numpy()
        }
        source = "neurons of the scanned reference"
    measured = [float(z) for z in measured_z_um]
    scores = detection_scores(found, truth, measured)
    scan = detection_scores(detect_neurons(widefield, voxel, z0_um=float(z_um[0])), truth, measured)
    m = match(found, truth)
    r = float("nan")
    if len(m.pairs) > 2:
        r = float(
            np.corrcoef(
                found["mass"].to_numpy()[m.pairs[:, 0]], np.asarray(truth["brightness"])[m.pairs[:, 1]]
            )[0, 1]
        )
    return {"reference": source, "scores": scores, "widefield_scores": scan, "brightness_r": r}


def _pooled_neurons(worms: list[dict[str, Any]]) -> dict[str, Any]:
    """Detection F1 per band over all worm pairs (counts summed), of the virtual stacks (``f1 BAND``)
    and the widefield scans (``widefield f1 BAND``); the spread of the virtual F1 across specimens
    (``spread f1 BAND``: lowest, highest); the mean brightness r."""
    from ..neurons import pool_detection_scores

    out: dict[str, Any] = {"reference": sorted({w["reference"] for w in worms}), "pairs": len(worms)}
    pooled = pool_detection_scores([w["scores"] for w in worms])
    bands = [band for band in pooled if band != "localisation_error_um"]
    out |= {f"f1 {band}": pooled[band]["f1"] for band in bands}
    scans = [w["widefield_scores"] for w in worms if "widefield_scores" in w]
    if scans:
        out |= {
            f"widefield f1 {band}": v["f1"]
            for band, v in pool_detection_scores(scans).items()
            if band in bands
        }
    for band in bands:
        each = [w["scores"][band]["f1"] for w in worms if np.isfinite(w["scores"][band]["f1"])]
        out[f"spread f1 {band}"] = [float(min(each)), float(max(each))] if each else [float("nan")] * 2
    rs = [w["brightness_r"] for w in worms if np.isfinite(w["brightness_r"])]
    out["brightness_r"] = float(np.mean(rs)) if rs else float("nan")
    return out


def bead_fwhm(
    virtual: np.ndarray, reference: np.ndarray, pixel_um: float, z_step_um: float, max_beads: int = 40
) -> dict[str, Any]:
    """Median lateral and axial FWHM (µm) of isolated beads, virtual vs reference."""
    mip = reference.max(axis=0)
    peaks = (mip == ndimage.maximum_filter(mip, size=15)) & (mip > 0.3 * mip.max())
    ys, xs = np.nonzero(peaks)
    h, w = mip.shape
    rows, unresolved = [], 0
    for y, x in zip(ys, xs, strict=True):
        if not (8 <= y < h - 8 and 8 <= x < w - 8):
            continue
        zr = int(np.argmax(reference[:, y, x]))
        if not 2 <= zr < len(reference) - 2:
            continue
        row = {}
        for name, st in (("virtual", virtual), ("reference", reference)):
            zb = int(np.argmax(st[:, y, x]))
            row[f"{name}_lateral_um"] = fwhm_1d(st[zb, y, x - 8 : x + 9], pixel_um)
            row[f"{name}_axial_um"] = fwhm_1d(st[:, y, x], z_step_um)
        if not np.isfinite([row["reference_lateral_um"], row["reference_axial_um"]]).all():
            continue
        if np.isfinite(list(row.values())).all():
            rows.append(row)
        else:
            unresolved += 1  # no single peak in the virtual stack where the reference has a bead
        if len(rows) >= max_beads:
            break
    if not rows:
        return {"n_beads": 0, "n_unresolved": unresolved}
    med = {k: float(np.median([r[k] for r in rows])) for k in rows[0]}
    med["n_beads"] = len(rows)
    med["n_unresolved"] = unresolved
    med["lateral_ratio"] = med["virtual_lateral_um"] / med["reference_lateral_um"]
    med["axial_ratio"] = med["virtual_axial_um"] / med["reference_axial_um"]
    return med


def surface_height(pair: PairedStack) -> np.ndarray | None:
    """The true height map (µm) of a simulated sheet on the pair's pixel grid, if known."""
    spec = pair.meta.get("spec", {})
    if spec.get("phantom") != "sheet":
        return None
    h, w = pair.inputs.data.shape[1:]
    p = pair.pixel_size_um
    cx, cy = spec.get("xy_um", (0.0, 0.0))
    x = cx + (np.arange(w) - (w - 1) / 2) * p
    y = cy + (np.arange(h) - (h - 1) / 2) * p
    xx, yy = np.meshgrid(x, y)
    # simulated sheets pass through z = 0 at the sample origin (simulators.phantoms.sheet)
    return np.asarray(
        spec.get("tilt_x", 0.0) * xx
        + spec.get("tilt_y", 0.0) * yy
        + 0.5 * spec.get("curvature_per_um", 0.0) * (xx**2 + yy**2)
    )


def sample_on_surface(stack: np.ndarray, z_um: np.ndarray, height: np.ndarray) -> np.ndarray:
    """Per pixel, the stack linearly interpolated at ``height`` (the reference on a surface)."""
    pos = np.clip((height - z_um[0]) / (z_um[1] - z_um[0]), 0, len(z_um) - 1.000001)
    i0 = pos.astype(int)
    f = pos - i0
    rows, cols = np.indices(height.shape)
    return np.asarray(stack[i0, rows, cols] * (1 - f) + stack[i0 + 1, rows, cols] * f)


def evaluate_surface(
    model: DeepZModel, pair: PairedStack, predictor: Predictor, idx: np.ndarray
) -> dict[str, Any] | None:
    """Refocus onto the sheet with a matching DPM vs a uniform DPM at its mean height."""
    height = surface_height(pair)
    if height is None:
        return None
    z = pair.z_um
    planes = pair.inputs.data[idx]
    plane_z = z[idx]
    reach = np.abs(height[None] - plane_z[:, None, None]).max()
    if reach > model.card.z_range_um:
        logger.warning("%s: the sheet spans beyond the trained range; skipping surface evaluation", pair.name)
        return None
    matching = np.stack([dpm_mod.surface(height, zp) for zp in plane_z])
    uniform = np.stack([dpm_mod.uniform(height.shape, float(height.mean()) - zp) for zp in plane_z])
    out = predictor.predict_dpm(planes, tuple(plane_z), np.stack([matching, uniform]))
    ref = sample_on_surface(pair.target.data.astype(np.float32), z, height)
    refn = normalize_stack(ref[None])
    res: dict[str, Any] = {"height_range_um": [float(height.min()), float(height.max())]}
    images = {"reference": refn[0]}
    for name, img in (("matching_dpm", out[0]), ("uniform_dpm", out[1])):
        scores, matched = matched_scores(img[None], refn)
        images[name] = matched[0]
        res[name] = {k: float(v[0]) for k, v in scores.items()}
    res["images"] = images
    return res


def depth_placement(requested_um: np.ndarray, apparent_um: np.ndarray, step_um: float) -> dict[str, Any]:
    """By band of distance from the stack centre (the neuron bands, ``[lo, hi)``): how many virtual
    planes, the share whose apparent depth is within one z step of the requested one, and the median
    error of the apparent depth (µm)."""
    from ..neurons import BANDS, band_name

    requested, error = np.abs(requested_um), np.abs(np.asarray(apparent_um) - requested_um)
    out: dict[str, Any] = {}
    for lo, hi in BANDS:
        e = error[(requested >= lo - 1e-6) & (requested < hi - 1e-6)]
        out[band_name(lo, hi)] = {
            "planes": len(e),
            "within_one_step": round(float(np.mean(e <= step_um + 1e-6)), 3) if len(e) else None,
            "median_error_um": round(float(np.median(e)), 2) if len(e) else None,
        }
    return out


def summarize(evals: list[PairEvaluation], model: DeepZModel) -> dict[str, Any]:
    """Mean metrics per defocus over pairs (pairs share the z grid relative to their centre)."""
    all_d = np.unique(np.round(np.concatenate([e.defocus_um for e in evals]), 3))
    summary: dict[str, Any] = {"defocus_um": all_d.tolist(), "methods": {}}
    for m in METHODS:
        summary["methods"][m] = {}
        for metric in ("ssim", "psnr", "nrmse", "pcc"):
            vals = []
            for d in all_d:
                v = np.concatenate([e.metrics[m][metric][np.isclose(e.defocus_um, d)] for e in evals])
                vals.append(float(v.mean()) if len(v) else float("nan"))
            summary["methods"][m][metric] = vals
    ms = summary["methods"]
    summary["mean_ssim"] = {m: float(np.nanmean(ms[m]["ssim"])) for m in METHODS}
    summary["mean_psnr"] = {m: float(np.nanmean(ms[m]["psnr"])) for m in METHODS}
    summary["mean_pcc"] = {m: float(np.nanmean(ms[m]["pcc"])) for m in METHODS}
    # per metric, the smallest lead of the virtual stack over the better baseline at any defocus
    summary["margin_over_baselines"] = {
        k: float(np.nanmin(np.asarray(ms["virtual"][k]) - np.maximum(ms["repeated"][k], ms["widefield"][k])))
        for k in ("ssim", "pcc", "psnr")
    }
    beads = [e.beads for e in evals if e.beads and e.beads.get("n_beads")]
    if beads:
        summary["beads"] = {k: float(np.mean([b[k] for b in beads])) for k in beads[0]}
    worms = [e.neurons for e in evals if e.neurons]
    if worms:
        summary["neurons"] = _pooled_neurons(worms)
    placed = [e for e in evals if e.apparent_um is not None]
    if placed:
        step = float(np.min(np.diff(all_d))) if len(all_d) > 1 else 1.0
        summary["depth_placement"] = depth_placement(
            np.concatenate([e.defocus_um for e in placed]),
            np.concatenate([e.apparent_um for e in placed if e.apparent_um is not None]),
            step,
        )
    surfaces = {e.name: {k: v for k, v in e.surface.items() if k != "images"} for e in evals if e.surface}
    if surfaces:
        summary["surfaces"] = surfaces
    summary["pairs"] = [e.name for e in evals]
    summary["model"] = {
        "path": str(model.path),
        "sha256": model.sha256,
        "n_planes": model.card.n_planes,
        "z_range_um": model.card.z_range_um,
    }
    return summary
