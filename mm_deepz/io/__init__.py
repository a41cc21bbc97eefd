"""OME-Zarr recording of measured, virtual and reference data."""

from ..errors import ContainerChangedError, StorageError
from .claim import ContainerLockedError, OutputExistsError, OutputPathError, is_container, next_free_output
from .layout import (
    ImageInfo,
    MissingImageError,
    array_at,
    group_at,
    image_array,
    image_group_path,
    image_names,
    json_attr,
    n_positions,
    recorded,
)
from .record import record_key_parts
from .recorder import NotAContainerError, Recorder, open_container, read_progress
from .schema import STACK_IMAGE, Geometry
from .validate import DamagedContainerError

__all__ = [
    "STACK_IMAGE",
    "ContainerChangedError",
    "ContainerLockedError",
    "DamagedContainerError",
    "Geometry",
    "ImageInfo",
    "MissingImageError",
    "NotAContainerError",
    "OutputExistsError",
    "OutputPathError",
    "Recorder",
    "StorageError",
    "array_at",
    "group_at",
    "image_array",
    "image_group_path",
    "image_names",
    "is_container",
    "json_attr",
    "n_positions",
    "next_free_output",
    "open_container",
    "read_progress",
    "record_key_parts",
    "recorded",
]
