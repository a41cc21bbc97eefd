"""The Deep-Z model file: weights plus everything needed to use them correctly.

One ``.pt`` file (a ``torch.save`` dict loaded with ``weights_only=True``, so opening a
model never executes code) holds:

- ``format`` / ``format_version``: what this is and which reader it needs;
- ``card``: a JSON string, the :class:`ModelCard` (architecture, input planes and their
  offsets, trained z-range, optics, modalities, normalization, provenance, metrics);
- ``state_dict``: the generator's weights.

:func:`load_model` refuses truncated, corrupt or foreign files and files from a newer
format; :meth:`DeepZModel.check_compatible` refuses data from other optics or with other
plane offsets.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import torch
from pydantic import ConfigDict, Field, field_validator, model_validator

from .errors import DeepZError, ModelFileError, ModelMismatchError
from .model import DeepZEncodeOnce, DeepZUNet, EncodeOnceConfig, UNetConfig, build_generator, generator_config
from .normalization import HIGH_PERCENTILE, LOW_PERCENTILE
from .settings import Settings

logger = logging.getLogger(__name__)

FORMAT = "mm-deepz-model"
FORMAT_VERSION = 1
#: relative tolerance on pixel size before a model is refused for other optics
PIXEL_SIZE_RTOL = 0.02
#: the largest input-plane offset or trained z range a card may name (µm)
MAX_OFFSET_UM = 1000.0
#: (low, high] of each optical value a card may name: pixel size (µm), NA, emission (µm), immersion index
OPTICS_LIMITS = {
    "pixel_size_um": (0.0, 100.0),
    "na": (0.0, 1.7),
    "wavelength_em_um": (0.2, 2.0),
    "immersion_index": (0.99, 2.0),
}
#: tolerance (µm) on the spacing of measured input planes
PLANE_OFFSET_ATOL_UM = 0.05


@dataclass(frozen=True)
class OpticsSpec:
    """Optics the model was trained for (µm); ``None`` where the training data did not say."""

    pixel_size_um: float
    na: float | None = None
    wavelength_em_um: float | None = None
    immersion_index: float | None = None


class ModelCard(Settings):
    """Everything about a model that is not a weight (validated when made, loaded or changed)."""

    model_config = ConfigDict(frozen=False, validate_assignment=True)
    error: ClassVar[type[DeepZError]] = ModelFileError
    what: ClassVar[str] = "model card"

    #: which generator and its sizes (``kind``: ``unet`` or ``encode-once``; cards without it are U-Nets)
    architecture: UNetConfig | EncodeOnceConfig
    input_offsets_um: tuple[float, ...]
    z_range_um: float
    optics: OpticsSpec
    input_modality: str = "widefield"
    target_modality: str = "confocal"
    normalization: dict[str, float] = Field(
        default_factory=lambda: {"low_percentile": LOW_PERCENTILE, "high_percentile": HIGH_PERCENTILE}
    )
    provenance: dict[str, Any] = Field(default_factory=dict)
    metrics: dict[str, Any] = Field(default_factory=dict)

    @field_validator("architecture", mode="before")
    @classmethod
    def _architecture(cls, value: Any) -> Any:
        return generator_config(value) if isinstance(value, dict) else value

    @model_validator(mode="after")
    def _check(self) -> ModelCard:
        if len(self.input_offsets_um) != self.architecture.n_planes:
            raise ValueError(
                f"{len(self.input_offsets_um)} plane offsets for a {self.architecture.n_planes}-plane network"
            )
        if not (math.isfinite(self.z_range_um) and 0 < self.z_range_um <= MAX_OFFSET_UM):
            raise ValueError(
                f"z_range_um must be positive and at most {MAX_OFFSET_UM:g}, got {self.z_range_um}"
            )
        offsets = self.input_offsets_um
        if not all(math.isfinite(v) and abs(v) <= MAX_OFFSET_UM for v in offsets):
            raise ValueError(
                f"input_offsets_um must be finite µm within ±{MAX_OFFSET_UM:g}, got {list(offsets)}"
            )
        if any(b <= a for a, b in itertools.pairwise(offsets)):
            raise ValueError(f"input_offsets_um must increase, got {list(offsets)}")
        for name, (low, high) in OPTICS_LIMITS.items():
            value = getattr(self.optics, name)
            if value is None and name != "pixel_size_um":
                continue
            if not (isinstance(value, (int, float)) and math.isfinite(value) and low < value <= high):
                raise ValueError(f"optics.{name} must be a number in ({low:g}, {high:g}], got {value}")
        norm = self.normalization
        low_p, high_p = (
            norm.get("low_percentile", LOW_PERCENTILE),
            norm.get("high_percentile", HIGH_PERCENTILE),
        )
        if not all(math.isfinite(v) for v in norm.values()) or not 0 <= low_p < high_p <= 100:
            raise ValueError(
                f"normalization percentiles must be finite with 0 <= low < high <= 100, got {norm}"
            )
        return self

    @property
    def n_planes(self) -> int:
        """Number of measured input planes."""
        return self.architecture.n_planes

    def to_json(self) -> str:
        """The card as JSON."""
        return json.dumps(self.model_dump(mode="json"), indent=2, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> ModelCard:
        """Parse a card written by :meth:`to_json` (:class:`ModelFileError` naming what is wrong)."""
        try:
            values = json.loads(text)
        except json.JSONDecodeError as e:
            raise ModelFileError(f"Invalid model card: not JSON ({e}).") from None
        if not isinstance(values, dict):
            raise ModelFileError("Invalid model card: not a JSON object.")
        return cls(**values)


@dataclass
class DeepZModel:
    """A generator with its card, as loaded from (or about to be saved to) a model file."""

    card: ModelCard
    network: DeepZUNet | DeepZEncodeOnce
    path: Path | None = None
    sha256: str | None = None

    @classmethod
    def new(cls, card: ModelCard, seed: int = 0) -> DeepZModel:
        """A freshly initialised (untrained) model for ``card``."""
        torch.manual_seed(seed)
        return cls(card, build_generator(card.architecture))

    def check_compatible(
        self, pixel_size_um: float | None = None, plane_offsets_um: tuple[float, ...] | None = None
    ) -> None:
        """Refuse data the model was not trained for (:class:`ModelMismatchError`)."""
        card = self.card
        if pixel_size_um is not None:
            expected = card.optics.pixel_size_um
            if abs(pixel_size_um - expected) > PIXEL_SIZE_RTOL * expected:
                raise ModelMismatchError(
                    f"The model was trained at {expected:g} µm/pixel but the data has {pixel_size_um:g} "
                    f"µm/pixel: use the objective/binning it was trained for, or train a model for this one."
                )
        if plane_offsets_um is not None:
            if len(plane_offsets_um) != card.n_planes:
                raise ModelMismatchError(
                    f"The model takes {card.n_planes} input plane(s), got {len(plane_offsets_um)}: "
                    f"set the number of input planes to {card.n_planes} or choose a "
                    f"{len(plane_offsets_um)}-plane model."
                )
            ref = [o - card.input_offsets_um[0] for o in card.input_offsets_um]
            got = [o - plane_offsets_um[0] for o in plane_offsets_um]
            if any(abs(a - b) > PLANE_OFFSET_ATOL_UM for a, b in zip(ref, got, strict=True)):
                raise ModelMismatchError(
                    f"Input planes must be spaced {ref} µm apart for this model, got {got} µm."
                )

    def save(self, path: str | Path) -> Path:
        """Write the model file (weights + card) and return its path."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        state = {k: v.detach().cpu().contiguous() for k, v in self.network.state_dict().items()}
        tmp = path.with_suffix(path.suffix + ".tmp")
        torch.save(
            {
                "format": FORMAT,
                "format_version": FORMAT_VERSION,
                "card": self.card.to_json(),
                "state_dict": state,
            },
            tmp,
        )
        tmp.replace(path)  # never leave a half-written model under the real name
        self.path, self.sha256 = path, file_sha256(path)
        return path


def file_sha256(path: str | Path) -> str:
    """SHA-256 of a file (hex)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def load_model(path: str | Path) -> DeepZModel:
    """Load a model file or a bioimage.io package exported by mm-deepz, refusing anything else."""
    path = Path(path)
    from .zoo.load import is_package, load_package

    if is_package(path):
        return load_package(path)
    if not path.is_file():
        raise ModelFileError(
            f"Model file not found: {path}. Train one with `mm-deepz train` or pass --model."
        )
    try:
        blob = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        # torch's own advice for files with Python objects (load with weights_only=False) would let
        # the file run code: it is never passed on
        text = str(e)
        if "Unsupported global" in text:
            reason = (
                "it holds Python objects besides weights, which mm-deepz never loads (they could run code)"
            )
        elif "weights only load failed" in text.lower():
            reason = "it is not a PyTorch weights file"
        else:
            reason = text.splitlines()[0] if text else type(e).__name__
        raise ModelFileError(
            f"{path} is not a readable mm-deepz model file: {reason}. Use a model made by "
            "`mm-deepz train`; if this one was, it is truncated or corrupt: copy it again."
        ) from e
    if not isinstance(blob, dict) or blob.get("format") != FORMAT:
        raise ModelFileError(f"{path} is not an mm-deepz model file.")
    version = blob.get("format_version")
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise ModelFileError(
            f"{path} has model format version {version}; this mm-deepz reads up to {FORMAT_VERSION}. "
            "Upgrade mm-deepz."
        )
    try:
        card = ModelCard.from_json(blob["card"])
        network = build_generator(card.architecture)
        network.load_state_dict(blob["state_dict"], strict=True)
    except (KeyError, TypeError, ValueError, RuntimeError, ModelFileError) as e:
        raise ModelFileError(
            f"{path} has a damaged card or weights that do not fit its architecture: {e}"
        ) from e
    network.eval()
    model = DeepZModel(card, network, path, file_sha256(path))
    logger.debug("Loaded model %s (sha256 %s)", path, model.sha256)
    return model


def __getattr__(name: str) -> Any:
    """``shipped_model_path`` and ``SHIPPED_MODELS_DIR``, moved to :mod:`mm_deepz.shipped` (found without
    loading torch): still found here for one release, with a warning."""
    if name in ("shipped_model_path", "SHIPPED_MODELS_DIR"):
        import warnings

        from . import shipped

        warnings.warn(
            f"mm_deepz.modelfile.{name} moved to mm_deepz.shipped.{name}", DeprecationWarning, stacklevel=2
        )
        return getattr(shipped, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
