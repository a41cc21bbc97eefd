"""What each image of a run is on disk: its geometry (z grid, pixels, positions), its NGFF attributes,
and how it is stored (type, chunks, codec). The recorder's images (:mod:`mm_deepz.io.images`) and the
pairs dataset (:mod:`mm_deepz.io.pairs`) write by it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from zarr.codecs import BloscCodec
from zarr.core.array_spec import ArrayConfigParams

from .. import __version__
from .layout import ImageInfo, omero

#: camera images are uint16; virtual images float32 in the input camera's units, because a dim
#: input spans few ADU and rounding would reduce faint synthesized structure to a few levels
DTYPES = {"measured": "uint16", "virtual": "float32", "reference": "uint16", "measured_stack": "uint16"}
#: the images a camera's frames go to (written as they come: their compression never holds the camera up)
CAMERA_IMAGES = frozenset({"measured", "reference", "measured_stack"})
#: full z-stacks the camera measured (virtual z-stacking off): made at the first one
STACK_IMAGE = "measured_stack"


#: lossless, and 5x faster than zarr's default zstd on camera frames at a better size ratio
#: (benchmarks: 2048x2048 uint16, 1227 vs 236 MB/s, 5.1 vs 5.0)
COMPRESSOR = BloscCodec(cname="lz4", clevel=5, shuffle="bitshuffle")
#: every written chunk is stored: zarr's check for chunks equal to the fill value costs 2/3 of
#: the write time of a camera frame, and camera frames are never empty
ARRAY_CONFIG: ArrayConfigParams = {"order": "C", "write_empty_chunks": True}


#: a camera image's shard holds the planes of this many time points of one position at most (one file
#: per shard: a day-long time-lapse of a minute per time point is 23 files per image, not 2880)
SHARD_TIME_POINTS = 64
#: and at most this many bytes, uncompressed (a 2048² two-plane time point is 16 MB: 16 per shard)
SHARD_BYTES = 256 * 2**20

#: virtual stacks arrive whole, so their planes share chunks of up to this size (fewer, larger
#: writes: 21 planes of 256x256 float32 in 9 instead of 17 ms); camera planes arrive one by one
VIRTUAL_CHUNK_BYTES = 16 * 2**20
#: a chunk of at least twice this size is cut into bands of rows (:func:`band_rows`): a 2048² camera
#: frame into 4, whose encodes on two cores take 1.8 ms where one encode of the whole frame takes 2.9
BAND_BYTES = 2**20
#: a power of two
MAX_BANDS = 4


def z_chunk(image: str, n_z: int, plane_bytes: int) -> int:
    """Planes per chunk along z (virtual stacks arrive whole; camera planes one by one)."""
    return max(1, min(n_z, VIRTUAL_CHUNK_BYTES // plane_bytes)) if image == "virtual" else 1


def band_rows(height: int, chunk_bytes: int) -> int:
    """Rows of a band of a chunk of planes (each band an inner chunk of its own, so that a large chunk's
    Blosc encodes run on several cores at once): as many bands as keep one at least
    :data:`BAND_BYTES`, at most :data:`MAX_BANDS`, a power of two (a chunk's index entries then never
    straddle a page: :mod:`~.shards`), and dividing the height."""
    n = MAX_BANDS
    while n > 1 and (height % n or chunk_bytes // n < BAND_BYTES):
        n //= 2
    return height // n


def shard_time_points(image: str, time_point_bytes: int) -> int:
    """Time points per shard: one for virtual stacks (made time point by time point, by several processes
    at once in a batch); for camera images as many as :data:`SHARD_BYTES` holds, at most
    :data:`SHARD_TIME_POINTS`."""
    if image == "virtual":
        return 1
    return max(1, min(SHARD_TIME_POINTS, SHARD_BYTES // max(time_point_bytes, 1)))


@dataclass(frozen=True)
class Geometry:
    """The shared physical frame: z grid (µm), pixel size (µm), time interval (s), frame shape."""

    z_um: tuple[float, ...]
    pixel_size_um: float
    interval_s: float
    shape_yx: tuple[int, int]
    channels: tuple[str, ...] = ("fluorescence",)
    #: stage XY (µm) of each position
    positions_xy_um: tuple[tuple[float, float], ...] = ((0.0, 0.0),)
    #: z of Deep-Z's input planes, on ``z_um``: the measured image holds these planes only (full
    #: stacks go to ``measured_stack``); None: the measured image is on the whole grid
    anchor_z_um: tuple[float, ...] | None = None

    def image_z(self, image: str) -> tuple[float, ...]:
        """The z planes (µm) of an image."""
        return self.anchor_z_um if image == "measured" and self.anchor_z_um is not None else self.z_um

    def grid_index(self, z: float) -> int:
        """Index on ``z_um`` of the plane at ``z`` µm."""
        return int(np.argmin(np.abs(np.asarray(self.z_um) - z)))

    @property
    def z_step_um(self) -> float:
        """Spacing of the z grid (1 for a single plane)."""
        return z_step(self.z_um)


def z_step(z: tuple[float, ...]) -> float:
    """The spacing of planes ``z`` (µm; 1 for a single plane)."""
    return float(np.median(np.diff(z))) if len(z) > 1 else 1.0


def ngff_attrs(
    name: str, g: Geometry, info: ImageInfo, position: int = 0, z: tuple[float, ...] | None = None
) -> dict[str, Any]:
    """The NGFF attributes of one (t, c, z, y, x) image: axes in seconds and µm, scale and translation
    (stage position ``position`` of ``g``, planes ``z`` or ``g``'s grid), display window."""
    h, w = g.shape_yx
    p = g.pixel_size_um
    z = z or g.z_um
    x0, y0 = g.positions_xy_um[position] if len(g.positions_xy_um) > 1 else (0.0, 0.0)
    seconds = g.interval_s if g.interval_s > 0 else 1.0
    return {
        "ome": {
            "version": "0.5",
            "multiscales": [
                {
                    "name": name,
                    # NGFF's recommended description of how the levels were made (ngff-zarr's strict
                    # schema requires it): one level, as recorded, no downscaling
                    "type": "none",
                    "metadata": {
                        "description": "one resolution level, as the camera recorded it or the model made it",
                        "method": "mm_deepz.io.recorder",
                        "version": __version__,
                    },
                    "axes": [
                        {"name": "t", "type": "time", "unit": "second"},
                        {"name": "c", "type": "channel"},
                        {"name": "z", "type": "space", "unit": "micrometer"},
                        {"name": "y", "type": "space", "unit": "micrometer"},
                        {"name": "x", "type": "space", "unit": "micrometer"},
                    ],
                    "datasets": [
                        {
                            "path": "0",
                            "coordinateTransformations": [
                                # an interval of 0 (as fast as possible) is replaced by the measured cadence
                                # on finish
                                {
                                    "type": "scale",
                                    "scale": [seconds, 1.0, z_step(z), p, p],
                                },
                                {
                                    "type": "translation",
                                    "translation": [
                                        0.0,
                                        0.0,
                                        float(z[0]),
                                        y0 - (h - 1) / 2 * p,
                                        x0 - (w - 1) / 2 * p,
                                    ],
                                },
                            ],
                        }
                    ],
                }
            ],
            "omero": omero(info, (0.0, 4000.0), 65535),
        }
    }
