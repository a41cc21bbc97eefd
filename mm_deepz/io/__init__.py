"""OME-Zarr recording of measured, virtual and reference data."""

from .recorder import Geometry, OutputExistsError, Recorder, StorageError, read_progress

__all__ = ["Geometry", "OutputExistsError", "Recorder", "StorageError", "read_progress"]
