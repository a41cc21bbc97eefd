"""Errors a user can act on; each names the problem and what to do."""


class DeepZError(Exception):
    """Base class of mm-deepz errors."""


class ModelFileError(DeepZError):
    """A model file is missing, truncated, corrupt or of an unknown format version."""


class ModelMismatchError(DeepZError):
    """A model does not fit the data: pixel size, number of input planes or plane offsets."""


class ZRangeError(DeepZError):
    """Requested virtual planes lie outside the range the model was trained for."""


class InputError(DeepZError):
    """Input planes of the wrong shape, dtype or content."""


class WorkerBusy(DeepZError):
    """The inference queue is full: the model is slower than the acquisition."""


class WorkerClosed(DeepZError):
    """The inference worker was stopped; no more bundles are accepted."""


class InferenceError(DeepZError):
    """The model failed on a bundle (raised, or produced NaN/Inf); measured data is unaffected."""


class SettingsError(DeepZError):
    """Acquisition settings outside their valid range (time points, interval, power ...)."""


class ReportError(DeepZError):
    """Evaluation reports that cannot be compared: missing, not a report, or other stacks scored."""


class DeviceError(DeepZError):
    """The compute device asked for (``cuda:N``) is not on this computer."""


class HardwareError(DeepZError):
    """The microscope lacks what the run needs (a config group, a preset, a property)."""


class StorageError(DeepZError):
    """Writing to the output failed (disk full, path unwritable)."""


class ContainerChangedError(StorageError):
    """The container was deleted, moved or replaced while this run wrote it."""
