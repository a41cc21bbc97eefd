"""napari reader (npe2 plugin ``mm-deepz``): a Deep-Z run opens from its root as named layers.

``napari run.ome.zarr`` (or File > Open Folder) gives, for every position, the measured planes,
each model's virtual stacks and the blind-check reference stacks as image layers in one
physical space (s, µm: the container's scales and translations, so positions tile and images
overlay), with the container's colours and display windows, plus the neuron tracks of
``mm-deepz track`` as tracks layers. Data stays on disk (dask), read as napari shows it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

#: napari colormap names for the container's channel colours
COLORMAPS = {"00FF00": "green", "FF00FF": "magenta", "FFFFFF": "gray", "00FFFF": "cyan"}

LayerData = tuple[Any, dict[str, Any], str]


def get_reader(path: str | list[str]) -> Any:
    """napari's reader hook: :func:`read_run` for an mm-deepz run's folder, None for anything else
    (napari then asks other readers, e.g. napari-ome-zarr for a plain NGFF image)."""
    from mm_deepz.io import is_container

    if isinstance(path, list):
        if len(path) != 1:
            return None
        path = path[0]
    p = Path(path)
    return read_run if p.is_dir() and is_container(p) else None


def read_run(path: str | list[str]) -> list[LayerData]:
    """Layers of a run: images (per position) and tracks, as napari ``LayerData`` tuples."""
    import dask.array as da

    from mm_deepz.io import image_array, image_group_path, image_names, n_positions, open_container
    from mm_deepz.io.layout import group_at, json_attr, recorded, transforms, z_grid

    where = Path(path[0] if isinstance(path, list) else path)
    root = open_container(where)
    anchors = recorded(root).get("anchor_z_um")
    grid = z_grid(root) if anchors else ()
    several = n_positions(root) > 1
    layers: list[LayerData] = []
    for p in range(n_positions(root)):
        for name in image_names(root):
            arr = image_array(root, name, p)
            if arr.shape[0] == 0:
                continue  # nothing written (no blind checks, no time point yet)
            group = group_at(root, image_group_path(root, name, p))
            ome = json_attr(group, "ome")
            scale, translate = transforms(group)
            axes = [a for a in ome["multiscales"][0]["axes"] if a["name"] != "c"]
            channel = (ome.get("omero") or {}).get("channels", [{}])[0]
            window = channel.get("window") or {}
            kwargs: dict[str, Any] = {
                "name": f"{name} p{p}" if several else name,
                # (t, z, y, x): the channel axis holds one channel
                "scale": [scale[0], *scale[2:]],
                "translate": [translate[0], *translate[2:]],
                # the axes' units (second, micrometer): napari's scale bar and status bar then say µm
                "units": [a.get("unit", "pixel") for a in axes],
                # and the sliders are named t and z, not -4 and -3
                "axis_labels": [a["name"] for a in axes],
                "colormap": COLORMAPS.get(str(channel.get("color", "")).upper(), "gray"),
                "blending": "additive",
                "metadata": {"mm_deepz_image": name, "position": p, "label": channel.get("label", name)},
            }
            if "start" in window and "end" in window and window["end"] > window["start"]:
                kwargs["contrast_limits"] = [window["start"], window["end"]]
            data = da.from_zarr(arr)[:, 0]
            if name == "measured" and anchors:
                data, kwargs["scale"][1], kwargs["translate"][1] = _on_grid(data, anchors, grid)
                kwargs["metadata"]["measured_z_um"] = list(anchors)
            layers.append((data, kwargs, "image"))
    layers.extend(_track_layers(where, root))
    return layers


def _on_grid(data: Any, anchors: list[float], grid: tuple[float, ...]) -> tuple[Any, float, float]:
    """The measured input planes (t, n, y, x) on the run's z grid, empty where nothing was measured, and
    that grid's z step and start: drawn at their spacing, two planes 4 µm apart would each fill a 4 µm
    slab (the -2 µm plane covering -4 to 0 µm); on the grid each is one plane thick at its own depth."""
    import dask.array as da
    import numpy as np

    z = np.asarray(grid)
    slot = {int(np.argmin(np.abs(z - a))): i for i, a in enumerate(anchors)}
    empty = da.zeros((data.shape[0], *data.shape[2:]), dtype=data.dtype, chunks=(1, *data.shape[2:]))
    planes = [data[:, slot[i]] if i in slot else empty for i in range(len(z))]
    step = float(z[1] - z[0]) if len(z) > 1 else 1.0
    return da.stack(planes, axis=1), step, float(z[0])


def _track_layers(path: Path, root: Any) -> list[LayerData]:
    """The run's neuron tracks (``tracks/<image>``) in world units (s, µm), as tracks layers."""
    import numpy as np

    from mm_deepz.neurons.analyse import TRACKS_GROUP, read_tracks

    if TRACKS_GROUP not in root:
        return []
    layers = []
    for key in sorted(root[TRACKS_GROUP].group_keys()):
        image = root[f"{TRACKS_GROUP}/{key}"].attrs.get("mm_deepz_tracks", {}).get("image", key)
        table = read_tracks(path, image)
        if table.empty:
            continue
        data = table[["track", "time_s", "z_um", "y_um", "x_um"]].to_numpy(np.float64)
        layers.append(
            (
                data,
                {"name": f"{image} tracks", "tail_length": 10, "metadata": {"mm_deepz_tracks": image}},
                "tracks",
            )
        )
    return layers
