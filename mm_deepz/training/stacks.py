"""Paired z-stacks for training and evaluation: reading, validation and registration.

A training pair is two mechanically scanned stacks of the same field: the *input*
modality (e.g. widefield, what Deep-Z will see) and the *target* modality (e.g. confocal,
what it should synthesize; the same file for refocusing-only models). Files are matched by
name: ``<name>_<input>.ome.tif`` + ``<name>_<target>.ome.tif`` (OME-TIFF or plain TIFF with
ImageJ/OME metadata) or ``<name>_<input>.ome.zarr`` + ``<name>_<target>.ome.zarr``
(NGFF images with z, y, x axes).
"""

from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import tifffile
from scipy import ndimage
from skimage.registration import phase_cross_correlation

from ..errors import DeepZError

logger = logging.getLogger(__name__)


class StackDataError(DeepZError):
    """Stacks that cannot be used: missing, empty, inconsistent pixel size or z step."""


@dataclass
class Stack:
    """One z-stack (z, y, x) with its geometry in µm."""

    data: np.ndarray
    z_um: np.ndarray
    pixel_size_um: float
    source: str = ""
    meta: dict[str, Any] = field(default_factory=dict[str, Any])

    @property
    def z_step_um(self) -> float:
        """Spacing of the planes."""
        return float(np.median(np.diff(self.z_um)))


@dataclass
class PairedStack:
    """Input- and target-modality stacks of one field, registered onto the same grid."""

    name: str
    inputs: Stack
    target: Stack
    shift_yx_px: tuple[float, float] = (0.0, 0.0)
    axial_offset_um: float = 0.0
    meta: dict[str, Any] = field(default_factory=dict[str, Any])
    #: the cameras' rotation (degrees) and scale corrected when the target was registered
    rotation_deg: float = 0.0
    scale: float = 1.0

    @property
    def z_um(self) -> np.ndarray:
        """z of the planes (µm), shared by both stacks."""
        return self.inputs.z_um

    @property
    def pixel_size_um(self) -> float:
        """Lateral pixel size (µm)."""
        return self.inputs.pixel_size_um


def read_stack(path: str | Path) -> Stack:
    """Read a (z, y, x) stack with pixel size and z positions from OME-TIFF/TIFF or OME-Zarr."""
    path = Path(path)
    if not path.exists():
        raise StackDataError(f"Stack not found: {path}")
    stack = _read_zarr(path) if path.suffix == ".zarr" or path.is_dir() else _read_tiff(path)
    return _checked(stack, path)


def _checked(stack: Stack, path: Path) -> Stack:
    """Refuse a stack whose pixels or physical sizes are not finite numbers (NaN, Inf) or are absurd."""
    if stack.data.dtype.kind == "f" and not np.isfinite(stack.data).all():
        bad = int((~np.isfinite(stack.data)).sum())
        raise StackDataError(
            f"{path}: {bad} pixel(s) are NaN or infinite: mm-deepz trains and scores only on measured "
            "counts. Export the stack again without them (or replace them) and retry."
        )
    if not (np.isfinite(stack.pixel_size_um) and 0 < stack.pixel_size_um <= 100):
        raise StackDataError(f"{path}: its pixel size {stack.pixel_size_um} µm is not a positive number.")
    if not np.isfinite(stack.z_um).all():
        raise StackDataError(f"{path}: its z positions are not finite numbers.")
    return stack


def _read_tiff(path: Path) -> Stack:
    try:
        with tifffile.TiffFile(path) as tif:
            data = tif.asarray()
            ome = tif.ome_metadata
            ij = tif.imagej_metadata
            n_pages = len(tif.pages)
    except (tifffile.TiffFileError, ValueError, OSError, EOFError) as e:
        raise StackDataError(
            f"{path} cannot be read as a TIFF stack ({e}): is it truncated or another kind of "
            "file? Remove it from the training folder or replace it."
        ) from e
    if path.name.lower().endswith((".ome.tif", ".ome.tiff")) and not ome:
        raise StackDataError(
            f"{path} has no OME metadata although it is named .ome.tif: the file is truncated (an "
            "interrupted copy?) or not an OME-TIFF. Copy it again or remove it."
        )
    declared = re.search(r'SizeZ="(\d+)"', ome or "")
    if declared and n_pages < int(declared.group(1)):
        raise StackDataError(
            f"{path} holds {n_pages} of the {declared.group(1)} planes its metadata declares: the "
            "file is truncated (an interrupted copy?). Copy it again or remove it."
        )
    data = np.squeeze(data)
    if data.ndim != 3 or min(data.shape) == 0:
        raise StackDataError(f"{path}: expected a z-stack (z, y, x), got an array of shape {data.shape}.")
    pixel = z_step = None
    z_pos: list[float] = []
    meta: dict[str, Any] = {}
    if ome:

        def attr(name: str) -> float | None:
            m = re.search(rf'\b{name}="([-0-9.eE+]+)"', ome)
            return float(m.group(1)) if m else None

        pixel, z_step = attr("PhysicalSizeX"), attr("PhysicalSizeZ")
        z_pos = [float(v) for v in re.findall(r'PositionZ="([-0-9.eE+]+)"', ome)]
        if m := re.search(r"<Description>(.*?)</Description>", ome, re.DOTALL):
            try:
                meta = json.loads(m.group(1).replace("&quot;", '"').replace("&amp;", "&"))
            except json.JSONDecodeError:
                meta = {"description": m.group(1)}
    elif ij:
        z_step = ij.get("spacing")
        with tifffile.TiffFile(path) as tif:
            xres = tif.pages[0].tags.get("XResolution")
            if xres is not None and xres.value[0]:
                pixel = xres.value[1] / xres.value[0]
    if pixel is None:
        raise StackDataError(
            f"{path}: no pixel size in the metadata (OME PhysicalSizeX or ImageJ resolution)."
        )
    if len(z_pos) == data.shape[0]:
        z = np.asarray(z_pos, float)
    elif z_step:
        z = np.arange(data.shape[0]) * float(z_step)
    else:
        raise StackDataError(f"{path}: no z step (OME PhysicalSizeZ, PositionZ or ImageJ spacing).")
    return Stack(data, z, float(pixel), str(path), meta if isinstance(meta, dict) else {})


def _read_zarr(path: Path) -> Stack:
    from ome_zarr.io import parse_url
    from ome_zarr.reader import Multiscales, Reader

    loc = parse_url(str(path))
    if loc is None:
        raise StackDataError(f"{path} is not an OME-Zarr container.")
    nodes = [n for n in Reader(loc)() if n.load(Multiscales)]
    if not nodes:
        raise StackDataError(f"{path}: no NGFF multiscale image found.")
    node = nodes[0]
    ms = node.metadata
    axes = [a["name"] if isinstance(a, dict) else a for a in ms.get("axes", [])]
    arr = np.asarray(node.data[0])
    scale = ms["coordinateTransformations"][0][0]["scale"] if "coordinateTransformations" in ms else None
    if not axes or scale is None or not {"z", "y", "x"} <= set(axes):
        raise StackDataError(f"{path}: the image needs z, y, x axes with physical scales.")
    index = tuple(slice(None) if a in ("z", "y", "x") else 0 for a in axes)
    data = arr[index]
    kept = [a for a in axes if a in ("z", "y", "x")]
    sz, sx = scale[axes.index("z")], scale[axes.index("x")]
    trans = ms["coordinateTransformations"][0]
    z0 = trans[1]["translation"][axes.index("z")] if len(trans) > 1 else 0.0
    if kept != ["z", "y", "x"]:
        data = np.moveaxis(data, [kept.index(a) for a in "zyx"], [0, 1, 2])
    data = np.asarray(data)
    from ..io.pairs import dark_frame

    if (dark := dark_frame(path.parent)) is not None and dark.shape == data.shape[1:]:
        data = np.clip(data.astype(np.float32) - dark, 0, None)  # a pairs dataset's camera offset and dark
    return Stack(data, z0 + np.arange(data.shape[0]) * sz, float(sx), str(path))


def find_pairs(
    paths: list[Path], input_modality: str = "widefield", target_modality: str = "confocal"
) -> list[tuple[str, Path, Path]]:
    """Match ``<name>_<input>`` and ``<name>_<target>`` stacks among files and directories."""
    from ..io.claim import is_container
    from ..io.pairs import dataset_pairs, pairs_record

    files: list[Path] = []
    pairs = []
    for p in paths:
        p = Path(p)
        if pairs_record(p) is not None:  # a pairs dataset (mm-deepz pairs acquire)
            pairs += dataset_pairs(p, input_modality, target_modality)
        elif is_container(p):
            raise StackDataError(
                f"{p} is a Deep-Z run, not training pairs: acquire pairs with `mm-deepz pairs acquire` "
                "(widefield and confocal stacks of the same fields)."
            )
        elif p.is_dir() and not p.name.endswith(".zarr"):
            found = sorted(q for q in p.iterdir() if re.search(r"\.(ome\.)?(tiff?|zarr)$", q.name))
            for q in found:
                if pairs_record(q) is not None:
                    pairs += dataset_pairs(q, input_modality, target_modality)
                else:
                    files.append(q)
        elif p.exists():
            files.append(p)
        else:
            raise StackDataError(f"Training data not found: {p}")
    pattern = re.compile(rf"^(?P<name>.+)_{re.escape(input_modality)}(?P<ext>\.(ome\.)?(tiff?|zarr))$")
    for f in files:
        if m := pattern.match(f.name):
            target = f.with_name(f"{m['name']}_{target_modality}{m['ext']}")
            if not target.exists():
                raise StackDataError(f"{f.name} has no matching {target_modality} stack ({target.name}).")
            pairs.append((m["name"], f, target))
    if not pairs:
        raise StackDataError(
            f"No stack pairs named <name>_{input_modality}.ome.tif / <name>_{target_modality}.ome.tif "
            f"(or .ome.zarr) in {[str(p) for p in paths]}."
        )
    return pairs


def register(inputs: Stack, target: Stack) -> tuple[tuple[float, float], float]:
    """Estimate the target's sub-pixel lateral shift and axial offset relative to the input.

    Lateral: cross-correlation of the high-passed maximum projections (1/20 pixel). Axial: the offset
    (in planes, refined to 1/10 of a plane) that best correlates high-passed planes.
    """
    a = inputs.data.astype(np.float32)
    b = target.data.astype(np.float32)

    def hp2(m: np.ndarray) -> np.ndarray:  # remove widefield haze before correlating
        return np.asarray(m - ndimage.gaussian_filter(m, 4))

    shift, _, _ = phase_cross_correlation(
        hp2(a.max(0)), hp2(b.max(0)), upsample_factor=20, normalization=None
    )

    def hp(s: np.ndarray) -> np.ndarray:
        s = s - ndimage.gaussian_filter(s, (0, 4, 4))
        return np.asarray((s - s.mean()) / (s.std() + 1e-6))

    ha, hb = hp(a), hp(b)
    offsets = range(-3, 4)
    n = len(a)
    score = []
    for k in offsets:
        i = slice(max(0, k), min(n, n + k))
        j = slice(max(0, -k), min(n, n - k))
        score.append(float((ha[i] * hb[j]).mean()))
    best = int(np.argmax(score))
    frac = 0.0
    if 0 < best < len(score) - 1:  # parabolic refinement
        l, c, r = score[best - 1 : best + 2]
        denom = l - 2 * c + r
        frac = 0.5 * (l - r) / denom if denom else 0.0
    axial_planes = offsets[best] + float(np.clip(frac, -0.5, 0.5))
    return (float(shift[0]), float(shift[1])), axial_planes * inputs.z_step_um


class PairQuarantinedError(StackDataError):
    """A pair failed its checks (:mod:`mm_deepz.training.check`): it is not trained on."""


def load_pair(
    name: str, input_path: Path, target_path: Path, do_register: bool = True, check: bool = True
) -> PairedStack:
    """Read, validate, check (:class:`PairQuarantinedError` with the reasons) and (optionally) register
    one pair onto the input's grid."""
    inputs = read_stack(input_path)
    target = read_stack(target_path) if target_path != input_path else inputs
    if inputs.data.shape != target.data.shape:
        raise StackDataError(
            f"{name}: input {inputs.data.shape} and target {target.data.shape} stacks differ in shape; "
            "acquire both over the same z range and field."
        )
    if abs(inputs.pixel_size_um - target.pixel_size_um) > 0.01 * inputs.pixel_size_um:
        raise StackDataError(
            f"{name}: pixel sizes differ ({inputs.pixel_size_um} vs {target.pixel_size_um} µm); "
            "acquire both with the same objective and binning."
        )
    if len(inputs.z_um) < 3 or inputs.z_step_um <= 0:
        raise StackDataError(f"{name}: a stack needs at least 3 planes with increasing z.")
    verdict = None
    if check and target is not inputs:
        from .check import check_pair

        verdict = check_pair(name, inputs, target)
        if not verdict.passed:
            raise PairQuarantinedError(f"{name} is quarantined: {'; '.join(verdict.reasons)}.")
    shift, axial, rotation, scale = (0.0, 0.0), 0.0, 0.0, 1.0
    if do_register and target is not inputs:
        # the check registered the pair already (its camera fit included): not measured twice
        if verdict is not None:
            shift, axial = verdict.shift_yx_px, verdict.axial_um
            rotation, scale = verdict.rotation_deg, verdict.scale
        else:
            shift, axial = register(inputs, target)
    if (rotation, scale) != (0.0, 1.0):
        from .check import warp_affine

        logger.info(
            "%s: target turned by %.2f°, scaled by %.4f and shifted by (%.2f, %.2f) px and %.2f µm to match "
            "the input (the cameras differ)",
            name,
            rotation,
            scale,
            shift[0],
            shift[1],
            axial,
        )
        planes = np.stack([warp_affine(p.astype(np.float32), rotation, scale, shift) for p in target.data])
        data = ndimage.shift(planes, (axial / inputs.z_step_um, 0, 0), order=1, mode="nearest")
        target = Stack(data, inputs.z_um, target.pixel_size_um, target.source)
    elif max(abs(shift[0]), abs(shift[1])) > 0.05 or abs(axial) > 0.05 * inputs.z_step_um:
        logger.info(
            "%s: target shifted by (%.2f, %.2f) px and %.2f µm to match the input",
            name,
            shift[0],
            shift[1],
            axial,
        )
        data = ndimage.shift(
            target.data.astype(np.float32), (axial / inputs.z_step_um, *shift), order=1, mode="nearest"
        )
        target = Stack(data, inputs.z_um, target.pixel_size_um, target.source)
    return PairedStack(name, inputs, target, shift, axial, dict(inputs.meta), rotation, scale)


def dataset_summary(pairs: list[PairedStack]) -> dict[str, Any]:
    """A JSON-able summary of a set of pairs (for the model card and the user)."""
    return {
        "n_pairs": len(pairs),
        "pairs": [
            {
                "name": p.name,
                "shape": list(p.inputs.data.shape),
                "z_um": [float(p.z_um[0]), float(p.z_um[-1])],
                "z_step_um": p.inputs.z_step_um,
                "pixel_size_um": p.pixel_size_um,
                "registration_shift_px": list(p.shift_yx_px),
                "registration_axial_um": p.axial_offset_um,
                "registration_rotation_deg": p.rotation_deg,
                "registration_scale": p.scale,
                "source": p.inputs.source,
            }
            for p in pairs
        ],
    }


def load_pairs(
    paths: list[Path],
    input_modality: str = "widefield",
    target_modality: str = "confocal",
    do_register: bool = True,
) -> list[PairedStack]:
    """Find, read, check and register all pairs; all must share pixel size and z step. A pair that fails
    its checks is left out with a warning naming the reasons; none left is an error."""
    pairs, quarantined = [], []
    for n, a, b in find_pairs(paths, input_modality, target_modality):
        try:
            pairs.append(load_pair(n, a, b, do_register))
        except PairQuarantinedError as e:
            logger.warning("%s Not trained on (`mm-deepz pairs check` reports every pair).", e)
            quarantined.append(n)
    if not pairs:
        raise StackDataError(
            f"Every pair failed its checks ({', '.join(quarantined)}): `mm-deepz pairs check` says why."
        )
    ref = pairs[0]
    for p in pairs[1:]:
        if abs(p.pixel_size_um - ref.pixel_size_um) > 0.01 * ref.pixel_size_um:
            raise StackDataError(
                f"Pixel size of {p.name} ({p.pixel_size_um} µm) differs from {ref.name} "
                f"({ref.pixel_size_um} µm)."
            )
        if abs(p.inputs.z_step_um - ref.inputs.z_step_um) > 1e-3:
            raise StackDataError(
                f"z step of {p.name} ({p.inputs.z_step_um} µm) differs from {ref.name} "
                f"({ref.inputs.z_step_um} µm)."
            )
    logger.info("Loaded %d stack pairs: %s", len(pairs), json.dumps([p.name for p in pairs]))
    return pairs
