"""The same Deep-Z capture for pymmcore-plus users: an MDA engine driven by :class:`DeepZHooks`.

pymmcore-plus runs the requested ``useq`` sequence (:func:`~acquisition_hooks.events.sequence_for`)
natively. Each z-stack event is rewritten with the very decision the pycromanager path gets
(:meth:`DeepZHooks.rewrite`, so the plan, the toggle and the light settings are one
implementation), written as a useq event (:meth:`Capture.useq_event`), and every frame goes to
:meth:`DeepZHooks.frame` on a writer thread of its own.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Generator, Iterable, Iterator
from typing import Any, Literal

import numpy as np
import useq
from pymmcore_plus.core import SequencedEvent, iter_sequenced_events
from pymmcore_plus.mda import MDAEngine

from .events import DEEPZ_AXIS, INPUT, joins_block, useq_event_at, useq_time_point
from .hooks import DeepZHooks

#: the most bytes of frames waiting to be written before the camera waits for the writer
FRAME_QUEUE_BYTES = 512 * 2**20
#: what an engine's sequence hands pymmcore-plus's runner: frames (image, event, metadata), and
#: the runner's word back (``cancel``, ``pause`` or nothing)
Frames = Generator[tuple[np.ndarray, useq.MDAEvent, Any] | None, Literal["cancel", "pause"] | None, None]


class DeepZMDAEngine(MDAEngine):
    """pymmcore-plus MDA engine that captures z-stacks the Deep-Z way.

    Time points due at the same moment (as fast as possible) are handed to pymmcore-plus in blocks of
    up to :data:`~.events.SEQUENCE_S` of exposure, which it runs as one camera sequence where the hardware
    allows (a real camera's, or the simulator's), as it does a plain time-lapse: its per-event work
    (setting up, logging and tearing down each event, about 4 ms) would otherwise take a fast camera's
    frame rate down to 0.7 of a plain run's. A time point's capture is decided when its block is
    made, so a toggle applies after the block under way; a time point with time to spare is a block
    of its own, decided at its time.
    """

    def __init__(self, mmc: Any, hooks: DeepZHooks):
        super().__init__(mmc, use_hardware_sequencing=True)
        self.hooks = hooks
        #: frames waiting for the writer thread (made at the first frame, sized by its bytes), as
        #: :meth:`DeepZHooks.frame`'s arguments: kind, t, z index, position, image
        self._frames: queue.Queue[tuple[str, int, int, int, np.ndarray] | None] | None = None
        self._writer: threading.Thread | None = None

    def event_iterator(self, events: Iterable[useq.MDAEvent]) -> Iterator[useq.MDAEvent]:
        """The requested sequence's events rewritten by the hooks (blind-check reference stacks
        included), in blocks pymmcore-plus may sequence."""
        if not isinstance(events, useq.MDASequence) or not isinstance(events.time_plan, useq.TIntervalLoops):
            raise TypeError("The Deep-Z MDA engine runs the time-lapse of sequence_for(), not other events.")
        sequence, block, block_ms, first = events, list[useq.MDAEvent](), 0.0, 0
        for t in range(events.time_plan.loops):
            if block and not joins_block(sequence, first, t, block_ms):
                yield from iter_sequenced_events(self.mmcore, block)
                block, block_ms = [], 0.0
            if self.hooks.state.stopped:
                return
            taken = self.time_point(sequence, t)
            first = first if block else t
            block += taken
            block_ms += sum(e.exposure or 0.0 for e in taken)
        yield from iter_sequenced_events(self.mmcore, block)

    def time_point(self, sequence: useq.MDASequence, t: int) -> list[useq.MDAEvent]:
        """Time point ``t``'s requested events as the hooks rewrite them (decided now)."""
        taken = []
        for event in useq_time_point(sequence):
            capture = self.hooks.rewrite(t, event.index["z"], event.index.get("c", INPUT))
            if capture is not None:
                taken.append(capture.useq_event(useq_event_at(event, sequence, t)))
        return taken

    def exec_sequenced_event(self, event: SequencedEvent) -> Frames:
        """pymmcore-plus's camera sequence, and then the frames the camera exposed before a stop ended
        it, which pymmcore-plus leaves in the buffer (light that reached the specimen is data)."""
        frames = super().exec_sequenced_event(event)
        taken, signal = 0, None
        while True:
            try:
                payload = frames.send(signal)
            except StopIteration:
                break
            taken += payload is not None
            signal = yield payload
        core = self.mmcore
        while taken < len(event.events) and core.getRemainingImageCount():
            image = core.popNextImage()
            sub_event = event.events[taken]
            yield image, sub_event, self.get_frame_metadata(sub_event)
            taken += 1

    def on_frame(self, image: Any, event: useq.MDAEvent, meta: Any = None) -> None:
        """Connect to ``core.mda.events.frameReady``: hands Deep-Z frames to the hooks, on the frame
        writer's thread (the camera goes on while a frame is written; it waits only when
        :data:`FRAME_QUEUE_BYTES` of frames are waiting, and no frame is ever dropped)."""
        if DEEPZ_AXIS not in event.metadata:
            return
        image = np.asarray(image)
        if self._frames is None:
            self._frames = queue.Queue(maxsize=max(2, FRAME_QUEUE_BYTES // max(image.nbytes, 1)))
            self._writer = threading.Thread(target=self._write_frames, name="mm-deepz-frames", daemon=True)
            self._writer.start()
        t, zi, p = (event.index.get(axis, 0) for axis in "tzp")
        self._frames.put((event.metadata[DEEPZ_AXIS], t, zi, p, image))

    def _write_frames(self) -> None:
        """The frame writer: every frame to the hooks, in the camera's order (they never raise)."""
        assert self._frames is not None
        while (item := self._frames.get()) is not None:
            self.hooks.frame(*item)

    def finish_frames(self) -> None:
        """Wait until every frame handed over is written (the run's end)."""
        if self._frames is not None and self._writer is not None:
            self._frames.put(None)
            self._writer.join()
            self._frames = self._writer = None
