"""Zarr writers side by side on the same camera stream: which one the recorder should stream with (#33).

``python -m benchmarks.backends [--size 2048] [--frames 200] [--shard 32] [--out docs/backends.json]``
(the writers compared: ``pip install -e ".[bench]"``)

Each writer streams the same simulated 2048² uint16 widefield frames (realistic content and
noise, so compression is honest), one frame per time point, as a (t, y, x) Zarr v3 array with
Blosc-LZ4 and bit shuffle, to the same disk:

- **zarr-python, one chunk per frame**: what the recorder did until 2026-12-03 (one file per frame,
  the time axis grown per frame);
- **the recorder's shard writer** (:class:`mm_deepz.io.shards.ShardWriter`, what the recorder does
  since 2026-12-03): ``--shard`` frames per shard file, each frame encoded with the array's codecs,
  appended to its shard and indexed in place as it arrives, the time axis grown 16 frames at a time;
  also uncompressed (against raw writes of the same bytes);
- **zarr-python, sharded**: the same shards, each frame written by zarr-python on its own;
- **tensorstore, sharded**: the same layout through tensorstore's zarr3 driver, one write per frame;
- **acquire-zarr, sharded**: the same layout through acquire-zarr's streaming writer (a C++ library
  that buffers a shard and writes it whole), ``append`` per frame.

Measured: wall MB/s of raw frame bytes, CPU seconds per frame (every thread of the process),
files per time point, and whether zarr-python reads every frame back unchanged. Raw page-cache
file writes of the same bytes are the reference.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import zarr

from .common import machine
from .writing import camera_frames, raw_mb_s

logger = logging.getLogger(__name__)

Writer = Callable[[Path, list[np.ndarray], int, int], None]


def _codecs() -> list[Any]:
    from zarr.codecs import BloscCodec, BytesCodec

    return [BytesCodec(), BloscCodec(cname="lz4", clevel=5, shuffle="bitshuffle")]


def zarr_chunked(path: Path, frames: list[np.ndarray], n: int, shard: int) -> None:
    """The recorder's layout: one chunk (one file) per frame, the time axis grown per frame."""
    h, w = frames[0].shape
    arr = zarr.create_array(
        str(path), shape=(1, h, w), chunks=(1, h, w), dtype="uint16", serializer=_codecs()[0],
        compressors=_codecs()[1:], config={"write_empty_chunks": True},
    )  # fmt: skip
    for t in range(n):
        if arr.shape[0] <= t:
            arr.resize((t + 1, h, w))
        arr[t] = frames[t % len(frames)]


def shard_writer(path: Path, frames: list[np.ndarray], n: int, shard: int, compressed: bool = True) -> None:
    """The recorder's writer: zarr-python makes and grows the sharded array, each frame joins its shard
    through :class:`~mm_deepz.io.shards.ShardWriter`."""
    from mm_deepz.io.images import TIME_BLOCK, grown_length
    from mm_deepz.io.shards import ShardWriter, sharding

    h, w = frames[0].shape
    arr = zarr.create_array(
        str(path), shape=(TIME_BLOCK, 1, 1, h, w), chunks=(shard, 1, 1, h, w), dtype="uint16",
        serializer=sharding((1, 1, 1, h, w), _codecs()[1] if compressed else None), compressors=None,
        config={"write_empty_chunks": True},
    )  # fmt: skip
    writer = ShardWriter.for_array(arr)
    assert writer is not None
    for t in range(n):
        if arr.shape[0] <= t:
            arr.resize((grown_length(t), 1, 1, h, w))
        writer.write(t, 0, 0, frames[t % len(frames)])
    arr.resize((n, 1, 1, h, w))


def shard_writer_uncompressed(path: Path, frames: list[np.ndarray], n: int, shard: int) -> None:
    """The recorder's writer with compression off (``Recorder(compression=False)``)."""
    shard_writer(path, frames, n, shard, compressed=False)


def zarr_sharded(path: Path, frames: list[np.ndarray], n: int, shard: int) -> None:
    """zarr-python with ``shard`` frames per shard (each frame written on its own)."""
    h, w = frames[0].shape
    arr = zarr.create_array(
        str(path), shape=(n, h, w), chunks=(1, h, w), shards=(shard, h, w), dtype="uint16",
        serializer=_codecs()[0], compressors=_codecs()[1:], config={"write_empty_chunks": True},
    )  # fmt: skip
    for t in range(n):
        arr[t] = frames[t % len(frames)]


def tensorstore_sharded(path: Path, frames: list[np.ndarray], n: int, shard: int) -> None:
    """tensorstore's zarr3 driver, the same sharded layout, one write per frame."""
    import tensorstore as ts

    h, w = frames[0].shape
    spec = {
        "driver": "zarr3",
        "kvstore": {"driver": "file", "path": str(path)},
        "metadata": {
            "shape": [n, h, w],
            "data_type": "uint16",
            "chunk_grid": {"name": "regular", "configuration": {"chunk_shape": [shard, h, w]}},
            "codecs": [
                {
                    "name": "sharding_indexed",
                    "configuration": {
                        "chunk_shape": [1, h, w],
                        "codecs": [
                            {"name": "bytes", "configuration": {"endian": "little"}},
                            {
                                "name": "blosc",
                                "configuration": {"cname": "lz4", "clevel": 5, "shuffle": "bitshuffle"},
                            },
                        ],
                        "index_codecs": [
                            {"name": "bytes", "configuration": {"endian": "little"}},
                            {"name": "crc32c"},
                        ],
                    },
                }
            ],
        },
        "create": True,
        "delete_existing": True,
    }
    store = ts.open(spec).result()
    with ts.Transaction() as txn:  # a shard is written once, whole, when its frames are in
        for t in range(n):
            store.with_transaction(txn)[t].write(frames[t % len(frames)]).result()
            if (t + 1) % shard == 0:
                txn.commit_async().result()
                txn = ts.Transaction()
        txn.commit_async().result()


def acquire_sharded(path: Path, frames: list[np.ndarray], n: int, shard: int) -> None:
    """acquire-zarr's streaming writer, the same sharded layout, ``append`` per frame."""
    import acquire_zarr as aqz

    h, w = frames[0].shape
    settings = aqz.StreamSettings(store_path=str(path), overwrite=True)
    settings.arrays = [
        aqz.ArraySettings(
            output_key="",
            data_type=np.uint16,
            compression=aqz.CompressionSettings(
                compressor=aqz.Compressor.BLOSC1, codec=aqz.CompressionCodec.BLOSC_LZ4, level=5, shuffle=2
            ),
            dimensions=[
                aqz.Dimension(name="t", kind=aqz.DimensionType.TIME, array_size_px=0, chunk_size_px=1,
                              shard_size_chunks=shard),
                aqz.Dimension(name="y", kind=aqz.DimensionType.SPACE, array_size_px=h, chunk_size_px=h,
                              shard_size_chunks=1),
                aqz.Dimension(name="x", kind=aqz.DimensionType.SPACE, array_size_px=w, chunk_size_px=w,
                              shard_size_chunks=1),
            ],
        )
    ]  # fmt: skip
    stream = aqz.ZarrStream(settings)
    for t in range(n):
        stream.append(frames[t % len(frames)])
    stream.close()


WRITERS: dict[str, Writer] = {
    "zarr-python, one chunk per frame (the recorder until 2026-12-03)": zarr_chunked,
    "the recorder's shard writer (the recorder now)": shard_writer,
    "the recorder's shard writer, uncompressed": shard_writer_uncompressed,
    "zarr-python, sharded": zarr_sharded,
    "tensorstore, sharded": tensorstore_sharded,
    "acquire-zarr, sharded": acquire_sharded,
}


def _read_back(path: Path, frames: list[np.ndarray], n: int) -> bool:
    """Whether zarr-python reads every frame as written."""
    arr = zarr.open_array(str(path), mode="r")
    if arr.shape[0] != n:
        return False
    return all(np.array_equal(arr[t].squeeze(), frames[t % len(frames)]) for t in range(n))


def run(size: int, n: int, shard: int) -> list[dict[str, Any]]:
    """Every writer on the same frames; raw page-cache writes first, as the reference."""
    frames = camera_frames(size)
    mb = n * frames[0].nbytes / 2**20
    rows = []
    with tempfile.TemporaryDirectory(dir=".") as tmp:
        raw = raw_mb_s(frames, n, Path(tmp) / "raw")
        rows.append({"writer": "raw file writes (reference)", "mb_s": round(raw), "files_per_frame": 1.0})
        for name, write in WRITERS.items():
            path = Path(tmp) / f"{len(rows)}.zarr"
            try:
                t0, c0 = time.perf_counter(), time.process_time()
                write(path, frames, n, shard)
                seconds, cpu = time.perf_counter() - t0, time.process_time() - c0
            except Exception as e:  # noqa: BLE001 - a writer that cannot do this layout is a finding
                rows.append({"writer": name, "error": f"{type(e).__name__}: {e}"})
                logger.warning("%s: %s", name, rows[-1]["error"])
                continue
            files = [f for f in path.rglob("*") if f.is_file() and f.name != "zarr.json"]
            on_disk = sum(f.stat().st_size for f in files)
            rows.append(
                {
                    "writer": name,
                    "mb_s": float(f"{mb / seconds:.3g}"),  # 3 figures: a 64² frame, <0.1 MB/s
                    "vs_raw": round(mb / seconds / raw, 2),
                    "cpu_ms_per_frame": round(cpu / n * 1000, 3),  # µs: a small frame takes well under 0.1 ms
                    "files_per_frame": round(len(files) / n, 3),
                    "size_ratio": round(n * frames[0].nbytes / max(on_disk, 1), 2),
                    "reads_back": _read_back(path, frames, n),
                }
            )
            logger.warning("%s", rows[-1])
    return rows


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    """Run the comparison; write it as JSON."""
    ap = argparse.ArgumentParser(prog="python -m benchmarks.backends", description=__doc__)
    ap.add_argument("--size", type=int, default=2048)
    ap.add_argument("--frames", type=int, default=200)
    ap.add_argument("--shard", type=int, default=32, help="frames per shard file")
    ap.add_argument("--out", type=Path, default=Path("docs/backends.json"))
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    rows = run(args.size, args.frames, args.shard)
    command = "python -m benchmarks.backends " + " ".join(argv if argv is not None else sys.argv[1:])
    args.out.write_text(json.dumps({"machine": machine(), "command": command, "rows": rows}, indent=2))
    return rows


if __name__ == "__main__":
    main()
