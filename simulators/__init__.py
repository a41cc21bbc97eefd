"""A physically simulated fluorescence microscope for Micro-Manager (pymmcore-plus UniMMCore).

The physics (optics, phantoms, rendering, training data) needs only numpy and scipy; the
Micro-Manager layer (:mod:`simulators.core`, pymmcore-plus) is imported on first use, so
training data can be simulated where no Micro-Manager core is installed (a GPU machine). Every
public name is imported on first use.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

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
    from .optics import Modality, Optics
    from .phantoms import Phantom, beads, make_phantom, sheet, worm
    from .world import CameraModel, SimWorld, active_world, use_world

#: each public name -> its module, imported on first use (the simulator's commands, registered with
#: ``mm-deepz``, load this package whenever the command line starts: it stays free of scipy there)
_MODULES = {
    **dict.fromkeys(
        (
            "DEMO_CONFIG",
            "MM_DEMO_CONFIG",
            "ConfigError",
            "SimCore",
            "load_demo_core",
            "release_core",
            "world_of",
        ),
        "core",
    ),
    **dict.fromkeys(("Modality", "Optics"), "optics"),
    **dict.fromkeys(("Phantom", "beads", "make_phantom", "sheet", "worm"), "phantoms"),
    **dict.fromkeys(("CameraModel", "SimWorld", "active_world", "use_world"), "world"),
}


def __getattr__(name: str) -> Any:
    if (module := _MODULES.get(name)) is not None:
        return getattr(importlib.import_module(f".{module}", __name__), name)
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
