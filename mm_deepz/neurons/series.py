"""z-stack time series to analyse, one time point at a time (a long run never sits in memory).

Sources: an image of an mm-deepz container (``virtual``, ``reference``, or ``measured`` where
its time points hold full stacks, i.e. runs with virtual z-stacking off), an NGFF image from
another tool (axes with z, y, x; t and c optional) or an OME-TIFF / ImageJ TIFF series
(T, Z, Y, X or Z, Y, X).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import zarr

from ..io.layout import MissingImageError, array_at, group_at
from .detect import NeuronAnalysisError


@dataclass(frozen=True)
class StackSeries:
    """Where the stacks are and their physical frame (µm, s)."""

    name: str
    n_time_points: int
    voxel_um: tuple[float, float, float]
    origin_um: tuple[float, float, float]
    interval_s: float
    _read: Any
    time_points: tuple[int, ...]

    def __iter__(self) -> Iterator[tuple[int, np.ndarray]]:
        for t in self.time_points:
            yield t, np.asarray(self._read(t))


def _ngff_frame(attrs: dict[str, Any]) -> tuple[list[str], list[float], list[float]]:
    ms = (attrs.get("ome") or attrs)["multiscales"][0]
    axes = [a["name"] if isinstance(a, dict) else a for a in ms["axes"]]
    tr = ms["datasets"][0].get("coordinateTransformations", [])
    scale = next((c["scale"] for c in tr if c["type"] == "scale"), [1.0] * len(axes))
    trans = next((c["translation"] for c in tr if c["type"] == "translation"), [0.0] * len(axes))
    return axes, scale, trans


def _from_ngff(group: zarr.Group, name: str, time_points: list[int] | None = None) -> StackSeries:
    try:
        attrs: dict[str, Any] = dict(group.attrs)
        axes, scale, trans = _ngff_frame(attrs)
        arr = array_at(group, str((attrs.get("ome") or attrs)["multiscales"][0]["datasets"][0]["path"]))
    except (KeyError, IndexError, TypeError, MissingImageError) as e:
        raise NeuronAnalysisError(f"{name} is not an NGFF image (no multiscales metadata): {e}.") from e
    if not {"z", "y", "x"} <= set(axes):
        raise NeuronAnalysisError(f"{name} has axes {axes}: a z-stack series needs z, y and x.")
    index = {a: i for i, a in enumerate(axes)}
    n_t = arr.shape[index["t"]] if "t" in index else 1

    def read(t: int) -> np.ndarray:
        sel = tuple(t if a == "t" else 0 if a == "c" else slice(None) for a in axes)
        try:
            return np.asarray(arr[sel])
        except Exception as e:  # noqa: BLE001 - a damaged chunk can make its codec raise anything
            raise NeuronAnalysisError(
                f"{name}: time point {t} cannot be read ({type(e).__name__}: {e}); that part of the data is "
                "damaged. Analyse the time points before it, or restore the file."
            ) from None

    z, y, x = (index[a] for a in ("z", "y", "x"))
    return StackSeries(
        name,
        n_t,
        (float(scale[z]), float(scale[y]), float(scale[x])),
        (float(trans[z]), float(trans[y]), float(trans[x])),
        float(scale[index["t"]]) if "t" in index else 1.0,
        read,
        tuple(time_points if time_points is not None else range(n_t)),
    )


def container_series(path: Path, image: str, position: int = 0) -> StackSeries:
    """An image of an mm-deepz container; only its complete time points (full stacks)."""
    from ..io.layout import image_group_path, n_positions, recorded
    from ..io.record import per_position
    from ..io.recorder import open_container
    from ..io.schema import STACK_IMAGE

    root = open_container(path)
    record = recorded(root)
    several = n_positions(root) > 1
    # measured z-stacks: their own image (layout 2), or the full-stack time points of measured (layout 1)
    source = STACK_IMAGE if image == "measured" and "images" in record else image
    if source == STACK_IMAGE and STACK_IMAGE not in record["images"]:
        raise NeuronAnalysisError(
            f"{path}: measured holds no z-stack to analyse (virtual z-stacking was on: "
            "measured holds its 1-2 input planes per time point; use virtual)."
        )
    try:
        group_path = image_group_path(root, source, position)
    except MissingImageError as e:
        raise NeuronAnalysisError(f"{path}: {e}") from None
    done = sorted(set(record["completed"].get(source, [])))
    if (
        source == "measured"
    ):  # layout 1: Deep-Z time points hold 1-2 planes, not a stack: only full stacks count
        n_z = array_at(root, f"{group_path}/0").shape[2]
        done = [
            t
            for t in done
            if len(record["planes_measured"].get(per_position(str(t), position, several), [])) == n_z
        ]
    if not done:
        raise NeuronAnalysisError(
            f"{path}: {image} holds no complete z-stack to analyse (with virtual "
            "z-stacking on, measured holds 1-2 planes per time point: use virtual)."
        )
    title = per_position(image, position, several)
    return _from_ngff(group_at(root, group_path), f"{Path(path).name}/{title}", done)


def external_series(path: Path) -> StackSeries:
    """An NGFF image or an OME-TIFF / ImageJ TIFF z-stack series from another tool."""
    import tifffile

    if path.is_dir():
        try:
            group = zarr.open_group(str(path), mode="r")
        except Exception as e:
            raise NeuronAnalysisError(f"{path} is a folder but not a zarr image: {e}.") from e
        return _from_ngff(group, path.name)
    try:
        tif = tifffile.TiffFile(path)
    except (OSError, tifffile.TiffFileError) as e:
        raise NeuronAnalysisError(f"{path} cannot be read as a TIFF: {e}.") from e
    with tif:
        axes = tif.series[0].axes.upper()
        ome = tif.ome_metadata or ""
        ij = tif.imagej_metadata or {}
        first = tif.pages.first
        res = first.tags.get("XResolution")
        resolution_px = res.value[1] / res.value[0] if res is not None and res.value[0] else None
    if not {"Z", "Y", "X"} <= set(axes) or set(axes) - set("TZCYXS") or len(axes) < 3:
        raise NeuronAnalysisError(
            f"{path} has axes {axes!r}: a z-stack series needs Z, Y and X (T, C optional)."
        )

    def ome_attr(name: str) -> float | None:
        m = re.search(rf'\b{name}="([-0-9.eE+]+)"', ome)
        return float(m.group(1)) if m else None

    px = ome_attr("PhysicalSizeX") or (resolution_px if not ome else None)
    dz = ome_attr("PhysicalSizeZ") or ij.get("spacing")
    if not px or not dz:
        raise NeuronAnalysisError(
            f"{path} has no pixel size or z step in its metadata: the analysis works in µm."
        )
    data = tifffile.imread(path, aszarr=True)
    arr = zarr.open_array(data, mode="r")
    index = {a: i for i, a in enumerate(axes)}
    n_t = arr.shape[index["T"]] if "T" in index else 1

    def read(t: int) -> np.ndarray:
        return np.asarray(arr[tuple(t if a == "T" else 0 if a in "CS" else slice(None) for a in axes)])

    return StackSeries(
        path.name,
        n_t,
        (float(dz), float(px), float(px)),
        (0.0, 0.0, 0.0),
        ome_attr("TimeIncrement") or float(ij.get("finterval", 1.0)),
        read,
        tuple(range(n_t)),
    )
