"""A physically simulated fluorescence microscope for Micro-Manager (pymmcore-plus UniMMCore)."""

from .core import DEMO_CONFIG, ConfigError, SimCore, load_demo_core, world_of
from .optics import Modality, Optics
from .phantoms import Phantom, beads, make_phantom, sheet, worm
from .world import CameraModel, SimWorld, active_world, use_world

__all__ = [
    "DEMO_CONFIG",
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
    "sheet",
    "use_world",
    "world_of",
    "worm",
]
