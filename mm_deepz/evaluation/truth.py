"""Where the true neurons of a scored specimen come from: truth providers, registered by the package
that made the specimen through the entry-point group ``mm_deepz.truth`` (the simulator registers its
worms': ``simulators.truth:worm_truth``), so the evaluation itself knows no simulator.

A provider takes the pair's specimen record (its metadata's ``spec``), the frame shape (y, x), the
stack's z span (µm) and an edge margin (µm), and gives the neurons inside (``z_um``, ``y_um``, ``x_um``,
``brightness`` arrays), or None for a specimen it did not make.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from importlib.metadata import entry_points
from typing import Any

import numpy as np

logger = logging.getLogger(__name__)

TruthProvider = Callable[
    [dict[str, Any], tuple[int, int], tuple[float, float], float], "dict[str, np.ndarray] | None"
]


@functools.cache
def providers() -> tuple[tuple[str, TruthProvider], ...]:
    """The registered truth providers, by name."""
    return tuple((ep.name, ep.load()) for ep in entry_points(group="mm_deepz.truth"))


def true_neurons(
    spec: dict[str, Any], shape: tuple[int, int], z_span_um: tuple[float, float], margin_um: float = 0.0
) -> tuple[dict[str, np.ndarray], str] | None:
    """The true neurons of the specimen ``spec`` describes, and the name of the provider that knows
    them; None when no provider does (real data: scored against the scanned reference instead)."""
    for name, provider in providers():
        if (found := provider(spec, shape, z_span_um, margin_um)) is not None:
            return found, name
    return None
