"""``mm-deepz pairs acquire``: training pairs from the user's own microscope, without a script.

At each field of view (a list of stage positions: given, a grid around where the stage is, or a
Micro-Manager ``.pos`` file) the same z grid is imaged through the input light path (widefield)
and the target light path (confocal; or widefield again, for refocusing), plane by plane
interleaved (so a living specimen moves as little as possible between the two images of a plane)
or stack by stack; then the camera's dark frames with the shutter closed. Everything goes through
:class:`~acquisition_hooks.microscope.Microscope`, so the simulator and a running Micro-Manager
(``--connect``) take the same path. The result is a pairs dataset (:mod:`mm_deepz.io.pairs`).
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar, Literal

from pydantic import ConfigDict, Field, model_validator

from mm_deepz import __version__
from mm_deepz.errors import SettingsError
from mm_deepz.io.layout import ImageInfo
from mm_deepz.io.pairs import DARK, PairsWriter
from mm_deepz.io.pairs import Field as StageField
from mm_deepz.settings import Settings

from .core import MMCore
from .microscope import Microscope

logger = logging.getLogger(__name__)

#: the most planes a stack and the most fields a dataset may have
MAX_PLANES = 1001
MAX_FIELDS = 10_000


class PairsPlan(Settings):
    """What ``pairs acquire`` images: fields, z grid, the two light paths and their exposures."""

    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)
    error: ClassVar[type[SettingsError]] = SettingsError
    what: ClassVar[str] = "pairs acquisition settings"

    #: stage positions (µm); None = where the stage is
    positions_xy_um: tuple[tuple[float, float], ...] | None = None
    z_start_um: float = Field(-10.0, ge=-10_000, le=10_000)
    z_end_um: float = Field(10.0, ge=-10_000, le=10_000)
    z_step_um: float = Field(1.0, gt=0, le=100)
    channel_group: str = "Channel"
    input_preset: str = "Widefield"
    target_preset: str = "Confocal"
    input_exposure_ms: float = Field(10.0, gt=0, le=10_000)
    target_exposure_ms: float = Field(100.0, gt=0, le=10_000)
    input_modality: str = Field("widefield", pattern=r"^[a-z][a-z0-9_-]{0,31}$")
    target_modality: str = Field("confocal", pattern=r"^[a-z][a-z0-9_-]{0,31}$")
    order: Literal["interleaved", "stacks"] = "interleaved"
    dark_frames: int = Field(10, ge=0, le=1000)

    @model_validator(mode="after")
    def _check(self) -> PairsPlan:
        if self.z_end_um <= self.z_start_um:
            raise ValueError(f"z end ({self.z_end_um:g} µm) must be above z start ({self.z_start_um:g} µm)")
        planes = len(self.z_um())
        if not 3 <= planes <= MAX_PLANES:
            raise ValueError(f"the stack would be {planes:,} planes; it takes 3 to {MAX_PLANES}")
        if self.positions_xy_um is not None:
            if not 1 <= len(self.positions_xy_um) <= MAX_FIELDS:
                raise ValueError(f"1 to {MAX_FIELDS} positions, got {len(self.positions_xy_um)}")
            if any(not (math.isfinite(v) and abs(v) <= 100_000) for xy in self.positions_xy_um for v in xy):
                raise ValueError("positions must be finite, within ±100 mm")
        if self.input_modality == self.target_modality and self.input_preset != self.target_preset:
            raise ValueError("two light paths need two modality names (--input-modality, --target-modality)")
        return self

    def z_um(self) -> tuple[float, ...]:
        """The z grid (µm), start to end inclusive."""
        n = math.floor((self.z_end_um - self.z_start_um) / self.z_step_um + 1e-9) + 1
        return tuple(round(self.z_start_um + i * self.z_step_um, 6) for i in range(n))


def grid_positions(
    center: tuple[float, float], shape: tuple[int, int], step_um: float
) -> list[tuple[float, float]]:
    """A ``rows`` x ``columns`` grid of positions ``step_um`` apart, centred on ``center``, in snake order."""
    rows, cols = shape
    if not (1 <= rows <= 100 and 1 <= cols <= 100) or not (math.isfinite(step_um) and step_um > 0):
        raise SettingsError(
            f"A grid takes 1-100 rows and columns and a positive step, got {rows}x{cols}, {step_um}."
        )
    out = []
    for r in range(rows):
        cs = range(cols) if r % 2 == 0 else range(cols - 1, -1, -1)
        out += [
            (center[0] + (c - (cols - 1) / 2) * step_um, center[1] + (r - (rows - 1) / 2) * step_um)
            for c in cs
        ]
    return out


def read_position_list(path: Path, xy_stage: str | None = None) -> list[tuple[str, float, float]]:
    """The XY positions of a Micro-Manager position list (``.pos``: MM 2's property map, or MM 1.4's JSON),
    as (label, x, y) in µm; :class:`SettingsError` naming what is wrong."""
    try:
        doc = json.loads(Path(path).read_text())
    except (OSError, ValueError, RecursionError) as e:
        raise SettingsError(f"{path} cannot be read as a Micro-Manager position list ({e}).") from None
    out = []
    try:
        if "map" in doc:  # Micro-Manager 2
            entries = doc["map"]["StagePositions"]["array"]
            for i, entry in enumerate(entries):
                label = entry.get("Label", {}).get("scalar", f"Pos{i}")
                default = xy_stage or entry.get("DefaultXYStage", {}).get("scalar")
                xy = [
                    d["Position_um"]["array"]
                    for d in entry["DevicePositions"]["array"]
                    if len(d["Position_um"]["array"]) == 2
                    and (default is None or d["Device"]["scalar"] == default)
                ]
                if not xy:
                    raise KeyError(f"position {label} has no XY stage position")
                out.append((str(label), float(xy[0][0]), float(xy[0][1])))
        else:  # Micro-Manager 1.4
            for i, entry in enumerate(doc["POSITIONS"]):
                xy = [d for d in entry["DEVICES"] if d.get("AXES") == 2]
                if not xy:
                    raise KeyError(f"position {i} has no XY stage position")
                out.append((str(entry.get("LABEL", f"Pos{i}")), float(xy[0]["X"]), float(xy[0]["Y"])))
    except (KeyError, TypeError, ValueError, IndexError, AttributeError) as e:
        raise SettingsError(
            f"{path} is not a Micro-Manager position list as Micro-Manager 1.4 or 2 writes it ({e}): save "
            "one from Micro-Manager's Stage Position List."
        ) from None
    if not out:
        raise SettingsError(f"{path} holds no positions.")
    if any(not (math.isfinite(x) and math.isfinite(y)) for _, x, y in out):
        raise SettingsError(f"{path} holds positions that are not finite numbers.")
    return out


def acquire_pairs(
    core: MMCore,
    plan: PairsPlan,
    output: Path,
    *,
    labels: list[str] | None = None,
    overwrite: bool = False,
    specimen: dict[str, Any] | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> Path:
    """Acquire a pairs dataset at ``output`` (see the module doc); returns its path. Checks the light
    paths and exposures against the microscope before anything moves or is written."""
    scope = Microscope(core)
    scope.check_presets(plan.channel_group, {"input": plan.input_preset, "target": plan.target_preset})
    scope.check_exposures(
        {
            "input stacks (--input-exposure)": plan.input_exposure_ms,
            "target stacks (--target-exposure)": plan.target_exposure_ms,
        }
    )
    here = scope.xy_position()
    positions = list(plan.positions_xy_um or [here])
    names = labels or [f"field_{i:03d}" for i in range(len(positions))]
    fields = [StageField(n, x, y) for n, (x, y) in zip(names, positions, strict=True)]
    z = plan.z_um()
    modalities = (plan.input_modality, plan.target_modality)
    if plan.input_modality == plan.target_modality:
        modalities = (plan.input_modality, f"{plan.target_modality}_target")
    paths = {
        modalities[0]: (plan.input_preset, plan.input_exposure_ms),
        modalities[1]: (plan.target_preset, plan.target_exposure_ms),
    }
    infos = {
        modalities[0]: ImageInfo(
            f"{modalities[0]} (input)", "00FF00", f"{plan.input_preset} stacks", None, plan.input_exposure_ms
        ),
        modalities[1]: ImageInfo(
            f"{modalities[1]} (target)",
            "FF00FF",
            f"{plan.target_preset} stacks",
            None,
            plan.target_exposure_ms,
        ),
        DARK: ImageInfo(
            "dark frames", "FFFFFF", "The camera with the shutter closed", None, plan.input_exposure_ms
        ),
    }
    writer = PairsWriter(
        output,
        fields,
        modalities,
        z,
        scope.pixel_size_um,
        scope.image_shape,
        infos=infos,
        dark_frames=plan.dark_frames,
        overwrite=overwrite,
        attrs={
            "plan": plan.model_dump(mode="json"),
            "presets": {
                "group": plan.channel_group,
                modalities[0]: plan.input_preset,
                modalities[1]: plan.target_preset,
            },
            "exposures_ms": {m: e for m, (_, e) in paths.items()},
            "software": {"mm_deepz": __version__},
            **({"specimen": specimen} if specimen else {}),
        },
    )
    total = len(fields) * len(z) * 2 + plan.dark_frames
    done = 0
    z0 = scope.focus()
    try:
        for f in fields:
            scope.move_xy(f.x_um, f.y_um)
            order = (
                [(zi, m) for zi in range(len(z)) for m in modalities]
                if plan.order == "interleaved"
                else [(zi, m) for m in modalities for zi in range(len(z))]
            )
            for zi, modality in order:
                preset, exposure = paths[modality]
                scope.move_z(z[zi])
                writer.write(f.name, modality, zi, scope.snap(plan.channel_group, preset, exposure))
                done += 1
                if progress is not None:
                    progress(done, total)
            writer.field_done(f.name)
        for i, frame in enumerate(scope.dark_frames(plan.dark_frames, plan.input_exposure_ms)):
            writer.write_dark(i, frame)
            done += 1
            if progress is not None:
                progress(done, total)
    finally:
        writer.close()
        scope.move_z(z0)
        scope.move_xy(*here)
    logger.info("Acquired %d fields of %d planes x 2 light paths into %s", len(fields), len(z), writer.path)
    return writer.path
