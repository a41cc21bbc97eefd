"""A bioimage.io package as an mm-deepz model: validated by bioimage.io's spec, read without unpacking."""

from __future__ import annotations

import io
import logging
import zipfile
from pathlib import Path
from typing import Any

import torch
import yaml

from ..errors import ModelFileError
from ..model import build_generator
from ..modelfile import DeepZModel, ModelCard, file_sha256
from . import layout

logger = logging.getLogger(__name__)

#: the names bioimage.io gives a package's description
RDF_NAMES = ("rdf.yaml", "bioimageio.yaml")


def _rdf_name(path: Path) -> str | None:
    """The description's name inside a package (zip or folder), or None if ``path`` is not one."""
    if path.is_dir():
        return next((n for n in RDF_NAMES if (path / n).is_file()), None)
    if not zipfile.is_zipfile(path):  # a .pt model file is a zip too, without rdf.yaml
        return None
    with zipfile.ZipFile(path) as z:
        names = set(z.namelist())
    return next((n for n in RDF_NAMES if n in names), None)


def is_package(path: Path) -> bool:
    """Whether ``path`` is a bioimage.io package (a zip or a folder holding rdf.yaml)."""
    try:
        return _rdf_name(Path(path)) is not None
    except OSError:
        return False


def _read(path: Path, name: str) -> bytes:
    """One file of a package, read from the zip (never unpacked beside it) or the folder."""
    if path.is_dir():
        return (path / name).read_bytes()
    with zipfile.ZipFile(path) as z:
        return z.read(name)


def package_config(path: Path) -> dict[str, Any] | None:
    """The package's mm-deepz section of ``config``, or None for a package made by another tool."""
    name = _rdf_name(path)
    if name is None:
        return None
    try:
        rdf = yaml.safe_load(_read(path, name))
    except (OSError, KeyError, zipfile.BadZipFile, yaml.YAMLError):
        return None
    section = (rdf.get("config") or {}).get(layout.CONFIG_KEY) if isinstance(rdf, dict) else None
    return section if isinstance(section, dict) else None


def load_package(path: Path) -> DeepZModel:
    """The Deep-Z model in a bioimage.io package exported by mm-deepz (:class:`ModelFileError` otherwise)."""
    from bioimageio.spec import InvalidDescr, load_model_description

    path = Path(path)
    section = package_config(path)
    if section is None:
        raise ModelFileError(
            f"{path} is a bioimage.io package, but not a Deep-Z model exported by mm-deepz (its rdf has no "
            f"config.{layout.CONFIG_KEY}): mm-deepz runs the Deep-Z packages of `mm-deepz export`."
        )
    version = section.get("package_version")
    if not isinstance(version, int) or version > layout.PACKAGE_VERSION:
        raise ModelFileError(
            f"{path} has mm-deepz package version {version}; this mm-deepz reads up to "
            f"{layout.PACKAGE_VERSION}. Upgrade mm-deepz."
        )
    try:  # every file against its sha256: bioimage.io's validation raises on a damaged package
        descr = load_model_description(path, perform_io_checks=True)
        problem = descr.validation_summary.format() if isinstance(descr, InvalidDescr) else None
    except (ValueError, OSError, zipfile.BadZipFile) as e:
        problem = str(e)
    if problem is not None:
        lines = [ln.strip() for ln in problem.splitlines() if ln.strip()]
        raise ModelFileError(
            f"{path} is a damaged bioimage.io package ({' '.join(lines[1:3]) or lines[:1]}): export it again."
        )
    try:
        card = ModelCard.from_json(_read(path, layout.CARD).decode())
        weights = descr.weights.pytorch_state_dict
        kwargs = getattr(weights.architecture, "kwargs", None) if weights is not None else None
        if kwargs != layout.architecture_kwargs(card):
            raise ValueError("its weights' architecture is not the card's")
        state = torch.load(io.BytesIO(_read(path, layout.WEIGHTS)), map_location="cpu", weights_only=True)
        network = build_generator(card.architecture)
        network.load_state_dict({k.removeprefix(layout.PREFIX): v for k, v in state.items()}, strict=True)
    except (KeyError, OSError, TypeError, ValueError, RuntimeError, ModelFileError) as e:
        raise ModelFileError(f"{path} is a damaged mm-deepz package: {e}. Export it again.") from e
    network.eval()
    sha = file_sha256(path) if path.is_file() else file_sha256(path / (_rdf_name(path) or RDF_NAMES[0]))
    logger.debug("Loaded bioimage.io package %s (sha256 %s)", path, sha)
    return DeepZModel(card, network, path, sha)
