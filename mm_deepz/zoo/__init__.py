"""bioimage.io model packages: export a Deep-Z model to the model zoo's format and load one back.

A package (a ``.zip``, or its unpacked folder) holds the weights twice (a PyTorch state dict with
its architecture source, :mod:`mm_deepz.model.unet`, and TorchScript for Fiji / deepImageJ), test
inputs and outputs, a cover, the documentation and the mm-deepz model card, so that ``acquire``,
``infer`` and the panel take it as ``--model`` exactly as they take a ``.pt`` model file.
"""

from .export import export_package
from .load import is_package, load_package

__all__ = ["export_package", "is_package", "load_package"]
