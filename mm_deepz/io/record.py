"""The run record: the root group's ``mm_deepz`` attributes, what a run is and how far it got.

``attrs`` describe the run (plan, model, versions, layout, dose, summary); ``state`` is its progress
(:data:`STATE_KEYS`: complete time points per image, the planes measured, virtual stacks missing with
their reason or still to make, blind checks, warnings, frames kept aside, each frame's time). The
recorder holds its lock around every call.
"""

from __future__ import annotations

import time
from collections import deque
from pathlib import Path
from typing import Any

import numpy as np
import zarr

from .guard import WriteGuard
from .layout import IMAGES, recorded
from .shards import stored_chunks

#: root attributes that record progress (the rest describe the run)
STATE_KEYS = (
    "completed",
    "virtual_missing",
    "virtual_pending",
    "blind_checks",
    "planes_measured",
    "finished",
    "rejected",
    "warnings",
    "frame_times_s",
)
#: the parts of the record that grow with the run, which hold only what the record makes itself
#: (time points, plane indices, rounded clock readings: always finite), so :func:`json_safe` skips them
GROWING_KEYS = ("completed", "planes_measured", "frame_times_s")

#: while time points stream in, the run record is rewritten at most this often, s. It holds every
#: frame's time, so it grows with the run: rewritten at each time point it took 4.6 ms at 200 time
#: points and 66 ms at 3000 (a third of the camera path's time at 512² already at 150). What a kill
#: loses of it, the measured chunks on disk still say (`mm-deepz info` names them, `infer` records them)
RECORD_EVERY_S = 1.0
#: and its writes take at most this share of the time: as the record grows they space out (43 ms a
#: write at 3000 time points, most of it zarr copying and indenting the attributes, which hold the GIL)
RECORD_SHARE = 0.05
#: but never less often than this, s (one write slowed by the disk does not silence the record)
RECORD_AT_LEAST_EVERY_S = 10.0


def json_safe(value: Any) -> Any:
    """``value`` with non-finite floats as None: JSON has no NaN or infinity, and readers reject them."""
    if isinstance(value, float):
        return value if np.isfinite(value) else None
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    return value


def per_position(name: str, p: int, several: bool) -> str:
    """``name`` with one XY position, ``name/p<p>`` with several: image groups and the keys of
    per-time-point records alike."""
    return f"{name}/p{p}" if several else name


def record_key_parts(key: str) -> tuple[int, int]:
    """(time point, position) of a per-time-point record key (``"3"`` or ``"3/p1"``)."""
    t, _, p = key.partition("/p")
    return int(t), int(p or 0)


def measured_not_recorded(path: str | Path, record: dict[str, Any]) -> list[int]:
    """Time points whose measured planes are on disk (in the measured image's shards) but not in
    ``record`` (the run's, as read): what a kill between a plane's write and the record's left, or a
    record write that failed (a full disk). Read-only; ``mm-deepz infer`` records them."""
    recorded_t = {record_key_parts(key)[0] for key in record.get("planes_measured") or {}}
    found: set[int] = set()
    for folder in (record.get("images") or {}).get("measured", []):
        array = Path(path) / folder / "0"
        if (array / "zarr.json").is_file():
            found |= {chunk[0] for chunk in stored_chunks(zarr.open_array(array, mode="r"))[0]}
    return sorted(found - recorded_t)


class RunRecord:
    """The record of one run, as this process holds and writes it."""

    def __init__(
        self,
        root: zarr.Group,
        guard: WriteGuard,
        attrs: dict[str, Any],
        state: dict[str, Any],
        n_positions: int,
        done: dict[tuple[str, int], set[int]],
    ):
        self.root = root
        self.guard = guard
        #: what the run is
        self.attrs = attrs
        #: how far it got
        self.state = state
        self.n_positions = n_positions
        self._done = done  # (image, t) -> positions written
        #: when each measured time point was complete (time.time), for the cadence
        self.times: dict[int, float] = {}
        self._t0 = time.time()
        self._written_at = 0.0  # time.monotonic() of the last write
        self._every_s = RECORD_EVERY_S  # the least time between writes that can wait
        #: changes not written yet (writes that could wait, and waited)
        self.unwritten = False
        #: frames written and when, not yet in ``state`` (appended by the camera's thread without a lock)
        self._arrived: deque[tuple[str, str, int, float]] = deque()

    @classmethod
    def new(cls, root: zarr.Group, guard: WriteGuard, attrs: dict[str, Any], n_positions: int) -> RunRecord:
        """The record of a run about to start (not written yet: :meth:`store`)."""
        state: dict[str, Any] = {
            "completed": {k: [] for k in IMAGES},
            "virtual_missing": {},
            "blind_checks": {},
            "planes_measured": {},
            "finished": False,
            "frame_times_s": {},
        }
        described = {k: v for k, v in json_safe(attrs).items() if k not in STATE_KEYS}
        return cls(root, guard, described, state, n_positions, {})

    @classmethod
    def read(cls, root: zarr.Group, guard: WriteGuard, n_positions: int) -> RunRecord:
        """The record of a run written earlier, as its container holds it."""
        attrs = recorded(root)
        state = {k: attrs.pop(k) for k in list(attrs) if k in STATE_KEYS}
        state.setdefault("frame_times_s", {})
        done = {
            (name, t): set(range(n_positions)) for name, times in state["completed"].items() for t in times
        }
        return cls(root, guard, attrs, state, n_positions, done)

    def key(self, t: int, p: int) -> str:
        """Key of a per-time-point record (planes measured, missing virtual stack, blind check)."""
        return per_position(str(t), p, self.n_positions > 1)

    # -- progress ------------------------------------------------------------------
    def complete(self, image: str, t: int, p: int, planes: list[int] | None = None) -> bool:
        """Position ``p`` of time point ``t`` of ``image`` is written (``planes``: the grid planes measured);
        True once every position of it is (then ``completed`` lists it)."""
        positions = self._done.setdefault((image, t), set())
        positions.add(p)
        if image == "measured" and planes is not None:
            self.state["planes_measured"][self.key(t, p)] = planes
        if image == "virtual":  # made at last (after the run, by `mm-deepz infer`)
            self.state.get("virtual_pending", {}).pop(self.key(t, p), None)
            self.state["virtual_missing"].pop(self.key(t, p), None)
        if len(positions) < self.n_positions:
            return False
        done = self.state["completed"][image]
        if t not in done:
            done.append(t)
            done.sort()
        if image == "measured":
            self.times[t] = time.time()
        return True

    def is_complete(self, image: str, t: int, p: int) -> bool:
        """Whether position ``p`` of time point ``t`` of ``image`` is written."""
        return p in self._done.get((image, t), ())

    def virtual_missing(self, t: int, p: int, reason: str) -> None:
        """The virtual stack of ``t`` will not exist, for ``reason``."""
        self.state["virtual_missing"][self.key(t, p)] = reason
        self.state.setdefault("virtual_pending", {}).pop(self.key(t, p), None)

    def virtual_pending(self, t: int, p: int) -> None:
        """The virtual stack of ``t`` is still to make from its planes on disk."""
        self.state.setdefault("virtual_pending", {})[self.key(t, p)] = "waiting for the model"

    def frame_time(self, image: str, t: int, p: int, plane: int) -> None:
        """A frame of ``image`` (its ``plane``) was written now. Safe from any thread without the
        recorder's lock: it joins the record at its next write or read (:meth:`frame_times`)."""
        self._arrived.append((image, self.key(t, p), plane, round(time.time() - self._t0, 4)))

    def frame_times(self) -> dict[str, dict[str, dict[str, float]]]:
        """When each frame was written (s from the start), by image, time point and plane (with the
        recorder's lock held)."""
        times = self.state["frame_times_s"]
        while self._arrived:
            image, key, plane, when = self._arrived.popleft()
            times.setdefault(image, {}).setdefault(key, {})[str(plane)] = when
        return times  # type: ignore[no-any-return]

    def cadence(self) -> float | None:
        """The mean interval between complete measured time points (None: fewer than two)."""
        if len(self.times) < 2:
            return None
        ts = [self.times[k] for k in sorted(self.times)]
        return float((ts[-1] - ts[0]) / (len(ts) - 1))

    # -- writing -------------------------------------------------------------------
    def store(self) -> None:
        """Write the record as it is, unguarded (a new container's first write)."""
        self.frame_times()
        record = json_safe({k: v for k, v in {**self.attrs, **self.state}.items() if k not in GROWING_KEYS})
        self.root.attrs["mm_deepz"] = record | {k: self.state[k] for k in GROWING_KEYS if k in self.state}

    def write(self, soon: bool = False) -> bool:
        """Write the record; ``soon``: within :data:`RECORD_EVERY_S`, or later as the record grows, so
        that its writes take at most :data:`RECORD_SHARE` of the time, up to
        :data:`RECORD_AT_LEAST_EVERY_S` (a time point complete: the next write of the record, a flush,
        the finish or the close takes it along). Whether it was written now."""
        start = time.monotonic()
        if soon and start - self._written_at < self._every_s:
            self.unwritten = True
            return False
        with self.guard.guarded():
            self.store()
        self._written_at = time.monotonic()
        took = self._written_at - start
        self._every_s = min(RECORD_AT_LEAST_EVERY_S, max(RECORD_EVERY_S, took / RECORD_SHARE))
        self.unwritten = False
        return True
