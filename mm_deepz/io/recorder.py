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
its data as the run grows. The time axis grows as data arrives (in blocks, trimmed to the time
points written when the writer ends); planes never written read as 0, and the root attributes
list which time points are complete in each image, which virtual stacks are missing and why,
and when each frame was written (also in the OME-XML, per plane).
Measured planes are written (each chunk is a file, written when the plane arrives) before
their virtual stack is requested, so a model, GPU or disk failure later never loses them.

The recorder joins four pieces, each with one job: the claim and its guard (:mod:`.claim`,
:mod:`.guard`: the container is this run's, a failed write is named), the images (:mod:`.images`,
the writer backend, by the schema of :mod:`.schema`; camera planes through :mod:`.planes`), and the
run record (:mod:`.record`). It makes them thread-safe together: one lock for the record and the
images' structure, held briefly, and one per image and position for its writes, so the camera's
planes never wait while the model's thread writes a virtual stack.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import Any

import numpy as np
import zarr

from ..errors import DeepZError
from .claim import PAIRS_KEY, Claim, is_container
from .guard import WriteGuard
from .images import ImageStore
from .layout import ImageInfo, recorded
from .layout import n_positions as layout_n_positions
from .record import RunRecord, json_safe
from .schema import DTYPES, Geometry
from .validate import check_container, check_json_file

logger = logging.getLogger(__name__)

#: a measured cadence this far (relative) from the interval asked for replaces it as the time scale
CADENCE_RTOL = 0.05


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
        """A new container. ``compression``: lossless Blosc-LZ4 (bit-shuffled) chunks, each plane compressed
        when the writer has time for it (stored uncompressed in the same codec otherwise, so the camera
        never waits for the codec: :mod:`.shards`), or raw chunks.
        ``infos``: what each image is (label, colour, emission, exposure; defaults by image name).

        ``overwrite`` replaces an earlier mm-deepz container only (see :class:`Claim`); the
        container stays locked against other writers until :meth:`close`.
        """
        guard = WriteGuard(Claim(path, overwrite))
        try:
            # a reader never sees a record naming an image that is not complete: each image group is made
            # with its attributes in one write, its array beside it, the collection, and the record last
            # (before it, the folder reads as "not an mm-deepz container", never as a damaged one)
            root = zarr.create_group(str(guard.path), zarr_format=3, overwrite=False)
            images = ImageStore.create(root, guard, geometry, infos, compression)
            record = RunRecord.new(root, guard, {**(attrs or {}), **images.described()}, images.n_positions)
            record.store()
        except BaseException as e:  # a half-made container is removed, an earlier one put back
            guard.claim.rollback()
            if isinstance(e, OSError):
                raise guard.error(e, wrote=False) from e
            raise
        self._start(guard, images, record)

    @classmethod
    def reopen(cls, path: str | Path, wait_s: float = 0.0) -> Recorder:
        """A container written earlier, locked for this process, to add what its run left to make
        (its geometry read from the measured image's NGFF metadata); ``wait_s``: how long to wait for
        another writer to let it go."""
        open_container(path)  # refuses what is not an mm-deepz run
        guard = WriteGuard(Claim.existing(Path(path), wait_s))
        root = zarr.open_group(str(guard.path), mode="r+")
        record = RunRecord.read(root, guard, layout_n_positions(root))
        images = ImageStore.open(root, guard, record.attrs, list(record.state["completed"]))
        recorder = cls.__new__(cls)
        recorder._start(guard, images, record)
        return recorder

    def _start(self, guard: WriteGuard, images: ImageStore, record: RunRecord) -> None:
        """What a new and a reopened recorder share: their pieces, the lock."""
        self._guard, self._images, self._record = guard, images, record
        #: the container's resolved path (links and ``..`` resolved), whichever alias named it
        self.path = guard.path
        self.root = images.root
        self.geometry = images.geometry
        #: the record, the images' structure and the claim; held briefly, never across an image's write
        self._lock = threading.RLock()
        #: one writer at a time per image and position (the camera's planes never wait for a virtual stack)
        self._image_locks: dict[tuple[str, int], threading.Lock] = {}
        self._committed = False  # a frame is written: an earlier run this one replaces is gone
        #: an earlier run this one replaces: kept aside until the first frame is written, put back if none is
        self.restored: Path | None = None
        #: files found among the chunks that no run writes (another tool's, or beyond the arrays)
        self.ignored: list[str] = []

    @property
    def n_positions(self) -> int:
        """Number of XY positions."""
        return self._images.n_positions

    def group_path(self, image: str, p: int = 0) -> str:
        """The group of ``image`` at position ``p`` inside the container."""
        return self._images.paths[image][p]

    def array(self, image: str, p: int = 0) -> zarr.Array[Any]:
        """The (t, c, z, y, x) array of one image and position."""
        return self._images.arrays[image, p]

    # -- images ---------------------------------------------------------------------
    def add_image(self, name: str, like: str = "virtual") -> None:
        """A new image shaped like ``like`` (the run's virtual stacks or reference stacks at their first
        write, another model's virtual stacks beside the run's)."""
        with self._lock:
            self._images.add(name, like)
            self._record.state["completed"].setdefault(name, [])
            described = self._images.described()
            self._record.attrs["images"] = described["images"]
            self._record.attrs.setdefault("image_info", {})[name] = described["image_info"][name]
            self._record.write()
            self._images.write_collection(self._record.frame_times())

    def write_plane(
        self, image: str, t: int, z_index: int, plane: np.ndarray, c: int = 0, p: int = 0
    ) -> None:
        """Write the plane ``z_index`` of the z grid (grows the time axis as needed). The measured
        image takes Deep-Z's input planes only; :data:`STACK_IMAGE` full stacks. An image is made at its first
        frame."""
        self._write(image, p, t, (c, self._images.plane_of(image, z_index)), plane)

    def write_stack(self, image: str, t: int, stack: np.ndarray, c: int = 0, p: int = 0) -> None:
        """Write a whole (z, y, x) stack of time point ``t``."""
        self._write(image, p, t, (c, slice(None)), stack)

    def _write(self, image: str, p: int, t: int, index: tuple[int | slice, ...], data: np.ndarray) -> None:
        if not self._images.has(image, p):
            with self._lock:
                if not self._images.has(image, p):
                    self.add_image(image, like=image if image in DTYPES else "virtual")
        data = np.asarray(data)
        self._images.check_frame(image, p, index, data)
        with self._image_lock(image, p):
            self._images.write(image, p, t, index, data)
        if not self._committed:
            with self._lock:
                self._guard.claim.commit()  # the new run has data: the run it replaces goes (once)
                self._committed = True
        if isinstance(index[1], int) and image in ("measured", "reference"):
            self._record.frame_time(image, t, p, index[1])  # no lock: it joins the record at its next write
        self._images.note_window(image, p, data)  # outside the writers' locks: nothing waits on it

    def _image_lock(self, image: str, p: int) -> threading.Lock:
        """The lock of one image and position (made at its first use; ``setdefault`` is atomic)."""
        return self._image_locks.setdefault((image, p), threading.Lock())

    def read_planes(self, image: str, t: int, z_indices: tuple[int, ...], p: int = 0) -> np.ndarray:
        """Planes of time point ``t`` read back from the container ((n, y, x))."""
        with self._image_lock(image, p):
            return self._images.read(image, t, z_indices, p)

    def keep_rejected(
        self, image: str, t: int, z_index: int, frame: np.ndarray, reason: str, p: int = 0
    ) -> str:
        """Store a frame that does not fit ``image`` under ``rejected/`` (never drop data); its path."""
        name = f"{image}_t{t}_z{z_index}_p{p}"
        with self._lock:
            self._images.keep_rejected(name, frame, reason)
            self._guard.claim.commit()  # a frame kept aside is measured data too
            self._record.state.setdefault("rejected", {})[name] = reason
            self._record.write()
        return f"rejected/{name}"

    def refresh_collection(self) -> None:
        """Rewrite the collection metadata (the OME-XML's sizes and frame times) for what the arrays hold
        now: after a recovery or `mm-deepz infer` on a run that never finished."""
        with self._lock:
            self._images.trim()
            self._images.write_collection(self._record.frame_times())

    def recover_measured(self) -> list[tuple[int, int]]:
        """Time points (t, position) whose measured planes are on disk but not in the record (a write
        of the record itself failed, e.g. a full disk, after the planes' own writes): record them
        now, from the chunk files present (each measured plane is one chunk, written when it
        arrives). Returns what was recovered."""
        recovered = []
        with self._lock:
            for p in range(self.n_positions):
                found, ignored = self._images.stored_measured(p)
                self.ignored += ignored
                for t, planes in found.items():
                    if planes and self._record.key(t, p) not in self._record.state["planes_measured"]:
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

    # -- the run record -------------------------------------------------------------
    def mark_complete(self, image: str, t: int, p: int = 0, **info: Any) -> None:
        """Record that position ``p`` of time point ``t`` of ``image`` is fully written (``planes``: the
        grid planes measured). ``completed`` lists a time point once every position of it is written."""
        with self._lock:
            # at most every second, or less often as the record grows (the next write, the finish or
            # the close takes it along; after a crash recover_measured finds measured planes on disk,
            # and `infer` makes a virtual stack again). Display windows go with the record's writes.
            complete = self._record.complete(image, t, p, info.get("planes"))
            if self._record.write(soon=True) and complete:
                self._images.update_windows(image)

    def mark_virtual_missing(self, t: int, reason: str, p: int = 0) -> None:
        """Record that the virtual stack of ``t`` (position ``p``) will not exist, and why."""
        with self._lock:
            self._record.virtual_missing(t, p, reason)
            self._record.write(soon=True)

    def mark_virtual_pending(self, t: int, p: int = 0) -> None:
        """Record that the virtual stack of ``t`` (position ``p``) is still to be made from its planes
        on disk (the model was busy); cleared when it is written."""
        with self._lock:
            self._record.virtual_pending(t, p)
            self._record.write(soon=True)

    def record_blind_check(self, t: int, metrics: dict[str, Any], p: int = 0) -> None:
        """Store the metrics of a blind check (virtual vs reference) at ``t``."""
        with self._lock:
            self._record.state["blind_checks"][self._record.key(t, p)] = metrics
            self._record.write()

    def record_warning(self, message: str) -> None:
        """Add a warning about the data (saturation ...) to the root attributes."""
        with self._lock:
            self._record.state.setdefault("warnings", []).append(message)
            self._record.write()

    def update_attrs(self, **values: Any) -> None:
        """Merge values into the root ``mm_deepz`` attributes (dose, summary ...)."""
        with self._lock:
            self._record.attrs.update(values)
            self._record.write()

    def is_complete(self, image: str, t: int, p: int = 0) -> bool:
        """Whether position ``p`` of time point ``t`` of ``image`` is fully written."""
        with self._lock:
            return self._record.is_complete(image, t, p)

    @property
    def attrs(self) -> dict[str, Any]:
        """What the root attributes say of the run (plan, model, versions ...), a copy."""
        with self._lock:
            return dict(self._record.attrs)

    @property
    def state(self) -> dict[str, Any]:
        """The progress record (completed time points, planes measured, missing ...), a copy."""
        with self._lock:
            self._record.frame_times()
            return dict(json_safe(self._record.state))

    @property
    def completed(self) -> dict[str, list[int]]:
        """Time points complete in each image."""
        with self._lock:
            return {k: list(v) for k, v in self._record.state["completed"].items()}

    def flush(self) -> None:
        """Write the run record now (a run that waits, paused or stopped, says all it measured)."""
        with self._lock:
            self._record.write()

    # -- the end -----------------------------------------------------------------------
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
            self._record.state["finished"] = True
            self._record.attrs.update(values)
            if (cadence := self._record.cadence()) is not None:
                self._record.attrs["measured_interval_s"] = cadence
                asked = self.geometry.interval_s
                # viewers place time points by the scale: the cadence the run kept, wherever it was not
                # the one asked for (as fast as possible, or slower than asked)
                if cadence > 0 and (asked <= 0 or abs(cadence - asked) > CADENCE_RTOL * asked):
                    self._images.set_time_scale(cadence)
            if uncompressed := self._images.stored_uncompressed():
                self._record.attrs["stored_uncompressed"] = uncompressed
                for image, counts in uncompressed.items():
                    logger.info(
                        "%d of %d %s planes are stored uncompressed: a camera's first while the codec was "
                        "measured, any others because they arrived faster than the codec compresses on this "
                        "computer (the camera never waits for it).",
                        counts["uncompressed"], counts["planes"], image,
                    )  # fmt: skip
            self._images.trim()  # the run's writes are over: the time axes hold what was written
            self._images.forget_windows()  # the final windows, however little they moved
            for image in self._images.paths:
                self._images.update_windows(image)
            self._record.write()
            self._images.write_collection(self._record.frame_times())

    def close(self) -> None:
        """Release the container to other writers (after :meth:`finish`; idempotent). A run that replaced
        an earlier one and wrote no frame removes itself and puts the earlier one back."""
        claim = self._guard.claim
        unfinished = not self._record.state.get("finished")
        if claim.replacing is None and (unfinished or self._record.unwritten):
            try:  # a run that ends without finish: its record says what the last second measured, its
                self.flush()  # time axes hold the time points written; a reopened run (infer): what it made
                if unfinished:
                    with self._lock:
                        self._images.trim()
            except DeepZError as e:
                logger.warning("The run record could not be written at closing: %s", e)
        if (aside := claim.replacing) is not None:
            logger.warning(
                "No frame was written: %s is the earlier run again (it had been moved aside to %s)",
                self.path,
                aside,
            )
            self.restored = self.path
            claim.rollback()
        claim.release()


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
