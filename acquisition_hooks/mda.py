"""The same Deep-Z capture for pymmcore-plus users: an MDA engine driven by :class:`DeepZHooks`.

pymmcore-plus runs ``useq`` events instead of pycromanager's event dicts. This module only
translates between the two: every z-stack event goes through the very same
``DeepZHooks.event_generation_hook`` (so the plan, the toggle and the light settings are one
implementation), and every frame goes to ``DeepZHooks.image_process_fn``.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

import useq
from pymmcore_plus.mda import MDAEngine

from .hooks import DEEPZ_AXIS, DeepZHooks
from .plan import DeepZPlan


def _axes(event: useq.MDAEvent) -> dict[str, Any]:
    idx = event.index
    return {"time": idx.get("t", 0), "z": idx.get("z", 0), "position": idx.get("p", 0)}


def _to_useq(event: useq.MDAEvent | None, d: dict, index: dict[str, int] | None = None) -> useq.MDAEvent:
    """A useq event carrying what a pycromanager event dict asks for."""
    group, preset = d.get("config_group", (None, None))
    changes: dict[str, Any] = {
        "z_pos": d.get("z"),
        "metadata": {**(event.metadata if event else {}), DEEPZ_AXIS: d["axes"][DEEPZ_AXIS]},
    }
    if "exposure" in d:
        changes["exposure"] = d["exposure"]
    if preset is not None:
        changes["channel"] = {"config": preset, "group": group}
    if "properties" in d:
        changes["properties"] = [useq.PropertyTuple(dev, prop, value) for dev, prop, value in d["properties"]]
    if event is None:
        return useq.MDAEvent(index=index or {}, x_pos=d.get("x"), y_pos=d.get("y"), **changes)
    return event.replace(**changes)


class DeepZMDAEngine(MDAEngine):
    """pymmcore-plus MDA engine that captures z-stacks the Deep-Z way."""

    def __init__(self, mmc: Any, hooks: DeepZHooks, positions_xy_um: tuple | None = None):
        # no hardware sequencing: it reads events ahead, so a time point's capture mode would be
        # decided before the previous one was imaged (and anchor events are not sequenceable anyway)
        super().__init__(mmc, use_hardware_sequencing=False)
        self.hooks = hooks
        self.positions = positions_xy_um

    def event_iterator(self, events: Iterable[useq.MDAEvent]) -> Iterator[useq.MDAEvent]:
        """The requested events, rewritten by the hooks, plus blind-check reference stacks."""
        yield from super().event_iterator(self._deepz_events(events))

    def _deepz_events(self, events: Iterable[useq.MDAEvent]) -> Iterator[useq.MDAEvent]:
        last_t = None
        for event in events:
            t = event.index.get("t", 0)
            if last_t is not None and t != last_t:
                yield from self._references(last_t)
            last_t = t
            if "z" not in event.index:
                yield event
                continue
            out = self.hooks.event_generation_hook({"axes": _axes(event), "z": event.z_pos})
            if out is not None:
                yield _to_useq(event, out)
        if last_t is not None:
            yield from self._references(last_t)

    def _references(self, t: int) -> Iterator[useq.MDAEvent]:
        if not self.hooks.plan.is_blind_check(t):
            return
        for d in self.hooks.reference_events(t, positions_xy_um=self.positions):
            ax = d["axes"]
            yield _to_useq(None, d, {"t": t, "z": ax["z"], "p": ax.get("position", 0)})

    def on_frame(self, image: Any, event: useq.MDAEvent, meta: Any = None) -> None:
        """Connect to ``core.mda.events.frameReady``: hands Deep-Z frames to the hooks."""
        if DEEPZ_AXIS in event.metadata:
            self.hooks.image_process_fn(image, {"Axes": {**_axes(event), DEEPZ_AXIS: event.metadata[DEEPZ_AXIS]}})


def sequence_for(plan: DeepZPlan, time_points: int, interval_s: float,
                 positions_xy_um: tuple | None = None) -> useq.MDASequence:
    """The useq sequence of the requested acquisition (absolute z grid of the plan)."""
    z = plan.requested_z()
    kwargs: dict[str, Any] = {
        "time_plan": {"interval": interval_s, "loops": time_points},
        "z_plan": {"bottom": float(z[0]), "top": float(z[-1]), "step": plan.z_step_um},
        "axis_order": "tpcz",
    }
    if positions_xy_um:
        kwargs["stage_positions"] = [(x, y) for x, y in positions_xy_um]
    return useq.MDASequence(**kwargs)
