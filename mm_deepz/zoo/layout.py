"""What an mm-deepz bioimage.io package holds: file names and tensor names both sides agree on."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

#: the package's files (inside the zip, beside rdf.yaml)
WEIGHTS = "weights.pt"
TORCHSCRIPT = "weights_torchscript.pt"
ARCHITECTURE = "deepz_unet.py"
CARD = "mm_deepz_card.json"
DOCUMENTATION = "README.md"
COVER = "cover.png"
#: the tensors: measured planes and their DPMs in, the virtual image out
PLANES, DPM, OUTPUT = "planes", "dpm", "virtual"
#: the architecture's callable (:class:`mm_deepz.model.unet.DeepZPackaged`) and its weights' key prefix
CALLABLE = "DeepZPackaged"
PREFIX = "unet."
#: the key of the package's ``config`` that marks a package made by mm-deepz
CONFIG_KEY = "mm_deepz"
#: the package layout this mm-deepz writes and reads
PACKAGE_VERSION = 1


def architecture_kwargs(card: Any) -> dict[str, Any]:
    """The callable's keyword arguments for a model card (architecture and trained range)."""
    fields = {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(card.architecture).items()}
    if fields["kind"] == "unet":  # named without it, as in the packages made before the encode-once generator
        del fields["kind"]
    return {**fields, "z_range_um": card.z_range_um}
