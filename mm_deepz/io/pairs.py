"""A pairs dataset: training and test stacks acquired on the user's own microscope, in one OME-Zarr.

``mm-deepz pairs acquire`` writes, per field of view, an input z-stack (widefield) and a target
z-stack (confocal, or widefield for refocusing) over the same z grid, and the camera's dark frames;
``train``, ``evaluate`` and ``pairs check`` read it as they read OME-TIFF pairs. The layout is a
run's (NGFF 0.5 bioformats2raw collection, so validators, ome-zarr-py and napari open it)::

    pairs.ome.zarr/      attrs: ome {...}; mm_deepz_pairs {format, fields: {name: {xy_um, images
                         {modality: folder}, complete, plane_times_s}}, dark, z_um, order, presets,
                         exposures_ms, provenance}
      OME/               the series and the OME-XML
      0/ 1/ ...          one (t=1, c=1, z, y, x) image per field and modality, in acquisition order
      N/                 the dark frames (t = frame, z = 1), when taken

It is claimed and replaced like a run (:class:`~mm_deepz.io.claim.Claim`): never inside another
container, one writer at a time, an earlier dataset kept until the new one has its first frame.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import zarr

from ..errors import DeepZError
from .claim import PAIRS_KEY, Claim
from .layout import ImageInfo, write_collection
from .record import json_safe
from .schema import COMPRESSOR, Geometry, ngff_attrs

logger = logging.getLogger(__name__)

PAIRS_FORMAT = 1
#: the name of the dark frames' image
DARK = "dark"


class NotAPairsDatasetError(DeepZError):
    """A path that is not a pairs dataset (a run, another tool's data, a damaged record)."""


@dataclass(frozen=True)
class Field:
    """One field of view: its name and stage position (µm)."""

    name: str
    x_um: float
    y_um: float


def pairs_record(path: Path) -> dict[str, Any] | None:
    """The pairs record of ``path`` if it is a pairs dataset, else None (reads nothing else)."""
    try:
        meta = json.loads((Path(path) / "zarr.json").read_text())
        record = meta.get("attributes", {}).get(PAIRS_KEY)
    except (OSError, ValueError, AttributeError, RecursionError):
        return None
    return record if isinstance(record, dict) else None


class PairsWriter:
    """Streams the planes of a pairs acquisition into a new pairs dataset, thread-safe."""

    def __init__(
        self,
        path: str | Path,
        fields: list[Field],
        modalities: tuple[str, str],
        z_um: tuple[float, ...],
        pixel_size_um: float,
        shape_yx: tuple[int, int],
        *,
        infos: dict[str, ImageInfo],
        dark_frames: int = 0,
        attrs: dict[str, Any] | None = None,
        overwrite: bool = False,
    ):
        self._claim = Claim(path, overwrite)
        self.path = self._claim.path
        self._lock = threading.Lock()
        self._t0 = time.time()
        positions = tuple((f.x_um, f.y_um) for f in fields)
        geometry = Geometry(z_um, pixel_size_um, 0.0, shape_yx, positions_xy_um=positions)
        h, w = shape_yx
        self._arrays: dict[tuple[str, str], zarr.Array[Any]] = {}
        names: dict[str, list[str]] = {}
        self._record: dict[str, Any] = {
            "format": PAIRS_FORMAT,
            "modalities": {"input": modalities[0], "target": modalities[1]},
            "z_um": list(z_um),
            "pixel_size_um": pixel_size_um,
            "fields": {},
            "dark": None,
            **(attrs or {}),
        }
        try:
            self.root = zarr.create_group(str(self.path), zarr_format=3, overwrite=False)
            self.root.attrs[PAIRS_KEY] = json_safe(self._record)
            folder = 0
            for p, f in enumerate(fields):
                images = {}
                for modality in modalities:
                    name = f"{f.name} {modality}"
                    group = self.root.require_group(str(folder))
                    group.attrs.update(ngff_attrs(name, geometry, infos[modality], p))
                    self._arrays[f.name, modality] = group.create_array(
                        "0",
                        shape=(1, 1, len(z_um), h, w),
                        chunks=(1, 1, 1, h, w),
                        dtype="uint16",
                        fill_value=0,
                        dimension_names=("t", "c", "z", "y", "x"),
                        compressors=COMPRESSOR,
                    )
                    images[modality] = str(folder)
                    names[name] = [str(folder)]
                    folder += 1
                self._record["fields"][f.name] = {
                    "xy_um": [f.x_um, f.y_um],
                    "images": images,
                    "complete": False,
                    "plane_times_s": {m: [None] * len(z_um) for m in modalities},
                }
            if dark_frames:
                group = self.root.require_group(str(folder))
                group.attrs.update(
                    ngff_attrs(DARK, Geometry((0.0,), pixel_size_um, 0.0, shape_yx), infos[DARK])
                )
                self._arrays[DARK, DARK] = group.create_array(
                    "0",
                    shape=(dark_frames, 1, 1, h, w),
                    chunks=(1, 1, 1, h, w),
                    dtype="uint16",
                    fill_value=0,
                    dimension_names=("t", "c", "z", "y", "x"),
                    compressors=COMPRESSOR,
                )
                self._record["dark"] = {"image": str(folder), "frames": 0}
                names[DARK] = [str(folder)]
            write_collection(self.root, names, {**{n: infos[n.split(" ")[-1]] for n in names}})
            self._flush()
        except BaseException:
            self._claim.rollback()
            raise

    def write(self, field: str, modality: str, z_index: int, image: np.ndarray) -> None:
        """One plane of a field's stack."""
        frame = np.asarray(image)
        if frame.dtype.kind not in "ui" or frame.min() < 0 or frame.max() > 65535:
            raise DeepZError(f"A {modality} frame of {field} is not 16-bit camera counts ({frame.dtype}).")
        with self._lock:
            self._arrays[field, modality][0, 0, z_index] = frame.astype(np.uint16)
            self._claim.commit()
            times = self._record["fields"][field]["plane_times_s"][modality]
            times[z_index] = round(time.time() - self._t0, 4)

    def field_done(self, field: str) -> None:
        """Every plane of ``field`` is written: it may be trained on."""
        with self._lock:
            self._record["fields"][field]["complete"] = True
            self._flush()

    def write_dark(self, index: int, image: np.ndarray) -> None:
        """Dark frame ``index`` (the shutter closed, at the input exposure)."""
        with self._lock:
            self._arrays[DARK, DARK][index, 0, 0] = np.asarray(image).astype(np.uint16)
            self._claim.commit()
            self._record["dark"]["frames"] = index + 1
            self._flush()

    def _flush(self) -> None:
        self.root.attrs[PAIRS_KEY] = json_safe(self._record)

    def close(self) -> None:
        """Release the dataset (an earlier one it replaced is put back if no frame was written)."""
        with self._lock:
            self._flush()
        if self._claim.replacing is not None:
            self._claim.rollback()
        self._claim.release()


def dark_frame(dataset: Path) -> np.ndarray | None:
    """The mean dark frame of a pairs dataset (float32), or None where none was taken."""
    record = pairs_record(dataset) or {}
    dark = record.get("dark")
    if not isinstance(dark, dict) or not dark.get("frames"):
        return None
    frames = zarr.open_array(str(dataset / str(dark["image"]) / "0"), mode="r")
    mean: np.ndarray = np.asarray(frames[: int(dark["frames"]), 0, 0], np.float32).mean(axis=0)
    return mean


def dataset_pairs(dataset: Path, input_modality: str, target_modality: str) -> list[tuple[str, Path, Path]]:
    """(name, input image, target image) of every complete field of a pairs dataset."""
    record = pairs_record(dataset)
    if record is None:
        raise NotAPairsDatasetError(f"{dataset} is not a pairs dataset (made by `mm-deepz pairs acquire`).")
    fields = record.get("fields")
    if not isinstance(fields, dict):
        raise NotAPairsDatasetError(f"{dataset}: its pairs record names no fields; the dataset is damaged.")
    have = record.get("modalities", {})
    if {input_modality, target_modality} - {have.get("input"), have.get("target")}:
        raise NotAPairsDatasetError(
            f"{dataset} holds {have.get('input')} and {have.get('target')} stacks, not {input_modality} and "
            f"{target_modality}: give --input-modality / --target-modality as acquired."
        )
    out = []
    for name, f in fields.items():
        if not f.get("complete"):
            logger.warning("%s: field %s was not acquired to the end; it is left out", dataset, name)
            continue
        images = f["images"]
        out.append(
            (
                f"{dataset.name.removesuffix('.ome.zarr')}/{name}",
                dataset / str(images[input_modality]),
                dataset / str(images[target_modality]),
            )
        )
    return out
