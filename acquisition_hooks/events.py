"""What to capture, decided once, and written for either runner at the edge.

A Deep-Z run's requested acquisition is one ``useq.MDASequence`` (:func:`sequence_for`): the plan's
z grid, the time-lapse, the stage positions and two light paths: the requested stack's and a blind
check's reference stack (``channels[REFERENCE]``, at every time point and position, since a blind
check can be asked for at any time point during a run). pymmcore-plus's MDA runner runs it natively;
pycromanager gets the same events, one time point at a time, as its event dicts
(:func:`pycromanager_events`).

Each requested plane then goes through :class:`EventRewriter`, which decides, without touching
hardware, storage or the model, what is captured instead: a :class:`Capture` (an input plane at
low light, a plane of a full stack, or a blind-check reference plane) or nothing: a requested stack
keeps only the model's input planes while virtual z-stacking is on, and a reference stack is taken
only at a blind check's time points (the plan's, and those asked for). A capture is
written into the runner's own event type by :meth:`Capture.pycromanager_event` and
:meth:`Capture.useq_event`, so neither runner's events are converted into the other's.
"""

from __future__ import annotations

import copy
import functools
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import useq

from .plan import DeepZPlan

#: the axis that tells Deep-Z's frames apart (pycromanager's Python backend carries no event tags)
DEEPZ_AXIS = "deepz"
Kind = Literal["anchor", "full", "reference"]
#: the sequence's light paths (channel indices): the requested stack's, and a blind check's reference
INPUT, REFERENCE = 0, 1


@dataclass(frozen=True)
class Capture:
    """One camera frame as Deep-Z wants it taken."""

    kind: Kind
    z_um: float
    exposure_ms: float
    config: tuple[str, str]
    #: device properties to set first, ``(device, property, value)``
    properties: tuple[tuple[str, str, str], ...] = ()

    def pycromanager_event(self, event: dict[str, Any]) -> dict[str, Any]:
        """``event`` (a pycromanager event dict) rewritten to take this frame; ``event`` is not changed."""
        out = copy.deepcopy(event)
        out["axes"].pop("channel", None)  # the light path is the config group's, and the kind says which
        out["axes"][DEEPZ_AXIS] = self.kind
        out["z"] = self.z_um
        out["exposure"] = self.exposure_ms
        out["config_group"] = list(self.config)
        if self.properties:
            out["properties"] = [list(p) for p in self.properties]
        return out

    def useq_event(self, event: useq.MDAEvent) -> useq.MDAEvent:
        """``event`` (a useq event of pymmcore-plus's runner) rewritten to take this frame."""
        group, preset = self.config
        changes: dict[str, Any] = {
            "z_pos": self.z_um,
            "exposure": self.exposure_ms,
            "channel": {"config": preset, "group": group},
            "metadata": {**event.metadata, DEEPZ_AXIS: self.kind},
        }
        if self.properties:
            changes["properties"] = [useq.PropertyTuple(*p) for p in self.properties]
        return event.replace(**changes)


class EventRewriter:
    """Decides, plane by plane, what a requested z-stack becomes (thread-safe).

    With virtual z-stacking on, only the plan's 1-2 input planes are captured (at their exposure,
    light power and light path) and the other planes are skipped; with it off, every plane is
    captured as a full stack. The mode is fixed per time point on its first plane, so a toggle
    mid-stack applies from the next time point. The reference light path's planes are captured at a
    blind check's time points and skipped at the others.
    """

    def __init__(self, plan: DeepZPlan, *, anchor_properties: Sequence[Sequence[str]] = ()) -> None:
        self.plan = plan
        self.z_um = plan.requested_z()
        self.anchors = plan.anchor_indices()
        self._anchor_properties = tuple((str(d), str(p), str(v)) for d, p, v in anchor_properties)
        self._lock = threading.Lock()
        self._mode: dict[int, str] = {}
        #: the toggle, read under the lock at the one moment a time point's mode is decided
        self._deepz = True
        self._next_t = 0  # the first time point not decided yet
        self._checks_asked: set[int] = set()  # blind checks asked for during the run

    @property
    def deepz(self) -> bool:
        """The toggle: whether time points not decided yet are captured with Deep-Z."""
        return self._deepz

    def set_deepz(self, on: bool) -> int:
        """Switch the toggle; the time point it applies from (the first one not decided yet: a time point
        is decided on its first plane, so one under way keeps its mode)."""
        with self._lock:
            self._deepz = bool(on)
            return self._next_t

    def ask_blind_check(self) -> int:
        """A blind check at the first time point not decided yet (besides the plan's); that time point."""
        with self._lock:
            self._checks_asked.add(self._next_t)
            return self._next_t

    def is_blind_check(self, t: int) -> bool:
        """Whether time point ``t`` also acquires a reference stack (the plan's, or one asked for)."""
        with self._lock:
            return self.plan.is_blind_check(t) or t in self._checks_asked

    def mode_of(self, t: int, allowed: bool = True) -> str:
        """``deepz`` or ``full`` for time point ``t``, fixed on its first plane from the toggle (``deepz``
        only where ``allowed``: a run without a model measures full stacks)."""
        with self._lock:
            if t not in self._mode:
                self._mode[t] = "deepz" if self._deepz and allowed else "full"
                self._next_t = max(self._next_t, t + 1)
                self._mode.pop(t - 2, None)  # decided long ago (MDA runners may ask again for t - 1)
            return self._mode[t]

    def capture(self, t: int, zi: int, allowed: bool = True, channel: int = INPUT) -> Capture | None:
        """What requested plane ``zi`` of light path ``channel`` at time point ``t`` becomes; None: it is
        skipped."""
        plan = self.plan
        z = float(self.z_um[zi])
        if channel == REFERENCE:
            if not self.is_blind_check(t):
                return None
            return Capture(
                "reference", z, plan.reference_exposure_ms, (plan.channel_group, plan.reference_preset)
            )
        config = (plan.channel_group, plan.input_preset)
        if self.mode_of(t, allowed) == "full":
            return Capture("full", z, plan.stack_exposure_ms, config)
        if zi not in self.anchors:
            return None
        return Capture("anchor", z, plan.anchor_exposure_ms, config, self._anchor_properties)


def sequence_for(
    plan: DeepZPlan,
    time_points: int,
    interval_s: float,
    positions_xy_um: Sequence[tuple[float, float]] | None = None,
) -> useq.MDASequence:
    """The requested acquisition: the plan's absolute z grid at every position and time point, in the
    requested light path and in the reference one (``channels[INPUT]``, ``channels[REFERENCE]``)."""
    z = plan.requested_z()
    group = plan.channel_group
    kwargs: dict[str, Any] = {
        "time_plan": {"interval": interval_s, "loops": time_points},
        "z_plan": {"bottom": float(z[0]), "top": float(z[-1]), "step": plan.z_step_um},
        "channels": [
            useq.Channel(config=plan.input_preset, group=group, exposure=plan.anchor_exposure_ms),
            useq.Channel(config=plan.reference_preset, group=group, exposure=plan.reference_exposure_ms),
        ],
        "axis_order": "tpcz",
    }
    if positions_xy_um:
        kwargs["stage_positions"] = [(x, y) for x, y in positions_xy_um]
    return useq.MDASequence(**kwargs)


#: the most exposure time of time points due at once that is decided ahead and run as one camera
#: sequence, on both runners (a toggle or a blind check asked for applies after it)
SEQUENCE_S = 0.25


def start_s(sequence: useq.MDASequence, t: int) -> float:
    """When time point ``t`` of ``sequence`` is due, in seconds from the run's start."""
    plan = sequence.time_plan
    return t * plan.interval.total_seconds() if isinstance(plan, useq.TIntervalLoops) else 0.0


def joins_block(sequence: useq.MDASequence, first: int, t: int, exposure_ms: float) -> bool:
    """Whether time point ``t`` joins the block of time points that began at ``first`` and whose events
    so far take ``exposure_ms``: due at the same moment, and the block under :data:`SEQUENCE_S` of
    exposure (the one rule of both runners' camera sequences)."""
    return start_s(sequence, t) == start_s(sequence, first) and exposure_ms < SEQUENCE_S * 1000


def pycromanager_events(sequence: useq.MDASequence, t: int) -> list[dict[str, Any]]:
    """Time point ``t`` of ``sequence`` as pycromanager event dicts (a long time-lapse never holds
    all its events at once)."""
    start = start_s(sequence, t)
    return [
        {**ev, "axes": {**ev["axes"], "time": t}, "min_start_time": start} for ev in _one_time_point(sequence)
    ]


@functools.lru_cache(maxsize=4)
def useq_time_point(sequence: useq.MDASequence) -> tuple[useq.MDAEvent, ...]:
    """The useq events of one time point of ``sequence``, made once: :func:`useq_event_at` stamps
    those a runner takes with their time point (useq makes every requested plane's event, taken or
    skipped: 0.7 ms per 21 planes, a tenth of a fast camera's frame)."""
    return tuple(sequence.replace(time_plan=None).iter_events())


def useq_event_at(event: useq.MDAEvent, sequence: useq.MDASequence, t: int) -> useq.MDAEvent:
    """``event`` of :func:`useq_time_point` at time point ``t``: the event useq makes there."""
    return event.replace(
        index={"t": t, **event.index},
        min_start_time=start_s(sequence, t),
        sequence=sequence,
        reset_event_timer=t == 0 and event is useq_time_point(sequence)[0],
    )


@functools.lru_cache(maxsize=4)
def _one_time_point(sequence: useq.MDASequence) -> list[dict[str, Any]]:
    """The events of one time point of ``sequence`` as pycromanager's dicts (made once)."""
    events = []
    for ev in useq_time_point(sequence):
        axes: dict[str, Any] = {"time": 0, "channel": ev.index["c"], "z": ev.index["z"]}
        out: dict[str, Any] = {"axes": axes, "z": ev.z_pos, "min_start_time": 0.0}
        if "p" in ev.index:
            axes["position"] = ev.index["p"]
            out["x"], out["y"] = ev.x_pos, ev.y_pos
        events.append(out)
    return events
