"""Writing: recorder MB/s for a stream of camera frames vs raw bytes and ome-zarr's writer, same disk."""

from __future__ import annotations

import logging
import os
import queue
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import numpy as np
import zarr
from ome_zarr.writer import write_image

import simulators as sim
from mm_deepz.io import Geometry, Recorder

from .common import measured_uncompressed

logger = logging.getLogger(__name__)

T = TypeVar("T")

#: the camera of the paced measurement (frames/s): the sustained test's
CAMERA_FPS = 100.0


def camera_frames(size: int, n_distinct: int = 4) -> list[np.ndarray]:
    """A few simulated widefield frames (realistic content and noise, so compression is honest)."""
    world = sim.SimWorld(sim.worm(seed=100), sensor_shape=(size, size), seed=100)
    world.shutter_open = True
    frames = []
    for z in np.linspace(-4, 4, n_distinct):
        world.z_um = float(z)
        frames.append(world.expose(10.0))
    return frames


def _mb_s(nbytes: int, seconds: float) -> float:
    return nbytes / 2**20 / seconds


def side_by_side(frames: list[np.ndarray], n: int, folder: Path, burst: int = 10) -> dict[str, float]:
    """MB/s of raw file writes and of the recorder with LZ4 and uncompressed, streaming ``n`` frames (one
    per time point) ``burst`` frames in turn, the writer that goes first rotating, so all three meet the
    same page cache (whole streams written one after another met it up to 1.4x apart within one run:
    raw writes 2875-3563 MB/s in three rounds, session 22); with the LZ4 container's size ratio, its
    files per time point (shards) and its share of frames stored uncompressed. Each writer takes its
    burst's frames back to back: a camera faster than every writer, whose frames queue (the LZ4
    recorder compresses the first frame of a burst, after the others' turns, and then what it has time
    for)."""
    size = frames[0].shape
    recorders = {
        name: Recorder(folder / f"{name}.ome.zarr", Geometry((0.0,), 0.325, 0.0, size), compression=lz4)
        for name, lz4 in (("lz4", True), ("uncompressed", False))
    }
    (folder / "raw").mkdir()

    def raw(t: int, frame: np.ndarray) -> None:
        write_raw(folder / "raw" / f"{t}.raw", frame)

    def recorder(rec: Recorder) -> Callable[[int, np.ndarray], None]:
        def write(t: int, frame: np.ndarray) -> None:
            rec.write_plane("measured", t, 0, frame)
            rec.mark_complete("measured", t, planes=[0])

        return write

    writers = {"raw": raw, **{name: recorder(rec) for name, rec in recorders.items()}}
    names = list(writers)
    seconds = dict.fromkeys(names, 0.0)
    for b, start in enumerate(range(0, n, burst)):
        for k in range(len(names)):
            name = names[(b + k) % len(names)]
            t0 = time.perf_counter()
            for t in range(start, min(n, start + burst)):
                writers[name](t, frames[t % len(frames)])
            seconds[name] += time.perf_counter() - t0
    out: dict[str, float] = {name: _mb_s(n * frames[0].nbytes, s) for name, s in seconds.items()}
    out.update(_stored(recorders["lz4"], n, frames[0].nbytes))
    return out


def _stored(rec: Recorder, n: int, frame_bytes: int) -> dict[str, float]:
    """What a finished LZ4 recorder of ``n`` frames stored: its size ratio, files per time point and the
    share of frames stored uncompressed (they came faster than the codec)."""
    rec.finish()
    files = [f for f in (rec.path / rec.group_path("measured") / "0" / "c").rglob("*") if f.is_file()]
    uncompressed = measured_uncompressed(rec.attrs)
    return {
        "lz4_size_ratio": n * frame_bytes / max(sum(f.stat().st_size for f in files), 1),
        "files_per_time_point": len(files) / n,
        "lz4_uncompressed_share": uncompressed / n,
    }


def paced(frames: list[np.ndarray], n: int, fps: float, folder: Path) -> dict[str, float]:
    """The LZ4 recorder fed by a camera at ``fps`` (a thread that puts a frame on a queue every
    1/fps s; the writer takes them off as a runner's writer does): what it stored (:func:`_stored`) and
    the frames' latency from the queue to disk (median and most, s)."""
    rec = Recorder(folder / "paced.ome.zarr", Geometry((0.0,), 0.325, 1 / fps, frames[0].shape))
    arrived: queue.Queue[tuple[int, float] | None] = queue.Queue()

    def camera() -> None:
        start = time.perf_counter()
        for t in range(n):
            time.sleep(max(0.0, start + t / fps - time.perf_counter()))
            arrived.put((t, time.perf_counter()))
        arrived.put(None)

    threading.Thread(target=camera, daemon=True).start()
    latency = []
    while (item := arrived.get()) is not None:
        t, at = item
        rec.write_plane("measured", t, 0, frames[t % len(frames)])
        rec.mark_complete("measured", t, planes=[0])
        latency.append(time.perf_counter() - at)
    return {**_stored(rec, n, frames[0].nbytes), "latency_median_s": float(np.median(latency)),
            "latency_max_s": float(np.max(latency))}  # fmt: skip


def fresh(measure: Callable[[Path], T]) -> T:
    """``measure`` run in a new folder that is deleted (and synced) after it: each writer starts with the
    same free memory. Page-cache writes are 2x slower once earlier writes' pages fill memory (raw file
    writes here: 2700 MB/s into free memory, 1200-1400 after 1.6 GB written and synced), so whichever
    writer ran first looked fastest."""
    with tempfile.TemporaryDirectory(dir=".") as tmp:
        result = measure(Path(tmp))
    os.sync()
    return result


def recorder_parts_ms(frames: list[np.ndarray], n: int, out: Path) -> dict[str, float]:
    """Where an uncompressed frame's time goes in the recorder (ms per frame, medians): the whole
    ``write_plane`` and, inside it, the display window's update; then ``mark_complete`` (the record)."""
    from mm_deepz.io.window import DisplayWindows

    rec = Recorder(out, Geometry((0.0,), 0.325, 0.0, frames[0].shape), overwrite=True, compression=False)
    write, mark, window = [], [], []
    windows = DisplayWindows()
    for t in range(n):
        frame = frames[t % len(frames)]
        t0 = time.perf_counter()
        rec.write_plane("measured", t, 0, frame)
        t1 = time.perf_counter()
        rec.mark_complete("measured", t, planes=[0])
        t2 = time.perf_counter()
        windows.note(("measured", 0), frame)
        window.append(time.perf_counter() - t2)
        write.append(t1 - t0)
        mark.append(t2 - t1)
    rec.finish()
    return {name: round(float(np.median(v)) * 1000, 2) for name, v in (("write_plane", write),
            ("of_which_window", window), ("mark_complete", mark))}  # fmt: skip


def raw_mb_s(frames: list[np.ndarray], n: int, out: Path) -> float:
    """MB/s of writing the same bytes, one file per frame, with plain Python file writes of each frame's
    own buffer (no copy: the ceiling, not a writer)."""
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    for t in range(n):
        write_raw(out / f"{t}.raw", frames[t % len(frames)])
    return _mb_s(n * frames[0].nbytes, time.perf_counter() - t0)


def write_raw(path: Path, frame: np.ndarray) -> None:
    """One frame's own buffer written to a new file with a plain unbuffered write (no copy)."""
    with open(path, "wb", buffering=0) as f:
        f.write(np.ascontiguousarray(frame).data)


def ome_zarr_mb_s(frames: list[np.ndarray], n: int, out: Path) -> float:
    """MB/s of ome-zarr-py's write_image of the same frames as one (t, y, x) array (not streamed)."""
    data = np.stack([frames[t % len(frames)] for t in range(n)])
    root = zarr.open_group(str(out), mode="w")
    t0 = time.perf_counter()
    write_image(data, root, axes="tyx", scale_factors=())
    return _mb_s(data.nbytes, time.perf_counter() - t0)


def record_ms_per_time_point(n: int, out: Path, early: int = 100) -> tuple[float, float]:
    """Recorder ms per time point (a 64² plane and its completion) over the first ``early`` time points
    and over the last half of ``n``: small frames, so what grows with a long run (the run record) shows."""
    rec = Recorder(out, Geometry((0.0,), 0.325, 0.0, (64, 64)), overwrite=True)
    frame = np.full((64, 64), 100, np.uint16)
    stamps = [time.perf_counter()]
    for t in range(n):
        rec.write_plane("measured", t, 0, frame)
        rec.mark_complete("measured", t, planes=[0])
        stamps.append(time.perf_counter())
    rec.finish()
    half = n // 2
    return (stamps[early] - stamps[0]) / early * 1000, (stamps[n] - stamps[half]) / (n - half) * 1000


def run(quick: bool, rounds: int = 3) -> dict:
    """The writing row: MB/s and ratios, with and without compression: ``rounds`` rounds of raw writes
    and the recorder side by side (page-cache writes vary by 2x between runs here), medians and ranges."""
    size, n = (256, 20) if quick else (2048, 40)
    frames = camera_frames(size)
    rounds_ = [fresh(lambda d: side_by_side(frames, n, d)) for _ in range(rounds)]
    raws, lz4s, plains = ([r[name] for r in rounds_] for name in ("raw", "lz4", "uncompressed"))
    parts = fresh(lambda d: recorder_parts_ms(frames, n, d / "parts.ome.zarr"))
    at_camera = fresh(lambda d: paced(frames, 5 * n, CAMERA_FPS, d))
    with tempfile.TemporaryDirectory(dir=".") as tmp:
        d = Path(tmp)
        reference = ome_zarr_mb_s(frames, n, d / "omezarr.ome.zarr")
        long_n = 400 if quick else 3000
        record_early, record_late = record_ms_per_time_point(long_n, d / "long.ome.zarr")
        os.sync()
    raw, lz4, plain = (float(np.median(v)) for v in (raws, lz4s, plains))
    lz4_ratios = [a / b for a, b in zip(lz4s, raws, strict=True)]
    plain_ratios = [a / b for a, b in zip(plains, raws, strict=True)]
    frame_mb = frames[0].nbytes / 2**20
    row = {
        "frame": size,
        "frames": n,
        "frame_mb": round(frame_mb, 1),
        "raw_mb_s": round(raw),
        "recorder_lz4_mb_s": round(lz4),
        "recorder_raw_mb_s": round(plain),
        "ome_zarr_mb_s": round(reference),
        "rounds": rounds,
        "lz4_vs_raw": round(float(np.median(lz4_ratios)), 2),
        "lz4_vs_raw_range": [round(min(lz4_ratios), 2), round(max(lz4_ratios), 2)],
        "uncompressed_vs_raw": round(float(np.median(plain_ratios)), 2),
        "uncompressed_vs_raw_range": [round(min(plain_ratios), 2), round(max(plain_ratios), 2)],
        "lz4_size_ratio": round(rounds_[-1]["lz4_size_ratio"], 2),
        "lz4_uncompressed_share": round(float(np.median([r["lz4_uncompressed_share"] for r in rounds_])), 2),
        "files_per_time_point": round(rounds_[-1]["files_per_time_point"], 3),
        "camera_fps": CAMERA_FPS,
        "camera_frames": 5 * n,
        "camera_lz4_size_ratio": round(at_camera["lz4_size_ratio"], 2),
        "camera_lz4_uncompressed_share": round(at_camera["lz4_uncompressed_share"], 3),
        "camera_latency_median_ms": round(at_camera["latency_median_s"] * 1000, 1),
        "camera_latency_max_ms": round(at_camera["latency_max_s"] * 1000, 1),
        "camera_fps_sustained_lz4": round(lz4 / frame_mb),
        "camera_fps_sustained_raw": round(plain / frame_mb),
        "recorder_ms_per_frame": parts,
        "raw_ms_per_frame": round(frame_mb / raw * 1000, 2),
        "long_run_time_points": long_n,
        "record_ms_early": round(record_early, 2),
        "record_ms_late": round(record_late, 2),
    }
    logger.info("writing %s", row)
    return row
