"""A background inference worker: one thread owns the model's device; bounded queue, in order.

The acquisition thread hands plane bundles to :meth:`InferenceWorker.submit`, which never
blocks longer than the caller allows: when the queue is full it raises
:class:`~mm_deepz.errors.WorkerBusy` (back-pressure the caller can see and act on, e.g. by
recording the time point as measured-only). Bundles are processed strictly in submission
order; each returns a :class:`concurrent.futures.Future`, and the worker's signals ``made`` and
``failed`` tell every listener of each result and error, on the model's thread. A failing bundle
fails only its own future; a failing listener is logged and inference goes on (the listeners after
it in psygnal's order, highest ``priority`` first, are not told of that bundle).
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
from psygnal import EmitLoopError, Signal
from typing_extensions import Self

from ..errors import WorkerBusy, WorkerClosed
from .bundle import PlaneBundle, VirtualStack

if TYPE_CHECKING:
    from .predictor import Predictor

logger = logging.getLogger(__name__)


@dataclass
class WorkerStats:
    """Counters for the panel and the run summary."""

    submitted: int = 0
    done: int = 0
    failed: int = 0
    rejected: int = 0
    planes_out: int = 0
    busy_s: float = 0.0
    last_latency_s: float = 0.0

    @property
    def planes_per_s(self) -> float:
        """Virtual planes synthesized per second of model time."""
        return self.planes_out / self.busy_s if self.busy_s else 0.0


ResultCallback = Callable[[PlaneBundle, VirtualStack], None]
ErrorCallback = Callable[[PlaneBundle, BaseException], None]


class InferenceWorker:
    """Runs a :class:`Predictor` on submitted :class:`PlaneBundle` objects in a background thread
    (started by the first bundle, like a thread pool's workers; :meth:`close` ends it).

    ``on_result`` / ``on_error`` are connected to :attr:`made` / :attr:`failed`.
    """

    #: each virtual stack made: (bundle, stack), on the model's thread
    made = Signal(PlaneBundle, VirtualStack)
    #: each bundle the model failed on: (bundle, error), on the model's thread
    failed = Signal(PlaneBundle, BaseException)

    def __init__(
        self,
        predictor: Predictor,
        max_pending: int = 4,
        on_result: ResultCallback | None = None,
        on_error: ErrorCallback | None = None,
        out_dtype: type = np.float32,
    ):
        self.predictor = predictor
        self.out_dtype = out_dtype
        if on_result is not None:
            self.made.connect(on_result)
        if on_error is not None:
            self.failed.connect(on_error)
        self.stats = WorkerStats()
        self._queue: queue.Queue[tuple[PlaneBundle, Future[VirtualStack], float] | None] = queue.Queue(
            max_pending
        )
        self._closed = False
        #: the model's thread, started by the first submitted bundle (making a worker starts nothing)
        self._thread: threading.Thread | None = None
        self._start_lock = threading.Lock()

    @property
    def pending(self) -> int:
        """Bundles waiting for the model."""
        return self._queue.qsize()

    def submit(self, bundle: PlaneBundle, timeout: float | None = 0.0) -> Future[VirtualStack]:
        """Queue a bundle; raises :class:`WorkerBusy` if the queue stays full for ``timeout`` s."""
        with self._start_lock:
            if self._closed:
                raise WorkerClosed("The inference worker is stopped; start a new one to accept bundles.")
            if self._thread is None:
                self._thread = threading.Thread(target=self._loop, name="deepz-inference", daemon=True)
                self._thread.start()
        fut: Future[VirtualStack] = Future()
        try:
            self._queue.put((bundle, fut, time.perf_counter()), block=timeout != 0, timeout=timeout or None)
        except queue.Full:
            self.stats.rejected += 1
            raise WorkerBusy(
                f"Inference queue full ({self._queue.maxsize} bundles pending): the model is slower than "
                "the acquisition. Use a GPU, fewer virtual planes, or a longer interval."
            ) from None
        self.stats.submitted += 1
        return fut

    def cancel_pending(self) -> list[PlaneBundle]:
        """Take back the bundles still waiting for the model (not the one it is working on): their futures
        are cancelled and they are returned, for the caller to record as still to make."""
        taken: list[PlaneBundle] = []
        closing = False
        while True:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                break
            if item is None:  # close() is under way: its end marker stays last
                closing = True
                continue
            bundle, fut, _ = item
            if fut.cancel():
                taken.append(bundle)
        if closing:
            self._queue.put(None)
        return taken

    def close(self, timeout: float = 60.0) -> bool:
        """Finish queued bundles and stop; returns False if the thread did not end in time."""
        with self._start_lock:
            first, self._closed = not self._closed, True
            thread = self._thread
        if thread is None:  # nothing was ever submitted
            return True
        if first:
            try:
                self._queue.put(None, timeout=timeout)
            except queue.Full:
                logger.warning("Inference worker did not drain within %.0f s", timeout)
                return False
        thread.join(timeout)
        return not thread.is_alive()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _loop(self) -> None:
        while (item := self._queue.get()) is not None:
            bundle, fut, t_submit = item
            if not fut.set_running_or_notify_cancel():
                continue
            t0 = time.perf_counter()
            try:
                stack = self.predictor.predict_stack(
                    bundle.planes, bundle.plane_z_um, bundle.target_z_um, out_dtype=self.out_dtype
                )
            except BaseException as e:  # noqa: BLE001 - every failure goes to the caller
                self.stats.failed += 1
                logger.error("Deep-Z failed on bundle %s: %s", bundle.key, e)
                fut.set_exception(e)
                self._tell(self.failed, bundle, e)
                continue
            finally:
                self.stats.busy_s += time.perf_counter() - t0
            self.stats.done += 1
            self.stats.planes_out += len(stack.z_um)
            self.stats.last_latency_s = time.perf_counter() - t_submit
            fut.set_result(stack)
            self._tell(self.made, bundle, stack)

    @staticmethod
    def _tell(signal: Any, bundle: PlaneBundle, arg: Any) -> None:
        try:
            signal.emit(bundle, arg)
        except EmitLoopError:  # a broken listener must not stop inference
            logger.exception("A listener of the inference worker failed on bundle %s", bundle.key)
