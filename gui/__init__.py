"""The PyQt5 Deep-Z panel: toggle virtual z-stacking and watch measured and virtual data live.

The names below are imported on first use: the command line registers the panel's commands
(:mod:`gui.cli`) without loading Qt, torch or the acquisition.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from mm_deepz.lazy import lazy_exports

if TYPE_CHECKING:
    from .panel import DeepZPanel
    from .runner import AcquisitionRunner, LiveStats
    from .window import DeepZWindow

#: public name -> the module that defines it
_WHERE = {
    "DeepZPanel": ".panel",
    "DeepZWindow": ".window",
    "AcquisitionRunner": ".runner",
    "LiveStats": ".runner",
}

__getattr__ = lazy_exports(__name__, _WHERE)

__all__ = ["AcquisitionRunner", "DeepZPanel", "DeepZWindow", "LiveStats"]
