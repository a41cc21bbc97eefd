"""What a run tells those who watch it (the CLI's progress, the panel, benchmarks): one group of
signals, owned by the run (:attr:`DeepZAcquisition.events`), as pymmcore-plus's runners have theirs.

Each signal is emitted from the thread where it happens (the camera's, the model's); a slot that fails
is logged and noted in the run's errors, never the run's failure. Connect before the run starts.
"""

from __future__ import annotations

from psygnal import Signal, SignalGroup


class RunSignals(SignalGroup):
    """The signals of one Deep-Z run."""

    #: a measured plane was written: kind (``anchor``, ``full``, ``reference``), time point, z index on
    #: the requested grid, the image
    image = Signal(str, int, int, object)
    #: a virtual stack was written: time point, the :class:`~mm_deepz.engine.VirtualStack`
    virtual = Signal(int, object)
    #: a blind check was scored: time point, position, the metrics as recorded
    blind_check = Signal(int, int, dict)
