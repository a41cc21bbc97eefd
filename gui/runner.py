"""Runs the shared acquisition off the GUI thread and reports it as Qt signals.

:class:`AcquisitionRunner` takes an :class:`~acquisition_hooks.AcquisitionRequest`, opens the
microscope and runs the same :class:`~acquisition_hooks.DeepZAcquisition` the CLI runs, in a
background thread. The acquisition's callbacks (camera, inference and writer threads) become
signals, which Qt queues to the panel's thread: nothing the panel does waits on hardware,
the model or the disk.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PyQt5.QtCore import QObject, pyqtSignal

from acquisition_hooks import AcquisitionRequest, DeepZAcquisition, RunSummary
from acquisition_hooks.start import PreparedRun, open_microscope, prepare
from mm_deepz.engine import VirtualStack
from mm_deepz.errors import DeepZError
from mm_deepz.modelfile import DeepZModel

logger = logging.getLogger(__name__)


def user_message(error: BaseException) -> str:
    """What the panel shows for a failure: mm-deepz's own errors say what happened and what to do in
    their text; anything else is named by its type (and logged with its traceback)."""
    return str(error) if isinstance(error, DeepZError) else f"{type(error).__name__}: {error}"


@dataclass(frozen=True)
class LiveStats:
    """What the dose gauge and the model's throughput read show, as of one event."""

    exposure_s: float
    exposure_full_stack_s: float
    virtual_planes_per_s: float
    latency_s: float
    pending: int
    #: whether blind-check reference stacks are part of the exposure figures
    blind_checks: bool
    #: virtual stacks made, of the Deep-Z stacks measured so far, and those waiting for the model
    virtual_done: int = 0
    virtual_measured: int = 0
    backlog: int = 0


class AcquisitionRunner(QObject):
    """One acquisition at a time, in a background thread, reported through signals."""

    started = pyqtSignal(object)  # the DeepZAcquisition
    image = pyqtSignal(str, int, int, object)  # kind (anchor/full/reference), t, z index, plane
    virtual = pyqtSignal(int, object, object)  # t, stack (z, y, x), z (µm)
    progress = pyqtSignal(int, int)  # time points done, total
    stats = pyqtSignal(object)  # LiveStats
    finished = pyqtSignal(object)  # RunSummary
    failed = pyqtSignal(str)  # a message for the user
    neurons = pyqtSignal(
        int, object
    )  # t, detections (DataFrame: z_um from the stack's first plane, y_um, x_um)
    inferred = pyqtSignal(object)  # InferSummary of `make_remaining`, or the error message (str)
    live_ended = pyqtSignal()  # Snap / Live has ended (stopped, or its one image taken)
    blind_check = pyqtSignal(int, object)  # t, the blind check's scores (virtual vs the scanned reference)

    def __init__(self, parent: QObject | None = None):
        super().__init__(parent)
        self.acquisition: DeepZAcquisition | None = None
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._toggle: bool | None = None
        #: find neurons in each virtual stack (off the inference thread; while one is analysed only the
        #: newest stack waits, older ones are dropped: the view shows the newest it can)
        self.find_neurons = False
        self._finding: threading.Thread | None = None
        self._find_lock = threading.Lock()
        self._next_find: tuple[int, np.ndarray, np.ndarray, float] | None = None

    @property
    def running(self) -> bool:
        """Whether an acquisition thread is alive."""
        return self._thread is not None and self._thread.is_alive()

    def start(self, request: AcquisitionRequest, model: DeepZModel | None = None) -> None:
        """Check ``request`` here (errors raise at once), then acquire in the background; ``model``:
        the request's model file, already loaded (else it is loaded here)."""
        if self.running:
            raise RuntimeError("An acquisition is already running; stop it first.")
        prepared = prepare(request, model)
        self._stop.clear()
        self._toggle = None
        self._thread = threading.Thread(
            target=self._run, args=(prepared,), name="deepz-panel-run", daemon=True
        )
        self._thread.start()

    def make_remaining(self, container: Path, device: str) -> None:
        """Make the virtual stacks a finished run left to make (``mm-deepz infer``), in the background;
        ``progress`` reports them, ``inferred`` says how it ended."""
        if self.running:
            raise RuntimeError("An acquisition is running; make the remaining stacks after it.")

        def work() -> None:
            from acquisition_hooks.infer import infer_missing

            try:
                self.inferred.emit(infer_missing(container, None, device, progress=self.progress.emit))
            except Exception as e:  # noqa: BLE001 - reported to the user in the panel
                self.inferred.emit(user_message(e))

        self._thread = threading.Thread(target=work, name="deepz-panel-infer", daemon=True)
        self._thread.start()

    def live(self, request: AcquisitionRequest, frames: int | None = None) -> None:
        """Camera images at the input preset and exposure, where the stage is, one after the other
        until :meth:`stop` (Live), or ``frames`` of them (Snap: 1); each arrives as an ``image`` of
        kind ``live``."""
        if self.running:
            raise RuntimeError("The microscope is busy; stop it first.")
        self._stop.clear()

        def work() -> None:
            from acquisition_hooks.microscope import Microscope

            try:
                with open_microscope(request.microscope) as core:
                    scope, taken = Microscope(core), 0
                    while not self._stop.is_set() and (frames is None or taken < frames):
                        plane = scope.snap(request.channel_group, request.input_preset, request.exposure_ms)
                        self.image.emit("live", taken, -1, plane)
                        taken += 1
            except Exception as e:  # noqa: BLE001 - reported to the user in the panel
                self.failed.emit(user_message(e))
            finally:
                self.live_ended.emit()

        self._thread = threading.Thread(target=work, name="deepz-panel-live", daemon=True)
        self._thread.start()

    def set_enabled(self, on: bool) -> int | None:
        """Switch virtual z-stacking; the time point it applies from during a run (None: no run yet, it
        applies from the first)."""
        self._toggle = on
        acq = self.acquisition
        return acq.set_enabled(on) if acq is not None else None

    def pause(self, on: bool) -> bool:
        """Hold the run before its next time point (``on``), or go on; False when no run is going."""
        acq = self.acquisition
        if acq is None:
            return False
        acq.pause() if on else acq.resume()
        return True

    def ask_blind_check(self) -> int | None:
        """A blind check at the next time point not under way; that time point (None: no run)."""
        acq = self.acquisition
        return acq.ask_blind_check() if acq is not None else None

    def stop(self) -> None:
        """Abort after the event in progress; measured data stays."""
        self._stop.set()
        if self.acquisition is not None:
            self.acquisition.abort()

    def wait(self, timeout: float) -> bool:
        """Wait for the acquisition thread to end (bounded); True if it did."""
        if self._thread is not None:
            self._thread.join(timeout)
        return not self.running

    def _run(self, prepared: PreparedRun) -> None:
        try:
            with prepared.microscope() as core:
                acq = prepared.acquisition(
                    core,
                    on_image=self._on_image,
                    on_virtual=self._on_virtual,
                    on_blind_check=lambda t, p, metrics: self.blind_check.emit(t, metrics),
                )
                if self._toggle is not None:  # flipped while the microscope was being opened
                    acq.enabled = self._toggle
                with acq:
                    self.acquisition = acq
                    self.started.emit(acq)
                    if self._stop.is_set():
                        acq.abort()
                    summary: RunSummary = acq.run(progress=lambda t, total: self.progress.emit(t + 1, total))
                    self._emit_stats()
        except Exception as e:
            logger.exception("Acquisition failed")
            self.failed.emit(user_message(e))
            return
        finally:
            self.acquisition = None
            if (finding := self._finding) is not None:  # no overlay arrives after the run has ended
                finding.join()
        self.finished.emit(summary)

    def _on_image(self, kind: str, t: int, zi: int, plane: np.ndarray) -> None:
        self.image.emit(kind, t, zi, plane)
        self._emit_stats()

    def _on_virtual(self, t: int, stack: VirtualStack) -> None:
        self.virtual.emit(t, stack.data, np.asarray(stack.z_um))
        acq = self.acquisition
        if self.find_neurons and acq is not None:
            self.find_neurons_in(t, stack.data, np.asarray(stack.z_um), acq.geometry.pixel_size_um)
        self._emit_stats()

    def find_neurons_in(self, t: int, stack: np.ndarray, z_um: np.ndarray, pixel_um: float) -> bool:
        """Detect the neurons of one virtual stack beside the run (``neurons`` reports them); while another
        is analysed it waits (only the newest waits: the view shows the newest it can); False then."""
        with self._find_lock:
            self._next_find = (t, stack, z_um, pixel_um)  # newest first: an older one waiting is dropped
            if self._finding is not None and self._finding.is_alive():
                return False
            self._finding = threading.Thread(target=self._find_loop, name="deepz-neurons", daemon=True)
            self._finding.start()
        return True

    def _find_loop(self) -> None:
        """Analyse the newest stack handed over, then the newest that came meanwhile, until none waits."""
        while True:
            with self._find_lock:
                job, self._next_find = self._next_find, None
                if job is None:
                    self._finding = None
                    return
            self._find(*job)

    def _find(self, t: int, stack: np.ndarray, z_um: np.ndarray, pixel_um: float) -> None:
        from mm_deepz.neurons import detect_neurons

        step = float(np.median(np.diff(z_um))) if len(z_um) > 1 else 1.0
        try:
            self.neurons.emit(t, detect_neurons(stack, (step, pixel_um, pixel_um), z0_um=float(z_um[0])))
        except Exception:  # a live overlay never stops the run; the log says why it is missing
            logger.exception("No neuron overlay for time point %d", t)

    def _emit_stats(self) -> None:
        acq = self.acquisition
        if acq is None:
            return
        used, full = acq.light()
        ws = acq.worker.stats
        hs = acq.hooks.stats
        self.stats.emit(
            LiveStats(
                used,
                full,
                ws.planes_per_s,
                ws.last_latency_s,
                acq.worker.pending,
                hs.reference_planes > 0,
                hs.virtual_done,
                hs.time_points_deepz * acq.recorder.n_positions,
                acq.hooks.virtual.backlog + acq.worker.pending,
            )
        )
