"""A physically simulated fluorescence microscope for Micro-Manager (pymmcore-plus UniMMCore).

The physics (optics, phantoms, rendering, training data) needs only numpy and scipy; the
Micro-Manager layer (:mod:`simulators.core`, pymmcore-plus) is imported on first use, so
training data can be simulated where no Micro-Manager core is installed (a GPU machine).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .optics import Modality, Optics
from .phantoms import Phantom, beads, make_phantom, sheet, worm
from .world import CameraModel, SimWorld, active_world, use_world

if TYPE_CHECKING:
    from .core import (
        DEMO_CONFIG,
        MM_DEMO_CONFIG,
        ConfigError,
        SimCore,
        load_demo_core,
        release_core,
        world_of,
    )

_CORE_NAMES = (
    "DEMO_CONFIG",
    "MM_DEMO_CONFIG",
    "ConfigError",
    "SimCore",
    "load_demo_core",
    "release_core",
    "world_of",
)


def __getattr__(name: str) -> Any:
    if name in _CORE_NAMES:
        from . import core

        return getattr(core, name)
    raise AttributeError(f"module 'simulators' has no attribute {name!r}")


__all__ = [
    "DEMO_CONFIG",
    "MM_DEMO_CONFIG",
    "CameraModel",
    "ConfigError",
    "Modality",
    "Optics",
    "Phantom",
    "SimCore",
    "SimWorld",
    "active_world",
    "beads",
    "load_demo_core",
    "make_phantom",
    "release_core",
    "sheet",
    "use_world",
    "world_of",
    "worm",
]
