"""What the pieces of one acquisition's hooks share: its counters and why it must stop.

The acquisition thread, pycromanager's image thread and the model's thread all update them,
so every change goes through a lock.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from psygnal import EmitLoopError

from mm_deepz.errors import StorageError

logger = logging.getLogger(__name__)


@dataclass
class HookStats:
    """Counters the CLI summary and the panel show."""

    planes_measured: int = 0
    planes_requested: int = 0
    planes_skipped: int = 0
    time_points_deepz: int = 0
    time_points_full: int = 0
    virtual_done: int = 0
    virtual_missing: int = 0
    #: stacks the model could not take when their planes arrived, made later from the planes on disk
    virtual_deferred: int = 0
    reference_planes: int = 0
    rejected_frames: int = 0
    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    #: the counters are updated from the acquisition, hook and model threads
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def count(self, name: str, n: int = 1) -> int:
        """Add ``n`` to the counter ``name`` and return its new value (thread-safe)."""
        with self._lock:
            value: int = getattr(self, name) + n
            setattr(self, name, value)
            return value

    def note(self, kind: str, message: str) -> None:
        """Add a message to ``errors`` or ``warnings`` (thread-safe)."""
        with self._lock:
            getattr(self, kind).append(message)


class RunState:
    """The counters of one acquisition and, once set, why it must end early."""

    def __init__(self) -> None:
        self.stats = HookStats()
        #: why the acquisition must end early (a storage failure, an abort); None while it runs
        self.stop_reason: str | None = None
        #: set once writing failed: nothing more is made (not even the backlog)
        self.storage_failed = False
        self._lock = threading.Lock()
        self._listeners: list[Callable[[str], None]] = []

    def on_stop(self, listener: Callable[[str], None]) -> None:
        """Call ``listener(reason)`` once, from the thread that stops the run."""
        self._listeners.append(listener)

    @property
    def stopped(self) -> bool:
        """Whether the acquisition must end early."""
        return self.stop_reason is not None

    def stop(self, reason: str) -> None:
        """End the acquisition early; the first reason is kept and the listeners are told once."""
        with self._lock:
            if self.stop_reason is not None:
                return
            self.stop_reason = reason
        for listener in self._listeners:
            listener(reason)

    def fail_storage(self, error: StorageError) -> None:
        """Nothing more can be stored: report it once and stop the acquisition."""
        self.storage_failed = True
        if self.stop_reason is None:
            self.stats.note("errors", str(error))
            logger.error("%s Stopping the acquisition.", error)
        self.stop(str(error))

    def notify(self, callback: Callable[..., object] | None, *args: Any) -> None:
        """Call a display callback; its failure is logged (the first one also noted), never the run's."""
        if callback is None:
            return
        try:
            callback(*args)
        except Exception as error:
            # a signal's slot that failed: psygnal wraps its error
            e = error.__cause__ if isinstance(error, EmitLoopError) and error.__cause__ is not None else error
            if not any(err.startswith("display callback") for err in self.stats.errors):
                self.stats.note("errors", f"display callback failed: {type(e).__name__}: {e}")
            logger.exception("A display callback failed; the acquisition goes on")
