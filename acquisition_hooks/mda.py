"""The same Deep-Z capture for pymmcore-plus users: an MDA engine driven by :class:`DeepZHooks`.

pymmcore-plus runs the requested ``useq`` sequence (:func:`~acquisition_hooks.events.sequence_for`)
natively. Each z-stack event is rewritten with the very decision the pycromanager path gets
(:meth:`DeepZHooks.rewrite`, so the plan, the toggle and the light settings are one
implementation), written as a useq event (:meth:`Capture.useq_event`), and every frame goes to
``DeepZHooks.image_process_fn``.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterable, Iterator
from typing import Any

import numpy as np
import useq
from pymmcore_plus.mda import MDAEngine

from .events import DEEPZ_AXIS, INPUT
from .hooks import DeepZHooks

#: the most bytes of frames waiting to be written before the camera waits for the writer
FRAME_QUEUE_BYTES = 512 * 2**20


class DeepZMDAEngine(MDAEngine):
    """pymmcore-plus MDA engine that captures z-stacks the Deep-Z way."""

    def __init__(self, mmc: Any, hooks: DeepZHooks):
        # no hardware sequencing: it reads events ahead, so a time point's capture mode would be
        # decided before the previous one was imaged (and anchor events are not sequenceable anyway)
        super().__init__(mmc, use_hardware_sequencing=False)
        self.hooks = hooks
        #: frames waiting for the writer thread (made at the first frame, sized by its bytes), as
        #: :meth:`DeepZHooks.frame`'s arguments: kind, t, z index, position, image
        self._frames: queue.Queue[tuple[str, int, int, int, np.ndarray] | None] | None = None
        self._writer: threading.Thread | None = None

    def event_iterator(self, events: Iterable[useq.MDAEvent]) -> Iterator[useq.MDAEvent]:
        """The requested events, rewritten by the hooks (blind-check reference stacks included)."""
        yield from super().event_iterator(self._deepz_events(events))

    def _deepz_events(self, events: Iterable[useq.MDAEvent]) -> Iterator[useq.MDAEvent]:
        for event in events:
            if "z" not in event.index:
                yield event
                continue
            if self.hooks.state.stopped:
                continue
            t, zi, channel = event.index.get("t", 0), event.index["z"], event.index.get("c", INPUT)
            if (capture := self.hooks.rewrite(t, zi, channel)) is not None:
                yield capture.useq_event(event)

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
