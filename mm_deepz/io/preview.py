"""A PNG picture of a recorded container: measured plane(s), virtual planes, XZ sections."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import zarr

from ..errors import DeepZError
from ..metrics import normalize_stack
from .layout import group_at, image_array, image_group_path, image_names, n_positions, recorded, transforms
from .record import per_position
from .recorder import open_container
from .validate import DamagedContainerError


def preview_png(container: str | Path, out: str | Path, t: int = 0, p: int = 0) -> Path:
    """Render time point ``t`` (position ``p``) of a Deep-Z container to ``out`` (PNG)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    root = open_container(container)
    n_pos = n_positions(root)
    if not 0 <= p < n_pos:
        raise DeepZError(
            f"{container} has {n_pos} position(s): --position-index must be 0 to {n_pos - 1} (got {p})."
        )

    def path(image: str) -> str:
        return image_group_path(root, image, p)

    record = recorded(root)
    done = sorted(set(record["completed"]["measured"]))
    if t not in done:
        raise DeepZError(
            f"Time point {t} of {container} was not measured: complete time points are "
            f"{', '.join(map(str, done)) or 'none'}."
        )
    meas = _plane_stack(image_array(root, "measured", p), t, container)
    names = image_names(root)
    virt_arr = image_array(root, "virtual", p) if "virtual" in names else None
    if virt_arr is None or virt_arr.shape[0] <= t or t not in record["completed"]["virtual"]:
        missing = record.get("virtual_missing", {})
        reason = (
            missing.get(per_position(str(t), p, n_pos > 1))
            or "virtual z-stacking was off or it was never made"
        )
        raise DeepZError(
            f"Time point {t} of {container} has no virtual stack ({reason}); time points with one: "
            f"{', '.join(map(str, record['completed']['virtual'])) or 'none'}."
        )
    virt = _plane_stack(virt_arr, t, container)
    ref_arr = image_array(root, "reference", p) if "reference" in names else None  # made by blind checks
    ref = _plane_stack(ref_arr, t, container) if ref_arr is not None and ref_arr.shape[0] > t else None
    z = _z_of(group_at(root, path("virtual")), virt.shape[0])
    meas_z = _z_of(
        group_at(root, path("measured")), meas.shape[0]
    )  # the input planes (layout 2) or the whole grid
    measured_idx = [i for i in range(meas.shape[0]) if meas[i].max() > 0]
    if ref is not None and not ref.any():
        ref = None
    show = np.unique(np.linspace(0, len(z) - 1, 5).round().astype(int))
    rows = 2 + (ref is not None)
    fig, axes = plt.subplots(
        rows, len(show) + 1, figsize=(3.2 * (len(show) + 1), 3.3 * rows), constrained_layout=True
    )

    def norm(a: np.ndarray) -> np.ndarray:
        clipped: np.ndarray = np.clip(normalize_stack(a), 0, 1)
        return clipped

    anchor = measured_idx[len(measured_idx) // 2] if measured_idx else 0
    axes[0, 0].imshow(norm(meas[anchor]), cmap="gray")
    axes[0, 0].set_title(f"measured plane, z = {meas_z[anchor]:+.1f} µm")
    vn = norm(virt)
    for k, i in enumerate(show):
        axes[0, k + 1].imshow(vn[i], cmap="magma", vmin=0, vmax=1)
        axes[0, k + 1].set_title(f"virtual, z = {z[i]:+.1f} µm")
    rows = norm(meas[anchor]).max(axis=1)
    rows[:8] = rows[-8:] = -1  # a row through the specimen, not the frame edge
    y = int(np.argmax(rows))
    axes[1, 0].imshow(
        norm(meas[measured_idx][:, y, :]) if len(measured_idx) > 1 else norm(meas[anchor][None, y, :]),
        cmap="gray",
        aspect="auto",
    )
    axes[1, 0].set_title("measured, XZ")
    axes[1, 1].imshow(vn[:, y, :], cmap="magma", aspect="auto", extent=(0, vn.shape[2], z[-1], z[0]))
    axes[1, 1].set_title(f"virtual XZ at y = {y}")
    if ref is not None:
        rn = norm(ref)
        axes[1, 2].imshow(rn[:, y, :], cmap="magma", aspect="auto", extent=(0, rn.shape[2], z[-1], z[0]))
        axes[1, 2].set_title("reference XZ (blind check)")
        for k, i in enumerate(show):
            axes[2, k + 1].imshow(rn[i], cmap="magma", vmin=0, vmax=1)
            axes[2, k + 1].set_title(f"reference, z = {z[i]:+.1f} µm")
    for ax in axes.ravel():
        ax.set_xticks([])
        ax.set_yticks([])
        if not ax.images:
            ax.axis("off")
    fig.suptitle(f"{Path(container).name}, time point {t}")
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=80)
    plt.close(fig)
    return out


def _z_of(group: zarr.Group, n: int) -> np.ndarray:
    """The z (µm) of an NGFF image's ``n`` planes."""
    scale, translation = transforms(group)
    return translation[2] + scale[2] * np.arange(n)


def _plane_stack(arr: zarr.Array[Any], t: int, container: str | Path) -> np.ndarray:
    """The (z, y, x) stack of time point ``t``; a chunk that cannot be read is named, not a traceback."""
    try:
        return np.asarray(arr[t, 0])
    except Exception as e:  # noqa: BLE001 - a damaged chunk can make its codec raise anything
        raise DamagedContainerError(
            f"{container}: time point {t} of image {arr.path} cannot be read ({type(e).__name__}: {e}); that "
            "part of the container is damaged: preview another time point, or restore it from a copy."
        ) from None
