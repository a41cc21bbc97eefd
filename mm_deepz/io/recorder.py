"""Streaming OME-Zarr recorder: measured, virtual and reference stacks side by side.

One container per acquisition (NGFF 0.5, zarr v3), an OME-Zarr collection of images
(bioformats2raw layout, :mod:`mm_deepz.io.layout`)::

    run.ome.zarr/     root attrs "mm_deepz": plan, model, versions, dose, progress, where each image is
      OME/            the collection's series and OME-XML
      0/  measured    (t, c, z, y, x) Deep-Z's 1-2 input planes as measured, at their own z
                      (``Geometry.anchor_z_um``), at every time point
      1/  virtual     (t, c, z, y, x) the synthesized stack on the requested z grid (float32, input ADU)
      2/  reference   (t, c, z, y, x) real target-modality stacks from blind checks
      3/  measured_stack  full z-stacks measured while virtual z-stacking was off (made at the first)

Callers address planes by their index on the requested z grid in every image; the recorder
puts an input plane in its place in ``measured``.

A camera frame that does not fit its image (another shape: the ROI or binning changed; values
that are not 16-bit counts) is never dropped: it is kept as its own array under
``rejected/`` with the reason, and listed in the root attributes.

With several XY positions each position has its own three images (``3/``, ``4/``, ``5/`` for the
second), translated to its stage position so the fields tile in a viewer.

All three images share scales and translations (µm, s), so they overlay exactly. Each says what
it is (channel label and colour, emission, exposure) and carries a display window taken from
its data as the run grows. The time axis grows as data arrives; planes never written read as
0, and the root attributes list which time points are complete in each image, which virtual
stacks are missing and why, and when each frame was written (also in the OME-XML, per plane).
Measured planes are written (each chunk is a file, written when the plane arrives) before
their virtual stack is requested, so a model, GPU or disk failure later never loses them.
"""

from __future__ import annotations

import errno
import logging
import shutil
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import zarr
from zarr.codecs import BloscCodec
from zarr.core.array_spec import ArrayConfigParams

from .. import __version__
from ..errors import ContainerChangedError, DeepZError, InputError, StorageError
from .claim import PAIRS_KEY, Claim, is_container
from .layout import (
    IMAGES,
    LAYOUT_VERSION,
    ImageInfo,
    array_at,
    group_at,
    image_group_path,
    info_for,
    json_attr,
    number_images,
    omero,
    recorded,
    transforms,
    write_collection,
    z_grid,
)
from .layout import n_positions as layout_n_positions
from .validate import check_container, check_json_file
from .window import DisplayWindows

logger = logging.getLogger(__name__)

#: root attributes that record progress (the rest describe the run)
STATE_KEYS = (
    "completed",
    "virtual_missing",
    "virtual_pending",
    "blind_checks",
    "planes_measured",
    "finished",
    "rejected",
    "warnings",
    "frame_times_s",
)
#: camera images are uint16; virtual images float32 in the input camera's units, because a dim
#: input spans few ADU and rounding would reduce faint synthesized structure to a few levels
DTYPES = {"measured": "uint16", "virtual": "float32", "reference": "uint16", "measured_stack": "uint16"}
#: full z-stacks the camera measured (virtual z-stacking off): made at the first one
STACK_IMAGE = "measured_stack"


#: lossless, and 5x faster than zarr's default zstd on camera frames at a better size ratio
#: (benchmarks: 2048x2048 uint16, 1227 vs 236 MB/s, 5.1 vs 5.0)
COMPRESSOR = BloscCodec(cname="lz4", clevel=5, shuffle="bitshuffle")
#: every written chunk is stored: zarr's check for chunks equal to the fill value costs 2/3 of
#: the write time of a camera frame, and camera frames are never empty
ARRAY_CONFIG: ArrayConfigParams = {"order": "C", "write_empty_chunks": True}


#: while measured time points stream in, the run record is rewritten at most this often, s. It holds
#: every frame's time, so it grows with the run: rewritten at each time point it took 4.6 ms at 200 time
#: points and 66 ms at 3000 (a third of the camera path's time at 512² already at 150). What a kill
#: loses of it, the measured chunks on disk still say (`mm-deepz info` names them, `infer` records them)
RECORD_EVERY_S = 1.0

#: virtual stacks arrive whole, so their planes share chunks of up to this size (fewer, larger
#: writes: 21 planes of 256x256 float32 in 9 instead of 17 ms); camera planes arrive one by one
VIRTUAL_CHUNK_BYTES = 16 * 2**20


def measured_not_recorded(path: str | Path, record: dict[str, Any]) -> list[int]:
    """Time points whose measured planes are on disk (chunk folders of the measured image) but not in
    ``record`` (the run's, as read): what a kill between a plane's write and the record's left, or a
    record write that failed (a full disk). Read-only; ``mm-deepz infer`` records them."""
    recorded_t = {record_key_parts(key)[0] for key in record.get("planes_measured") or {}}
    found: set[int] = set()
    for folder in (record.get("images") or {}).get("measured", []):
        chunks = Path(path) / folder / "0" / "c"
        if chunks.is_dir():
            found |= {int(d.name) for d in chunks.iterdir() if d.name.isdigit() and any(d.iterdir())}
    return sorted(found - recorded_t)


def per_position(name: str, p: int, several: bool) -> str:
    """``name`` with one XY position, ``name/p<p>`` with several: image groups and the keys of
    per-time-point records alike."""
    return f"{name}/p{p}" if several else name


def record_key_parts(key: str) -> tuple[int, int]:
    """(time point, position) of a per-time-point record key (``"3"`` or ``"3/p1"``)."""
    t, _, p = key.partition("/p")
    return int(t), int(p or 0)


def _z_chunk(image: str, n_z: int, plane_bytes: int) -> int:
    """Planes per chunk along z."""
    return max(1, min(n_z, VIRTUAL_CHUNK_BYTES // plane_bytes)) if image == "virtual" else 1


@dataclass(frozen=True)
class Geometry:
    """The shared physical frame: z grid (µm), pixel size (µm), time interval (s), frame shape."""

    z_um: tuple[float, ...]
    pixel_size_um: float
    interval_s: float
    shape_yx: tuple[int, int]
    channels: tuple[str, ...] = ("fluorescence",)
    #: stage XY (µm) of each position
    positions_xy_um: tuple[tuple[float, float], ...] = ((0.0, 0.0),)
    #: z of Deep-Z's input planes, on ``z_um``: the measured image holds these planes only (full
    #: stacks go to ``measured_stack``); None: the measured image is on the whole grid
    anchor_z_um: tuple[float, ...] | None = None

    def image_z(self, image: str) -> tuple[float, ...]:
        """The z planes (µm) of an image."""
        return self.anchor_z_um if image == "measured" and self.anchor_z_um is not None else self.z_um

    def grid_index(self, z: float) -> int:
        """Index on ``z_um`` of the plane at ``z`` µm."""
        return int(np.argmin(np.abs(np.asarray(self.z_um) - z)))

    @property
    def z_step_um(self) -> float:
        """Spacing of the z grid (1 for a single plane)."""
        return _step(self.z_um)


def _step(z: tuple[float, ...]) -> float:
    return float(np.median(np.diff(z))) if len(z) > 1 else 1.0


#: a measured cadence this far (relative) from the interval asked for replaces it as the time scale
CADENCE_RTOL = 0.05


def ngff_attrs(
    name: str, g: Geometry, info: ImageInfo, position: int = 0, z: tuple[float, ...] | None = None
) -> dict[str, Any]:
    """The NGFF attributes of one (t, c, z, y, x) image: axes in seconds and µm, scale and translation
    (stage position ``position`` of ``g``, planes ``z`` or ``g``'s grid), display window."""
    h, w = g.shape_yx
    p = g.pixel_size_um
    z = z or g.z_um
    x0, y0 = g.positions_xy_um[position] if len(g.positions_xy_um) > 1 else (0.0, 0.0)
    return {
        "ome": {
            "version": "0.5",
            "multiscales": [
                {
                    "name": name,
                    # NGFF's recommended description of how the levels were made (ngff-zarr's strict
                    # schema requires it): one level, as recorded, no downscaling
                    "type": "none",
                    "metadata": {
                        "description": "one resolution level, as the camera recorded it or the model made it",
                        "method": "mm_deepz.io.recorder",
                        "version": __version__,
                    },
                    "axes": [
                        {"name": "t", "type": "time", "unit": "second"},
                        {"name": "c", "type": "channel"},
                        {"name": "z", "type": "space", "unit": "micrometer"},
                        {"name": "y", "type": "space", "unit": "micrometer"},
                        {"name": "x", "type": "space", "unit": "micrometer"},
                    ],
                    "datasets": [
                        {
                            "path": "0",
                            "coordinateTransformations": [
                                # an interval of 0 (as fast as possible) is replaced by the measured cadence
                                # on finish
                                {
                                    "type": "scale",
                                    "scale": [g.interval_s if g.interval_s > 0 else 1.0, 1.0, _step(z), p, p],
                                },
                                {
                                    "type": "translation",
                                    "translation": [
                                        0.0,
                                        0.0,
                                        float(z[0]),
                                        y0 - (h - 1) / 2 * p,
                                        x0 - (w - 1) / 2 * p,
                                    ],
                                },
                            ],
                        }
                    ],
                }
            ],
            "omero": omero(info, (0.0, 4000.0), 65535),
        }
    }


class Recorder:
    """Writes one acquisition's images into an OME-Zarr container, thread-safe."""

    def __init__(
        self,
        path: str | Path,
        geometry: Geometry,
        attrs: dict[str, Any] | None = None,
        overwrite: bool = False,
        compression: bool = True,
        infos: dict[str, ImageInfo] | None = None,
    ):
        """``compression``: lossless Blosc-LZ4 (bit-shuffled) chunks, or raw chunks. ``infos``: what
        each image is (label, colour, emission, exposure; defaults by image name).

        ``overwrite`` replaces an earlier mm-deepz container only (see :class:`Claim`); the
        container stays locked against other writers until :meth:`close`.
        """
        self._claim = Claim(path, overwrite)
        #: the container's resolved path (links and ``..`` resolved), whichever alias named it
        self.path = self._claim.path
        self.geometry = geometry
        self._lock = threading.RLock()
        self._state: dict[str, Any] = {
            "completed": {k: [] for k in IMAGES},
            "virtual_missing": {},
            "blind_checks": {},
            "planes_measured": {},
            "finished": False,
            "frame_times_s": {},
        }
        self._infos = {**{name: info_for(name, infos) for name in IMAGES}, **(infos or {})}
        # the measured image now; the others at their first frame (an image nothing is written to is not
        # made: an empty one read as a zero-length layer, and its OME-XML could only lie about SizeT)
        self._paths = number_images(["measured"], len(geometry.positions_xy_um))
        self._slots = self._anchor_slots()
        self._arrays: dict[tuple[str, int], zarr.Array[Any]] = {}
        self._compression = compression
        try:
            # a reader never sees a record naming an image that is not complete: each image group is made
            # with its attributes in one write, its array beside it, the collection, and the record last
            # (before it, the folder reads as "not an mm-deepz container", never as a damaged one)
            self.root = zarr.create_group(str(self.path), zarr_format=3, overwrite=False)
            self._create_image("measured")
            write_collection(self.root, self._paths, self._infos)
            layout = {
                "layout": LAYOUT_VERSION,
                "images": self._paths,
                "z_grid_um": geometry.z_um,  # the requested planes (the measured image may hold a few)
                "anchor_z_um": geometry.anchor_z_um,
                "image_info": {name: asdict(info) for name, info in self._infos.items()},
            }
            self.root.attrs["mm_deepz"] = json_safe({**(attrs or {}), **layout, **self._state})
        except BaseException as e:  # a half-made container is removed, an earlier one put back
            self._claim.rollback()
            if isinstance(e, OSError):
                raise self._storage_error(e, wrote=False) from e
            raise
        #: an earlier run this one replaces: kept aside until the first frame is written, put back if none is
        self.restored: Path | None = None
        #: files found among the chunks that no run writes (another tool's, or beyond the arrays)
        self.ignored: list[str] = []
        self._attrs = {k: v for k, v in recorded(self.root).items() if k not in STATE_KEYS}
        self._times: dict[int, float] = {}
        self._t0 = time.time()
        self._flushed_at = 0.0  # when the run record was last written (time.monotonic)
        self._windows = DisplayWindows()
        self._written_windows: dict[tuple[str, int], tuple[float, float]] = {}
        self._done_positions: dict[tuple[str, int], set[int]] = {}

    def _anchor_slots(self) -> dict[int, int] | None:
        """Grid index -> plane of the measured image, when it holds the input planes only."""
        anchors = self.geometry.anchor_z_um
        return None if anchors is None else {self.geometry.grid_index(z): i for i, z in enumerate(anchors)}

    @classmethod
    def reopen(cls, path: str | Path, wait_s: float = 0.0) -> Recorder:
        """A container written earlier, locked for this process, to add what its run left to make
        (its geometry read from the measured image's NGFF metadata); ``wait_s``: how long to wait for
        another writer to let it go."""
        path = Path(path)
        open_container(path)  # refuses what is not an mm-deepz run
        rec = cls.__new__(cls)
        rec._claim = Claim.existing(path, wait_s)
        rec.path = rec._claim.path
        rec.restored = None
        rec.ignored = []
        rec._lock = threading.RLock()
        rec.root = zarr.open_group(str(rec.path), mode="r+")
        attrs = recorded(rec.root)
        rec._state = {k: attrs.pop(k) for k in list(attrs) if k in STATE_KEYS}
        rec._state.setdefault("frame_times_s", {})
        rec._attrs = attrs
        n_pos = layout_n_positions(rec.root)
        made = attrs.get("images") or rec._state["completed"]  # layout 1 made every image at its start
        rec._paths = {name: [image_group_path(rec.root, name, p) for p in range(n_pos)] for name in made}
        frames = [group_at(rec.root, path) for path in rec._paths["measured"]]
        arr = array_at(frames[0], "0")
        h, w = arr.shape[-2:]
        ts = [transforms(g) for g in frames]
        scale, _ = ts[0]
        positions = (
            tuple((t[4] + (w - 1) / 2 * scale[4], t[3] + (h - 1) / 2 * scale[3]) for _, t in ts)
            if n_pos > 1
            else ((0.0, 0.0),)
        )
        anchors = attrs.get("anchor_z_um")
        rec.geometry = Geometry(
            z_grid(rec.root),
            float(scale[3]),
            float(attrs.get("interval_s", 0.0)),
            (h, w),
            positions_xy_um=positions,
            anchor_z_um=tuple(anchors) if anchors else None,
        )
        rec._compression = bool(arr.compressors)
        rec._slots = rec._anchor_slots()
        rec._arrays = {
            (name, pos): array_at(rec.root, f"{rec._paths[name][pos]}/0")
            for name in rec._paths
            for pos in range(rec.n_positions)
        }
        stored = attrs.get("image_info", {})  # what the run said its images are (layout 2)
        rec._infos = {
            name: ImageInfo(**stored[name]) if name in stored else info_for(name) for name in rec._paths
        }
        rec._windows, rec._written_windows = DisplayWindows(), {}
        rec._t0 = time.time()
        rec._flushed_at = 0.0
        rec._times = {}
        rec._done_positions = {
            (name, t): set(range(rec.n_positions))
            for name, done in rec._state["completed"].items()
            for t in done
        }
        return rec

    def recover_measured(self) -> list[tuple[int, int]]:
        """Time points (t, position) whose measured planes are on disk but not in the record (a write
        of the record itself failed, e.g. a full disk, after the planes' own writes): record them
        now, from the chunk files present (each measured plane is one chunk, written when it
        arrives). Returns what was recovered."""
        recovered = []
        with self._lock:
            for p in range(self.n_positions):
                chunks = self.path / self._paths["measured"][p] / "0" / "c"
                if not chunks.is_dir():
                    continue
                n_t, n_z = self._arrays["measured", p].shape[0], self._arrays["measured", p].shape[2]
                for t_dir in chunks.iterdir():
                    if not t_dir.name.isdigit() or int(t_dir.name) >= n_t:
                        self.ignored.append(str(t_dir.relative_to(self.path)))
                        continue  # another tool's file (.DS_Store), or a chunk beyond the array
                    t = int(t_dir.name)
                    key = self._record_key(t, p)
                    planes = (
                        sorted(
                            int(z.name)
                            for z in (t_dir / "0").iterdir()
                            if z.name.isdigit() and int(z.name) < n_z
                        )
                        if (t_dir / "0").is_dir()
                        else []
                    )
                    if self._slots is not None:  # planes of the measured image -> planes of the z grid
                        grid = {slot: zi for zi, slot in self._slots.items()}
                        planes = sorted(grid[s] for s in planes if s in grid)
                    if planes and key not in self._state["planes_measured"]:
                        self.mark_complete("measured", t, p, planes=planes)
                        recovered.append((t, p))
        if recovered:
            logger.info(
                "Recovered %d measured time point(s) on disk but missing from the record", len(recovered)
            )
        if self.ignored:
            logger.warning(
                "Ignored %d file(s) among the measured chunks that no run writes there (e.g. %s)",
                len(self.ignored),
                self.ignored[0],
            )
        return sorted(recovered)

    def add_image(self, name: str, like: str = "virtual") -> None:
        """A new image shaped like ``like`` (the run's virtual stacks or reference stacks at their first
        write, another model's virtual stacks beside the run's)."""
        with self._lock:
            if not self._layout_numbered:
                raise InputError(
                    f"{self.path} was written by an older mm-deepz (layout 1): images cannot be added "
                    "to it. Make the virtual stacks into a new run, or re-acquire."
                )
            taken = max(int(path) for paths in self._paths.values() for path in paths) + 1
            self._paths[name] = number_images([name], self.n_positions, start=taken)[name]
            self._infos[name] = self._infos.get(name) or info_for(name)
            try:
                self._create_image(name, like)
            except OSError as e:
                raise self._storage_error(e) from e
            self._state["completed"].setdefault(name, [])
            self._attrs["images"] = self._paths
            self._attrs.setdefault("image_info", {})[name] = asdict(self._infos[name])
            self._flush_attrs()
            self._write_collection()

    def _create_image(self, name: str, like: str | None = None) -> None:
        """The group (with its NGFF attributes, in one write) and the empty (t, c, z, y, x) array of image
        ``name`` at every position; planes, type and chunks those of image kind ``like`` (default: its
        own)."""
        kind = like or name
        z = self.geometry.image_z(kind)
        h, w = self.geometry.shape_yx
        dtype = DTYPES[kind]
        for pos in range(self.n_positions):
            title = name if self.n_positions == 1 else f"{name} p{pos}"
            grp = self.root.create_group(
                self._paths[name][pos],
                attributes=ngff_attrs(title, self.geometry, self._infos[name], pos, z),
            )
            self._arrays[name, pos] = grp.create_array(
                "0",
                shape=(0, len(self.geometry.channels), len(z), h, w),
                chunks=(1, 1, _z_chunk(kind, len(z), h * w * np.dtype(dtype).itemsize), h, w),
                dtype=dtype,
                fill_value=0,
                dimension_names=("t", "c", "z", "y", "x"),
                compressors=COMPRESSOR if self._compression else None,
                config=ARRAY_CONFIG,
            )

    @property
    def _layout_numbered(self) -> bool:
        return int(self._attrs.get("layout", 1)) >= 2

    def group_path(self, image: str, p: int = 0) -> str:
        """The group of ``image`` at position ``p`` inside the container."""
        return self._paths[image][p]

    @property
    def n_positions(self) -> int:
        """Number of XY positions."""
        return len(self.geometry.positions_xy_um)

    def array(self, image: str, p: int = 0) -> zarr.Array[Any]:
        """The (t, c, z, y, x) array of one image and position."""
        return self._arrays[image, p]

    # -- writing ------------------------------------------------------------------
    def write_plane(
        self, image: str, t: int, z_index: int, plane: np.ndarray, c: int = 0, p: int = 0
    ) -> None:
        """Write the plane ``z_index`` of the z grid (grows the time axis as needed). The measured
        image takes Deep-Z's input planes only; :data:`STACK_IMAGE` full stacks. An image is made at its first
        frame."""
        self._write(image, p, t, (c, self._plane_of(image, z_index)), plane)

    def _plane_of(self, image: str, z_index: int) -> int:
        """The plane of ``image`` that holds plane ``z_index`` of the z grid."""
        if image != "measured" or self._slots is None:
            return z_index
        if z_index not in self._slots:
            raise ValueError(
                f"Plane {z_index} of the z grid is not one of the measured image's input planes "
                f"{sorted(self._slots)}: full stacks go to {STACK_IMAGE!r}."
            )
        return self._slots[z_index]

    def write_stack(self, image: str, t: int, stack: np.ndarray, c: int = 0, p: int = 0) -> None:
        """Write a whole (z, y, x) stack of time point ``t``."""
        self._write(image, p, t, (c, slice(None)), stack)

    def _write(self, image: str, p: int, t: int, index: tuple[int | slice, ...], data: np.ndarray) -> None:
        if (image, p) not in self._arrays:
            with self._lock:
                if (image, p) not in self._arrays:
                    self.add_image(image, like=image if image in DTYPES else "virtual")
        arr = self._arrays[image, p]
        data = np.asarray(data)
        expected = (
            self.geometry.shape_yx if isinstance(index[1], int) else (arr.shape[2], *self.geometry.shape_yx)
        )
        if data.shape != expected:
            raise InputError(
                f"A {image} frame of shape {data.shape} does not fit this acquisition's {expected}: "
                "did the camera ROI or binning change during the acquisition?"
            )
        if (
            data.dtype != arr.dtype
            and arr.dtype.kind == "u"
            and (data.dtype.kind not in "ui" or data.min() < 0 or data.max() > np.iinfo(arr.dtype).max)
        ):
            raise InputError(
                f"A {image} frame of dtype {data.dtype} (range {data.min()}..{data.max()}) is not "
                f"{arr.dtype} camera counts."
            )
        with self._lock:
            self._check_intact()
            try:
                if arr.shape[0] <= t:
                    arr.resize((t + 1, *arr.shape[1:]))
                key = (t, *index)
                arr[key] = np.asarray(data, arr.dtype)
            except OSError as e:
                raise self._storage_error(e) from e
            self._claim.commit()  # the new run has data: the run it replaces goes (once)
            if isinstance(index[1], int) and image in ("measured", "reference"):
                times = (
                    self._state["frame_times_s"].setdefault(image, {}).setdefault(self._record_key(t, p), {})
                )
                times[str(index[1])] = round(time.time() - self._t0, 4)
        self._windows.note((image, p), data)  # outside the writer's lock: nothing waits on it

    def _update_windows(self, image: str) -> None:
        """Write the display windows of ``image`` into its NGFF metadata (viewers open it in contrast),
        where they moved by more than 2 % of their span since last written (not at every time point)."""
        self._check_intact()
        for pos in range(self.n_positions):
            if (window := self._windows.window((image, pos))) is None:
                continue
            if (last := self._written_windows.get((image, pos))) is not None and max(
                abs(window[0] - last[0]), abs(window[1] - last[1])
            ) <= 0.02 * max(last[1] - last[0], 1e-9):
                continue
            self._written_windows[image, pos] = window
            grp = self.root[self._paths[image][pos]]
            ome = json_attr(grp, "ome")
            dtype = self._arrays[image, pos].dtype
            dtype_max = float(np.iinfo(dtype).max) if dtype.kind == "u" else max(2 * window[1], 1.0)
            new = omero(
                self._infos[image], (round(window[0], 2), round(max(window[1], window[0] + 1), 2)), dtype_max
            )
            if ome.get("omero") != new:
                try:
                    grp.attrs["ome"] = {**ome, "omero": new}
                except OSError as e:
                    raise self._storage_error(e) from e

    def refresh_collection(self) -> None:
        """Rewrite the collection metadata (the OME-XML's sizes and frame times) for what the arrays hold
        now: after a recovery or `mm-deepz infer` on a run that never finished."""
        with self._lock:
            self._write_collection()

    def _write_collection(self) -> None:
        """Rewrite the collection metadata: series, names, channels, and each measured frame's time."""
        if not self._layout_numbered:
            return
        planes: dict[str, list[dict[str, float]]] = {}
        for image, by_key in self._state["frame_times_s"].items():
            for key, times in by_key.items():
                t, p = record_key_parts(key)
                planes.setdefault(self._paths[image][p], []).extend(
                    {"the_t": t, "the_z": int(z), "delta_t": s} for z, s in times.items()
                )
        try:
            write_collection(self.root, self._paths, self._infos, planes)
        except OSError as e:
            raise self._storage_error(e) from e

    def keep_rejected(
        self, image: str, t: int, z_index: int, frame: np.ndarray, reason: str, p: int = 0
    ) -> str:
        """Store a frame that does not fit ``image`` under ``rejected/`` (never drop data); its path."""
        name = f"{image}_t{t}_z{z_index}_p{p}"
        with self._lock:
            try:
                grp = self.root.require_group("rejected")
                arr = grp.create_array(name, shape=frame.shape, dtype=frame.dtype, overwrite=True)
                arr[...] = frame
                arr.attrs["reason"] = reason
            except OSError as e:
                raise self._storage_error(e) from e
            self._claim.commit()  # a frame kept aside is measured data too
            self._state.setdefault("rejected", {})[name] = reason
            self._flush_attrs()
        return f"rejected/{name}"

    def record_warning(self, message: str) -> None:
        """Add a warning about the data (saturation ...) to the root attributes."""
        with self._lock:
            self._state.setdefault("warnings", []).append(message)
            self._flush_attrs()

    # -- bookkeeping --------------------------------------------------------------
    def _record_key(self, t: int, p: int) -> str:
        """Key of a per-time-point record (planes measured, missing virtual stack, blind check)."""
        return per_position(str(t), p, self.n_positions > 1)

    def mark_complete(self, image: str, t: int, p: int = 0, **info: Any) -> None:
        """Record that position ``p`` of time point ``t`` of ``image`` is fully written.

        ``completed`` lists a time point once every position of it is written.
        """
        with self._lock:
            positions = self._done_positions.setdefault((image, t), set())
            positions.add(p)
            if image == "measured" and "planes" in info:
                self._state["planes_measured"][self._record_key(t, p)] = info["planes"]
            if image == "virtual":  # made at last (after the run, by `mm-deepz infer`)
                self._state.get("virtual_pending", {}).pop(self._record_key(t, p), None)
                self._state["virtual_missing"].pop(self._record_key(t, p), None)
            if len(positions) < self.n_positions:
                self._flush_attrs(soon=image == "measured")
                return
            done = self._state["completed"][image]
            if t not in done:
                done.append(t)
                done.sort()
            if image == "measured":
                self._times[t] = time.time()
            self._update_windows(image)
            self._flush_attrs(soon=image == "measured")

    def mark_virtual_missing(self, t: int, reason: str, p: int = 0) -> None:
        """Record that the virtual stack of ``t`` (position ``p``) will not exist, and why."""
        with self._lock:
            self._state["virtual_missing"][self._record_key(t, p)] = reason
            self._state.setdefault("virtual_pending", {}).pop(self._record_key(t, p), None)
            self._flush_attrs()

    def mark_virtual_pending(self, t: int, p: int = 0) -> None:
        """Record that the virtual stack of ``t`` (position ``p``) is still to be made from its planes
        on disk (the model was busy); cleared when it is written."""
        with self._lock:
            self._state.setdefault("virtual_pending", {})[self._record_key(t, p)] = "waiting for the model"
            self._flush_attrs()

    def read_planes(self, image: str, t: int, z_indices: tuple[int, ...], p: int = 0) -> np.ndarray:
        """Planes of time point ``t`` read back from the container ((n, y, x))."""
        with self._lock:
            self._check_intact()
            try:
                stack = np.asarray(self._arrays[image, p][t, 0])
                return stack[[self._plane_of(image, z) for z in z_indices]]
            except OSError as e:
                raise self._storage_error(e) from e

    def record_blind_check(self, t: int, metrics: dict[str, Any], p: int = 0) -> None:
        """Store the metrics of a blind check (virtual vs reference) at ``t``."""
        with self._lock:
            self._state["blind_checks"][self._record_key(t, p)] = metrics
            self._flush_attrs()

    def update_attrs(self, **values: Any) -> None:
        """Merge values into the root ``mm_deepz`` attributes (dose, summary ...)."""
        with self._lock:
            self._attrs.update(values)
            self._flush_attrs()

    def finish(self, **values: Any) -> None:
        """Mark the container complete; the time scale becomes the measured cadence (the mean interval)
        where it differs from the one asked for. The container is released to other writers even when
        this last write fails (a full disk)."""
        try:
            self._finish(values)
        finally:
            self.close()

    def _finish(self, values: dict[str, Any]) -> None:
        with self._lock:
            self._state["finished"] = True
            self._attrs.update(values)
            if len(self._times) > 1:
                ts = [self._times[k] for k in sorted(self._times)]
                cadence = float((ts[-1] - ts[0]) / (len(ts) - 1))  # the mean interval, as documented
                self._attrs["measured_interval_s"] = cadence
                asked = self.geometry.interval_s
                # viewers place time points by the scale: the cadence the run kept, wherever it was not
                # the one asked for (as fast as possible, or slower than asked)
                if cadence > 0 and (asked <= 0 or abs(cadence - asked) > CADENCE_RTOL * asked):
                    self._set_time_scale(cadence)
            self._written_windows.clear()  # the final windows, however little they moved
            for image in self._paths:
                self._update_windows(image)
            self._flush_attrs()
            self._write_collection()

    def _set_time_scale(self, seconds: float) -> None:
        try:
            for name, pos in self._arrays:
                grp = self.root[self._paths[name][pos]]
                ome = json_attr(grp, "ome")
                ome["multiscales"][0]["datasets"][0]["coordinateTransformations"][0]["scale"][0] = seconds
                grp.attrs["ome"] = ome
        except OSError as e:
            raise self._storage_error(e) from e

    @property
    def attrs(self) -> dict[str, Any]:
        """What the root attributes say of the run (plan, model, versions ...), a copy."""
        with self._lock:
            return dict(self._attrs)

    @property
    def state(self) -> dict[str, Any]:
        """The progress record (completed time points, planes measured, missing ...), a copy."""
        with self._lock:
            return dict(json_safe(self._state))

    @property
    def completed(self) -> dict[str, list[int]]:
        """Time points complete in each image."""
        with self._lock:
            return {k: list(v) for k, v in self._state["completed"].items()}

    def _flush_attrs(self, soon: bool = False) -> None:
        """Write the run record; ``soon``: within :data:`RECORD_EVERY_S` (a measured time point: the next
        write of the record, :meth:`flush` or the finish takes it along)."""
        if soon and time.monotonic() - self._flushed_at < RECORD_EVERY_S:
            return
        self._check_intact()
        try:
            self.root.attrs["mm_deepz"] = json_safe({**self._attrs, **self._state})
        except OSError as e:
            raise self._storage_error(e) from e
        self._flushed_at = time.monotonic()

    def flush(self) -> None:
        """Write the run record now (a run that waits, paused or stopped, says all it measured)."""
        with self._lock:
            self._flush_attrs()

    def _check_intact(self) -> None:
        """Stop writing (:class:`ContainerChangedError`) if the container is no longer ours."""
        if not self._claim.intact():
            raise ContainerChangedError(
                f"{self.path} was deleted, moved or replaced while this run wrote it (by hand or by another "
                "program): stopping so nothing is written into the wrong place. Data measured before that "
                "is in the container that was there, if it still exists."
            )

    def close(self) -> None:
        """Release the container to other writers (after :meth:`finish`; idempotent). A run that replaced
        an earlier one and wrote no frame removes itself and puts the earlier one back."""
        if self._claim.replacing is None and not self._state.get("finished"):
            try:  # a run that ends without finish: its record says what the last second measured
                self.flush()
            except DeepZError as e:
                logger.warning("The run record could not be written at closing: %s", e)
        if (aside := self._claim.replacing) is not None:
            logger.warning(
                "No frame was written: %s is the earlier run again (it had been moved aside to %s)",
                self.path,
                aside,
            )
            self.restored = self.path
            self._claim.rollback()
        self._claim.release()

    def is_complete(self, image: str, t: int, p: int = 0) -> bool:
        """Whether position ``p`` of time point ``t`` of ``image`` is fully written."""
        with self._lock:
            return p in self._done_positions.get((image, t), ())

    def _storage_error(self, e: OSError, wrote: bool = True) -> StorageError:
        try:
            free = shutil.disk_usage(self.path.parent if not self.path.exists() else self.path).free
            space = f"{human_bytes(free)} free"
        except OSError:
            space = "free space unknown"
        what = "the disk is full" if e.errno == errno.ENOSPC else str(e)
        kept = "Data written so far is readable." if wrote else "Nothing was written; choose another output."
        return StorageError(f"Writing {self.path} failed: {what} ({space}). {kept}")


def json_safe(value: Any) -> Any:
    """``value`` with non-finite floats as None: JSON has no NaN or infinity, and readers reject them."""
    if isinstance(value, float):
        return value if np.isfinite(value) else None
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    return value


def human_bytes(n: float) -> str:
    """1536 -> '1.5 KB' (powers of 1000, as disk tools show them)."""
    for unit in ("bytes", "KB", "MB", "GB"):
        if n < 1000:
            return f"{n:.0f} {unit}" if unit == "bytes" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} TB"


class NotAContainerError(DeepZError):
    """A path that is not an mm-deepz container (missing, a file, another tool's data)."""


def open_container(path: str | Path) -> zarr.Group:
    """The root group of an mm-deepz container, read-only; :class:`NotAContainerError` otherwise."""
    path = Path(path)
    if not path.exists():
        raise NotAContainerError(f"{path} does not exist: give the path of a run's .ome.zarr folder.")
    if not path.is_dir():
        raise NotAContainerError(f"{path} is a file, not a run's .ome.zarr folder.")
    if (path / "zarr.json").is_file():
        meta = check_json_file(path / "zarr.json")
        attrs = meta.get("attributes") if isinstance(meta, dict) else None
        if isinstance(attrs, dict) and PAIRS_KEY in attrs:
            raise NotAContainerError(
                f"{path} is a pairs dataset (`mm-deepz pairs acquire`), not a run: `train`, `evaluate` and "
                "`pairs check` read it."
            )
    if not is_container(path):
        what = "an empty folder" if not any(path.iterdir()) else "not a container written by mm-deepz"
        raise NotAContainerError(
            f"{path} is {what} (its zarr.json has no mm_deepz attributes): give the path of a "
            "run written by `mm-deepz acquire` or the panel."
        )
    check_container(path)
    return zarr.open_group(str(path), mode="r")


def read_progress(path: str | Path) -> dict[str, Any]:
    """The ``mm_deepz`` attributes of a container (which time points are complete, etc.)."""
    return recorded(open_container(path))
