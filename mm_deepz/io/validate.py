"""Checking a container's metadata before anything reads it: edited, truncated or hostile files give
one line naming the file and what is wrong, never a traceback, a huge allocation or a wrong record.

Every reader (``info``, ``preview``, ``infer``, ``track``, the napari reader) opens a run through
:func:`mm_deepz.io.open_container`, which calls :func:`check_container` first. It reads each JSON
file mm-deepz relies on itself, bounded in size and nesting and with strict numbers (no NaN or
Infinity), before zarr parses it; checks the run record's shape (the keys it must have, time
points and planes as small non-negative integers, image paths as the numbered folders the layout
writes); and checks each image's array metadata (five axes, sizes and chunks within what a run
can write, a known pixel type) and its NGFF scale and translation (finite, positive scales within
physical limits), so that no later step divides by a z step of 1e-12 µm or allocates a 146 TiB
array.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Annotated, Any, TypeGuard

import zarr
from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError, model_validator

from ..errors import DeepZError
from .layout import IMAGES, LAYOUT_VERSION
from .schema import SHARD_TIME_POINTS

#: the largest metadata file read (bytes): a run's record grows by ~100 bytes per time point
MAX_JSON_BYTES = 256 * 1024 * 1024
#: the deepest nesting a metadata file may have (mm-deepz writes at most ~8 levels)
MAX_JSON_DEPTH = 64
#: what a run can hold, per axis (t, c, z, y, x): 1,000,000 time points, 1001 planes, 65536-px frames
MAX_SHAPE = (1_000_000, 16, 1001, 65_536, 65_536)
#: the most XY positions a run may have
MAX_POSITIONS = 10_000
#: the pixel types mm-deepz writes
DTYPES = ("uint8", "uint16", "float32")
#: physical limits of an image's scale (s per time point, µm per plane or pixel)
SCALE_LIMITS = {"t": (0.0, 1e7), "z": (1e-3, 1e4), "y": (1e-4, 1e4), "x": (1e-4, 1e4)}


class DamagedContainerError(DeepZError):
    """A container whose metadata is damaged: edited by hand or by another program, truncated, or made to
    attack its readers. Names the file and what is wrong."""


TimeIndex = Annotated[int, Field(ge=0, lt=MAX_SHAPE[0])]
PlaneIndex = Annotated[int, Field(ge=0, lt=MAX_SHAPE[2])]
#: a per-time-point record key: "3", or "3/p1" with several positions
RecordKey = Annotated[str, StringConstraints(pattern=r"^\d{1,7}(/p\d{1,4})?$")]
#: an image's folder in the container: numbered (layout 2), or named (layout 1)
ImagePath = Annotated[str, StringConstraints(pattern=r"^(\d{1,6}|[A-Za-z][\w-]{0,63}(/p\d{1,4})?)$")]


class RunRecord(BaseModel):
    """The shape of the ``mm_deepz`` root attributes that readers rely on (other keys pass unchecked)."""

    model_config = ConfigDict(extra="allow", allow_inf_nan=False, strict=True)

    layout: Annotated[int, Field(ge=1, le=LAYOUT_VERSION)] = 1
    images: dict[str, list[ImagePath]] | None = None
    completed: dict[str, list[TimeIndex]]
    planes_measured: dict[RecordKey, list[PlaneIndex]] = Field(default_factory=dict)
    virtual_missing: dict[RecordKey, str] = Field(default_factory=dict)
    virtual_pending: dict[RecordKey, str] = Field(default_factory=dict)
    blind_checks: dict[RecordKey, dict[str, Any]] = Field(default_factory=dict)
    frame_times_s: dict[str, dict[RecordKey, dict[str, float | None]]] = Field(default_factory=dict)
    rejected: dict[str, str] = Field(default_factory=dict)
    finished: bool = False
    aborted: bool = False
    anchor_z_um: list[float] | None = None
    #: the requested z planes (runs since 2026-12-02; before, the virtual image's)
    z_grid_um: Annotated[list[float], Field(min_length=1, max_length=MAX_SHAPE[2])] | None = None
    interval_s: Annotated[float, Field(ge=0, le=1e7)] = 0.0
    warnings: list[str] = Field(default_factory=list)
    errors: list[str] = Field(default_factory=list)

    @model_validator(mode="after")
    def _images(self) -> RunRecord:
        if "measured" not in self.completed:
            raise ValueError("completed has no measured time points list")
        if self.images is None:
            if self.layout >= 2 or "images" in self.model_fields_set:
                raise ValueError("images must name each image's folders")
            return self
        # layout 2 made every image at its start until 2026-12-02; since, an image at its first frame
        if "measured" not in self.images or (self.z_grid_um is None and not set(IMAGES) <= set(self.images)):
            raise ValueError(f"images must name {', '.join(IMAGES)}")
        counts = {len(paths) for paths in self.images.values()}
        if len(counts) != 1 or not 1 <= counts.pop() <= MAX_POSITIONS:
            raise ValueError("images must name the same number of positions (1 or more) for each image")
        return self


def read_json(path: Path) -> Any:
    """A metadata file, read strictly: bounded size and nesting, no NaN or Infinity
    (:class:`DamagedContainerError` naming the file otherwise)."""
    try:
        size = path.stat().st_size
        if size > MAX_JSON_BYTES:
            raise DamagedContainerError(f"{path} is {size:,} bytes, more than any run writes")
        text = path.read_bytes().decode("utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise DamagedContainerError(f"{path} cannot be read ({e})") from None
    depth = _nesting(text)
    if depth > MAX_JSON_DEPTH:
        raise DamagedContainerError(f"{path} is nested {depth} levels deep (a run writes fewer than 10)")

    def refuse(constant: str) -> float:
        raise DamagedContainerError(f"{path} holds {constant}, which is not a JSON number")

    try:
        return json.loads(text, parse_constant=refuse)
    except (ValueError, RecursionError) as e:
        raise DamagedContainerError(f"{path} is not valid JSON ({e})") from None


def _nesting(text: str) -> int:
    """How deep brackets nest in a JSON text (those inside strings do not count)."""
    depth = deepest = 0
    in_string = escaped = False
    for ch in text:
        if in_string:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                in_string = False
        elif ch == '"':
            in_string = True
        elif ch in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif ch in "]}":
            depth -= 1
    return deepest


def check_record(root: Path) -> RunRecord:
    """The run record of the container at ``root``, validated."""
    meta = read_json(root / "zarr.json")
    attrs = meta.get("attributes") if isinstance(meta, dict) else None
    record = attrs.get("mm_deepz") if isinstance(attrs, dict) else None
    if not isinstance(record, dict):
        raise DamagedContainerError(f"{root / 'zarr.json'}: its mm_deepz record is not a JSON object")
    try:
        return RunRecord.model_validate(record)
    except ValidationError as e:
        first = e.errors()[0]
        where = ".".join(str(part) for part in first["loc"])
        raise DamagedContainerError(
            f"{root / 'zarr.json'}: the record's {where or 'content'} is wrong ({first['msg']})"
        ) from None


def check_image(root: Path, folder: str) -> None:
    """One image's NGFF group and (t, c, z, y, x) array metadata."""
    group = read_json(root / folder / "zarr.json")
    try:
        dataset = group["attributes"]["ome"]["multiscales"][0]["datasets"][0]
        scale, translation = (dataset["coordinateTransformations"][i] for i in (0, 1))
        scale, translation = scale["scale"], translation["translation"]
    except (KeyError, IndexError, TypeError):
        raise DamagedContainerError(
            f"{root / folder / 'zarr.json'} has no NGFF scale and translation"
        ) from None
    _check_transforms(root / folder / "zarr.json", scale, translation)
    array = read_json(root / folder / "0" / "zarr.json")
    where = root / folder / "0" / "zarr.json"
    if not isinstance(array, dict) or array.get("node_type") != "array":
        raise DamagedContainerError(f"{where} is not an array's metadata")
    shape = array.get("shape")
    if not _ints(shape, 5) or any(not 0 <= n <= top for n, top in zip(shape, MAX_SHAPE, strict=True)):
        raise DamagedContainerError(f"{where}: shape {shape} is not a (t, c, z, y, x) shape a run writes")
    try:
        chunks = array["chunk_grid"]["configuration"]["chunk_shape"]
    except (KeyError, TypeError):
        chunks = None
    # a shard may reach past the array: its time points still to come, whole inner chunks along z
    if not _ints(chunks, 5) or any(
        not 1 <= c <= top for c, top in zip(chunks, _chunk_limits(shape), strict=True)
    ):
        raise DamagedContainerError(f"{where}: chunk shape {chunks} does not fit shape {shape}")
    if array.get("data_type") not in DTYPES:
        raise DamagedContainerError(f"{where}: pixel type {array.get('data_type')!r} is not one a run writes")
    _zarr_reads(root, folder, zarr.Group)
    _zarr_reads(root, f"{folder}/0", zarr.Array)


def _zarr_reads(root: Path, node: str, kind: type) -> None:
    """Let zarr parse the rest of a node's metadata (codecs, fill value, chunk key encoding ...), which
    is zarr's to define, the way readers reach it: whatever it refuses is named, not raised as a
    traceback."""
    where = root / node / "zarr.json" if node else root / "zarr.json"
    try:
        group = zarr.open_group(str(root), mode="r")
        found = group[node] if node else group
    except Exception as e:  # noqa: BLE001 - a hostile file can make zarr raise anything
        why = " ".join(str(e).split())[:200]
        raise DamagedContainerError(f"{where}: zarr cannot read it ({type(e).__name__}: {why})") from None
    if not isinstance(found, kind):
        raise DamagedContainerError(
            f"{where}: zarr reads it as a {type(found).__name__}, not a {kind.__name__}"
        )


def _chunk_limits(shape: list[int]) -> tuple[int, ...]:
    """The largest (t, c, z, y, x) chunk (shard) a run makes for an array of ``shape``."""
    t, c, z, y, x = (max(n, 1) for n in shape)
    return max(t, SHARD_TIME_POINTS), c, 2 * z - 1, y, x


def _ints(values: Any, n: int) -> TypeGuard[list[int]]:
    return (
        isinstance(values, list)
        and len(values) == n
        and all(isinstance(v, int) and not isinstance(v, bool) for v in values)
    )


def _check_transforms(where: Path, scale: Any, translation: Any) -> None:
    numbers = (scale, translation)
    if not all(
        isinstance(v, list)
        and len(v) == 5
        and all(isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x) for x in v)
        for v in numbers
    ):
        raise DamagedContainerError(f"{where}: scale / translation are not five finite numbers each")
    for axis, value in zip("tczyx", scale, strict=True):
        if axis in SCALE_LIMITS:
            low, high = SCALE_LIMITS[axis]
            inside = low < value <= high if axis == "t" else low <= value <= high  # t: 0 is no scale
            if not inside:
                raise DamagedContainerError(
                    f"{where}: the {axis} scale {value:g} is outside {low:g} to {high:g}"
                )
    if any(abs(v) > 1e9 for v in translation):
        raise DamagedContainerError(f"{where}: a translation beyond 1e9 µm")


def check_container(path: Path) -> RunRecord:
    """Validate the container at ``path``: its record and every image it names
    (:class:`DamagedContainerError` with one line naming the file and the problem)."""
    try:
        record = check_record(path)
        _zarr_reads(path, "", zarr.Group)
        for folder in _image_folders(path, record):
            if not (path / folder / "zarr.json").is_file():
                raise DamagedContainerError(
                    f"{path}: the record names image folder {folder}/, which is not there"
                )
            check_image(path, folder)
    except DamagedContainerError as e:
        raise _damaged(e) from None
    return record


def check_json_file(path: Path) -> Any:
    """A metadata file read as strict, bounded JSON; :class:`DamagedContainerError` if it does not."""
    try:
        return read_json(path)
    except DamagedContainerError as e:
        raise _damaged(e) from None


def _damaged(e: DamagedContainerError) -> DamagedContainerError:
    return DamagedContainerError(
        f"{e}. The container is damaged (edited, truncated or not written by mm-deepz): it is not read "
        "further; restore it from a copy."
    )


def _image_folders(path: Path, record: RunRecord) -> list[str]:
    """The image folders a record names (layout 2), or finds at the image names (layout 1)."""
    if record.images is not None:
        return [p for paths in record.images.values() for p in paths]
    folders = []
    for name in record.completed:
        if (path / name / "0" / "zarr.json").is_file():
            folders.append(name)
        elif (path / name).is_dir():
            folders += sorted(f"{name}/{p.name}" for p in (path / name).glob("p[0-9]*") if p.is_dir())
    return folders
