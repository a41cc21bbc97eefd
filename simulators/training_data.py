"""Paired z-stacks for training and blind testing Deep-Z models, from the simulator's physics.

A :class:`StackPair` is what a user acquires on a real microscope for training: a
mechanically scanned widefield stack (at low, Deep-Z-like exposure) and a confocal
reference stack of the same field at the same z positions (at a longer exposure). The
stacks come from the same :class:`~simulators.world.SimWorld` code path the simulated
camera uses, with its noise model; no light dose is charged to the world.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

import numpy as np
import tifffile

from .optics import Optics
from .phantoms import make_phantom
from .world import CameraModel, SimWorld

logger = logging.getLogger(__name__)


@dataclass
class StackPair:
    """Widefield and confocal stacks (z, y, x, uint16) of one field, with their geometry."""

    widefield: np.ndarray
    confocal: np.ndarray
    z_um: np.ndarray
    pixel_size_um: float
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.widefield.shape != self.confocal.shape:
            raise ValueError(
                f"Widefield {self.widefield.shape} and confocal {self.confocal.shape} stacks differ in shape."
            )
        if len(self.z_um) != self.widefield.shape[0]:
            raise ValueError(f"{len(self.z_um)} z positions for {self.widefield.shape[0]} planes.")

    @property
    def z_step_um(self) -> float:
        """Spacing of the z positions (µm)."""
        return float(np.median(np.diff(self.z_um))) if len(self.z_um) > 1 else 0.0


@dataclass(frozen=True)
class PairSpec:
    """How to simulate one stack pair."""

    phantom: str = "worm"
    seed: int = 0
    shape: tuple[int, int] = (256, 256)
    z_center_um: float = 0.0
    z_half_range_um: float = 10.0
    z_step_um: float = 1.0
    widefield_exposure_ms: float = 10.0
    confocal_exposure_ms: float = 100.0
    xy_um: tuple[float, float] = (0.0, 0.0)
    time_s: float = 0.0
    randomize: bool = False  # seeded jitter of field, depth and (sheets) tilt / curvature
    tilt_x: float = 0.0  # sheets only (µm/µm)
    tilt_y: float = 0.0
    curvature_per_um: float = 0.0

    def resolved(self) -> PairSpec:
        """The spec with its seeded randomization applied (idempotent)."""
        if not self.randomize:
            return self
        rng = np.random.default_rng(self.seed + 424242)
        changes: dict[str, Any] = {
            "randomize": False,
            "z_center_um": float(rng.uniform(-6, 6)),
            "xy_um": (float(rng.uniform(-30, 30)), float(rng.uniform(-30, 30))),
        }
        if self.phantom == "sheet":
            changes |= {
                "tilt_x": float(rng.uniform(-0.08, 0.08)),
                "tilt_y": float(rng.uniform(-0.08, 0.08)),
                "curvature_per_um": float(rng.uniform(-2e-3, 2e-3)),
                "z_center_um": 0.0,
                "xy_um": (0.0, 0.0),
            }
        return replace(self, **changes)


def make_stack_pair(
    spec: PairSpec, optics: Optics | None = None, camera: CameraModel | None = None
) -> StackPair:
    """Render one widefield / confocal stack pair as the simulated camera would record it."""
    spec = spec.resolved()
    shape_kw = (
        {"tilt_x": spec.tilt_x, "tilt_y": spec.tilt_y, "curvature_per_um": spec.curvature_per_um}
        if spec.phantom == "sheet"
        else {}
    )
    phantom = make_phantom(spec.phantom, seed=spec.seed, **shape_kw)
    world = SimWorld(phantom, optics, camera, sensor_shape=spec.shape, seed=spec.seed + 1_000_003)
    world.xy_um = spec.xy_um
    n = round(2 * spec.z_half_range_um / spec.z_step_um) + 1
    z = spec.z_center_um + np.linspace(-spec.z_half_range_um, spec.z_half_range_um, n)
    modalities: tuple[tuple[Literal["widefield", "confocal"], float], ...] = (
        ("widefield", spec.widefield_exposure_ms),
        ("confocal", spec.confocal_exposure_ms),
    )
    stacks = {modality: world.scan(z, exposure, modality, spec.time_s) for modality, exposure in modalities}
    meta = {
        "spec": asdict(spec),
        "phantom": phantom.name,
        "optics": asdict(world.optics),
        "camera": asdict(world.camera),
    }
    return StackPair(stacks["widefield"], stacks["confocal"], z, world.optics.pixel_size_um, meta)


def write_stack_pair(pair: StackPair, directory: str | Path, name: str) -> tuple[Path, Path]:
    """Write a pair as two OME-TIFF files (``<name>_widefield.ome.tif``, ``<name>_confocal.ome.tif``).

    Physical sizes (µm), the z positions and the simulation parameters go into the
    OME metadata, so the files read back like stacks from a real microscope.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    paths = []
    for modality in ("widefield", "confocal"):
        path = directory / f"{name}_{modality}.ome.tif"
        tifffile.imwrite(
            path,
            getattr(pair, modality),
            ome=True,
            metadata={
                "axes": "ZYX",
                "PhysicalSizeX": pair.pixel_size_um,
                "PhysicalSizeY": pair.pixel_size_um,
                "PhysicalSizeZ": pair.z_step_um,
                "Plane": {"PositionZ": pair.z_um.tolist()},
                "Description": json.dumps({"modality": modality, **pair.meta}),
            },
        )
        paths.append(path)
    if pair.meta.get("spec", {}).get("phantom") == "worm":
        write_neuron_truth(pair, directory / f"{name}_neurons.csv")
    logger.info("Wrote stack pair %s to %s", name, directory)
    return paths[0], paths[1]


def write_neuron_truth(pair: StackPair, path: Path) -> Path:
    """The true neurons of a simulated worm pair as CSV (id, z_um, y_um, x_um in the stacks' frame:
    z in stage µm, y and x from the first pixel's centre; brightness at the pair's time): what the
    neuron analysis of these stacks is scored against."""
    from .truth import stack_neurons

    truth = stack_neurons(pair.meta["spec"], pair.widefield.shape[1:], (pair.z_um[0], pair.z_um[-1]))
    rows = ["id,z_um,y_um,x_um,brightness"]
    rows += [
        f"{i},{z:.4f},{y:.4f},{x:.4f},{b:.3f}"
        for i, z, y, x, b in zip(
            *(truth[k] for k in ("id", "z_um", "y_um", "x_um", "brightness")), strict=True
        )
    ]
    path.write_text("\n".join(rows) + "\n")
    return path
