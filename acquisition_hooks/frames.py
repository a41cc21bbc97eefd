"""Which measured frames belong together, and when a time point's frames are all in.

:class:`FrameRouter` keeps no images on disk and knows no container: it counts the frames of
each (time point, position) as they arrive (so the next time point can be submitted) and
gathers the planes of each stack until it is whole (so its input planes can go to the model).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass

import numpy as np

#: an input frame with more than this fraction of its pixels at a camera's full scale is flagged
SATURATION_WARN_FRACTION = 0.001
#: full-scale values of 8- to 16-bit cameras
FULL_SCALE = frozenset(2**bits - 1 for bits in range(8, 17))
#: acquired time points kept until a runner waits for them: pycromanager's runner claims each in turn,
#: up to two blocks of time points behind the camera (a block: up to 0.25 s of exposures,
#: :data:`~.events.SEQUENCE_S`, 5000 time points of 50 µs); a runner that never waits (pymmcore-plus's
#: MDA) leaves at most this many behind (a few MB)
KEPT_TIME_POINTS = 10_000


def saturated_fraction(image: np.ndarray) -> float:
    """Fraction of pixels at the full scale of an 8- to 16-bit camera (0 if the maximum is below it)."""
    top = int(image.max()) if image.size else 0
    return float(np.count_nonzero(image == top)) / image.size if top in FULL_SCALE else 0.0


@dataclass(frozen=True)
class WholeStack:
    """Every plane of one stack (``kind`` ``anchor``, ``full`` or ``reference``) of ``(t, p)`` arrived."""

    kind: str
    t: int
    p: int
    #: plane index -> the image (input planes only; the other planes are on disk already)
    planes: dict[int, np.ndarray | None]
    #: the plane indices that were written (the others did not fit the container)
    written: tuple[int, ...]
    #: this completes the measured planes of time point ``t`` at every position
    completes_time_point: bool

    @property
    def intact(self) -> bool:
        """Every plane was written."""
        return len(self.written) == len(self.planes)


class FrameRouter:
    """Arrival and completion of the frames of one acquisition (thread-safe).

    ``n_z`` planes make a full or reference stack, the planes at indices ``anchors`` an input
    stack, and ``n_positions`` stage positions a time point.
    """

    def __init__(self, *, n_z: int, anchors: tuple[int, ...], n_positions: int) -> None:
        self.n_z = n_z
        self.anchors = anchors
        self.n_positions = n_positions
        self._arrival = threading.Condition()
        self._stopped = False
        self._arrived: dict[tuple[int, int], int] = {}  # (t, p) -> frames of it that arrived
        #: t -> positions whose frames all arrived, oldest first
        self._acquired_t: OrderedDict[int, set[int]] = OrderedDict()
        self._lock = threading.Lock()
        self._planes: dict[tuple[str, int, int], dict[int, np.ndarray | None]] = {}
        self._rejected: set[tuple[str, int, int, int]] = set()
        self._measured_t: dict[int, set[int]] = {}  # t -> positions written (for the counters)

    def expected(self, kind: str) -> int:
        """How many planes make a stack of ``kind``."""
        return len(self.anchors) if kind == "anchor" else self.n_z

    # -- arrival: when the next time point may be submitted ------------------------------
    def arrived(self, kind: str, t: int, p: int) -> None:
        """A camera frame of ``(t, p)`` arrived (before it is written)."""
        with self._arrival:
            n = self._arrived.get((t, p), 0) + 1
            if n < self.expected(kind):
                self._arrived[t, p] = n
                return
            self._arrived.pop((t, p), None)
            self._acquired_t.setdefault(t, set()).add(p)
            self._forget(t - KEPT_TIME_POINTS)
            self._arrival.notify_all()

    def _forget(self, t: int) -> None:
        """Forget the acquired time points up to ``t`` (held: ``_arrival``)."""
        while self._acquired_t and next(iter(self._acquired_t)) <= t:
            self._acquired_t.popitem(last=False)

    def stop(self, _reason: str = "") -> None:
        """Wake every thread waiting in :meth:`wait_acquired`: nothing more arrives."""
        with self._arrival:
            self._stopped = True
            self._arrival.notify_all()

    def wait_acquired(self, t: int, timeout: float) -> bool:
        """Block until every camera frame of time point ``t`` (all positions) has arrived, or
        :meth:`stop`; True if ``t`` was acquired. Writing them may still be under way."""
        n = self.n_positions
        with self._arrival:
            self._arrival.wait_for(lambda: len(self._acquired_t.get(t, ())) >= n or self._stopped, timeout)
            if len(self._acquired_t.get(t, ())) < n:
                return False  # not yet: a later wait may still see it complete
            self._acquired_t.pop(t)
            self._forget(t)  # a runner waits in order: the earlier ones are over
            return True

    # -- completion: when a stack's planes are all written ---------------------------------
    def reject(self, kind: str, t: int, p: int, zi: int) -> None:
        """Plane ``zi`` did not fit the container (kept aside): its stack is not whole."""
        with self._lock:
            self._rejected.add((kind, t, p, zi))

    def collect(self, kind: str, t: int, p: int, zi: int, image: np.ndarray | None) -> WholeStack | None:
        """Add plane ``zi`` (written or rejected); the stack once its last plane is in, else None.

        Only input planes (``anchor``) are kept in memory, for the model.
        """
        with self._lock:
            planes = self._planes.setdefault((kind, t, p), {})
            planes[zi] = image if kind == "anchor" else None
            if len(planes) < self.expected(kind):
                return None
            del self._planes[(kind, t, p)]
            rejected = {i for i in planes if (kind, t, p, i) in self._rejected}
            self._rejected -= {(kind, t, p, i) for i in rejected}
            completes = False
            if kind != "reference":
                done = self._measured_t.setdefault(t, set())
                done.add(p)
                completes = len(done) == self.n_positions
                if completes:
                    del self._measured_t[t]
        return WholeStack(kind, t, p, planes, tuple(sorted(set(planes) - rejected)), completes)

    def input_planes(self, stack: WholeStack) -> np.ndarray:
        """The input planes of a whole ``anchor`` stack, in the plan's order (n, y, x); one plane is
        handed on as it came, not copied (a 2048² frame's copy took the frame writer ~1 ms)."""
        planes = [plane for i in self.anchors if (plane := stack.planes[i]) is not None]
        return planes[0][None] if len(planes) == 1 else np.stack(planes)
