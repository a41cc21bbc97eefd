"""mm-deepz: Deep-Z virtual z-stacking for Micro-Manager."""

__version__ = "0.1.0"
