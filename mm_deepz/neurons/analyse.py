"""``mm-deepz track``: detect, link and read activity over a stack series; write the tracks table
into the container (beside the image it came from), as CSV, and as pictures."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import zarr

from ..io.layout import array_at, group_at
from .detect import DetectionConfig, detect_neurons
from .series import StackSeries
from .track import TRACK_COLUMNS, LinkConfig, link_tracks, traces

#: where a container keeps its tracks tables: ``tracks/<image>`` (one 1-D array per column)
TRACKS_GROUP = "tracks"


def analyse(
    series: StackSeries,
    detection: DetectionConfig | None = None,
    link: LinkConfig | None = None,
    progress: Callable[[], None] | None = None,
) -> pd.DataFrame:
    """Tracks of every neuron over ``series`` (µm in the image's physical frame, seconds)."""
    found = []
    z0, y0, x0 = series.origin_um
    for t, stack in series:
        d = detect_neurons(stack, series.voxel_um, z0_um=z0, config=detection)
        d["y_um"] += y0
        d["x_um"] += x0
        d["t"], d["time_s"] = t, t * series.interval_s
        found.append(d)
        if progress is not None:
            progress()
    return link_tracks(pd.concat(found, ignore_index=True), link)


def write_tracks_to_container(path: Path, image: str, tracks: pd.DataFrame) -> str:
    """Store ``tracks`` as ``tracks/<image>`` in the container (its own earlier table replaced), under
    the container's writer lock; the group's path."""
    from ..io.claim import ContainerLock

    lock = ContainerLock(Path(path))  # refused while a run still writes the container
    try:
        root = zarr.open_group(str(path), mode="r+")
        group = root.require_group(TRACKS_GROUP).require_group(image.replace("/", "_"))
        for column in TRACK_COLUMNS:
            values = tracks[column].to_numpy(np.int64 if column in ("track", "t") else np.float64)
            group.create_array(column, shape=values.shape, dtype=values.dtype, overwrite=True)[...] = values
        group.attrs.update(
            {
                "mm_deepz_tracks": {
                    "image": image,
                    "columns": list(TRACK_COLUMNS),
                    "units": {
                        "time_s": "second",
                        "z_um": "micrometer",
                        "y_um": "micrometer",
                        "x_um": "micrometer",
                    },
                    "tracks": int(tracks["track"].nunique()) if len(tracks) else 0,
                }
            }
        )
    finally:
        lock.release()
    return f"{TRACKS_GROUP}/{image.replace('/', '_')}"


def read_tracks(path: Path, image: str) -> pd.DataFrame:
    """A tracks table written by :func:`write_tracks_to_container`."""
    group = group_at(zarr.open_group(str(path), mode="r"), f"{TRACKS_GROUP}/{image.replace('/', '_')}")
    return pd.DataFrame({c: np.asarray(array_at(group, c)[...]) for c in TRACK_COLUMNS})


def save_pictures(series: StackSeries, tracks: pd.DataFrame, png: Path) -> Path:
    """Maximum projection of the first time point with every track drawn, and a heat map of dF/F."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    t0, first = next(iter(series))
    _, dy, dx = series.voxel_um
    _, y0, x0 = series.origin_um
    mip = first.max(axis=0).astype(np.float32)
    lo, hi = np.percentile(mip, (1, 99.9))
    fig, (ax, heat) = plt.subplots(1, 2, figsize=(13, 5.5), constrained_layout=True)
    extent = (x0 - dx / 2, x0 + (mip.shape[1] - 0.5) * dx, y0 + (mip.shape[0] - 0.5) * dy, y0 - dy / 2)
    ax.imshow(mip, cmap="gray", vmin=lo, vmax=hi, extent=extent)
    for _, tr in tracks.groupby("track"):
        ax.plot(tr["x_um"], tr["y_um"], "-", lw=1)
    if len(tracks):
        at0 = tracks[tracks["t"] == t0]
        sc = ax.scatter(
            at0["x_um"], at0["y_um"], c=at0["z_um"], s=14, cmap="viridis", edgecolors="w", linewidths=0.3
        )
        fig.colorbar(sc, ax=ax, label="z (µm)", shrink=0.8)
    ax.set_xlabel("x (µm)")
    ax.set_ylabel("y (µm)")
    ax.set_title(f"{series.name}: max projection, t = {t0}; {tracks['track'].nunique()} tracks")
    table = traces(tracks) if len(tracks) else pd.DataFrame()
    if not table.empty:
        cmap = plt.get_cmap("magma").copy()
        cmap.set_bad("0.6")  # grey: the neuron was not found at that time point
        im = heat.imshow(
            table.to_numpy(),
            aspect="auto",
            cmap=cmap,
            interpolation="nearest",
            vmin=0,
            vmax=np.nanpercentile(table.to_numpy(), 99),
        )
        fig.colorbar(im, ax=heat, label="dF/F")
    heat.set_xlabel("time point")
    heat.set_ylabel("track")
    heat.set_title("activity (dF/F) per neuron")
    png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(png, dpi=80)
    plt.close(fig)
    return png
