"""Scoring detections and tracks against a reference (the simulator's truth, or the neurons found
in a scanned stack): matching, precision / recall / F1 by defocus band, localisation error,
tracking completeness and the correlation of activity traces."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from scipy.optimize import linear_sum_assignment

#: a detection matches a neuron within this distance (µm): lateral, axial
MATCH_UM = (2.0, 3.0)
#: defocus bands (µm from the nearest measured plane) the scores are broken down by
BANDS = ((0.0, 3.0), (3.0, 6.0), (6.0, 10.0))


def band_name(lo: float, hi: float) -> str:
    """A band's key in the scores (``"0-3 um"``): what reports, tables and plots look it up by."""
    return f"{lo:g}-{hi:g} um"


@dataclass(frozen=True)
class Match:
    """Index pairs (detection, reference) and the unmatched indices of each."""

    pairs: np.ndarray  # (K, 2)
    false_positives: np.ndarray
    misses: np.ndarray


def _zyx(table: pd.DataFrame | dict[str, Any]) -> np.ndarray:
    return (
        np.column_stack(
            [
                np.asarray(table["z_um"], float),
                np.asarray(table["y_um"], float),
                np.asarray(table["x_um"], float),
            ]
        )
        if len(table["z_um"])
        else np.empty((0, 3))
    )


def match(
    detected: pd.DataFrame | dict[str, Any],
    reference: pd.DataFrame | dict[str, Any],
    tolerance_um: tuple[float, float] = MATCH_UM,
) -> Match:
    """One-to-one matching within an ellipsoid (lateral, axial radius), nearest first (Hungarian)."""
    d, r = _zyx(detected), _zyx(reference)
    if not len(d) or not len(r):
        return Match(np.empty((0, 2), int), np.arange(len(d)), np.arange(len(r)))
    scale = np.array([tolerance_um[1], tolerance_um[0], tolerance_um[0]])
    dist = np.linalg.norm((d[:, None, :] - r[None, :, :]) / scale, axis=2)
    cost = np.where(dist <= 1.0, dist, 1e6)
    rows, cols = linear_sum_assignment(cost)
    ok = cost[rows, cols] <= 1.0
    pairs = np.column_stack([rows[ok], cols[ok]])
    return Match(
        pairs, np.setdiff1d(np.arange(len(d)), pairs[:, 0]), np.setdiff1d(np.arange(len(r)), pairs[:, 1])
    )


def prf(tp: int, fp: int, fn: int) -> dict[str, Any]:
    """Precision, recall and F1 of these counts (NaN where undefined), with the counts."""
    return {
        "precision": tp / (tp + fp) if tp + fp else float("nan"),
        "recall": tp / (tp + fn) if tp + fn else float("nan"),
        "f1": 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else float("nan"),
        "n_reference": tp + fn,
        "n_detected": tp + fp,
        "tp": tp,
        "fp": fp,
        "fn": fn,
    }


def pool_detection_scores(scores: list[dict[str, Any]]) -> dict[str, Any]:
    """:func:`detection_scores` of many stacks as one: counts summed per band, then scored; the
    median of their localisation errors."""
    out = (
        {
            band: prf(*(sum(s[band][k] for s in scores) for k in ("tp", "fp", "fn")))
            for band in scores[0]
            if band != "localisation_error_um"
        }
        if scores
        else {}
    )
    errors = [
        [s["localisation_error_um"][a] for a in ("z", "y", "x")]
        for s in scores
        if "localisation_error_um" in s
    ]
    if errors:
        out["localisation_error_um"] = dict(
            zip(("z", "y", "x"), np.median(errors, axis=0).round(3).tolist(), strict=True)
        )
    return out


def defocus_um(z_um: np.ndarray, measured_z_um: Sequence[float]) -> np.ndarray:
    """Distance of each z from the nearest measured (input) plane."""
    z = np.asarray(z_um, float)
    return np.min(np.abs(z[:, None] - np.asarray(measured_z_um, float)[None, :]), axis=1) if len(z) else z


def detection_scores(
    detected: pd.DataFrame | dict[str, Any],
    reference: pd.DataFrame | dict[str, Any],
    measured_z_um: Sequence[float],
    bands: Sequence[tuple[float, float]] = BANDS,
) -> dict[str, Any]:
    """Precision, recall, F1 (all and per defocus band) and localisation error (µm, matched pairs).

    A neuron's band is its distance from the nearest measured plane; a false detection's band is
    its own.
    """
    m = match(detected, reference)
    d, r = _zyx(detected), _zyx(reference)
    ref_band = defocus_um(r[:, 0], measured_z_um) if len(r) else np.empty(0)
    det_band = defocus_um(d[:, 0], measured_z_um) if len(d) else np.empty(0)

    out = {"all": prf(len(m.pairs), len(m.false_positives), len(m.misses))}
    for lo, hi in bands:
        in_ref = (ref_band >= lo) & (ref_band < hi)
        tp = int(in_ref[m.pairs[:, 1]].sum()) if len(m.pairs) else 0
        fn = int(in_ref[m.misses].sum()) if len(m.misses) else 0
        fp = int(((det_band[m.false_positives] >= lo) & (det_band[m.false_positives] < hi)).sum())
        out[band_name(lo, hi)] = prf(tp, fp, fn)
    if len(m.pairs):
        err = np.abs(d[m.pairs[:, 0]] - r[m.pairs[:, 1]])
        out["localisation_error_um"] = dict(
            zip(("z", "y", "x"), np.median(err, axis=0).round(3).tolist(), strict=True)
        )
    return out


def tracking_scores(
    tracks: pd.DataFrame, truth_by_t: dict[int, dict[str, Any]], min_fraction: float = 0.9
) -> dict[str, Any]:
    """How well tracks follow the true neurons over a time series.

    ``truth_by_t``: per time point, the reference neurons (``id``, ``z_um``, ``y_um``, ``x_um`` and,
    for traces, ``brightness``). A neuron is *tracked* when one track matches it in at least
    ``min_fraction`` of the time points it is in the reference and no other track does (no
    identity switch). The trace
    correlation is Pearson's r between a tracked neuron's detected mass and its true brightness.
    """
    hits: dict[int, list[tuple[int, int, float, float]]] = {}  # truth id -> [(t, track, mass, brightness)]
    for t, truth in truth_by_t.items():
        rows = tracks[tracks["t"] == t]
        m = match(rows, truth)
        for di, ri in m.pairs:
            brightness = float(truth["brightness"][ri]) if "brightness" in truth else float("nan")
            hits.setdefault(int(truth["id"][ri]), []).append(
                (t, int(rows["track"].iloc[di]), float(rows["mass"].iloc[di]), brightness)
            )
    present: dict[
        int, int
    ] = {}  # time points each neuron is in the reference (a crawling worm leaves the field)
    for v in truth_by_t.values():
        for nid in np.asarray(v["id"]).tolist():
            present[nid] = present.get(nid, 0) + 1
    ids = set(present)
    tracked, switches, correlations = 0, 0, []
    for nid in ids:
        h = hits.get(nid, [])
        track_ids = {tr for _, tr, _, _ in h}
        if len(track_ids) > 1:
            switches += 1
        if len(track_ids) == 1 and len(h) >= min_fraction * present[nid]:
            tracked += 1
            mass = np.array([x[2] for x in h])
            bright = np.array([x[3] for x in h])
            if len(h) > 2 and mass.std() > 0 and bright.std() > 0:
                correlations.append(float(np.corrcoef(mass, bright)[0, 1]))
    return {
        "neurons": len(ids),
        "tracked_fraction": tracked / len(ids) if ids else float("nan"),
        "identity_switches": switches,
        "trace_r_median": float(np.median(correlations)) if correlations else float("nan"),
        "traces_scored": len(correlations),
    }
