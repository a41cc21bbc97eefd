"""The camera fit of ``pairs check`` on simulated pairs: what it finds where the cameras are aligned, and
what it recovers where one is turned or magnified (the calibration of ``mm_deepz.training.check``).

``python -m benchmarks.camera_fit`` prints one line per case: the fitted turn (degrees), scale and the
correlation the fit gains over the shift alone (aligned cameras must stay below MIN_FIT_GAIN).
"""

from __future__ import annotations

import numpy as np

from mm_deepz.training.check import _hp, camera_affine, warp_affine
from mm_deepz.training.stacks import Stack, register
from simulators.training_data import PairSpec, make_stack_pair


def fit(widefield: np.ndarray, confocal: np.ndarray) -> tuple[float, float, float]:
    """(turn, scale, gain) of the check's camera fit on one stack pair."""
    z = np.arange(len(widefield), dtype=float)
    shift, _ = register(Stack(widefield, z, 0.325), Stack(confocal, z, 0.325))
    m = int(min(widefield.shape[1:]) * 0.1)
    inner = (slice(m, -m), slice(m, -m))
    a, b = _hp(widefield.max(0).astype(np.float32)), _hp(confocal.max(0).astype(np.float32))
    turn, scale, _, gain = camera_affine(a, b, np.asarray(shift), inner)
    return turn, scale, gain


def main() -> None:
    """Aligned cameras at 64 and 256 px, then a 128-px worm with its target camera turned / magnified."""
    for size in (64, 256):
        for seed in (500, 503, 506):
            pair = make_stack_pair(PairSpec("worm", seed, (size, size), z_half_range_um=6, randomize=True))
            turn, scale, gain = fit(pair.widefield, pair.confocal)
            print(f"aligned {size} px worm {seed}: turn {turn:+.2f}°, scale {scale:.4f}, gain {gain:.3f}")
    pair = make_stack_pair(PairSpec("worm", 131, (128, 128), z_half_range_um=6, z_step_um=1))
    for turn_deg, scale_by in ((0.5, 1.0), (1.0, 1.0), (0.0, 1.02), (2.0, 1.03), (12.0, 1.0)):
        turned = np.stack(
            [warp_affine(p.astype(np.float32), turn_deg, scale_by, (0.0, 0.0)) for p in pair.confocal]
        )
        turn, scale, gain = fit(pair.widefield, turned)
        print(
            f"turned {turn_deg}° scaled {scale_by}: fitted correction {turn:+.2f}°, {scale:.4f} "
            f"(exact {-turn_deg:+.2f}°, {1 / scale_by:.4f}), gain {gain:.3f}"
        )


if __name__ == "__main__":
    main()
