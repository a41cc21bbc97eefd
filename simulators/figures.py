"""Pictures of the simulator's physics (used by ``mm-deepz simulate focus-sweep``)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .optics import Optics
from .phantoms import Emitters, Phantom
from .world import SimWorld


@dataclass
class FocusSweep:
    """Images of one bead at a series of focus positions, widefield and confocal."""

    z_um: np.ndarray
    bead_z_um: float
    widefield: np.ndarray  # (z, y, x) expected photons
    confocal: np.ndarray

    def peak(self, modality: str) -> np.ndarray:
        """Brightest pixel per plane."""
        return np.asarray(getattr(self, modality).max(axis=(1, 2)))

    def total(self, modality: str) -> np.ndarray:
        """Integrated light per plane."""
        return np.asarray(getattr(self, modality).sum(axis=(1, 2)))


def single_bead(bead_z_um: float = 0.0, brightness: float = 1000.0) -> Phantom:
    """One sub-resolution bead at the field centre and depth ``bead_z_um``."""
    em = Emitters(
        xyz=np.array([[0.0, 0.0, bead_z_um]]), radius_um=np.array([0.05]), brightness=np.array([brightness])
    )
    return Phantom("single bead", em, extent_z_um=(bead_z_um - 1, bead_z_um + 1))


def focus_sweep(
    z_um: np.ndarray,
    bead_z_um: float = 2.0,
    shape: tuple[int, int] = (128, 128),
    optics: Optics | None = None,
) -> FocusSweep:
    """Noise-free images of a bead at depth ``bead_z_um`` with the focus at each ``z_um``."""
    world = SimWorld(single_bead(bead_z_um), optics, sensor_shape=shape)
    stacks = {
        m: np.stack([world.expected_photons(1.0, t_s=0.0, z_um=float(z), modality=m) for z in z_um])
        for m in ("widefield", "confocal")
    }
    return FocusSweep(np.asarray(z_um, float), bead_z_um, stacks["widefield"], stacks["confocal"])


def save_focus_sweep_png(path: str | Path, bead_z_um: float = 2.0) -> Path:
    """Render a focus-sweep figure (image rows + intensity-vs-focus plots) to ``path``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    z = np.arange(-6.0, 10.01, 0.25) + 0.0
    sweep = focus_sweep(z, bead_z_um)
    shown = [bead_z_um + d for d in (-6, -3, -1, 0, 1, 3, 6)]
    fig = plt.figure(figsize=(14, 6.5), constrained_layout=True)
    grid = fig.add_gridspec(2, len(shown) + 3)
    c = sweep.widefield.shape[1] // 2
    crop = slice(c - 24, c + 24)
    for row, modality in enumerate(("widefield", "confocal")):
        stack = getattr(sweep, modality)
        vmax = stack.max()
        for col, zs in enumerate(shown):
            ax = fig.add_subplot(grid[row, col])
            i = int(np.argmin(np.abs(sweep.z_um - zs)))
            ax.imshow(stack[i, crop, crop] ** 0.5, cmap="magma", vmin=0, vmax=vmax**0.5)
            ax.set_xticks([])
            ax.set_yticks([])
            ax.set_title(f"{zs - bead_z_um:+.0f} µm", fontsize=9)
            if col == 0:
                ax.set_ylabel(modality, fontsize=11)
    for row, (measure, what) in enumerate(((FocusSweep.peak, "peak"), (FocusSweep.total, "integrated"))):
        ax = fig.add_subplot(grid[row, len(shown) :])
        for m in ("widefield", "confocal"):
            values = measure(sweep, m)
            ax.plot(sweep.z_um - bead_z_um, values / values.max(), label=m)
        ax.set_title(f"{what} intensity vs defocus")
        ax.set_xlabel("focus - bead depth (µm)")
        ax.legend()
    fig.suptitle("Simulated 20x/0.75 objective, 525 nm emission, 0.325 µm pixels (sqrt display)")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path
