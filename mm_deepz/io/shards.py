"""Planes written into their shard files in place, as they arrive, and what a shard holds read back.

Every image array of a run is sharded (Zarr v3 ``sharding_indexed``, :func:`sharding`): one file holds
the planes of several time points of one position (camera images) or a whole virtual stack, so a long
time-lapse is one file per shard and image, not one per plane. A shard's index sits at the start of the
file and carries no checksum, which lets a plane join its shard the moment it arrives and safely:

1. the plane, encoded with the array's codecs, is appended to the end of the shard file;
2. then its 16-byte index entry (offset, length) is written in place.

A process killed at any moment leaves the shard as it was or with the plane whole: until step 2 the
index does not point at the new bytes, and an entry is one write that no page boundary splits (entries
are 16-byte aligned from the file's start). A large plane is cut into 2 or 4 bands of rows
(:func:`~.schema.band_rows`), each an inner chunk, encoded side by side on the encoding threads; its
bands' entries are consecutive, start at a multiple of their 32 or 64 bytes and are written at once, so
no page boundary splits them either, and a plane counts as stored only with all its bands. A shard's
first plane makes the file, written to a temporary name and renamed into place. A plane written a
second time (rare: a chunk rewritten) rewrites the whole shard the same way. So nothing waits in
memory for its shard to fill, and a kill -9 loses at most the plane being written, as with one file per plane.

**The camera never waits for the codec.** A camera image's planes (Blosc-compressed) are encoded only
when the writer has time for it or the encode makes the write faster (:class:`CodecBudget`): when it
waited for the plane at least as long as the last encode held it up, or the disk is slower than the
encoder (a plane's bands are written as each is encoded, :class:`Bands`, so only the encode's part
that its file writes do not overlap holds the writer up);
the codec's encode time and size ratio are first measured on one band of the camera's first plane by
a thread of its own at the lowest CPU priority, while that plane is stored as it came (or on a plane
the writer had ample time for, if that comes first).
Planes that come faster than the encoder on a faster disk (a burst, the page cache, cores taken by the
model) are stored as Blosc's uncompressed ("memcpyed") chunks: the same codec, a 16-byte Blosc header
before the plane's bytes, read by every Blosc decoder as any other chunk, written without a copy,
after a few bytes of padding that put the plane's bytes on page boundaries. So the writer keeps up at
the disk's rate and compresses what it has time for. A virtual stack is always compressed: the
model's thread writes it, and the camera does not wait for that.

zarr-python, ome-zarr-py, napari and the validators read these shards as any others (the index says
where each plane is; unreferenced bytes between planes are allowed by the sharding spec). zarr-python
still makes, grows and reads the arrays; only arrays whose codecs this writes exactly are taken
(:meth:`ShardWriter.for_array`), others are written by zarr-python.
"""

from __future__ import annotations

import functools
import logging
import math
import mmap
import os
import threading
import time
from collections import Counter
from collections.abc import Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from itertools import product
from pathlib import Path
from typing import Any, BinaryIO

import numcodecs
import numpy as np
import zarr
from zarr.codecs import BloscCodec, BytesCodec, ShardingCodec
from zarr.codecs.sharding import ShardingCodecIndexLocation
from zarr.storage import LocalStore

from .schema import MAX_BANDS

logger = logging.getLogger(__name__)

#: an index entry of a chunk the shard does not hold (offset and length), as the spec says
EMPTY = 2**64 - 1
#: zarr's Blosc shuffle names -> numcodecs' constants
_SHUFFLE = {"noshuffle": numcodecs.Blosc.NOSHUFFLE, "shuffle": numcodecs.Blosc.SHUFFLE}
_SHUFFLE["bitshuffle"] = numcodecs.Blosc.BITSHUFFLE

#: before the codec is measured, a plane is compressed (and measures it) when the writer waited for it
#: this many times as long as its file writes take (LZ4 encodes a plane in about one write's time here)
UNMEASURED_SLACK = 4.0
#: the weight of each plane's file writes in the running mean of the write time per byte
WRITE_SMOOTHING = 0.2
#: a Blosc header's flag for a chunk stored uncompressed
_MEMCPYED = 0x02

Coords = tuple[int, ...]
#: an encoded chunk: the pieces of its bytes, written one after another
Encoded = tuple[bytes | memoryview, ...]


class CodecBudget:
    """Whether to compress the next plane of a camera image: when the writing thread waited for it (its
    wall time since its last write, less its own CPU time) at least as long as the last compression
    cost it (its waits for the encodes its file writes did not overlap), or when compressing makes the
    write faster (a disk slower than the encoder: the bytes it saves take longer to write than the
    encode). A writer whose planes queue for it, on a disk faster than its encoder, stores them
    uncompressed until it has caught up. Until the codec is measured (its
    encode time and size ratio, by a probe of the first plane off the writer's thread at idle priority:
    :meth:`probe_due`, :meth:`learned`), a plane is compressed only when the writer waited for it
    :data:`UNMEASURED_SLACK` times as long as its file writes take (the probe waits for an idle core,
    which a model on the CPU may not leave), and that plane measures the codec."""

    def __init__(self) -> None:
        #: at the last write's end: the thread, its wall clock and its CPU clock
        self._since: tuple[int, float, float] | None = None
        #: what the last compressed plane's encode cost the writer (s) and its size ratio: the next one is
        #: expected alike (None: not measured yet)
        self._encode_s: float | None = None
        self._ratio = 1.0
        self._probing = False
        #: the file writes' time per byte (s), a running mean over the last planes
        self._write_s_per_byte: float | None = None
        #: planes written, and of those stored uncompressed
        self.planes = 0
        self.uncompressed = 0

    def probe_due(self) -> bool:
        """Whether the codec is still to be measured and no probe is under way (then one is)."""
        if self._encode_s is not None or self._probing:
            return False
        self._probing = True
        return True

    def learned(self, encode_s: float, ratio: float) -> None:
        """The probe's measure of the codec: a plane's encode time (s) and size ratio."""
        if self._encode_s is None:
            self._encode_s, self._ratio = encode_s, ratio

    def allows(self, nbytes: int) -> bool:
        """At a write's start, for ``nbytes`` of planes: whether the writer waited long enough for an
        encode, or the encode costs less than writing the bytes it saves."""
        encode_s = self._encode_s
        if self._since is None or self._write_s_per_byte is None:
            return False
        thread, wall, cpu = self._since
        waited = time.perf_counter() - wall
        if thread == threading.get_ident():  # another thread's wait is not seen: its whole interval
            waited -= time.thread_time() - cpu
        write_s = nbytes * self._write_s_per_byte
        if encode_s is None:  # the probe has not run (no idle core yet): this plane measures the codec
            return waited >= UNMEASURED_SLACK * write_s  # if the writer has ample time for it
        return waited >= encode_s or write_s * (1 - 1 / self._ratio) > encode_s

    def spent(
        self, compressed: bool, encode_s: float, write_s: float, nbytes: int, stored: int, planes: int
    ) -> None:
        """At a write's end, once its bytes are in their files: ``planes`` planes of ``nbytes``, stored in
        ``stored`` bytes, ``compressed`` or not; what the writer waited for its encode (``encode_s``) and
        what its file writes took (``write_s``)."""
        self.planes += planes
        if compressed:
            self._encode_s, self._ratio = encode_s, nbytes / max(stored, 1)
        else:
            self.uncompressed += planes
        rate = write_s / max(stored, 1)
        last = self._write_s_per_byte
        self._write_s_per_byte = rate if last is None else last + WRITE_SMOOTHING * (rate - last)
        self._since = (threading.get_ident(), time.perf_counter(), time.thread_time())


def sharding(inner: Coords, compressor: BloscCodec | None) -> ShardingCodec:
    """The serializer of a run's arrays: inner chunks ``inner`` (Blosc-compressed or raw), the index at
    the start of each shard and without checksum, so that :class:`ShardWriter` can add planes in place."""
    codecs: list[Any] = [BytesCodec(endian="little")] + ([compressor] if compressor is not None else [])
    return ShardingCodec(
        chunk_shape=inner, codecs=codecs, index_codecs=[BytesCodec(endian="little")], index_location="start"
    )


class ShardWriter:
    """Writes planes of one (t, c, z, y, x) array into its shards in place. One thread at a time per
    array (the recorder's lock of its image and position)."""

    def __init__(
        self, array: zarr.Array[Any], root: Path, codec: numcodecs.Blosc | None, camera: bool = True
    ) -> None:
        self._metadata = array.metadata
        self._dir = root / array.store_path.path if array.store_path.path else root
        self._codec = codec
        self._dtype = np.dtype(array.dtype).newbyteorder("<")
        self._inner = tuple(array.chunks)
        self._per_shard = chunks_per_shard(array)
        self._index_bytes = 16 * math.prod(self._per_shard)
        #: when a camera image's planes are compressed (none without a codec; every plane of any other image)
        self.budget = CodecBudget() if camera and codec is not None else None

    @classmethod
    def for_array(cls, array: zarr.Array[Any], camera: bool = True) -> ShardWriter | None:
        """A writer for ``array``, or None where it is not sharded as :func:`sharding` makes arrays;
        ``camera``: its planes are a camera's, compressed when the writer has time for it
        (:class:`CodecBudget`)."""
        metadata = array.metadata
        if not isinstance(array.store, LocalStore) or getattr(metadata, "zarr_format", None) != 3:
            return None
        codecs = list(metadata.codecs)  # type: ignore[union-attr]
        if len(codecs) != 1 or not isinstance(codecs[0], ShardingCodec) or array.shards is None:
            return None
        shard = codecs[0]
        inner = tuple(shard.chunk_shape)
        if (
            len(inner) != 5
            or inner[:2] != (1, 1)
            or array.shape[3] % inner[3]
            or inner[4] != array.shape[4]
            or shard.index_location != ShardingCodecIndexLocation.start
            or len(shard.index_codecs) != 1
            or not isinstance(shard.index_codecs[0], BytesCodec)
            or not _little_endian(shard.index_codecs[0])
        ):
            return None
        inner_codecs = list(shard.codecs)
        if (
            not inner_codecs
            or not isinstance(inner_codecs[0], BytesCodec)
            or not _little_endian(inner_codecs[0])
        ):
            return None
        codec = None
        if len(inner_codecs) == 2 and isinstance(inner_codecs[1], BloscCodec):
            blosc = inner_codecs[1]
            codec = numcodecs.Blosc(
                cname=str(blosc.cname.value),
                clevel=int(blosc.clevel),
                shuffle=_SHUFFLE[str(blosc.shuffle.value)],
                blocksize=int(blosc.blocksize),
            )
        elif len(inner_codecs) != 1:
            return None
        return cls(array, Path(array.store.root), codec, camera)

    def write(self, t: int, c: int, z: int, planes: np.ndarray) -> None:
        """Planes ``z, z+1, ...`` of channel ``c`` at time point ``t`` ((n, y, x), or one (y, x) plane),
        inside the array's shape (the caller grows it): whole inner chunks, or a stack's last one. The
        bands of rows of a chunk are encoded side by side and written as each is encoded (:class:`Bands`)."""
        data = np.ascontiguousarray(planes, self._dtype)
        if data.ndim == 2:
            data = data[None]
        zc, band = self._inner[2:4]
        if data.shape[2] != self._inner[4] or data.shape[1] % band or z % zc:
            raise ValueError(f"planes {data.shape} at z={z} do not fit chunks of {self._inner}")
        chunks: list[Coords] = []
        blocks: list[np.ndarray] = []
        for start in range(0, len(data), zc):
            block = data[start : start + zc]
            if len(block) < zc:  # the stack's last, partial chunk: the array's fill value beyond it
                block = np.concatenate([block, np.zeros((zc - len(block), *block.shape[1:]), block.dtype)])
            for y in range(0, data.shape[1], band):
                chunks.append((t, c, (z + start) // zc, y // band, 0))
                blocks.append(np.ascontiguousarray(block[:, y : y + band]))
        if self.budget is not None and self._codec is not None and self.budget.probe_due():
            probe = (self.budget, self._codec, blocks)
            threading.Thread(target=_probe, args=probe, name="mm-deepz-codec-probe", daemon=True).start()
        compress = self._codec is not None and (self.budget is None or self.budget.allows(data.nbytes))
        began = time.perf_counter()
        encoded = Bands(self._codec, blocks, compress)
        by_shard: dict[Coords, list[tuple[int, int]]] = {}
        for i, chunk in enumerate(chunks):
            shard = tuple(i // n for i, n in zip(chunk, self._per_shard, strict=True))
            by_shard.setdefault(shard, []).append((self._entry(chunk), i))
        for shard, entries in by_shard.items():
            path = self._dir / self._metadata.encode_chunk_key(shard)
            self._add(path, [k for k, _ in entries], (encoded[i] for _, i in entries))
        if self.budget is not None:
            written = time.perf_counter() - began - encoded.waited_s
            stored = encoded.stored()
            self.budget.spent(compress, encoded.waited_s, written, data.nbytes, stored, len(data))

    def _entry(self, chunk: Coords) -> int:
        """The index entry (C order over the shard's chunks) of inner chunk ``chunk``."""
        entry = 0
        for i, n in zip(chunk, self._per_shard, strict=True):  # numpy's ravel_multi_index: 37 us a call
            entry = entry * n + i % n
        return entry

    def _add(self, path: Path, keys: list[int], encoded: Iterable[Encoded]) -> None:
        """Add encoded chunks (their index entries ``keys``; their bytes, taken in turn as they are
        encoded) to the shard at ``path``: appended, then indexed."""
        if not path.exists():
            self._rewrite(path, zip(keys, encoded, strict=True))
            return
        with open(path, "r+b", buffering=0) as f:
            index = read_index(f, self._index_bytes)
            if (index[keys, 0] != EMPTY).any():  # written before: the shard made anew
                f.seek(0)
                old = f.read()
                kept = [(k, (old[o : o + n],)) for k, (o, n) in enumerate(index.tolist()) if o != EMPTY]
                replaced = set(keys)
                new = list(zip(keys, encoded, strict=True))
                self._rewrite(path, [(k, b) for k, b in kept if k not in replaced] + new)
                return
            offset = f.seek(0, os.SEEK_END)
            entries = []
            for k, chunk in zip(keys, encoded, strict=True):  # 1. the bytes, at the end
                gap = _gap(offset, chunk)
                _write_all(f, _padded(gap, chunk))
                entries.append((k, offset + gap, n := _length(chunk)))
                offset += gap + n
            for k, run in _runs(entries):  # 2. then the entries, in place: a plane's bands in one write
                f.seek(16 * k)
                _write_all(f, (np.array(run, "<u8").tobytes(),))

    def _rewrite(self, path: Path, chunks: Iterable[tuple[int, Encoded]]) -> None:
        """Write a whole shard holding ``chunks`` (index entry, bytes) to a temporary file, its index
        last, and rename it to ``path``; the temporary file is removed if a chunk's encode fails."""
        index = np.full((self._index_bytes // 16, 2), EMPTY, "<u8")
        offset = self._index_bytes
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary = path.with_name(f".{path.name}.{os.getpid()}.partial")
        try:
            with open(temporary, "wb", buffering=0) as f:
                f.seek(offset)
                for k, encoded in chunks:
                    gap = _gap(offset, encoded)
                    _write_all(f, _padded(gap, encoded))
                    index[k] = (offset + gap, n := _length(encoded))
                    offset += gap + n
                f.seek(0)
                _write_all(f, (index.tobytes(),))
        except BaseException:
            temporary.unlink(missing_ok=True)
            raise
        os.replace(temporary, path)


class Bands:
    """A write's inner chunks, taken by the writer in turn: stored as they came, or compressed on the
    encoding threads side by side (Blosc releases the GIL as it encodes), each written as soon as it is
    encoded while the later ones still encode, so that a plane's encode and its file writes overlap. The
    writer's time spent waiting for the encodes is what compressing cost it (for the codec budget)."""

    def __init__(self, codec: numcodecs.Blosc | None, blocks: list[np.ndarray], compress: bool) -> None:
        self._pending: list[Future[bytes]] = []
        #: the writer's wall time spent waiting for encodes (s)
        self.waited_s = 0.0
        if codec is None or not compress:
            self._ready: list[Encoded | None] = list(stored_all(codec, blocks))
        elif len(blocks) == 1:  # nothing to overlap: encoded on the writer's thread
            began = time.perf_counter()
            self._ready = [(codec.encode(blocks[0]),)]
            self.waited_s = time.perf_counter() - began
        else:
            self._ready = [None] * len(blocks)
            self._pending = [_encoders().submit(codec.encode, block) for block in blocks]

    def __getitem__(self, i: int) -> Encoded:
        ready = self._ready[i]
        if ready is None:
            began = time.perf_counter()
            ready = self._ready[i] = (self._pending[i].result(),)
            self.waited_s += time.perf_counter() - began
        return ready

    def stored(self) -> int:
        """Bytes of all the chunks (each awaited)."""
        return sum(_length(self[i]) for i in range(len(self._ready)))


def _probe(budget: CodecBudget, codec: numcodecs.Blosc, blocks: list[np.ndarray]) -> None:
    """Measure ``codec`` on a camera's first plane for ``budget``, off the writer's thread and at the
    lowest CPU priority (:func:`_idle_priority`), so that the camera path never waits for it or shares a
    core with it: one band encoded on this thread (its CPU time, which a preempted thread does not
    inflate), the plane's encode time taken as that of its bands on the encoding threads
    (:class:`Bands`), its size ratio as the band's."""
    _idle_priority()
    block = blocks[0]
    began = time.thread_time()
    try:
        encoded = codec.encode(block)
    except Exception:  # the planes are stored uncompressed, readable as any: nothing is lost
        logger.warning("Measuring the codec failed: camera planes are stored uncompressed.", exc_info=True)
        return
    rounds = math.ceil(len(blocks) / _workers())  # the bands' encodes, a worker each at a time
    budget.learned((time.thread_time() - began) * rounds, block.nbytes / max(len(encoded), 1))


def _idle_priority() -> None:
    """The calling thread runs only on a core nothing else wants (Linux's ``SCHED_IDLE``; elsewhere as
    it is)."""
    try:
        os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))  # 0: this thread, on Linux
    except (AttributeError, OSError):  # not Linux, or not allowed: the probe runs as any thread
        logger.debug("The codec probe runs at normal priority.", exc_info=True)


def chunks_per_shard(array: zarr.Array[Any]) -> Coords:
    """Inner chunks per shard along each axis (all 1 for an array that is not sharded)."""
    inner = tuple(array.chunks)
    return tuple(s // n for s, n in zip(array.shards or inner, inner, strict=True))


def read_index(f: BinaryIO, size: int) -> np.ndarray:
    """The (n, 2) index (offset, length) at the start of an open shard file of ``size`` index bytes;
    ValueError where the file is shorter than its index (not a shard this writes)."""
    f.seek(0)
    raw = f.read(size)
    if len(raw) != size:
        raise ValueError(f"a shard of {len(raw)} bytes is shorter than its {size}-byte index")
    index: np.ndarray = np.frombuffer(raw, "<u8").reshape(-1, 2).copy()
    return index


def stored_chunks(array: zarr.Array[Any]) -> tuple[set[Coords], list[Path]]:
    """The inner chunks of an array on a local store whose bytes are on disk (sharded or not), by chunk
    coordinates (a chunk cut into bands of rows counts, as (t, c, z, 0, 0), once all its bands are),
    and what else its chunk folder ``c/`` holds at its top (another tool's files, chunks beyond the
    array, shards too short for their index). Read-only; keys as zarr's default encoding."""
    root = Path(array.store.root) / array.store_path.path  # type: ignore[attr-defined]
    inner = tuple(array.chunks)
    per = chunks_per_shard(array)
    grid = [math.ceil(s / n) for s, n in zip(array.shape, array.shards or inner, strict=True)]
    extent = [math.ceil(s / n) for s, n in zip(array.shape, inner, strict=True)]
    found: set[Coords] = set()
    ignored: list[Path] = []
    folder = root / "c"
    if not folder.is_dir():
        return found, ignored
    for entry in sorted(folder.iterdir()):
        if not entry.name.isdigit() or int(entry.name) >= grid[0]:
            ignored.append(entry)
            continue
        for coords in product([int(entry.name)], *(range(g) for g in grid[1:])):
            path = root / array.metadata.encode_chunk_key(coords)
            if not path.is_file():
                continue
            if array.shards is None:
                found.add(coords)
                continue
            try:
                with open(path, "rb") as f:
                    index = read_index(f, 16 * math.prod(per))
            except ValueError:
                ignored.append(path)
                continue
            for k in np.flatnonzero(index[:, 0] != EMPTY):
                local = np.unravel_index(int(k), per)
                chunk = tuple(int(s * n + i) for s, n, i in zip(coords, per, local, strict=True))
                if all(i < e for i, e in zip(chunk, extent, strict=True)):
                    found.add(chunk)
    return _whole(found, extent[3] * extent[4]), ignored


def _whole(chunks: set[Coords], bands: int) -> set[Coords]:
    """The (t, c, z, 0, 0) chunks of planes all of whose ``bands`` bands of rows are in ``chunks``."""
    count = Counter(chunk[:3] for chunk in chunks)
    return {(*key, 0, 0) for key, n in count.items() if n == bands}


def stored_all(codec: numcodecs.Blosc | None, blocks: list[np.ndarray]) -> list[Encoded]:
    """Each block's own bytes, uncompressed, without a copy: behind the header of a Blosc chunk stored
    uncompressed where the array's codec is ``codec``, so that Blosc decodes it as any other chunk."""
    if codec is None:
        return [(block.data.cast("B"),) for block in blocks]
    return [(_memcpyed_header(codec, block.nbytes, block.itemsize), block.data.cast("B")) for block in blocks]


def _memcpyed_header(codec: numcodecs.Blosc, nbytes: int, itemsize: int) -> bytes:
    """The 16-byte header Blosc writes before ``nbytes`` bytes of items of ``itemsize`` stored uncompressed
    with ``codec``'s settings (the same for any bytes of that size: taken from Blosc's own encode of zeros
    at level 0, once)."""
    settings = {k: v for k, v in codec.get_config().items() if k not in ("id", "clevel")}
    return _header(tuple(sorted(settings.items())), nbytes, itemsize)


@functools.cache
def _header(settings: tuple[tuple[str, Any], ...], nbytes: int, itemsize: int) -> bytes:
    encoded = numcodecs.Blosc(**dict(settings), clevel=0).encode(np.zeros(nbytes // itemsize, f"u{itemsize}"))
    header = bytes(encoded[:16])
    length = int.from_bytes(header[12:16], "little")
    if not header[2] & _MEMCPYED or length != nbytes + 16 or len(encoded) != length:
        raise RuntimeError(f"Blosc {numcodecs.__version__} did not store {nbytes} bytes uncompressed")
    return header


_POOL: tuple[int, ThreadPoolExecutor] | None = None


def _encoders() -> ThreadPoolExecutor:
    """The process's encoding threads (one per core, at most :data:`~.schema.MAX_BANDS`), made anew in
    a forked process, which inherits no threads."""
    global _POOL
    if _POOL is None or _POOL[0] != os.getpid():
        _POOL = (os.getpid(), ThreadPoolExecutor(_workers(), thread_name_prefix="mm-deepz-encode"))
    return _POOL[1]


def _workers() -> int:
    """The encoding threads: one per core, at most :data:`~.schema.MAX_BANDS`."""
    return max(1, min(MAX_BANDS, os.cpu_count() or 1))


def _runs(entries: list[tuple[int, int, int]]) -> list[tuple[int, list[tuple[int, int]]]]:
    """Index entries (k, offset, length) gathered into runs of consecutive k: (first k, [(offset,
    length), ...]), each written at once. A plane's bands are consecutive entries whose run starts at a
    multiple of its size (16, 32 or 64 bytes), so no page boundary splits it: a kill indexes all of a
    plane or none of it."""
    runs: list[tuple[int, list[tuple[int, int]]]] = []
    for k, offset, length in sorted(entries):
        if runs and runs[-1][0] + len(runs[-1][1]) == k:
            runs[-1][1].append((offset, length))
        else:
            runs.append((k, [(offset, length)]))
    return runs


#: the page size of the page cache, and a page of zeros to pad with
_PAGE = mmap.PAGESIZE
_ZEROS = memoryview(bytes(_PAGE))


def _gap(offset: int, encoded: Encoded) -> int:
    """Bytes of padding before a chunk written at ``offset`` so that a plane stored uncompressed (a
    16-byte Blosc header, then its own bytes) has its bytes on page boundaries: copied into the page
    cache unaligned, four 2048² bands took 1.53 ms against 1.48 (the sharding spec allows bytes no
    chunk refers to)."""
    if len(encoded) != 2 or memoryview(encoded[1]).nbytes < _PAGE:
        return 0
    return -(offset + memoryview(encoded[0]).nbytes) % _PAGE


def _padded(gap: int, encoded: Encoded) -> Encoded:
    """The pieces to write for a chunk after ``gap`` bytes of padding: the padding joined to a stored
    plane's 16-byte header, so that each band is two writes, not three (13 writes a 2048² frame took
    0.05-0.08 ms longer than 5)."""
    if not gap:
        return encoded
    return (bytes(_ZEROS[:gap]) + bytes(encoded[0]), *encoded[1:])


def _write_all(f: BinaryIO, pieces: Encoded) -> None:
    """Write all of each piece in turn (an unbuffered file may take part of one per call)."""
    for piece in pieces:
        view = memoryview(piece).cast("B")
        while view:
            written = f.write(view)
            view = view[written:]


def _length(pieces: Encoded) -> int:
    """Bytes of an encoded chunk."""
    return sum(memoryview(piece).nbytes for piece in pieces)


def _little_endian(codec: BytesCodec) -> bool:
    return codec.endian is not None and str(codec.endian.value) == "little"
