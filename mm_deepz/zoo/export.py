"""``mm-deepz export MODEL --author NAME -o OUT.zip``: a model as a bioimage.io package, tested before it
is written.

The package follows the bioimage.io model spec 0.5: two inputs (``planes``: the measured plane(s),
normalized in the package by their 1st / 99.99th percentiles as mm-deepz does; ``dpm``: each plane's
digital propagation matrix in µm), one output (``virtual``, in the planes' normalized units), weights
as a PyTorch state dict with its architecture source and as TorchScript. It is tested with
``bioimageio.core``'s own ``test_model`` (the test inputs must reproduce the test outputs in both weight
formats) before it replaces anything at OUT.
"""

from __future__ import annotations

import logging
import math
import re
import shutil
import tempfile
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..errors import ModelFileError, SettingsError
from ..model.unet import DeepZPackaged
from ..modelfile import DeepZModel
from ..normalization import IntensityScale
from . import layout
from .docs import cover_png, readme

logger = logging.getLogger(__name__)

#: the frame of the test inputs (pixels): a simulated worm field, or the centre of --sample
TEST_FRAME = 256
#: what bioimage.io allows in a model's name
NAME = re.compile(r"[A-Za-z0-9_+\- ()]{5,128}")
#: the papers behind the method
CITATIONS = (
    (
        (
            "Wu, Rivenson et al. Three-dimensional virtual refocusing of fluorescence microscopy images "
            "using deep learning. Nature Methods 16, 1323-1331 (2019)."
        ),
        "10.1038/s41592-019-0622-5",
    ),
    (
        (
            "Huang, Chen et al. Recurrent neural network-based volumetric fluorescence microscopy. "
            "Light: Science & Applications 10, 62 (2021)."
        ),
        "10.1038/s41377-021-00506-9",
    ),
)


def export_package(
    model: DeepZModel,
    out: Path,
    *,
    authors: list[str],
    name: str | None = None,
    sample: np.ndarray | None = None,
    overwrite: bool = False,
) -> Path:
    """Write ``model`` as a bioimage.io package at ``out`` (``.zip``), tested by bioimage.io's own test.

    ``sample``: the measured plane(s) (n, y, x) for the test inputs (a simulated worm if None).
    """
    from bioimageio.core import test_model
    from bioimageio.spec import save_bioimageio_package

    out = Path(out)
    _check_output(out, overwrite)
    if not authors or not all(a.strip() for a in authors):
        raise SettingsError("--author must name who made the model (repeat it for several people).")
    card = model.card
    name = name or _default_name(model)
    if not NAME.fullmatch(name):
        raise SettingsError(
            f"--name {name!r}: bioimage.io allows 5-128 letters, digits, spaces and _+-() in a model's name."
        )
    planes = _test_planes(model, sample)
    with tempfile.TemporaryDirectory(prefix="mm-deepz-bmz-") as tmp:
        d = Path(tmp)
        packaged = _packaged_network(model)
        dpm = _test_dpm(card, planes.shape[1:])
        output = _test_output(model, packaged, planes, dpm)
        np.save(d / "test_planes.npy", planes[None].astype(np.float32))
        np.save(d / "test_dpm.npy", dpm[None])
        np.save(d / "test_virtual.npy", output[None])
        torch.save({layout.PREFIX + k: v for k, v in model.network.state_dict().items()}, d / layout.WEIGHTS)
        _save_torchscript(packaged, planes, dpm, d / layout.TORCHSCRIPT)
        shutil.copyfile(Path(__file__).parents[1] / "model" / "unet.py", d / layout.ARCHITECTURE)
        (d / layout.CARD).write_text(card.to_json())
        (d / layout.DOCUMENTATION).write_text(readme(model))
        cover_png(planes[0], output[0], d / layout.COVER)
        descr = _description(model, d, authors, name)
        staged = d / out.name
        save_bioimageio_package(descr, output_path=staged)
        summary = test_model(staged)
        if summary.status != "passed":
            failed = [f"{x.name}: {e.msg}" for x in summary.details for e in x.errors][:3]
            raise ModelFileError(
                f"bioimage.io's test of the package failed ({'; '.join(failed) or summary.status}): "
                "nothing was written. Report this with the model file."
            )
        out.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(staged, out)  # a rename where both are on one file system
    logger.info("bioimage.io test passed; wrote %s", out)
    return out


def _save_torchscript(packaged: DeepZPackaged, planes: np.ndarray, dpm: np.ndarray, path: Path) -> None:
    """TorchScript weights, what Fiji / deepImageJ run (torch deprecates TorchScript for its own users;
    those tools still need it)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=DeprecationWarning, module="torch.jit")
        traced = torch.jit.trace(packaged, (torch.from_numpy(planes[None]), torch.from_numpy(dpm[None])))
        traced.save(str(path))


def _check_output(out: Path, overwrite: bool) -> None:
    """Refuse an output that is not a new .zip, or one mm-deepz did not export (even with overwrite)."""
    from .load import is_package, package_config

    if out.suffix != ".zip":
        raise SettingsError(f"--output {out}: a bioimage.io package is a .zip file; name it {out.stem}.zip.")
    if out.is_dir():
        raise SettingsError(f"--output {out} is a folder: give a file name ending in .zip.")
    if not out.exists():
        return
    if not overwrite:
        raise SettingsError(f"{out} exists: give another name, or --overwrite to replace it.")
    if not (is_package(out) and package_config(out) is not None):
        raise SettingsError(
            f"{out} is not a package exported by mm-deepz: it is never replaced (give another name)."
        )


def _default_name(model: DeepZModel) -> str:
    card = model.card
    planes = f"{card.n_planes} plane{'s' if card.n_planes > 1 else ''}"
    return f"Deep-Z {card.input_modality} to {card.target_modality} ({planes}) +-{card.z_range_um:g} um"


def _packaged_network(model: DeepZModel) -> DeepZPackaged:
    """The network with planes and DPMs as two inputs, holding ``model``'s weights."""
    packaged = DeepZPackaged(**layout.architecture_kwargs(model.card))
    packaged.unet.load_state_dict(model.network.state_dict())
    return packaged.eval()


def _test_planes(model: DeepZModel, sample: np.ndarray | None) -> np.ndarray:
    """The test input planes (n, y, x), float32 counts: the centre of ``sample`` or a simulated worm."""
    card = model.card
    if sample is None:
        from simulators.optics import Optics
        from simulators.phantoms import worm
        from simulators.world import SimWorld

        o = card.optics
        optics = Optics(
            na=o.na or 0.75,
            immersion_index=o.immersion_index or 1.0,
            wavelength_em_um=o.wavelength_em_um or 0.525,
            pixel_size_um=o.pixel_size_um,
        )
        world = SimWorld(worm(seed=7), optics, sensor_shape=(TEST_FRAME, TEST_FRAME), seed=7)
        sample = world.scan(np.asarray(card.input_offsets_um), 10.0, "widefield")
    sample = np.asarray(sample)
    if sample.ndim == 2:
        sample = sample[None]
    multiple = card.architecture.multiple
    if sample.ndim != 3 or sample.shape[0] != card.n_planes or min(sample.shape[1:]) < 4 * multiple:
        raise SettingsError(
            f"--sample must hold the model's {card.n_planes} measured plane(s) as (planes, y, x) of at least "
            f"{4 * multiple} px, got shape {sample.shape}."
        )
    if not np.isfinite(sample).all():
        raise SettingsError(
            "--sample holds NaN or infinite values: give the planes as the camera saved them."
        )
    h, w = (min(s, TEST_FRAME) // multiple * multiple for s in sample.shape[1:])
    y0, x0 = (sample.shape[1] - h) // 2, (sample.shape[2] - w) // 2
    return np.ascontiguousarray(sample[:, y0 : y0 + h, x0 : x0 + w], np.float32)


def _test_dpm(card: Any, shape: tuple[int, ...]) -> np.ndarray:
    """A tilted surface through the planes' centre, half the trained range at the frame's edges, as
    each plane's DPM (n, y, x) µm: the test shows that the DPM is used per pixel."""
    centre = float(np.mean(card.input_offsets_um))
    surface = centre + np.linspace(-card.z_range_um / 2, card.z_range_um / 2, shape[1], dtype=np.float32)
    surface = np.broadcast_to(surface, shape)
    return np.stack([surface - np.float32(o) for o in card.input_offsets_um]).astype(np.float32)


def _test_output(
    model: DeepZModel, packaged: DeepZPackaged, planes: np.ndarray, dpm: np.ndarray
) -> np.ndarray:
    """The virtual image (1, y, x) as mm-deepz makes it, in the planes' normalized units."""
    n = model.card.normalization
    scale = IntensityScale.from_planes(planes, n["low_percentile"], n["high_percentile"])
    with torch.no_grad():
        out = packaged(torch.from_numpy(scale.forward(planes)[None]), torch.from_numpy(dpm[None]))
    result: np.ndarray = out[0].numpy().astype(np.float32)
    return result


def _description(model: DeepZModel, d: Path, authors: list[str], name: str) -> Any:
    """The bioimage.io model description (spec 0.5) of the files in ``d``."""
    import bioimageio.spec.model.v0_5 as v

    card = model.card
    multiple = card.architecture.multiple
    channels = [f"plane{i}" for i in range(card.n_planes)]
    y_ref = v.SizeReference(tensor_id=v.TensorId(layout.PLANES), axis_id=v.AxisId("y"))
    x_ref = v.SizeReference(tensor_id=v.TensorId(layout.PLANES), axis_id=v.AxisId("x"))
    px = card.optics.pixel_size_um
    space = {"unit": "micrometer", "scale": px}
    # no halo on the output: bioimage.io's pipeline pads an input by the halo but not the inputs whose
    # size refers to it (bioimageio.core 0.11), so the DPM would no longer fit the planes
    size = v.ParameterizedSize(min=4 * multiple, step=multiple)
    norm = card.normalization
    planes = v.InputTensorDescr(
        id=v.TensorId(layout.PLANES),
        description=(
            f"Measured {card.input_modality} plane(s), camera counts, at {list(card.input_offsets_um)} µm "
            "(only their spacing matters)."
        ),
        axes=_axes(v, channels, (size, size), space),
        test_tensor=v.FileDescr(source=d / "test_planes.npy"),
        preprocessing=[
            v.ScaleRangeDescr(
                kwargs=v.ScaleRangeKwargs(
                    axes=[v.AxisId("channel"), v.AxisId("y"), v.AxisId("x")],
                    min_percentile=norm["low_percentile"],
                    max_percentile=norm["high_percentile"],
                    eps=1e-6,
                )
            )
        ],
    )
    dpm = v.InputTensorDescr(
        id=v.TensorId(layout.DPM),
        description=(
            f"Each plane's DPM (µm, per pixel): the wanted surface's depth minus the plane's; within "
            f"±{card.z_range_um:g} µm."
        ),
        axes=_axes(v, [f"dpm_{c}" for c in channels], (y_ref, x_ref), space),
        test_tensor=v.FileDescr(source=d / "test_dpm.npy"),
        data=v.IntervalOrRatioDataDescr(type="float32", unit="µm"),
    )
    output = v.OutputTensorDescr(
        id=v.TensorId(layout.OUTPUT),
        description=(
            f"The {card.target_modality} image on the DPM's surface, in the planes' normalized units "
            "(see README)."
        ),
        axes=_axes(v, [layout.OUTPUT], (y_ref, x_ref), space, output=True),
        test_tensor=v.FileDescr(source=d / "test_virtual.npy"),
    )
    version = v.Version(torch.__version__.split("+")[0])
    weights = v.WeightsDescr(
        pytorch_state_dict=v.PytorchStateDictWeightsDescr(
            source=d / layout.WEIGHTS,
            architecture=v.ArchitectureFromFileDescr(
                source=d / layout.ARCHITECTURE,
                callable=v.Identifier(layout.CALLABLE),
                kwargs=layout.architecture_kwargs(card),
            ),
            pytorch_version=version,
        ),
        torchscript=v.TorchscriptWeightsDescr(
            source=d / layout.TORCHSCRIPT, pytorch_version=version, parent="pytorch_state_dict"
        ),
    )
    n_params = sum(p.numel() for p in model.network.parameters())
    return v.ModelDescr(
        name=name,
        description=(
            f"Deep-Z: {card.input_modality} plane(s) + a digital propagation matrix -> the "
            f"{card.target_modality} image on any surface within ±{card.z_range_um:g} µm (by mm-deepz)."
        ),
        authors=[v.Author(name=a.strip()) for a in authors],
        cite=[v.CiteEntry(text=text, doi=v.Doi(doi)) for text, doi in CITATIONS],
        license=v.LicenseId("BSD-3-Clause"),
        documentation=v.FileDescr(source=d / layout.DOCUMENTATION),
        covers=[v.FileDescr(source=d / layout.COVER)],
        attachments=[v.FileDescr(source=d / layout.CARD)],
        tags=["deep-z", "refocusing", "3d", "fluorescence-light-microscopy", card.input_modality, "pytorch"],
        inputs=[planes, dpm],
        outputs=[output],
        weights=weights,
        config=v.Config(
            bioimageio=v.BioimageioConfig(
                task="virtual refocusing",
                modality=f"{card.input_modality} fluorescence to {card.target_modality}",
                model_parameter_count=n_params,
            ),
            **{
                layout.CONFIG_KEY: {
                    "package_version": layout.PACKAGE_VERSION,
                    "card": layout.CARD,
                    "source_sha256": model.sha256,
                    "trained_steps": _steps(card.provenance),
                }
            },
        ),
    )


def _axes(
    v: Any, channels: list[str], yx: tuple[Any, Any], space: dict[str, Any], output: bool = False
) -> Any:
    """A (batch, channel, y, x) tensor's axes: its channels' names, the sizes of y and x, their µm."""
    axis = v.SpaceOutputAxis if output else v.SpaceInputAxis
    return [
        v.BatchAxis(),
        v.ChannelAxis(channel_names=[v.Identifier(c) for c in channels]),
        axis(id=v.AxisId("y"), size=yx[0], **space),
        axis(id=v.AxisId("x"), size=yx[1], **space),
    ]


def _steps(provenance: dict[str, Any]) -> int | None:
    steps = provenance.get("steps_done")
    return int(steps) if isinstance(steps, (int, float)) and math.isfinite(steps) else None
