"""The PyQt5 Deep-Z panel: toggle virtual z-stacking and watch measured and virtual data live."""

from .panel import DeepZPanel, DeepZWindow
from .runner import AcquisitionRunner, LiveStats

__all__ = ["AcquisitionRunner", "DeepZPanel", "DeepZWindow", "LiveStats"]
