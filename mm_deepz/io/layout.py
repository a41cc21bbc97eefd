"""Where each image of a run lives in its container, and what makes the container's root OME-Zarr.

Layout 2 (this version) is NGFF 0.5's bioformats2raw layout, the one layout that validators
(yaozarrs, ome-zarr-models), ome-zarr-py and Bio-Formats read as a collection of images::

    run.ome.zarr/            attrs: ome {version 0.5, bioformats2raw.layout 3}; mm_deepz {...,
                             layout: 2, images: {"measured": ["0"], "virtual": ["1"], ...}}
      OME/                   attrs: ome {series: ["0", "1", "2", ...]}; METADATA.ome.xml (names,
                             channels, emission, exposure, and at the end each frame's time)
      0/  1/  2/ ...         one NGFF image per image and position, numbered position by position
                             (measured, virtual, reference of position 0, then of position 1 ...),
                             images added later (another model's virtual stacks) after them

Layout 1 (containers written before) kept the images at named paths (``measured``,
``virtual/p1`` ...) under a root that was not OME-Zarr; they are still read, through the same
:func:`image_group_path`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import zarr
from ome_types import model as ome
from ome_types import to_xml

from ..errors import DeepZError

LAYOUT_VERSION = 2
#: a run's images, in their order in the collection
IMAGES = ("measured", "virtual", "reference")
#: the OME-XML file of a bioformats2raw collection, inside its OME/ group
OME_XML = "METADATA.ome.xml"
#: OME-XML's names of numpy's pixel types (the integer ones are the same)
OME_PIXEL_TYPES = {"float32": "float", "float64": "double"}


class MissingImageError(DeepZError):
    """A container without the image asked for (names the images it has)."""


@dataclass(frozen=True)
class ImageInfo:
    """What one image is, for viewers: channel label and colour, description, emission, exposure."""

    label: str
    color: str
    description: str = ""
    emission_nm: float | None = None
    exposure_ms: float | None = None


#: what each of a run's images is, before the run says more (model, modality, exposure)
DEFAULT_INFO = {
    "measured": ImageInfo("widefield (measured)", "00FF00", "Planes measured by the camera"),
    "virtual": ImageInfo(
        "virtual confocal (Deep-Z)", "FF00FF", "Stacks synthesized by Deep-Z from the measured planes"
    ),
    "reference": ImageInfo("confocal (reference)", "FFFFFF", "Stacks scanned for blind checks"),
    "measured_stack": ImageInfo(
        "widefield z-stacks (measured)",
        "00FF00",
        "Full z-stacks measured by the camera while virtual z-stacking was off",
    ),
}


def info_for(name: str, infos: Mapping[str, ImageInfo] | None = None) -> ImageInfo:
    """The :class:`ImageInfo` of an image: given, the default of its kind, or a virtual one's."""
    if infos and name in infos:
        return infos[name]
    if name in DEFAULT_INFO:
        return DEFAULT_INFO[name]
    base = DEFAULT_INFO["virtual"]
    model = name.removeprefix("virtual_")
    return replace(
        base, label=f"virtual (Deep-Z, {model})", description=f"Stacks synthesized by the model {model}"
    )


def number_images(names: Sequence[str], n_positions: int, start: int = 0) -> dict[str, list[str]]:
    """Paths ``"0"``, ``"1"`` ... for ``names`` at each position, position by position."""
    paths: dict[str, list[str]] = {name: [] for name in names}
    i = start
    for _ in range(n_positions):
        for name in names:
            paths[name].append(str(i))
            i += 1
    return paths


def json_attr(node: zarr.Group | zarr.Array[Any], key: str) -> Any:
    """The JSON attribute ``key`` of a zarr node (``KeyError`` when absent), as plain JSON."""
    return node.attrs[key]


def recorded(root: zarr.Group) -> dict[str, Any]:
    """What mm-deepz recorded in a container's root attributes (plan, model, progress ...)."""
    return dict(json_attr(root, "mm_deepz"))


def group_at(parent: zarr.Group, path: str) -> zarr.Group:
    """The group at ``path`` under ``parent`` (:class:`MissingImageError` when it is not a group)."""
    node = parent[path]
    if not isinstance(node, zarr.Group):
        raise MissingImageError(f"{path} in this container is not a group.")
    return node


def array_at(parent: zarr.Group, path: str) -> zarr.Array[Any]:
    """The array at ``path`` under ``parent`` (:class:`MissingImageError` when it is not an array)."""
    node = parent[path]
    if not isinstance(node, zarr.Array):
        raise MissingImageError(f"{path} in this container is not an array.")
    return node


def image_group_path(root: zarr.Group, image: str, p: int = 0) -> str:
    """The group of ``image`` at position ``p`` in a container of either layout."""
    attrs = recorded(root)
    if "images" in attrs:
        paths = attrs["images"].get(image)
        if paths is None or p >= len(paths):
            raise MissingImageError(_missing(image, p, list(attrs["images"])))
        return str(paths[p])
    path = f"{image}/p{p}" if n_positions(root) > 1 else image  # layout 1
    if path not in root:
        raise MissingImageError(
            _missing(image, p, [k for k in root.group_keys() if k not in ("rejected", "tracks")])
        )
    return path


def image_array(root: zarr.Group, image: str, p: int = 0) -> zarr.Array[Any]:
    """The (t, c, z, y, x) array of ``image`` at position ``p`` (``open_container(path)`` gives ``root``)."""
    return array_at(root, f"{image_group_path(root, image, p)}/0")


def transforms(group: zarr.Group) -> tuple[list[float], list[float]]:
    """(scale, translation) of an image group's data, on its (t, c, z, y, x) axes."""
    scale, translation = json_attr(group, "ome")["multiscales"][0]["datasets"][0]["coordinateTransformations"]
    return list(scale["scale"]), list(translation["translation"])


def z_grid(root: zarr.Group) -> tuple[float, ...]:
    """A run's requested z planes (µm): recorded since 2026-12-02; before, those of its virtual image
    (made at every run's start then)."""
    attrs = recorded(root)
    if "z_grid_um" in attrs:
        return tuple(float(z) for z in attrs["z_grid_um"])
    group = group_at(root, image_group_path(root, "virtual"))
    scale, trans = transforms(group)
    return tuple(float(trans[2] + scale[2] * i) for i in range(array_at(group, "0").shape[2]))


def image_names(root: zarr.Group) -> list[str]:
    """The images a container holds (measured, virtual, reference, and any added virtual ones)."""
    attrs = recorded(root)
    if "images" in attrs:  # the run's own images first (made as their first frames came), then added ones
        return sorted(attrs["images"], key=lambda k: IMAGES.index(k) if k in IMAGES else len(IMAGES))
    found = [k for k in root.group_keys() if k not in ("rejected", "tracks")]
    return sorted(found, key=lambda k: (IMAGES.index(k) if k in IMAGES else len(IMAGES), k))


def n_positions(root: zarr.Group) -> int:
    """How many XY positions a container's run imaged."""
    attrs = recorded(root)
    if "images" in attrs:
        return len(attrs["images"]["measured"])
    measured = group_at(root, "measured")
    return 1 if "0" in measured else len(list(measured.group_keys()))


def _missing(image: str, p: int, have: list[str]) -> str:
    where = f" at position {p}" if p else ""
    return f"This container has no image {image!r}{where}; it has {', '.join(have) or 'none'}."


def write_collection(
    root: zarr.Group,
    paths: Mapping[str, Sequence[str]],
    infos: Mapping[str, ImageInfo],
    planes: Mapping[str, list[dict[str, float]]] | None = None,
) -> None:
    """Make the root a bioformats2raw collection of the images at ``paths``: root and ``OME/``
    attributes and the OME-XML (names, channels; ``planes``: each image's frames with their
    ``the_t``, ``the_z``, ``delta_t`` (s) and ``exposure_time`` (ms))."""
    order = sorted((int(path), name, p) for name, ps in paths.items() for p, path in enumerate(ps))
    root.attrs["ome"] = {"version": "0.5", "bioformats2raw.layout": 3}
    group = root.require_group("OME")
    group.attrs["ome"] = {"version": "0.5", "series": [str(i) for i, _, _ in order]}
    several = max(len(ps) for ps in paths.values()) > 1
    images = [
        _ome_image(
            i,
            group_at(root, str(i)),
            f"{name} p{p}" if several else name,
            info_for(name, infos),
            (planes or {}).get(str(i), []),
        )
        for i, name, p in order
    ]
    store_path = getattr(root.store, "root", None)
    if store_path is None:  # a store without files (memory): the OME-XML is optional
        return
    (store_path / root.path / "OME" / OME_XML).write_text(to_xml(ome.OME(images=images, creator="mm-deepz")))


def _ome_image(
    i: int, group: zarr.Group, name: str, info: ImageInfo, planes: list[dict[str, float]]
) -> ome.Image:
    arr = array_at(group, "0")
    t, c, z, y, x = arr.shape
    scale, _ = transforms(group)
    pixels = ome.Pixels(
        id=f"Pixels:{i}",
        dimension_order="XYZCT",
        type=OME_PIXEL_TYPES.get(str(arr.dtype), str(arr.dtype)),
        size_x=x,
        size_y=y,
        size_z=z,
        size_c=c,
        size_t=max(t, 1),
        physical_size_x=scale[4],
        physical_size_y=scale[3],
        physical_size_z=scale[2],
        time_increment=scale[0],
        metadata_only=ome.MetadataOnly(),
        channels=[
            ome.Channel(
                id=f"Channel:{i}:{k}",
                name=info.label,
                samples_per_pixel=1,
                emission_wavelength=info.emission_nm,
            )
            for k in range(c)
        ],
        planes=[ome.Plane(the_c=0, exposure_time=info.exposure_ms, **plane) for plane in planes],
    )
    return ome.Image(id=f"Image:{i}", name=name, description=info.description or None, pixels=pixels)


def omero(info: ImageInfo, window: tuple[float, float], dtype_max: float) -> dict[str, Any]:
    """NGFF ``omero`` rendering metadata for one channel: label, colour, display window."""
    start, end = window
    return {
        "channels": [
            {
                "label": info.label,
                "active": True,
                "color": info.color,
                "window": {"start": start, "end": end, "min": 0, "max": dtype_max},
            }
        ],
        "rdefs": {"model": "color"},
    }
