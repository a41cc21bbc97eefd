"""The images of a run: one sharded (t, c, z, y, x) array per image and position, in the numbered groups
of an OME-Zarr collection, each with its NGFF attributes and display window.

This is the recorder's writer backend: it makes, writes, reads and describes the arrays; what the run
record says of them, the claim and the locks are the recorder's.

The time axis grows in blocks of time points (each growth rewrites the array's metadata: 1.2-1.5 ms,
nearly as long as writing a 2048² frame): :data:`TIME_BLOCK`, doubled each time the axis grows again
within :data:`FAST_GROWTH_S` and halved when it did not (:class:`TimeAxis`), so a fast camera rewrites it
about once a second, not every 16 frames, and a slow time-lapse's blank tail stays short. It is trimmed
to the time points written when the run finishes (:meth:`ImageStore.trim`); a run that never finishes
(killed) ends in up to a block of blank time points (15, or about two seconds of a fast camera's
frames), which its record does not list as complete.
"""

from __future__ import annotations

import time
from dataclasses import asdict
from typing import Any

import numpy as np
import zarr

from ..errors import InputError
from .guard import WriteGuard
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
    transforms,
    write_collection,
    z_grid,
)
from .layout import n_positions as layout_n_positions
from .record import record_key_parts
from .schema import (
    ARRAY_CONFIG,
    CAMERA_IMAGES,
    COMPRESSOR,
    DTYPES,
    STACK_IMAGE,
    Geometry,
    band_rows,
    ngff_attrs,
    shard_time_points,
    z_chunk,
)
from .shards import ShardWriter, sharding, stored_chunks
from .window import DisplayWindows

#: time points the time axis grows by at once
TIME_BLOCK = 16
#: a growth this soon (s) after the last one doubles the block
FAST_GROWTH_S = 1.0


class TimeAxis:
    """How far an array's time axis grows when a time point beyond it arrives: by twice the last block
    where the last growth was less than :data:`FAST_GROWTH_S` ago, by half of it (at least
    :data:`TIME_BLOCK`) otherwise: about one growth every one or two seconds at any frame rate."""

    def __init__(self) -> None:
        self._block = TIME_BLOCK
        self._last: float | None = None

    def grown(self, length: int, t: int) -> int:
        """The new length of an axis of ``length`` time points that must hold time point ``t``."""
        now = time.monotonic()
        fast = self._last is not None and now - self._last < FAST_GROWTH_S
        self._block = 2 * self._block if fast else max(TIME_BLOCK, self._block // 2)
        self._last = now
        return max(length + self._block, -(-(t + 1) // TIME_BLOCK) * TIME_BLOCK)


class ImageStore:
    """The arrays of one run's images. The recorder's locks make it thread-safe: one writer at a time per
    image and position, the images' structure (new images, windows, the collection) under one lock."""

    def __init__(
        self,
        root: zarr.Group,
        guard: WriteGuard,
        geometry: Geometry,
        paths: dict[str, list[str]],
        infos: dict[str, ImageInfo],
        compression: bool,
        layout: int,
    ):
        self.root = root
        self.guard = guard
        self.geometry = geometry
        #: image name -> its group at each position
        self.paths = paths
        self.infos = infos
        self.compression = compression
        self.layout = layout
        self.arrays: dict[tuple[str, int], zarr.Array[Any]] = {}
        anchors = geometry.anchor_z_um
        #: grid index -> plane of the measured image, when it holds the input planes only
        self._slots = None if anchors is None else {geometry.grid_index(z): i for i, z in enumerate(anchors)}
        self._windows = DisplayWindows()
        self._written_windows: dict[tuple[str, int], tuple[float, float]] = {}
        #: time points written so far in each array (its time axis may hold more, blank, until trimmed)
        self._extent: dict[tuple[str, int], int] = {}
        #: the arrays whose planes are written into their shards directly (None: through zarr-python)
        self._shard_writers: dict[tuple[str, int], ShardWriter | None] = {}
        self._time_axes: dict[tuple[str, int], TimeAxis] = {}

    @classmethod
    def create(
        cls,
        root: zarr.Group,
        guard: WriteGuard,
        geometry: Geometry,
        infos: dict[str, ImageInfo] | None,
        compression: bool,
    ) -> ImageStore:
        """The measured image of a new run and the collection (the other images are made at their first
        frame: an image nothing is written to is not made; an empty one read as a zero-length layer, and
        its OME-XML could only lie about SizeT). Unguarded: the recorder rolls a failed start back."""
        all_infos = {**{name: info_for(name, infos) for name in IMAGES}, **(infos or {})}
        paths = number_images(["measured"], len(geometry.positions_xy_um))
        store = cls(root, guard, geometry, paths, all_infos, compression, LAYOUT_VERSION)
        store._create("measured")
        write_collection(root, store.paths, store.infos)
        return store

    @classmethod
    def open(cls, root: zarr.Group, guard: WriteGuard, attrs: dict[str, Any], made: list[str]) -> ImageStore:
        """The images of a run written earlier (``made``: their names, where ``attrs`` does not list
        them); the geometry read from the measured image's NGFF metadata."""
        n_pos = layout_n_positions(root)
        names = attrs.get("images") or made  # layout 1 made every image at its start
        paths = {name: [image_group_path(root, name, p) for p in range(n_pos)] for name in names}
        frames = [group_at(root, path) for path in paths["measured"]]
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
        geometry = Geometry(
            z_grid(root),
            float(scale[3]),
            float(attrs.get("interval_s", 0.0)),
            (h, w),
            positions_xy_um=positions,
            anchor_z_um=tuple(anchors) if anchors else None,
        )
        stored = attrs.get("image_info", {})  # what the run said its images are (layout 2)
        infos = {name: ImageInfo(**stored[name]) if name in stored else info_for(name) for name in paths}
        store = cls(root, guard, geometry, paths, infos, bool(arr.compressors), int(attrs.get("layout", 1)))
        store.arrays = {
            (name, pos): array_at(root, f"{paths[name][pos]}/0") for name in paths for pos in range(n_pos)
        }
        # never trimmed below what they held when opened: a killed run's chunks beyond its record are
        # measured data (recover_measured), and cutting the axis would delete them
        store._extent = {key: arr.shape[0] for key, arr in store.arrays.items()}
        return store

    def described(self) -> dict[str, Any]:
        """What the run record says of the images: layout, where each is, the grid, what each shows."""
        return {
            "layout": self.layout,
            "images": self.paths,
            "z_grid_um": self.geometry.z_um,  # the requested planes (the measured image may hold a few)
            "anchor_z_um": self.geometry.anchor_z_um,
            "image_info": {name: asdict(info) for name, info in self.infos.items()},
        }

    @property
    def n_positions(self) -> int:
        """Number of XY positions."""
        return len(self.geometry.positions_xy_um)

    @property
    def numbered(self) -> bool:
        """Whether images sit at numbered groups (layout 2), so that more can be added."""
        return self.layout >= 2

    def has(self, image: str, p: int) -> bool:
        """Whether ``image`` exists at position ``p``."""
        return (image, p) in self.arrays

    # -- making images ---------------------------------------------------------------
    def add(self, name: str, like: str) -> None:
        """A new image ``name`` at the next free numbers, shaped like image kind ``like``."""
        if not self.numbered:
            raise InputError(
                f"{self.guard.path} was written by an older mm-deepz (layout 1): images cannot be added "
                "to it. Make the virtual stacks into a new run, or re-acquire."
            )
        taken = max(int(path) for paths in self.paths.values() for path in paths) + 1
        self.paths[name] = number_images([name], self.n_positions, start=taken)[name]
        self.infos[name] = self.infos.get(name) or info_for(name)
        with self.guard.guarded(check=False):
            self._create(name, like)

    def _create(self, name: str, like: str | None = None) -> None:
        """The group (with its NGFF attributes, in one write) and the empty (t, c, z, y, x) array of image
        ``name`` at every position; planes, type, chunks and shards those of image kind ``like`` (default:
        its own)."""
        kind = like or name
        z = self.geometry.image_z(kind)
        h, w = self.geometry.shape_yx
        dtype = DTYPES[kind]
        n_c = len(self.geometry.channels)
        plane_bytes = h * w * np.dtype(dtype).itemsize
        zc = z_chunk(kind, len(z), plane_bytes)
        shard_z = -(-len(z) // zc) * zc  # whole inner chunks
        shard_t = shard_time_points(kind, n_c * len(z) * plane_bytes)
        inner = (1, 1, zc, band_rows(h, zc * plane_bytes), w)
        serializer = sharding(inner, COMPRESSOR if self.compression else None)
        for pos in range(self.n_positions):
            title = name if self.n_positions == 1 else f"{name} p{pos}"
            grp = self.root.create_group(
                self.paths[name][pos], attributes=ngff_attrs(title, self.geometry, self.infos[name], pos, z)
            )
            self.arrays[name, pos] = grp.create_array(
                "0",
                shape=(0, n_c, len(z), h, w),
                chunks=(shard_t, n_c, shard_z, h, w),
                serializer=serializer,
                compressors=None,
                dtype=dtype,
                fill_value=0,
                dimension_names=("t", "c", "z", "y", "x"),
                config=ARRAY_CONFIG,
            )

    # -- planes --------------------------------------------------------------------------
    def plane_of(self, image: str, z_index: int) -> int:
        """The plane of ``image`` that holds plane ``z_index`` of the z grid."""
        if image != "measured" or self._slots is None:
            return z_index
        if z_index not in self._slots:
            raise ValueError(
                f"Plane {z_index} of the z grid is not one of the measured image's input planes "
                f"{sorted(self._slots)}: full stacks go to {STACK_IMAGE!r}."
            )
        return self._slots[z_index]

    def check_frame(self, image: str, p: int, index: tuple[int | slice, ...], data: np.ndarray) -> None:
        """Refuse (:class:`InputError`) data that does not fit the image: another shape (the ROI or
        binning changed), or values that are not the image's camera counts."""
        arr = self.arrays[image, p]
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

    def write(self, image: str, p: int, t: int, index: tuple[int | slice, ...], data: np.ndarray) -> None:
        """Write ``data`` at ``(t, *index)`` (the time axis grows as needed). One image and position is
        written by one thread at a time (the recorder's lock of that image)."""
        arr = self.arrays[image, p]
        with self.guard.guarded():
            if arr.shape[0] <= t:
                grown = self._time_axes.setdefault((image, p), TimeAxis()).grown(arr.shape[0], t)
                arr.resize((grown, *arr.shape[1:]))
            c, z = index
            z0 = z if isinstance(z, int) else 0 if z == slice(None) else None  # a plane, or a whole stack
            if isinstance(c, int) and z0 is not None and (writer := self._shard_writer(image, p)):
                writer.write(t, c, z0, data)  # into its shard, as it arrives
            else:
                arr[(t, c, z)] = np.asarray(data, arr.dtype)
        self._extent[image, p] = max(self._extent.get((image, p), 0), t + 1)

    def _shard_writer(self, image: str, p: int) -> ShardWriter | None:
        """The direct writer of an array sharded as the recorder makes them (made once)."""
        key = (image, p)
        if key not in self._shard_writers:
            self._shard_writers[key] = ShardWriter.for_array(self.arrays[key], camera=image in CAMERA_IMAGES)
        return self._shard_writers[key]

    def stored_uncompressed(self) -> dict[str, dict[str, int]]:
        """Of each image's planes written so far, how many, and how many stored uncompressed because they
        arrived faster than the codec (:class:`~.shards.CodecBudget`); images with any."""
        out: dict[str, dict[str, int]] = {}
        for (image, _), writer in self._shard_writers.items():
            if writer is not None and writer.budget is not None and writer.budget.uncompressed:
                counts = out.setdefault(image, {"planes": 0, "uncompressed": 0})
                counts["planes"] += writer.budget.planes
                counts["uncompressed"] += writer.budget.uncompressed
        return out

    def trim(self) -> None:
        """Each array's time axis cut to the time points written (the blank ones its growth added)."""
        with self.guard.guarded():
            for key, arr in self.arrays.items():
                extent = self._extent.get(key)
                if extent is not None and arr.shape[0] > extent:
                    arr.resize((extent, *arr.shape[1:]))

    def note_window(self, image: str, p: int, data: np.ndarray) -> None:
        """Let the display window of ``image`` follow ``data``."""
        self._windows.note((image, p), data)

    def read(self, image: str, t: int, z_indices: tuple[int, ...], p: int) -> np.ndarray:
        """Planes ``z_indices`` of the grid at time point ``t`` ((n, y, x))."""
        with self.guard.guarded():
            stack = np.asarray(self.arrays[image, p][t, 0])
            return stack[[self.plane_of(image, z) for z in z_indices]]

    def stored_measured(self, p: int) -> tuple[dict[int, list[int]], list[str]]:
        """The grid planes of each time point whose measured planes are on disk at position ``p`` (each
        written into its shard when it arrives), and the files in its chunk folder no run writes."""
        found, ignored = stored_chunks(self.arrays["measured", p])
        grid = {slot: zi for zi, slot in self._slots.items()} if self._slots is not None else None
        planes: dict[int, list[int]] = {}
        for t, _, z, _, _ in sorted(found):
            planes.setdefault(t, []).append(z if grid is None else grid[z])
        return planes, [str(path.relative_to(self.guard.path)) for path in ignored]

    # -- metadata ------------------------------------------------------------------------
    def update_windows(self, image: str) -> None:
        """Write the display windows of ``image`` into its NGFF metadata (viewers open it in contrast),
        where they moved by more than 2 % of their span since last written (not at every time point)."""
        self.guard.check()
        for pos in range(self.n_positions):
            if (window := self._windows.window((image, pos))) is None:
                continue
            if (last := self._written_windows.get((image, pos))) is not None and max(
                abs(window[0] - last[0]), abs(window[1] - last[1])
            ) <= 0.02 * max(last[1] - last[0], 1e-9):
                continue
            self._written_windows[image, pos] = window
            grp = group_at(self.root, self.paths[image][pos])
            ome = json_attr(grp, "ome")
            dtype = self.arrays[image, pos].dtype
            dtype_max = float(np.iinfo(dtype).max) if dtype.kind == "u" else max(2 * window[1], 1.0)
            new = omero(
                self.infos[image], (round(window[0], 2), round(max(window[1], window[0] + 1), 2)), dtype_max
            )
            if ome.get("omero") != new:
                with self.guard.guarded(check=False):
                    grp.attrs["ome"] = {**ome, "omero": new}

    def forget_windows(self) -> None:
        """The next :meth:`update_windows` writes each window, however little it moved (the final ones)."""
        self._written_windows.clear()

    def write_collection(self, frame_times: dict[str, dict[str, dict[str, float]]]) -> None:
        """Rewrite the collection metadata: series, names, channels, and each measured frame's time."""
        if not self.numbered:
            return
        planes: dict[str, list[dict[str, float]]] = {}
        for image, by_key in frame_times.items():
            for key, times in by_key.items():
                t, p = record_key_parts(key)
                planes.setdefault(self.paths[image][p], []).extend(
                    {"the_t": t, "the_z": int(z), "delta_t": s} for z, s in times.items()
                )
        with self.guard.guarded(check=False):
            write_collection(self.root, self.paths, self.infos, planes)

    def set_time_scale(self, seconds: float) -> None:
        """Every image's time scale becomes ``seconds``."""
        with self.guard.guarded(check=False):
            for name, pos in self.arrays:
                grp = group_at(self.root, self.paths[name][pos])
                ome = json_attr(grp, "ome")
                ome["multiscales"][0]["datasets"][0]["coordinateTransformations"][0]["scale"][0] = seconds
                grp.attrs["ome"] = ome

    def keep_rejected(self, name: str, frame: np.ndarray, reason: str) -> None:
        """Store ``frame`` as ``rejected/<name>`` with its ``reason``."""
        with self.guard.guarded(check=False):
            grp = self.root.require_group("rejected")
            arr = grp.create_array(name, shape=frame.shape, dtype=frame.dtype, overwrite=True)
            arr[...] = frame
            arr.attrs["reason"] = reason
