"""One Deep-Z acquisition: pycromanager + hooks + inference worker + recorder.

:class:`DeepZAcquisition` is the single implementation used by ``mm-deepz acquire``, the
Qt panel and the tests. ``run()`` works with whichever backend pycromanager is on: the
simulator (Python backend, see :mod:`mm_deepz.bridge`) or a running Micro-Manager (Java
backend); ``run_mda()`` runs the same capture through pymmcore-plus's MDA runner.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
import torch
from pycromanager import Acquisition
from pydantic import ConfigDict, Field
from typing_extensions import Self

from mm_deepz import __version__
from mm_deepz.bridge import acquisition_error
from mm_deepz.devices import Device
from mm_deepz.engine import InferenceWorker, Predictor, VirtualStack
from mm_deepz.errors import DeepZError, SettingsError, StorageError
from mm_deepz.io import Geometry, ImageInfo, Recorder
from mm_deepz.modelfile import DeepZModel
from mm_deepz.settings import Settings

from .core import MMCore
from .events import joins_block, pycromanager_events, sequence_for
from .fields import IntervalS, Positions, TimePoints, unit
from .hooks import DeepZHooks
from .microscope import Microscope
from .plan import DeepZPlan
from .signals import RunSignals
from .summary import RunSummary, exposure_used, summarize

if TYPE_CHECKING:
    from pymmcore_plus import CMMCorePlus

logger = logging.getLogger(__name__)

#: how often the run looks for a failed device command while it waits for a time point's frames (s)
_POLL_S = 0.25


class RunSettings(Settings):
    """What to acquire besides the plan: time-lapse, output, device (validated when made)."""

    error: ClassVar[type[DeepZError]] = SettingsError
    what: ClassVar[str] = "run settings"
    model_config = ConfigDict(allow_inf_nan=False)

    output: Path
    time_points: TimePoints = 3
    interval_s: IntervalS = 0.0
    device: Device = "auto"
    overwrite: bool = False
    deepz: bool = True
    #: planes stored losslessly compressed (Blosc-LZ4), or as raw bytes
    compression: bool = True
    #: virtual stacks waiting for the model before the camera waits for it
    max_pending: int = Field(4, ge=1, title="the stacks waiting for the model")
    drain_timeout_s: float = Field(600.0, gt=0, title="the wait for the backlog", json_schema_extra=unit("s"))
    time_point_timeout_s: float = Field(
        120.0, gt=0, title="the wait for a time point", json_schema_extra=unit("s")
    )
    positions_xy_um: Positions = None
    #: the simulated specimen (phantom, seed, sensor shape), recorded so its truth can be rebuilt
    #: (`simulators.truth`); None on a real microscope
    specimen: dict[str, Any] | None = None


def image_infos(model: DeepZModel, plan: DeepZPlan) -> dict[str, ImageInfo]:
    """What the run's images are, for viewers: modality, model, emission and exposure."""
    card = model.card
    em_um = card.optics.wavelength_em_um
    emission = round(em_um * 1000, 1) if em_um is not None else None
    name = model.path.stem if model.path else "model"
    return {
        "measured": ImageInfo(
            f"{card.input_modality} (measured)",
            "00FF00",
            f"The input plane(s) of Deep-Z measured by the camera ({plan.input_preset}) at every time point",
            emission,
            plan.anchor_exposure_ms,
        ),
        "measured_stack": ImageInfo(
            f"{card.input_modality} z-stacks (measured)",
            "00FF00",
            f"Full z-stacks measured by the camera ({plan.input_preset}) while virtual z-stacking was off",
            emission,
            plan.stack_exposure_ms,
        ),
        "virtual": ImageInfo(
            f"virtual {card.target_modality} (Deep-Z, {name})",
            "FF00FF",
            f"Stacks synthesized by Deep-Z model {name} from the measured planes",
            emission,
        ),
        "reference": ImageInfo(
            f"{card.target_modality} (reference)",
            "FFFFFF",
            f"Stacks scanned for blind checks ({plan.reference_preset})",
            emission,
            plan.reference_exposure_ms,
        ),
    }


def _same_error(raised: BaseException, failure: BaseException) -> bool:
    """Whether ``raised`` is ``failure`` or carries it (pycromanager may wrap it)."""
    seen: BaseException | None = raised
    while seen is not None:
        if seen is failure:
            return True
        seen = seen.__cause__ or seen.__context__
    return False


@dataclass(frozen=True)
class _Opened:
    """What an open acquisition holds: its container, its model's worker and its hooks."""

    recorder: Recorder
    worker: InferenceWorker
    hooks: DeepZHooks


class DeepZAcquisition:
    """Runs a Deep-Z time-lapse on the current pycromanager backend and records it.

    The constructor checks the plan against the microscope and the model and puts the model on
    its device; nothing is written and no thread starts. :meth:`open` creates the output
    container and the model's worker (its thread starts with the first input planes); :meth:`run`
    (pycromanager) or :meth:`run_mda` (pymmcore-plus) acquires, opening first if needed, and
    finishes the container; :meth:`close` finishes an opened acquisition whose run raised or
    never started. It is also a context manager (open / close). One acquisition runs once.
    """

    def __init__(
        self,
        core: MMCore,
        model: DeepZModel,
        plan: DeepZPlan,
        settings: RunSettings,
        *,
        on_image: Callable[[str, int, int, np.ndarray], None] | None = None,
        on_virtual: Callable[[int, VirtualStack], None] | None = None,
        on_blind_check: Callable[[int, int, dict[str, Any]], None] | None = None,
    ) -> None:
        self.core = core
        self.microscope = Microscope(
            core, power_property=plan.light_power_property, dose_property=plan.dose_property
        )
        self.model = model
        self.plan = plan
        self.settings = settings
        #: what the run tells its watchers: each measured plane (kind, t, z index, image), virtual stack
        #: (t, stack) and blind check's scores (t, position, metrics); connect before :meth:`open`.
        #: ``on_image``, ``on_virtual`` and ``on_blind_check`` are connected to them.
        self.events = RunSignals()
        for signal, slot in (
            (self.events.image, on_image),
            (self.events.virtual, on_virtual),
            (self.events.blind_check, on_blind_check),
        ):
            if slot is not None:
                signal.connect(slot)
        #: the requested acquisition, for either runner
        self.sequence = sequence_for(
            plan, settings.time_points, settings.interval_s, settings.positions_xy_um
        )
        self.microscope.check(plan, blind_checks=plan.blind_check_every > 0)
        pixel = self.microscope.pixel_size_um
        model.check_compatible(pixel_size_um=pixel, plane_offsets_um=plan.anchor_z())
        plan.check_range(model.card.z_range_um)
        self.predictor = Predictor(model, settings.device)
        h, w = self.microscope.image_shape
        positions = tuple((float(x), float(y)) for x, y in settings.positions_xy_um or ((0.0, 0.0),))
        self.geometry = Geometry(
            tuple(plan.requested_z().tolist()),
            pixel,
            settings.interval_s,
            (h, w),
            positions_xy_um=positions,
            anchor_z_um=tuple(plan.anchor_z()),
        )
        #: what the input planes set first (the light power), checked here with the rest
        self.anchor_properties = self.microscope.power_settings(plan)
        self._deepz = settings.deepz
        self._opened: _Opened | None = None
        self._finished = False
        #: the core whose MDA runner is running (run_mda)
        self._mda: CMMCorePlus | None = None
        self._abort = threading.Event()
        self._go = threading.Event()  # cleared by pause(): the run waits before its next time point
        self._go.set()
        #: the time point a paused run waits before (None: not waiting)
        self.paused_before: int | None = None
        #: the device command that failed and stopped the run (pycromanager raises it again on exit)
        self._device_failure: BaseException | None = None
        #: the light source's dose reading and the clock when the run started (None: it did not)
        self._started: tuple[float | None, float] | None = None

    # -- lifecycle ------------------------------------------------------------------------
    def open(self) -> Self:
        """Create the output container and the model's worker; returns the acquisition."""
        if self._finished or self._opened is not None:
            raise DeepZError(
                "This acquisition is already open or has run; make a new DeepZAcquisition for another run."
            )
        s = self.settings
        recorder = Recorder(
            s.output,
            self.geometry,
            self._attrs(),
            overwrite=s.overwrite,
            infos=image_infos(self.model, self.plan),
            compression=s.compression,
        )
        worker = InferenceWorker(self.predictor, max_pending=s.max_pending)
        hooks = DeepZHooks(
            self.plan,
            recorder,
            worker,
            enabled=self._deepz,
            anchor_properties=self.anchor_properties,
            signals=self.events,
            set_property=self.microscope.set_property,
        )
        hooks.state.on_stop(self._on_stop)
        self._opened = _Opened(recorder, worker, hooks)
        if self._abort.is_set():  # aborted before it opened
            hooks.stop("aborted by the user")
        return self

    def _ensure_open(self) -> None:
        """Open before the run unless :meth:`open` was called; one acquisition runs once."""
        if self._opened is None or self._finished:
            self.open()

    def close(self, reason: str = "closed before it ran") -> None:
        """Finish an opened acquisition whose run did not end (it raised, or never started): what was
        measured is kept, its virtual stacks are made, and the container is finished as aborted,
        recording ``reason``; idempotent."""
        if self._opened is None or self._finished:
            return
        self._opened.hooks.stop(reason)
        self._abort.set()
        self._drain()
        self._finish()

    def __enter__(self) -> Self:
        return self if self._opened is not None else self.open()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: object) -> None:
        self.close(f"{type(exc).__name__}: {exc}" if exc is not None else "closed before it ran")

    def _parts(self) -> _Opened:
        if self._opened is None:
            raise DeepZError("The acquisition is not open: call open() (or use it in a `with` block) first.")
        return self._opened

    @property
    def recorder(self) -> Recorder:
        """The output container's writer (once open)."""
        return self._parts().recorder

    @property
    def worker(self) -> InferenceWorker:
        """The model's worker (once open)."""
        return self._parts().worker

    @property
    def hooks(self) -> DeepZHooks:
        """The acquisition hooks (once open)."""
        return self._parts().hooks

    def _attrs(self) -> dict[str, Any]:
        import pycromanager

        return {
            "plan": self.plan.model_dump(),
            "model": {
                "path": str(self.model.path),
                "sha256": self.model.sha256,
                "card": self.model.card.to_json(),
            },
            "software": {
                "mm_deepz": __version__,
                "pycromanager": pycromanager.__version__,
                "torch": torch.__version__,
            },
            "device": str(self.predictor.device),
            "time_points_requested": self.settings.time_points,
            "interval_s": self.settings.interval_s,
            **({"specimen": self.settings.specimen} if self.settings.specimen else {}),
        }

    @property
    def enabled(self) -> bool:
        """The virtual z-stacking toggle (effective from the next time point)."""
        return self._opened.hooks.enabled if self._opened is not None else self._deepz

    @enabled.setter
    def enabled(self, value: bool) -> None:
        self.set_enabled(value)

    def set_enabled(self, value: bool) -> int:
        """Switch virtual z-stacking (safe from any thread); the time point it applies from: the first
        not yet under way (one under way keeps its mode)."""
        self._deepz = value
        return self._opened.hooks.set_enabled(value) if self._opened is not None else 0

    def stop(self, reason: str = "aborted by the user") -> None:
        """Acquire nothing more after the events already with the camera (safe from any thread); what
        was measured is finished, and its virtual stacks are still made (:meth:`abort` stops those too).

        pycromanager's own abort is not used: its engine returns without reading out a frame it has
        exposed (the light reached the specimen, the image was lost: 1 frame in every stopped run of
        ``benchmarks.sustained``). The hooks skip every event not yet with the engine instead; the
        run then ends after the time point under way, whose events the engine already has.
        """
        self._abort.set()
        if self._opened is not None:
            self._opened.hooks.stop(reason)

    def pause(self) -> None:
        """Hold the run before its next time point (the one under way is finished; the model goes on
        with its stacks); :meth:`resume` goes on, the time points that follow shifted by the pause.
        The pycromanager runner (:meth:`run`) only."""
        self._go.clear()

    def resume(self) -> None:
        """Go on after :meth:`pause`."""
        self._go.set()

    def ask_blind_check(self) -> int:
        """A blind check (a scanned reference stack, scored against its virtual stack) at the first time
        point not under way yet, besides the plan's; that time point."""
        return self.hooks.rewriter.ask_blind_check()

    def abort(self, reason: str = "aborted by the user") -> None:
        """:meth:`stop`, and make no more virtual stacks after the one in progress: those queued for the
        model and the backlog stay recorded as pending (the run ends in about one stack's time)."""
        if self._opened is not None:
            self._opened.hooks.virtual.cancel_drain()
        self.stop(reason)

    def _on_stop(self, reason: str) -> None:
        """The hooks stopped the acquisition (abort, storage failure): end the run loop / MDA."""
        self._abort.set()
        if self._mda is not None:
            self._mda.mda.cancel()

    def run_mda(self) -> RunSummary:
        """The same acquisition through pymmcore-plus's MDA runner (``core`` is a CMMCorePlus)."""
        from pymmcore_plus import CMMCorePlus

        from .mda import DeepZMDAEngine

        if not isinstance(self.core, CMMCorePlus):
            raise SettingsError(
                f"pymmcore-plus's MDA runner drives a pymmcore-plus core, not a {type(self.core).__name__}: "
                "run this acquisition with run() (pycromanager)."
            )
        core = self.core
        self._ensure_open()
        self._started = (self.microscope.dose_mJ(), time.perf_counter())
        engine = DeepZMDAEngine(core, self.hooks)
        self._mda = core
        previous = core.mda.set_engine(engine)
        core.mda.events.frameReady.connect(engine.on_frame)
        try:
            core.mda.run(self.sequence)
        except KeyboardInterrupt:
            self._interrupted()
        finally:
            core.mda.events.frameReady.disconnect(engine.on_frame)
            if previous is not None:
                core.mda.set_engine(previous)
            engine.finish_frames()  # every frame the camera took is written before the run ends
            self._drain()
        return self._finish()

    def _interrupted(self) -> None:
        self.stop()
        logger.warning(
            "Acquisition interrupted; finishing what was measured (interrupt again to leave its "
            "virtual stacks to `mm-deepz infer`)"
        )

    def _drain(self, backlog_progress: Callable[[int, int], None] | None = None) -> None:
        """Make the virtual stacks of everything measured: the backlog (as long as it takes; Ctrl-C
        leaves the rest recorded as pending), then what the worker still holds (bounded wait)."""
        virtual = self.hooks.virtual
        if virtual.backlog and not self.hooks.state.storage_failed:
            logger.info(
                "Making the %d virtual stacks the model could not take during the run", virtual.backlog
            )
            try:
                virtual.drain_backlog(backlog_progress)
            except KeyboardInterrupt:
                logger.warning(
                    "Stopped making the backlog: %d virtual stacks are still to make (`mm-deepz infer "
                    "%s` makes them)",
                    virtual.backlog,
                    self.settings.output,
                )
        if not self.worker.close(timeout=self.settings.drain_timeout_s):
            logger.error("The inference worker did not finish within %.0f s", self.settings.drain_timeout_s)

    def run(
        self,
        progress: Callable[[int, int], None] | None = None,
        backlog_progress: Callable[[int, int], None] | None = None,
    ) -> RunSummary:
        """Acquire all time points (blocking) and return the summary; never loses measured data.

        ``progress(t, total)`` after each time point; ``backlog_progress(done, total)`` while the
        virtual stacks the model could not take during the run are made after it.
        """
        self._ensure_open()
        self._started = (self.microscope.dose_mJ(), time.perf_counter())
        try:
            with Acquisition(
                directory=None, name="deepz", show_display=False, **self.hooks.acquisition_kwargs()
            ) as acq:
                try:
                    self._submit(acq, progress)
                except KeyboardInterrupt:
                    self._interrupted()  # while pycromanager's acquisition is still open
        except KeyboardInterrupt:  # a second Ctrl-C while the last events finish
            self.hooks.stop("aborted by the user")
        except Exception as e:
            if self._device_failure is None or not _same_error(e, self._device_failure):
                raise
            # pycromanager raises the failed device command again on leaving: it is recorded already
        finally:
            self._drain(backlog_progress)
        return self._finish()

    def _submit(self, acq: Acquisition, progress: Callable[[int, int], None] | None) -> None:
        """Submit the time points in blocks and wait for each one's frames. Time points due at the same
        moment (as fast as possible) go in blocks of up to :data:`~.events.SEQUENCE_S` of exposure, one
        ``acquire`` each, which pycromanager's engine runs as one camera sequence where the hardware
        allows (Micro-Manager's burst mode, and what the MDA runner does): one time point a call, its
        engine's hand-overs between threads for every frame held a fast camera to 0.94 of plain
        pycromanager's rate (docs/benchmarks.md). A block due already is submitted while the one before
        it is with the camera, so the camera never waits for the software; a time point due later is
        submitted at its time, after the one before it was taken (a toggle in the interval applies to
        it)."""
        s = self.settings
        start = time.monotonic()
        # the block submitted before this one, its frames not yet waited for
        under_way: list[int] = []
        t = 0
        while t < s.time_points:
            # paused, or time to spare before t is due: the block before is taken first
            if under_way and (not self._go.is_set() or start + t * s.interval_s > time.monotonic()):
                if not self._settle(acq, under_way, progress):
                    return
                under_way = []
            # a pause holds the run here, between blocks; the schedule moves on by the pause
            if not self._go.is_set():
                paused_at, self.paused_before = time.monotonic(), t
                logger.info("Paused before time point %d", t)
                self.recorder.flush()  # while the run waits, its record says all that was measured
                while not self._go.wait(_POLL_S):
                    if self._abort.is_set():
                        return
                start += time.monotonic() - paused_at
                self.paused_before = None
            # wait out the interval here, before time point t is submitted (pycromanager runs
            # the event hook at submission), so a toggle during the wait applies to t
            if self._abort.wait(max(0.0, start + t * s.interval_s - time.monotonic())):
                return
            if (block := self._block(t)) is None:  # the run stopped (storage failure) meanwhile
                return
            times, events = block
            acq.acquire(events)
            if under_way and not self._settle(acq, under_way, progress):
                return
            under_way, t = times, times[-1] + 1
        if under_way:
            self._settle(acq, under_way, progress)

    def _block(self, t: int) -> tuple[list[int], list[dict[str, Any]]] | None:
        """Time point ``t`` and the ones after it due at the same moment, up to :data:`~.events.SEQUENCE_S` of
        exposure: their time points and their events, rewritten now (so only the planes to measure
        travel through pycromanager, and a toggle or an abort applies from the first time point not
        yet submitted); None if the run stopped while they were rewritten."""
        times: list[int] = []
        events: list[dict[str, Any]] = []
        exposure_ms = 0.0
        while t < self.settings.time_points and (
            not times or (joins_block(self.sequence, times[0], t, exposure_ms) and self._go.is_set())
        ):
            events_t = pycromanager_events(self.sequence, t)
            rewritten = [out for ev in events_t if (out := self.hooks.rewrite_event(ev)) is not None]
            if not rewritten:
                return None
            times.append(t)
            events += rewritten
            exposure_ms += sum(float(ev.get("exposure") or 0.0) for ev in rewritten)
            t += 1
        return times, events

    def _settle(
        self, acq: Acquisition, times: list[int], progress: Callable[[int, int], None] | None
    ) -> bool:
        """Wait for the frames of ``times`` in turn and report each; False if the run was stopped
        meanwhile (the time point then waited for is not counted as done)."""
        for t in times:
            acquired = self._wait_acquired(acq, t)
            if not acquired and self._abort.is_set():
                return False
            if not acquired:
                msg = (
                    f"Time point {t} was not measured within {self.settings.time_point_timeout_s:.0f} s (a "
                    "microscope error? see the log); going on with the next one"
                )
                self.hooks.stats.note("errors", msg)
                logger.error(msg)
            if progress is not None:
                progress(t, self.settings.time_points)
        return True

    def _wait_acquired(self, acq: Acquisition, t: int) -> bool:
        """Wait for time point ``t``'s frames (at most the time-point timeout); a device command that
        failed in pycromanager's engine stops the run at once, naming the device, instead of waiting
        for frames that will never come."""
        deadline = time.monotonic() + self.settings.time_point_timeout_s
        while True:
            if self.hooks.wait_acquired(t, min(_POLL_S, max(0.0, deadline - time.monotonic()))):
                return True
            if (error := acquisition_error(acq)) is not None:
                self._device_failure = error
                msg = self.microscope.failure_message(error, self.plan)
                self.hooks.stats.note("errors", msg)
                logger.error(msg)
                self.stop(msg)
                return False
            if self._abort.is_set() or time.monotonic() >= deadline:
                return False

    def light(self) -> tuple[float, float]:
        """Exposure time (s) used so far, and what the same completed time points would have
        used as full z-stacks (blind checks count in both)."""
        done_t = len(self.recorder.completed["measured"])
        return exposure_used(self.plan, self.hooks.stats, self.recorder.n_positions, done_t)

    def _finish(self) -> RunSummary:
        """Record the run's summary and finish the container (after a run, or on closing one that
        raised or never ran)."""
        dose0, t0 = self._started if self._started is not None else (None, time.perf_counter())
        dose1 = self.microscope.dose_mJ()
        aborted = self._abort.is_set()
        summary = summarize(
            self.plan,
            self.hooks,
            output=str(self.settings.output),
            time_points=len(self.recorder.completed["measured"]),
            n_positions=self.recorder.n_positions,
            dose_mJ=dose1 - dose0 if dose0 is not None and dose1 is not None else None,
            seconds=time.perf_counter() - t0,
            aborted=aborted,
        )
        try:
            self.recorder.finish(
                summary={k: v for k, v in asdict(summary).items() if k not in ("errors", "warnings")},
                errors=summary.errors,
                aborted=aborted,
            )
        except StorageError as e:  # the data written so far stays readable; say so, do not raise
            summary.errors.append(str(e))
        if self.recorder.restored is not None:
            summary.warnings.append(
                f"No frame was measured, so the earlier run at {self.recorder.restored} it was to replace is "
                "back in place, unchanged."
            )
        self._finished = True
        return summary
