"""pycromanager hooks that turn z-stack requests into Deep-Z captures.

:class:`DeepZHooks` hands pycromanager two callables:

- ``event_generation_hook``: each requested z-stack event (axes ``time`` and ``z``) becomes
  what :class:`~acquisition_hooks.events.EventRewriter` decides: with virtual z-stacking on, one
  of the 1-2 anchor planes (at the plan's exposure, light power and input light path) or
  nothing; with it off, a plane of a full stack. Reference (blind-check) events and events
  without a z axis pass through untouched. pymmcore-plus's runner gets the same decisions
  (:meth:`DeepZHooks.rewrite`, :mod:`acquisition_hooks.mda`).
- ``image_process_fn``: writes each measured plane to the recorder, groups the anchor planes
  of a time point into a :class:`PlaneBundle` and hands it to the inference worker without
  blocking; reference planes go to ``reference/``, and a completed blind check is scored.
  It never raises into pycromanager: a frame that does not fit is kept under ``rejected/``,
  saturated input planes are flagged, and a storage failure stops the acquisition
  (:meth:`DeepZHooks.stop`: every further event is skipped, waiting threads wake up).

Exposure, light path and light power are set declaratively in the events, so the runner applies
them in its hardware step. Deep-Z events carry an extra axis ``deepz`` (``anchor``, ``full`` or
``reference``) because pycromanager's Python backend cannot carry event tags.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from mm_deepz.engine import InferenceWorker, PlaneBundle, VirtualStack
from mm_deepz.errors import InputError, WorkerBusy, WorkerClosed
from mm_deepz.io import STACK_IMAGE, Recorder, StorageError
from mm_deepz.metrics import stack_scores

from .events import DEEPZ_AXIS, Capture, EventRewriter
from .plan import DeepZPlan

logger = logging.getLogger(__name__)

#: an input frame with more than this fraction of its pixels at a camera's full scale is flagged
SATURATION_WARN_FRACTION = 0.001
#: full-scale values of 8- to 16-bit cameras
FULL_SCALE = frozenset(2**bits - 1 for bits in range(8, 17))


def saturated_fraction(image: np.ndarray) -> float:
    """Fraction of pixels at the full scale of an 8- to 16-bit camera (0 if the maximum is below it)."""
    top = int(image.max()) if image.size else 0
    return float(np.count_nonzero(image == top)) / image.size if top in FULL_SCALE else 0.0


@dataclass
class HookStats:
    """Counters the CLI summary and the panel show."""

    planes_measured: int = 0
    planes_requested: int = 0
    planes_skipped: int = 0
    time_points_deepz: int = 0
    time_points_full: int = 0
    virtual_done: int = 0
    virtual_missing: int = 0
    #: stacks the model could not take when their planes arrived, made later from the planes on disk
    virtual_deferred: int = 0
    reference_planes: int = 0
    rejected_frames: int = 0
    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    #: the counters are updated from the acquisition, hook and model threads
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def count(self, name: str, n: int = 1) -> None:
        """Add ``n`` to the counter ``name`` (thread-safe)."""
        with self._lock:
            setattr(self, name, getattr(self, name) + n)

    def note(self, kind: str, message: str) -> None:
        """Add a message to ``errors`` or ``warnings`` (thread-safe)."""
        with self._lock:
            getattr(self, kind).append(message)


class DeepZHooks:
    """The hooks of one acquisition (one plan, one recorder, one worker)."""

    def __init__(
        self,
        plan: DeepZPlan,
        recorder: Recorder,
        worker: InferenceWorker | None,
        enabled: bool = True,
        anchor_properties: Sequence[Sequence[str]] = (),
        on_image: Callable[[str, int, int, np.ndarray], None] | None = None,
        on_virtual: Callable[[int, VirtualStack], None] | None = None,
    ):
        self.plan = plan
        #: decides what each requested plane becomes; anchor planes set ``anchor_properties`` first
        #: (the light power: :meth:`Microscope.power_settings`)
        self.rewriter = EventRewriter(plan, anchor_properties=anchor_properties)
        self.recorder = recorder
        self.worker = worker
        self.on_image = on_image
        self.on_virtual = on_virtual
        self.stats = HookStats()
        self._enabled = threading.Event()
        if enabled:
            self._enabled.set()
        self._lock = threading.Lock()
        self._arrival = threading.Condition()
        self._arrived: dict[tuple[int, int], int] = {}  # (t, p) -> frames of it that arrived
        self._acquired_t: dict[int, set[int]] = {}  # t -> positions whose frames all arrived
        self._measured_t: dict[int, set[int]] = {}  # t -> positions written (for the counters)
        self._planes: dict[tuple[str, int, int], dict[int, np.ndarray]] = {}
        self._virtual: dict[tuple[int, int], np.ndarray] = {}
        self._z = self.rewriter.z_um
        self._anchors = self.rewriter.anchors
        self._rejected: set[tuple[str, int, int, int]] = set()
        #: (t, p) whose virtual stack waits for the model; their anchor planes are on disk
        self._backlog: deque[tuple[int, int]] = deque()
        self._draining = False
        self._cancel_drain = threading.Event()
        #: set once writing failed: nothing more is made (not even the backlog)
        self.storage_failed = False
        #: why the acquisition must end early (a storage failure, an abort); None while it runs
        self.stop_reason: str | None = None
        #: called once, from the thread that hit the failure, when :meth:`stop` is first called
        self.on_stop: Callable[[str], None] | None = None
        #: told the scores of each blind check: (t, position, metrics as recorded)
        self.on_blind_check: Callable[[int, int, dict], None] | None = None
        if worker is not None:
            worker.on_result = self._on_virtual
            worker.on_error = self._on_virtual_error

    # -- the toggle ---------------------------------------------------------------------
    @property
    def enabled(self) -> bool:
        """Whether new time points are captured with Deep-Z (else as full stacks)."""
        return self._enabled.is_set()

    @enabled.setter
    def enabled(self, value: bool) -> None:
        (self._enabled.set if value else self._enabled.clear)()
        logger.info("Virtual z-stacking %s (from the next time point)", "on" if value else "off")

    def stop(self, reason: str) -> None:
        """Acquire nothing more: every further event is skipped and waiting threads wake up."""
        with self._arrival:
            first = self.stop_reason is None
            if first:
                self.stop_reason = reason
            self._arrival.notify_all()
        if first and self.on_stop is not None:
            self.on_stop(reason)

    def acquisition_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for ``pycromanager.Acquisition``."""
        return {
            "event_generation_hook_fn": self.event_generation_hook,
            "image_process_fn": self.image_process_fn,
        }

    # -- event generation ---------------------------------------------------------------
    def rewrite(self, t: int, zi: int) -> Capture | None:
        """What requested plane ``zi`` of time point ``t`` becomes (counted); None: skipped."""
        self.stats.count("planes_requested")
        capture = self.rewriter.capture(t, zi, deepz=self.enabled and self.worker is not None)
        if capture is None:
            self.stats.count("planes_skipped")
        return capture

    def event_generation_hook(self, event: dict) -> dict | None:
        """pycromanager's hook: a requested event rewritten into a Deep-Z event, or skipped (``None``)."""
        if self.stop_reason is not None:
            return None
        axes = event.get("axes", {})
        if DEEPZ_AXIS in axes or "z" not in axes or "time" not in axes:
            return event
        capture = self.rewrite(int(axes["time"]), int(axes["z"]))
        return None if capture is None else capture.pycromanager_event(event)

    def reference_events(
        self,
        t: int,
        min_start_time: float | None = None,
        positions_xy_um: tuple[tuple[float, float], ...] | None = None,
    ) -> list[dict]:
        """pycromanager's events of a blind check: a real target-modality stack over the requested
        grid, at every XY position of a multi-position acquisition (``None``: where the stage is)."""
        wheres = list(enumerate(positions_xy_um)) if positions_xy_um else [None]
        events = []
        for where in wheres:
            for zi, capture in enumerate(self.rewriter.reference()):
                ev: dict[str, Any] = {"axes": {"time": t, "z": zi}}
                if where is not None:
                    p, (ev["x"], ev["y"]) = where
                    ev["axes"]["position"] = p
                if min_start_time is not None:
                    ev["min_start_time"] = min_start_time
                events.append(capture.pycromanager_event(ev))
        return events

    def wait_acquired(self, t: int, timeout: float) -> bool:
        """Block until every camera frame of time point ``t`` (all positions) has arrived, or the
        acquisition is stopped; True if ``t`` was acquired. Writing them may still be under way."""
        n = self.recorder.n_positions
        with self._arrival:
            self._arrival.wait_for(
                lambda: len(self._acquired_t.get(t, ())) >= n or self.stop_reason is not None, timeout
            )
            return len(self._acquired_t.pop(t, ())) >= n

    def _note_arrival(self, kind: str, t: int, p: int) -> None:
        expected = len(self._anchors) if kind == "anchor" else len(self._z)
        with self._arrival:
            self._arrived[t, p] = self._arrived.get((t, p), 0) + 1
            if self._arrived[t, p] == expected:
                del self._arrived[t, p]
                self._acquired_t.setdefault(t, set()).add(p)
                self._arrival.notify_all()

    # -- images -------------------------------------------------------------------------
    def image_process_fn(self, image: np.ndarray, metadata: dict) -> Any:
        """Record a plane; anchors of a complete time point go to the worker. Returns None (stored).

        Nothing here raises into the acquisition engine: a frame that does not fit the container
        is kept aside (``rejected/``), and a storage failure stops the acquisition cleanly.
        """
        axes = metadata.get("Axes", {})
        kind = axes.get(DEEPZ_AXIS)
        if kind is None:  # not ours: leave it to pycromanager's storage
            return image, metadata
        t, zi, p = int(axes["time"]), int(axes["z"]), int(axes.get("position", 0))
        image = np.asarray(image)
        # a full stack's planes go to the stack image, and its input planes also to the measured image
        # (which holds Deep-Z's input planes at every time point)
        names = {"reference": ("reference",), "anchor": ("measured",)}.get(
            kind, (STACK_IMAGE, "measured") if zi in self._anchors else (STACK_IMAGE,)
        )
        name = names[0]
        if kind != "reference":  # the next time point may be submitted while this plane is written
            self._note_arrival(kind, t, p)
        try:
            try:
                for target in names:
                    self.recorder.write_plane(target, t, zi, image, p=p)
            except InputError as e:
                where = self.recorder.keep_rejected(name, t, zi, image, str(e), p)
                self._rejected.add((kind, t, p, zi))
                self.stats.count("rejected_frames")
                self.stats.note("errors", f"t={t}, z={zi}, p={p}: {e} Kept as {where}.")
                logger.error("%s Frame kept as %s.", e, where)
            if kind == "reference":
                self.stats.count("reference_planes")
                self._collect("reference", t, p, zi, None, len(self._z))
            else:
                self.stats.count("planes_measured")
                if kind == "anchor":
                    self._check_saturation(t, zi, p, image)
                self._collect(kind, t, p, zi, image, len(self._anchors) if kind == "anchor" else len(self._z))
        except StorageError as e:
            self._storage_failed(e)
            return None
        self._notify(self.on_image, kind, t, zi, image)
        return None

    def _check_saturation(self, t: int, zi: int, p: int, image: np.ndarray) -> None:
        if (frac := saturated_fraction(image)) > SATURATION_WARN_FRACTION:
            msg = (
                f"t={t}, z={zi}, p={p}: {100 * frac:.1f} % of the input plane's pixels are saturated "
                f"({int(image.max())}); the virtual stack is unreliable there. Lower the exposure or light "
                "power."
            )
            self.stats.note("warnings", msg)
            logger.warning(msg)
            self.recorder.record_warning(msg)

    def _notify(self, callback: Callable | None, *args: Any) -> None:
        """Call a display callback; its failure is logged, never the acquisition's."""
        if callback is None:
            return
        try:
            callback(*args)
        except Exception as e:
            if not any(err.startswith("display callback") for err in self.stats.errors):
                self.stats.note("errors", f"display callback failed: {type(e).__name__}: {e}")
            logger.exception("A display callback failed; the acquisition goes on")

    def _collect(self, kind: str, t: int, p: int, zi: int, image: np.ndarray | None, expected: int) -> None:
        with self._lock:
            planes = self._planes.setdefault((kind, t, p), {})
            planes[zi] = image if kind == "anchor" else None  # other planes are on disk already
            if len(planes) < expected:
                return
            del self._planes[(kind, t, p)]
        rejected = {i for i in planes if (kind, t, p, i) in self._rejected}
        self._rejected -= {(kind, t, p, i) for i in rejected}
        written = sorted(set(planes) - rejected)
        if kind == "reference":
            if len(written) == expected:
                self.recorder.mark_complete("reference", t, p)
                self._blind_check(t, p)
            return
        if kind == "full":
            self.recorder.mark_complete(STACK_IMAGE, t, p)
        self.recorder.mark_complete("measured", t, p, planes=written)  # flushed before inference
        with self._lock:
            done = self._measured_t.setdefault(t, set())
            done.add(p)
            whole_time_point = len(done) == self.recorder.n_positions
            if whole_time_point:
                del self._measured_t[t]
        if whole_time_point:
            if kind == "full":
                self.stats.count("time_points_full")
            else:
                self.stats.count("time_points_deepz")
        if kind == "full":
            return
        if len(written) < expected:
            self._virtual_missing(t, p, "an input plane did not fit the container (see rejected/)")
            return
        bundle = PlaneBundle(
            (t, p), np.stack([planes[i] for i in self._anchors]), self.plan.anchor_z(), self._z
        )
        try:
            self.worker.submit(bundle, timeout=0)
        except (WorkerBusy, WorkerClosed):
            self._defer(t, p)

    # -- the backlog: stacks the model could not take yet -----------------------------------
    def _defer(self, t: int, p: int) -> None:
        """The model is busy: make this stack later, from the anchor planes on disk (never dropped)."""
        with self._lock:
            self._backlog.append((t, p))
            self.stats.count("virtual_deferred")
        try:
            self.recorder.mark_virtual_pending(t, p)
        except StorageError as e:
            self._storage_failed(e)

    def cancel_drain(self) -> None:
        """Stop making the backlog after the stack in progress (the rest stays recorded as pending)."""
        self._cancel_drain.set()

    @property
    def backlog(self) -> int:
        """Virtual stacks waiting for the model (their planes are on disk)."""
        with self._lock:
            return len(self._backlog)

    def _bundle_from_disk(self, t: int, p: int) -> PlaneBundle:
        planes = self.recorder.read_planes("measured", t, self._anchors, p)
        return PlaneBundle((t, p), planes, self.plan.anchor_z(), self._z)

    def _feed_backlog(self) -> None:
        """While the model has room, give it the oldest waiting stack (worker thread, after a result)."""
        while (
            self.worker is not None
            and self.worker.pending == 0
            and self.stop_reason is None
            and not self._draining
        ):
            with self._lock:
                if not self._backlog:
                    return
                t, p = self._backlog.popleft()
            try:
                self.worker.submit(self._bundle_from_disk(t, p), timeout=0)
            except (WorkerBusy, WorkerClosed):
                with self._lock:
                    self._backlog.appendleft((t, p))
                return
            except StorageError as e:
                self._virtual_missing(t, p, f"its planes could not be read back: {e}")

    def drain_backlog(self, progress: Callable[[int, int], None] | None = None) -> int:
        """Make every waiting stack, oldest first, waiting for the model as long as it takes (after the
        camera stopped); returns how many were made. Interrupting it (Ctrl-C) leaves the rest recorded
        as pending in the container (``mm-deepz infer`` makes them)."""
        total = self.backlog
        done = 0
        self._draining = True  # the stacks go one by one from here, not also from the worker's callbacks
        while self.worker is not None and not self._cancel_drain.is_set():
            with self._lock:
                if not self._backlog:
                    break
                t, p = self._backlog.popleft()
            try:
                fut = self.worker.submit(self._bundle_from_disk(t, p), timeout=None)
            except WorkerClosed:
                with self._lock:
                    self._backlog.appendleft((t, p))
                break
            except StorageError as e:
                self._virtual_missing(t, p, f"its planes could not be read back: {e}")
                continue
            fut.exception()  # waits; a failure is recorded as missing, with its reason, by the error callback
            done += 1
            if progress is not None:
                progress(done, total)
        return done

    # -- virtual stacks (worker thread) ---------------------------------------------------
    def _on_virtual(self, bundle: PlaneBundle, stack: VirtualStack) -> None:
        t, p = bundle.key
        try:
            try:
                self.recorder.write_stack("virtual", t, stack.data, p=p)
                self.recorder.mark_complete("virtual", t, p)
            except InputError as e:
                self._virtual_missing(t, p, str(e))
                return
            self.stats.count("virtual_done")
            if self.plan.is_blind_check(t):  # kept only until its reference is scored
                with self._lock:
                    self._virtual[t, p] = stack.data
            self._blind_check(t, p)
        except StorageError as e:
            self.stats.count("virtual_missing")
            self._storage_failed(e)
            return
        self._notify(self.on_virtual, t, stack)
        self._feed_backlog()

    def _on_virtual_error(self, bundle: PlaneBundle, error: BaseException) -> None:
        self._virtual_missing(*bundle.key, f"{type(error).__name__}: {error}")
        self._feed_backlog()

    def _virtual_missing(self, t: int, p: int, reason: str) -> None:
        self.stats.count("virtual_missing")
        self.stats.note("errors", f"t={t}, p={p}: {reason}")
        # the first one says why; the rest are counted in the summary and listed by `mm-deepz info`
        log = logger.warning if self.stats.virtual_missing == 1 else logger.debug
        log(
            "No virtual stack for time point %d, position %d: %s (measured planes are saved; further missing "
            "stacks are counted in the summary)",
            t,
            p,
            reason,
        )
        try:
            self.recorder.mark_virtual_missing(t, reason, p)
        except StorageError as e:
            self._storage_failed(e)

    def _storage_failed(self, error: StorageError) -> None:
        """Nothing more can be stored: report it once and stop the acquisition."""
        self.storage_failed = True
        if self.stop_reason is None:
            self.stats.note("errors", str(error))
            logger.error("%s Stopping the acquisition.", error)
        self.stop(str(error))

    def _blind_check(self, t: int, p: int) -> None:
        """Score virtual vs reference once both stacks of ``(t, p)`` exist."""
        if not (self.recorder.is_complete("reference", t, p) and self.recorder.is_complete("virtual", t, p)):
            return
        with self._lock:
            virtual = self._virtual.pop((t, p), None)
        if virtual is None:
            return
        ref = np.asarray(self.recorder.array("reference", p)[t, 0])
        scores, _, _ = stack_scores(virtual, ref)
        metrics = {
            "ssim_mean": float(scores["ssim"].mean()),
            "psnr_mean": float(scores["psnr"].mean()),
            "ssim_per_plane": [round(float(x), 4) for x in scores["ssim"]],
        }
        self.recorder.record_blind_check(t, metrics, p)
        logger.info(
            "Blind check at t=%d: SSIM %.3f, PSNR %.1f dB", t, metrics["ssim_mean"], metrics["psnr_mean"]
        )
        self._notify(self.on_blind_check, t, p, metrics)
