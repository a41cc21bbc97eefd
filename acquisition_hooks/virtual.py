"""The virtual stacks of one acquisition, from the input planes to the container.

:class:`VirtualResults` hands each whole set of input planes to the model without blocking;
when the model is busy the stack joins the backlog and is made later from the planes on disk
(never dropped); made stacks are written, failures recorded as missing with their reason, and
a blind check is scored once its virtual and reference stacks both exist. It loads no model
and no container itself: the worker, the recorder and the scorer are handed in.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np

from mm_deepz.engine.bundle import PlaneBundle, VirtualStack
from mm_deepz.errors import InputError, StorageError, WorkerBusy, WorkerClosed

from .plan import DeepZPlan
from .signals import RunSignals
from .state import RunState

if TYPE_CHECKING:
    from mm_deepz.engine.worker import InferenceWorker
    from mm_deepz.io import Recorder

logger = logging.getLogger(__name__)

#: a blind check's scores from (virtual stack, reference stack), as recorded in the container
Scorer = Callable[[np.ndarray, np.ndarray], dict[str, Any]]


class VirtualResults:
    """Virtual stacks: submitted, deferred to the backlog, written, missing, scored (thread-safe)."""

    def __init__(
        self,
        *,
        plan: DeepZPlan,
        recorder: Recorder,
        worker: InferenceWorker | None,
        state: RunState,
        score: Scorer,
        signals: RunSignals | None = None,
        is_blind_check: Callable[[int], bool] | None = None,
    ) -> None:
        self.plan = plan
        #: whether a time point has a blind check (the plan's, and any asked for during the run)
        self.is_blind_check = is_blind_check or plan.is_blind_check
        self.recorder = recorder
        self.worker = worker
        self.state = state
        self.score = score
        #: told each virtual stack written (t, stack) and each blind check's scores (t, position, metrics)
        self.signals = signals or RunSignals()
        self._z = plan.requested_z()
        self._anchors = plan.anchor_indices()
        self._lock = threading.Lock()
        #: (t, p) whose virtual stack waits for the model; their input planes are on disk
        self._backlog: deque[tuple[int, int]] = deque()
        self._draining = False
        self._cancel_drain = threading.Event()
        #: blind checks' virtual stacks, kept only until their reference is scored
        self._virtual: dict[tuple[int, int], np.ndarray] = {}
        if worker is not None:
            # first: a display listening to the same worker that raises must not keep a stack unwritten
            worker.made.connect(self._on_result, priority=1)
            worker.failed.connect(self._on_error, priority=1)

    def submit(self, t: int, p: int, planes: np.ndarray) -> None:
        """Hand the input planes of ``(t, p)`` to the model, or to the backlog if it is busy."""
        if self.worker is None:
            return
        if self._cancel_drain.is_set():  # stopped: measured now, made later
            self._defer(t, p)
            return
        try:
            self.worker.submit(self._bundle(t, p, planes), timeout=0)
        except (WorkerBusy, WorkerClosed):
            self._defer(t, p)

    def _bundle(self, t: int, p: int, planes: np.ndarray) -> PlaneBundle:
        return PlaneBundle((t, p), planes, self.plan.anchor_z(), self._z)

    def _bundle_from_disk(self, t: int, p: int) -> PlaneBundle:
        return self._bundle(t, p, self.recorder.read_planes("measured", t, self._anchors, p))

    # -- the backlog: stacks the model could not take yet -----------------------------------
    def _defer(self, t: int, p: int) -> None:
        """The model is busy: make this stack later, from the input planes on disk (never dropped)."""
        with self._lock:
            self._backlog.append((t, p))
        self.state.stats.count("virtual_deferred")
        try:
            self.recorder.mark_virtual_pending(t, p)
        except StorageError as e:
            self.state.fail_storage(e)

    @property
    def backlog(self) -> int:
        """Virtual stacks waiting for the model (their planes are on disk)."""
        with self._lock:
            return len(self._backlog)

    def _next(self) -> tuple[int, int] | None:
        with self._lock:
            return self._backlog.popleft() if self._backlog else None

    def _put_back(self, key: tuple[int, int]) -> None:
        with self._lock:
            self._backlog.appendleft(key)

    def _feed_backlog(self) -> None:
        """While the model has room, give it the oldest waiting stack (worker thread, after a result)."""
        while (
            self.worker is not None
            and self.worker.pending == 0
            and not self.state.stopped
            and not self._draining
            and not self._cancel_drain.is_set()
            and (key := self._next()) is not None
        ):
            try:
                self.worker.submit(self._bundle_from_disk(*key), timeout=0)
            except (WorkerBusy, WorkerClosed):
                self._put_back(key)
                return
            except StorageError as e:
                self.missing(*key, f"its planes could not be read back: {e}")

    def cancel_drain(self) -> None:
        """Stop making virtual stacks after the one in progress: the backlog, and the stacks queued for the
        model, stay recorded as pending (``mm-deepz infer`` or the panel's "Make the remaining virtual
        stacks" make them)."""
        self._cancel_drain.set()
        if self.worker is not None:
            for bundle in self.worker.cancel_pending():
                self._defer(*bundle.key)

    def drain_backlog(self, progress: Callable[[int, int], None] | None = None) -> int:
        """Make every waiting stack, oldest first, waiting for the model as long as it takes (after the
        camera stopped); returns how many were made. Interrupting it (Ctrl-C) leaves the rest recorded
        as pending in the container (``mm-deepz infer`` makes them)."""
        total = self.backlog
        done = 0
        self._draining = True  # the stacks go one by one from here, not also from the worker's callbacks
        while (
            self.worker is not None and not self._cancel_drain.is_set() and (key := self._next()) is not None
        ):
            try:
                fut = self.worker.submit(self._bundle_from_disk(*key), timeout=None)
            except WorkerClosed:
                self._put_back(key)
                break
            except StorageError as e:
                self.missing(*key, f"its planes could not be read back: {e}")
                continue
            fut.exception()  # waits; a failure is recorded as missing, with its reason, by the error callback
            done += 1
            if progress is not None:
                progress(done, total)
        return done

    # -- results (the model's thread) ---------------------------------------------------------
    def _on_result(self, bundle: PlaneBundle, stack: VirtualStack) -> None:
        t, p = bundle.key
        try:
            try:
                self.recorder.write_stack("virtual", t, stack.data, p=p)
                self.recorder.mark_complete("virtual", t, p)
            except InputError as e:
                self.missing(t, p, str(e))
                return
            self.state.stats.count("virtual_done")
            if self.is_blind_check(t):  # kept only until its reference is scored
                with self._lock:
                    self._virtual[t, p] = stack.data
            self.blind_check(t, p)
        except StorageError as e:
            self.state.stats.count("virtual_missing")
            self.state.fail_storage(e)
            return
        self.state.notify(self.signals.virtual.emit, t, stack)
        self._feed_backlog()

    def _on_error(self, bundle: PlaneBundle, error: BaseException) -> None:
        t, p = bundle.key
        self.missing(t, p, f"{type(error).__name__}: {error}")
        self._feed_backlog()

    def missing(self, t: int, p: int, reason: str) -> None:
        """No virtual stack for ``(t, p)``: count it and record why (its measured planes are saved)."""
        n = self.state.stats.count("virtual_missing")
        self.state.stats.note("errors", f"t={t}, p={p}: {reason}")
        # the first one says why; the rest are counted in the summary and listed by `mm-deepz info`
        log = logger.warning if n == 1 else logger.debug
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
            self.state.fail_storage(e)

    def blind_check(self, t: int, p: int) -> None:
        """Score virtual vs reference once both stacks of ``(t, p)`` exist."""
        if not (self.recorder.is_complete("reference", t, p) and self.recorder.is_complete("virtual", t, p)):
            return
        with self._lock:
            virtual = self._virtual.pop((t, p), None)
        if virtual is None:
            return
        metrics = self.score(virtual, np.asarray(self.recorder.array("reference", p)[t, 0]))
        self.recorder.record_blind_check(t, metrics, p)
        logger.info(
            "Blind check at t=%d: SSIM %.3f, PSNR %.1f dB", t, metrics["ssim_mean"], metrics["psnr_mean"]
        )
        self.state.notify(self.signals.blind_check.emit, t, p, metrics)
