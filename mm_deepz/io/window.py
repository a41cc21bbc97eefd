"""Display windows: the contrast a viewer opens each image in (NGFF ``omero.channels[].window``).

A window spans the 0.1 / 99.9th percentiles of everything an image holds so far (a grid of pixels:
every 4th along y and x, sparser on planes larger than 512², at most 128² pixels a plane, and every
third plane of a stack written at once, pooled over the run, so that a 2048² camera frame costs the
camera's thread 0.1 ms, not 3, and a 21-plane 256² virtual stack its writer 0.8 ms, not 2.3), and at least
:data:`WINDOW_NOISE_SPAN` noise sigmas (estimated on every :data:`SIGMA_EVERY`-th frame), so a blank
field's noise is not stretched to full brightness.
Camera counts (unsigned integers) are pooled in a histogram per image and position, so a stack that
arrives plane by plane (measured planes, blind-check reference stacks) gets the window of the whole
stack, as one written at once does: the union of per-plane windows would fit the brightest in-focus
plane (1.4x the stack's 99.9th percentile on a reference stack). Float images (virtual stacks, written
a whole stack at a time) widen a running window instead.
"""

from __future__ import annotations

import itertools
import math
import threading

import numpy as np

#: display windows are taken between these percentiles of the data (of every 4th pixel)
WINDOW_PERCENTILES = (0.1, 99.9)
#: and span at least this many noise sigmas (a blank field's 0.1-99.9 % span is ~6.6: shown at a third)
WINDOW_NOISE_SPAN = 20.0
#: pixels sampled: every STRIDE-th along y and x, or sparser so that a plane gives at most SAMPLE_PIXELS
STRIDE = 4
SAMPLE_PIXELS = 128 * 128
#: and every Z_STRIDE-th plane of a (z, y, x) stack written at once: neighbouring planes look alike (on
#: five virtual stacks the 99.9th percentile of every third plane was within 1.3 % of all planes')
Z_STRIDE = 3
#: the noise sigma (a floor under the window's span, the largest of any frame's) is estimated from every
#: SIGMA_EVERY-th frame or stack of an image: a camera's noise does not change from frame to frame, and
#: its estimate was 0.1 of the 0.19 ms a 2048² frame's window took
SIGMA_EVERY = 8

Key = tuple[str, int]


class DisplayWindows:
    """Running display windows per (image, position), updated with each frame or stack written."""

    def __init__(self) -> None:
        self._counts: dict[Key, np.ndarray] = {}
        self._floats: dict[Key, tuple[float, float]] = {}
        self._sigma: dict[Key, float] = {}
        #: frames and stacks taken so far, per key (``setdefault`` and ``next`` are atomic)
        self._taken: dict[Key, itertools.count[int]] = {}
        #: frames arrive from the camera's thread and stacks from the model's: the sums are kept under
        #: this lock, the statistics of each frame computed outside it
        self._lock = threading.Lock()

    def note(self, key: Key, data: np.ndarray) -> None:
        """Take a frame or stack (..., y, x) into ``key``'s window; non-finite data is left out."""
        if data.ndim == 3:
            data = data[::Z_STRIDE]
        step = stride(data.shape[-2:])
        sample = np.asarray(data[..., ::step, ::step])
        if not sample.size:
            return
        integer = sample.dtype.kind == "u" and sample.dtype.itemsize <= 2
        if not integer:
            sample = sample.astype(np.float32, copy=False)
            if not np.isfinite(sample).all():
                return
        n = next(self._taken.setdefault(key, itertools.count()))
        sigma = _noise_sigma(data, step) if n % SIGMA_EVERY == 0 else 0.0
        if integer:
            counts = np.bincount(sample.ravel())  # up to the brightest pixel: a few bins, not 65536
            with self._lock:
                if (pooled := self._counts.get(key)) is None:
                    pooled = self._counts[key] = np.zeros(1 << (8 * sample.dtype.itemsize), np.int64)
                pooled[: len(counts)] += counts
                self._sigma[key] = max(self._sigma.get(key, 0.0), sigma)
            return
        lo, hi = (float(v) for v in np.percentile(sample, WINDOW_PERCENTILES))
        with self._lock:
            old = self._floats.get(key)
            self._floats[key] = (lo, hi) if old is None else (min(old[0], lo), max(old[1], hi))
            self._sigma[key] = max(self._sigma.get(key, 0.0), sigma)

    def window(self, key: Key) -> tuple[float, float] | None:
        """(start, end) for ``key``, or None before any data."""
        with self._lock:
            counts, floats, sigma = self._counts.get(key), self._floats.get(key), self._sigma.get(key, 0.0)
        if counts is not None:
            cum = np.cumsum(counts)
            lo, hi = (float(np.searchsorted(cum, q / 100 * cum[-1])) for q in WINDOW_PERCENTILES)
        elif floats is not None:
            lo, hi = floats
        else:
            return None
        return lo, max(hi, lo + WINDOW_NOISE_SPAN * sigma)


def stride(shape_yx: tuple[int, ...]) -> int:
    """The sampling step along y and x for planes of ``shape_yx``."""
    return max(STRIDE, math.ceil(math.sqrt(math.prod(shape_yx) / SAMPLE_PIXELS)))


def _noise_sigma(data: np.ndarray, step: int) -> float:
    """Noise sigma from the differences of each sampled pixel and its right neighbour (blind to
    structure; only the sampled pairs: this runs for every frame the camera sends). Camera counts take
    the median from a histogram of the differences (linear time: a 2048² frame in ~1 ms, not 4)."""
    data = np.asarray(data)
    integer = data.dtype.kind in "ui" and data.dtype.itemsize <= 2
    kind = np.int32 if integer else np.float32
    left = np.asarray(data[..., ::step, ::step], kind)
    right = np.asarray(data[..., ::step, 1::step], kind)
    if not right.size:
        return 0.0
    diff = np.abs(right - left[..., : right.shape[-1]])
    if integer:
        cum = np.cumsum(np.bincount(diff.ravel()))
        median = float(np.searchsorted(cum, cum[-1] / 2))
    else:
        finite = diff[np.isfinite(diff)]
        if not finite.size:
            return 0.0
        median = float(np.median(finite))
    return 1.4826 * median / float(np.sqrt(2))
