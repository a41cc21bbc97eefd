"""Zarr writers side by side on the same camera stream: which one the recorder should stream with (#33).

``python -m benchmarks.backends [--size 2048] [--frames 200] [--shard 32] [--rounds 3]
[--out docs/backends.json]``
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
files per time point, and whether zarr-python reads every frame back unchanged (from a shorter stream
written apart). Raw page-cache file writes of the same bytes are the reference. Each writer writes
into a new folder, deleted and synced before the next: page-cache writes into memory that earlier
writes filled run at half the speed, so the order would decide the ranking.
"""

from __future__ import annotations

import argparse
import functools
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
from .writing import camera_frames, fresh, raw_mb_s

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
    from mm_deepz.io.images import TIME_BLOCK, TimeAxis
    from mm_deepz.io.schema import band_rows
    from mm_deepz.io.shards import ShardWriter, sharding

    h, w = frames[0].shape
    band = band_rows(h, frames[0].nbytes)  # the recorder's bands of rows
    arr = zarr.create_array(
        str(path), shape=(TIME_BLOCK, 1, 1, h, w), chunks=(shard, 1, 1, h, w), dtype="uint16",
        serializer=sharding((1, 1, 1, band, w), _codecs()[1] if compressed else None), compressors=None,
        config={"write_empty_chunks": True},
    )  # fmt: skip
    writer = ShardWriter.for_array(arr)
    assert writer is not None
    axis = TimeAxis()
    for t in range(n):
        if arr.shape[0] <= t:
            arr.resize((axis.grown(arr.shape[0], t), 1, 1, h, w))
        writer.write(t, 0, 0, frames[t % len(frames)])
    arr.resize((n, 1, 1, h, w))


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
    "the recorder's shard writer, uncompressed": functools.partial(shard_writer, compressed=False),
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


def _timed(write: Writer, frames: list[np.ndarray], n: int, shard: int) -> dict[str, float]:
    """One writer's stream into a new folder (deleted and synced after): MB/s, CPU ms per frame, files per
    frame and the size ratio."""

    def measure(folder: Path) -> dict[str, float]:
        path = folder / "stream.zarr"
        t0, c0 = time.perf_counter(), time.process_time()
        write(path, frames, n, shard)
        seconds, cpu = time.perf_counter() - t0, time.process_time() - c0
        files = [f for f in path.rglob("*") if f.is_file() and f.name != "zarr.json"]
        return {
            "mb_s": n * frames[0].nbytes / 2**20 / seconds,
            "cpu_ms": cpu / n * 1000,
            "files_per_frame": len(files) / n,
            "size_ratio": n * frames[0].nbytes / max(sum(f.stat().st_size for f in files), 1),
        }

    return fresh(measure)


def run(size: int, n: int, shard: int, rounds: int = 3) -> list[dict[str, Any]]:
    """Every writer on the same frames, ``rounds`` rounds, each writer right after raw page-cache writes
    of the same frames (the reference its ratio is taken against); medians and ranges."""
    frames = camera_frames(size)
    raws: list[float] = []
    runs: dict[str, list[dict[str, float]]] = {name: [] for name in WRITERS}
    errors: dict[str, str] = {}
    for _ in range(rounds):
        for name, write in WRITERS.items():
            if name in errors:
                continue
            raw = fresh(lambda d: raw_mb_s(frames, n, d / "raw"))
            try:
                result = _timed(write, frames, n, shard)
            except Exception as e:  # noqa: BLE001 - a writer that cannot do this layout is a finding
                errors[name] = f"{type(e).__name__}: {e}"
                logger.warning("%s: %s", name, errors[name])
                continue
            raws.append(raw)
            runs[name].append({**result, "vs_raw": result["mb_s"] / raw})
    rows: list[dict[str, Any]] = [
        {
            "writer": "raw file writes (reference)",
            "mb_s": round(float(np.median(raws))),
            "mb_s_range": [round(min(raws)), round(max(raws))],
            "files_per_frame": 1.0,
        }
    ]
    for name, write in WRITERS.items():
        if name in errors:
            rows.append({"writer": name, "error": errors[name]})
            continue
        ratios = [r["vs_raw"] for r in runs[name]]
        row: dict[str, Any] = {
            "writer": name,
            "mb_s": float(f"{np.median([r['mb_s'] for r in runs[name]]):.3g}"),  # 3 figures: 64² frames
            "vs_raw": round(float(np.median(ratios)), 2),
            "vs_raw_range": [round(min(ratios), 2), round(max(ratios), 2)],
            "cpu_ms_per_frame": round(float(np.median([r["cpu_ms"] for r in runs[name]])), 3),
            "files_per_frame": round(runs[name][0]["files_per_frame"], 3),
            "size_ratio": round(runs[name][0]["size_ratio"], 2),
        }
        # read back from a shorter stream (two shards and part of a third), written apart: reading the
        # timed stream back would leave the next writer less free memory
        check = 2 * shard + 3
        with tempfile.TemporaryDirectory(dir=".") as tmp:
            write(Path(tmp) / "check.zarr", frames, check, shard)
            row["reads_back"] = _read_back(Path(tmp) / "check.zarr", frames, check)
        rows.append(row)
        logger.warning("%s", row)
    return rows


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    """Run the comparison; write it as JSON."""
    ap = argparse.ArgumentParser(prog="python -m benchmarks.backends", description=__doc__)
    ap.add_argument("--size", type=int, default=2048)
    ap.add_argument("--frames", type=int, default=200)
    ap.add_argument("--shard", type=int, default=32, help="frames per shard file")
    ap.add_argument("--rounds", type=int, default=3, help="rounds over every writer (medians and ranges)")
    ap.add_argument("--out", type=Path, default=Path("docs/backends.json"))
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    rows = run(args.size, args.frames, args.shard, args.rounds)
    command = "python -m benchmarks.backends " + " ".join(argv if argv is not None else sys.argv[1:])
    args.out.write_text(json.dumps({"machine": machine(), "command": command, "rows": rows}, indent=2))
    return rows


if __name__ == "__main__":
    main()
