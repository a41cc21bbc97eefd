"""The runner-neutral core of a Deep-Z run: what each requested plane becomes, and what happens to each
frame, for pycromanager and pymmcore-plus alike.

- What to capture: each requested z-stack plane becomes what
  :class:`~acquisition_hooks.events.EventRewriter` decides (:meth:`DeepZHooks.rewrite`): with virtual
  z-stacking on, one of the 1-2 measured planes (at the plan's exposure, light power and input light
  path) or nothing; with it off, a plane of a full stack. A blind check's reference stack is the
  sequence's reference light path, kept at a blind check's time points. pycromanager's runner
  rewrites its events before it submits them (:meth:`DeepZHooks.rewrite_event`,
  :mod:`acquisition_hooks.run`); the MDA engine its useq events (:mod:`acquisition_hooks.mda`).
- Each frame, from either runner, enters through :meth:`DeepZHooks.frame` (pycromanager's image hook,
  :meth:`DeepZHooks.image_process_fn`, only reads its metadata into it): it is written to the recorder,
  the measured planes of a time point go to the inference worker as a :class:`PlaneBundle` without
  blocking, reference planes to ``reference/``, and a completed blind check is scored. It never raises
  into the runner: a frame that does not fit is kept under ``rejected/``, saturated input planes are
  flagged, and a storage failure stops the acquisition (:meth:`DeepZHooks.stop`: every further event
  is skipped, waiting threads wake up).

The jobs are split: :class:`~acquisition_hooks.events.EventRewriter` decides what each plane
becomes, :class:`~acquisition_hooks.frames.FrameRouter` tracks arrival and whole stacks,
:class:`~acquisition_hooks.virtual.VirtualResults` makes, defers, writes and scores the virtual
stacks, and :class:`~acquisition_hooks.state.RunState` holds the counters and the stop reason;
this class joins them to the recorder and to the runners.

Exposure, light path and light power are set declaratively in the events, so the runner applies
them in its hardware step. Deep-Z events carry an extra axis ``deepz`` (``anchor``, ``full`` or
``reference``) because pycromanager's Python backend cannot carry event tags.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from mm_deepz.errors import InputError, StorageError
from mm_deepz.io import STACK_IMAGE, Recorder
from mm_deepz.metrics import blind_check_scores

from .events import DEEPZ_AXIS, INPUT, Capture, EventRewriter
from .frames import SATURATION_WARN_FRACTION, FrameRouter, WholeStack, saturated_fraction
from .plan import DeepZPlan
from .signals import RunSignals
from .state import HookStats, RunState
from .virtual import VirtualResults

if TYPE_CHECKING:
    from mm_deepz.engine import InferenceWorker

logger = logging.getLogger(__name__)

#: a pycromanager event as its hooks get it, or a hardware sequence of them (Java backend)
_Event = dict[str, Any] | list[dict[str, Any]]


class DeepZHooks:
    """The hooks of one acquisition (one plan, one recorder, one worker)."""

    def __init__(
        self,
        plan: DeepZPlan,
        recorder: Recorder,
        worker: InferenceWorker | None,
        *,
        enabled: bool = True,
        anchor_properties: Sequence[Sequence[str]] = (),
        signals: RunSignals | None = None,
        set_property: Callable[[str, str, str], None] | None = None,
    ) -> None:
        self.plan = plan
        #: decides what each requested plane becomes; anchor planes set ``anchor_properties`` first
        #: (the light power: :meth:`Microscope.power_settings`)
        self.rewriter = EventRewriter(plan, anchor_properties=anchor_properties)
        self.recorder = recorder
        self.worker = worker
        #: sets a device property on the microscope (pycromanager's camera sequences need it)
        self._set_property = set_property
        #: what the run tells its watchers (each measured plane, virtual stack, blind check)
        self.signals = signals or RunSignals()
        #: the counters and why the run must stop, shared by the pieces below
        self.state = RunState()
        self.frames = FrameRouter(
            n_z=len(self.rewriter.z_um), anchors=self.rewriter.anchors, n_positions=recorder.n_positions
        )
        self.state.on_stop(self.frames.stop)
        self.virtual = VirtualResults(
            plan=plan,
            recorder=recorder,
            worker=worker,
            state=self.state,
            score=blind_check_scores,
            signals=self.signals,
            is_blind_check=self.rewriter.is_blind_check,
        )
        self.rewriter.set_deepz(enabled)

    @property
    def stats(self) -> HookStats:
        """The run's counters."""
        return self.state.stats

    # -- the toggle ---------------------------------------------------------------------
    @property
    def enabled(self) -> bool:
        """Whether new time points are captured with Deep-Z (else as full stacks)."""
        return self.rewriter.deepz

    @enabled.setter
    def enabled(self, value: bool) -> None:
        self.set_enabled(value)

    def set_enabled(self, value: bool) -> int:
        """Switch virtual z-stacking; the time point it applies from (the first not yet under way)."""
        t = self.rewriter.set_deepz(value)
        logger.info("Virtual z-stacking %s from time point %d", "on" if value else "off", t)
        return t

    def stop(self, reason: str) -> None:
        """Acquire nothing more: every further event is skipped and waiting threads wake up."""
        self.state.stop(reason)

    def acquisition_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for ``pycromanager.Acquisition``: its image hook, and the hook before the
        hardware that drops what was queued when the run stopped. (Its event hook is not needed: the run
        rewrites each time point's events before it submits them, :meth:`rewrite_event`, so that a toggle
        applies from the first time point not yet submitted.)"""
        return {"image_process_fn": self.image_process_fn, "pre_hardware_hook_fn": self.pre_hardware_hook_fn}

    def pre_hardware_hook_fn(self, event: _Event) -> _Event | None:
        """pycromanager's hook before an event or a camera sequence of events moves the hardware: once
        the run has stopped, what is still queued (the block submitted while the one before was exposed)
        is dropped, so a stop exposes nothing after the block under way. A sequence's own properties
        (the anchors' light power) are set here: pycromanager's engine runs a sequence without them."""
        if self.state.stopped:
            return None
        if isinstance(event, list) and self._set_property is not None:
            properties = dict.fromkeys(tuple(p) for ev in event for p in ev.get("properties", ()))
            for device, name, value in properties:
                self._set_property(device, name, value)
        return event

    # -- event generation ---------------------------------------------------------------
    def rewrite(self, t: int, zi: int, channel: int = INPUT) -> Capture | None:
        """What requested plane ``zi`` of light path ``channel`` at time point ``t`` becomes (the requested
        stack's planes counted); None: skipped."""
        capture = self.rewriter.capture(t, zi, allowed=self.worker is not None, channel=channel)
        if channel == INPUT:
            self.stats.count("planes_requested")
            if capture is None:
                self.stats.count("planes_skipped")
        return capture

    def rewrite_event(self, event: dict[str, Any]) -> dict[str, Any] | None:
        """A requested pycromanager event rewritten into a Deep-Z event, or skipped (``None``); an event
        that is not a plane of a z-stack passes as it is."""
        if self.state.stopped:
            return None
        axes = event.get("axes", {})
        if "z" not in axes or "time" not in axes:
            return event
        capture = self.rewrite(int(axes["time"]), int(axes["z"]), int(axes.get("channel", INPUT)))
        return None if capture is None else capture.pycromanager_event(event)

    def wait_acquired(self, t: int, timeout: float) -> bool:
        """Block until every camera frame of time point ``t`` (all positions) has arrived, or the
        acquisition is stopped; True if ``t`` was acquired. Writing them may still be under way."""
        return self.frames.wait_acquired(t, timeout)

    # -- images -------------------------------------------------------------------------
    def image_process_fn(self, image: np.ndarray, metadata: dict[str, Any]) -> Any:
        """pycromanager's image hook: a Deep-Z frame to :meth:`frame` (returns None: stored), any other
        left to pycromanager's storage."""
        axes = metadata.get("Axes", {})
        kind = axes.get(DEEPZ_AXIS)
        if kind is None:
            return image, metadata
        self.frame(kind, int(axes["time"]), int(axes["z"]), int(axes.get("position", 0)), image)
        return None

    def frame(self, kind: str, t: int, zi: int, p: int, image: np.ndarray) -> None:
        """A camera frame of either runner: plane ``zi`` of the requested grid at time point ``t`` and
        position ``p``, captured as ``kind`` (``anchor``, ``full``, ``reference``). It is recorded; the
        input planes of a whole time point go to the model.

        Nothing here raises into the runner: a frame that does not fit the container is kept aside
        (``rejected/``), and a storage failure stops the acquisition cleanly.
        """
        image = np.asarray(image)
        if kind != "reference":  # the next time point may be submitted while this plane is written
            self.frames.arrived(kind, t, p)
        try:
            self._record(kind, t, zi, p, image)
            if kind == "anchor":
                self._check_saturation(t, zi, p, image)
            whole = self.frames.collect(kind, t, p, zi, image)
            if whole is not None:
                self._completed(whole)
        except StorageError as e:
            self.state.fail_storage(e)
            return
        self.state.notify(self.signals.image.emit, kind, t, zi, image)

    def _record(self, kind: str, t: int, zi: int, p: int, image: np.ndarray) -> None:
        """Write a plane where it belongs; one that does not fit is kept under ``rejected/``."""
        # a full stack's planes go to the stack image, and its input planes also to the measured image
        # (which holds Deep-Z's input planes at every time point)
        names = {"reference": ("reference",), "anchor": ("measured",)}.get(
            kind, (STACK_IMAGE, "measured") if zi in self.frames.anchors else (STACK_IMAGE,)
        )
        try:
            for target in names:
                self.recorder.write_plane(target, t, zi, image, p=p)
        except InputError as e:
            where = self.recorder.keep_rejected(names[0], t, zi, image, str(e), p)
            self.frames.reject(kind, t, p, zi)
            self.stats.count("rejected_frames")
            self.stats.note("errors", f"t={t}, z={zi}, p={p}: {e} Kept as {where}.")
            logger.error("%s Frame kept as %s.", e, where)
        self.stats.count("reference_planes" if kind == "reference" else "planes_measured")

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

    def _completed(self, whole: WholeStack) -> None:
        """Every plane of a stack is in: mark it complete; a whole input stack goes to the model."""
        kind, t, p = whole.kind, whole.t, whole.p
        if kind == "reference":
            if whole.intact:
                self.recorder.mark_complete("reference", t, p)
                self.virtual.blind_check(t, p)
            return
        if kind == "full":
            self.recorder.mark_complete(STACK_IMAGE, t, p)
        self.recorder.mark_complete("measured", t, p, planes=list(whole.written))  # flushed before inference
        if whole.completes_time_point:
            self.stats.count("time_points_full" if kind == "full" else "time_points_deepz")
        if kind == "full":
            return
        if not whole.intact:
            self.virtual.missing(t, p, "an input plane did not fit the container (see rejected/)")
            return
        self.virtual.submit(t, p, self.frames.input_planes(whole))
