"""OME-Zarr recording of measured, virtual and reference data."""

from .claim import ContainerLockedError, OutputExistsError, is_container, next_free_output
from .recorder import (
    ContainerChangedError,
    Geometry,
    NotAContainerError,
    Recorder,
    StorageError,
    open_container,
    read_progress,
    record_key_parts,
)

__all__ = ["ContainerChangedError", "ContainerLockedError", "Geometry", "NotAContainerError", "OutputExistsError",
           "Recorder", "StorageError", "is_container", "next_free_output", "open_container", "read_progress",
           "record_key_parts"]
