"""Linking detections across time points into tracks (trackpy), and per-neuron activity traces.

Linking runs in physical units (µm in z, y and x), so a neuron moving 1 µm costs the same
along every axis whatever the voxel size. A neuron missed in a few time points keeps its
identity (``memory``). Activity is the background-subtracted integrated brightness of the
detection (trackpy's ``mass``); dF/F is relative to each track's own baseline (its 20th
percentile), the convention of calcium imaging.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
import pandas as pd

from .detect import NeuronAnalysisError

#: columns of a tracks table
TRACK_COLUMNS = ("track", "t", "time_s", "z_um", "y_um", "x_um", "mass", "dff")


@dataclass(frozen=True)
class LinkConfig:
    """How far a neuron may move between time points (µm) and for how many it may be missed."""

    search_range_um: float = 3.0
    memory: int = 2
    #: tracks shorter than this many time points are dropped (noise, not neurons)
    min_length: int = 2
    baseline_percentile: float = 20.0

    def __post_init__(self) -> None:
        if not np.isfinite(self.search_range_um) or self.search_range_um <= 0:
            raise NeuronAnalysisError(f"search_range_um must be positive, got {self.search_range_um}.")
        if self.memory < 0 or self.min_length < 1:
            raise NeuronAnalysisError("memory must be >= 0 and min_length >= 1.")


def link_tracks(detections: pd.DataFrame, config: LinkConfig | None = None) -> pd.DataFrame:
    """Tracks from detections of several time points (columns ``t``, ``z_um``, ``y_um``, ``x_um``,
    ``mass``; optional ``time_s``): one row per neuron and time point, with ``track`` and ``dff``."""
    import trackpy as tp

    cfg = config or LinkConfig()
    missing = {"t", "z_um", "y_um", "x_um", "mass"} - set(detections.columns)
    if missing:
        raise NeuronAnalysisError(f"Detections lack the columns {sorted(missing)}.")
    if detections.empty:
        return pd.DataFrame({c: np.empty(0) for c in TRACK_COLUMNS})
    frame = detections.rename(columns={"t": "frame"}).reset_index(drop=True)
    tp.quiet()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        linked = tp.link(
            frame,
            search_range=cfg.search_range_um,
            memory=cfg.memory,
            pos_columns=["z_um", "y_um", "x_um"],
            t_column="frame",
        )
    linked = linked.rename(columns={"frame": "t", "particle": "track"})
    lengths = linked.groupby("track")["t"].transform("size")
    linked = linked[lengths >= cfg.min_length].copy()
    baseline = linked.groupby("track")["mass"].transform(lambda m: np.percentile(m, cfg.baseline_percentile))
    linked["dff"] = (linked["mass"] - baseline) / baseline.where(baseline > 0)
    if "time_s" not in linked:
        linked["time_s"] = linked["t"].astype(float)
    # tracks numbered 0.. in order of first appearance, then position
    order = linked.sort_values(["t", "y_um", "x_um"]).drop_duplicates("track")["track"]
    linked["track"] = linked["track"].map({old: new for new, old in enumerate(order)})
    return linked[list(TRACK_COLUMNS)].sort_values(["track", "t"]).reset_index(drop=True)


def traces(tracks: pd.DataFrame, value: str = "dff") -> pd.DataFrame:
    """Activity traces: one row per track, one column per time point (NaN where it was missed)."""
    return tracks.pivot_table(index="track", columns="t", values=value)
