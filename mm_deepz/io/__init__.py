"""OME-Zarr recording of measured, virtual and reference data."""

from .claim import ContainerLockedError, OutputExistsError, is_container, next_free_output
from .layout import ImageInfo, MissingImageError, image_array, image_group_path, image_names, n_positions
from .recorder import (
    STACK_IMAGE,
    ContainerChangedError,
    Geometry,
    NotAContainerError,
    Recorder,
    StorageError,
    open_container,
    read_progress,
    record_key_parts,
)

__all__ = [
    "STACK_IMAGE",
    "ContainerChangedError",
    "ContainerLockedError",
    "Geometry",
    "ImageInfo",
    "MissingImageError",
    "NotAContainerError",
    "OutputExistsError",
    "Recorder",
    "StorageError",
    "image_array",
    "image_group_path",
    "image_names",
    "is_container",
    "n_positions",
    "next_free_output",
    "open_container",
    "read_progress",
    "record_key_parts",
]
