"""Checking a stack pair before it is trained on: is there a specimen, do the two light paths see the
same thing, and can that be measured with confidence?

Every pair ``train`` and ``evaluate`` read goes through :func:`check_pair` (``mm-deepz pairs check``
shows the same checks as a report): a pair that fails is quarantined with its reasons, never
trained on. What is measured, per pair:

- **content**: the structure above the camera noise in the best-focused plane of each stack
  ((99.9th percentile - median) of the high-passed plane / noise σ, σ from the median absolute
  deviation of the plane's pixel-to-pixel differences; the high-pass keeps the haze of a specimen
  beside the field from counting). An empty field (shutter closed, no specimen) stays near 3-4.
- **saturation**: the share of pixels on a plateau at the stack's maximum.
- **registration and its confidence**: the lateral shift of the target onto the input
  (cross-correlation of the high-passed maximum projections) and the correlation of those
  projections once aligned, near the structure either shows (so a specimen in a corner of the field
  is judged on that corner): two views of one specimen correlate, two images of noise do not,
  whatever shift the cross-correlation picks.
- **camera affine**: the rotation and scale between the two light paths' cameras, fitted with the
  shift by maximizing that same correlation (from the shift alone); within limits the target is
  warped onto the input when the pair is loaded, beyond them (a camera turned or another
  magnification) the pair is quarantined. On the simulator it recovers a 2° turn to 0.02° and a 4 %
  scale to 0.1 %; aligned cameras are left unwarped (:data:`ALIGNED_MOVE_PX`,
  :data:`MIN_FIT_GAIN`).
- **drift** (reported, not yet judged): the lateral shift between the light paths in the first half
  of the stack against the second half, each from that half's projections where both hold structure
  and align with confidence. Per-plane shifts gave false drifts of 17 px on 64-px simulated worms,
  and this measure missed a specimen moved halfway through its stack when one half held little of
  it: a limit waits for a measure that is right on both.
- **axial offset** between the light paths, and (reported, not judged: a thick specimen may be
  sharpest at an end) the plane where the target is sharpest.

Calibrated on the 83 simulated training pairs (all pass: confidence 0.80-0.99, structure at least
8.2x the noise in the widefield input and 31x in the confocal target, drift at most 0.5 px), on
fields of pure noise (structure 3.1-3.3x, confidence about 0) and on simulator fields beside the
worm, which hold only its haze (target structure 6-10x).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
from scipy import ndimage
from skimage.registration import phase_cross_correlation

from .stacks import Stack, register


@dataclass(frozen=True)
class CheckLimits:
    """What a pair must meet to be trained on."""

    #: correlation of the aligned, high-passed projections of the two light paths
    min_confidence: float = 0.25
    #: structure above noise ((p99.9 - median) / σ) of the best-focused plane: input (widefield, whose
    #: thick-specimen haze lowers it) and target
    min_contrast_input: float = 5.0
    min_contrast_target: float = 15.0
    #: share of pixels on a plateau at the stack's maximum
    max_saturated: float = 0.002
    #: lateral shift between the light paths, as a share of the frame
    max_shift_fraction: float = 0.15
    #: axial offset between the light paths (µm)
    max_axial_um: float = 3.0
    #: rotation (degrees) and relative scale between the cameras that loading the pair corrects
    max_rotation_deg: float = 5.0
    max_scale_change: float = 0.05


@dataclass
class PairCheck:
    """What the checks measured on one pair, and why it is quarantined (empty ``reasons``: it passed)."""

    name: str
    shift_yx_px: tuple[float, float]
    axial_um: float
    confidence: float
    drift_px: float
    contrast: dict[str, float]
    saturated: dict[str, float]
    focus_plane: int
    n_planes: int
    rotation_deg: float = 0.0
    scale: float = 1.0
    reasons: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        """Whether the pair may be trained on."""
        return not self.reasons

    def to_json(self) -> dict[str, Any]:
        """The check as JSON (rounded), with its verdict."""
        out: dict[str, Any] = _rounded({**asdict(self), "passed": self.passed})
        return out


def _rounded(value: Any) -> Any:
    if isinstance(value, float):
        return round(value, 4)
    if isinstance(value, dict):
        return {k: _rounded(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_rounded(v) for v in value]
    return value


def contrast(stack: np.ndarray) -> tuple[float, int]:
    """Structure above noise of the best-focused plane, and that plane's index."""
    data = stack.astype(np.float32)
    best = int(
        np.argmax(
            [float(np.var(ndimage.gaussian_filter(p, 1) - ndimage.gaussian_filter(p, 4))) for p in data]
        )
    )
    return _structure(data[best]), best


def _structure(image: np.ndarray) -> float:
    """(99.9th percentile - median) of the high-passed image over its noise σ (from the median absolute
    deviation of its pixel-to-pixel differences): haze from out-of-focus light or a neighbouring
    specimen is not structure."""
    plane = _hp(image)
    diffs = np.diff(plane, axis=1).ravel()
    sigma = 1.4826 * float(np.median(np.abs(diffs - np.median(diffs)))) / float(np.sqrt(2)) + 1e-6
    return (float(np.percentile(plane, 99.9)) - float(np.median(plane))) / sigma


def saturated_share(stack: np.ndarray) -> float:
    """The share of pixels within 0.1 % of the stack's maximum (a plateau where the camera clipped)."""
    top = float(stack.max())
    if top <= 0:
        return 0.0
    return float((stack >= 0.999 * top).mean())


def _hp(m: np.ndarray) -> np.ndarray:
    return np.asarray(m - ndimage.gaussian_filter(m, 4))


def _correlation(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a - a.mean(), b - b.mean()
    return float((a * b).sum() / (np.sqrt((a * a).sum() * (b * b).sum()) + 1e-12))


def _where_structure(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The pixels of two high-passed images near structure in either (beyond 4 noise σ, grown by 5 px),
    so that a specimen filling a corner of the field is judged on that corner; all pixels where there
    is too little structure for a mask (an empty field stays noise against noise)."""
    mask = np.zeros(a.shape, bool)
    for m in (a, b):
        sigma = 1.4826 * float(np.median(np.abs(m - np.median(m)))) + 1e-6
        mask |= np.abs(m) > 4 * sigma
    mask = ndimage.binary_dilation(mask, iterations=5)
    if mask.mean() < 0.01:
        return a.ravel(), b.ravel()
    return a[mask], b[mask]


def _registered(a: np.ndarray, b: np.ndarray, limits: CheckLimits) -> np.ndarray | None:
    """The shift of projection ``b`` onto ``a`` where both hold structure and it aligns them with
    confidence, else None."""
    if _structure(a) < limits.min_contrast_input or _structure(b) < limits.min_contrast_target:
        return None
    pa, pb = _hp(a), _hp(b)
    shift = phase_cross_correlation(pa, pb, upsample_factor=4, normalization=None)[0]
    aligned = ndimage.shift(pb, shift, order=1, mode="nearest")
    return shift if _correlation(*_where_structure(pa, aligned)) >= limits.min_confidence else None


#: cameras count as aligned (the target is not warped, which would blur it) when their rotation and
#: scale move the frame's corners by less than this (px), or when fitting them gains less than
#: MIN_FIT_GAIN in correlation over the shift alone. On aligned simulated cameras the fit finds up to
#: 0.19° and 0.3 % at 256 px (0.6 px at the corners; widefield and confocal images differ) and up to
#: 1.6° and 12 % on 64-px frames, gaining at most 0.018; a turn of 1° gains 0.045, a 2 % scale 0.06,
#: 2° with 3 % 0.27 (128-px simulated worms). ``python -m benchmarks.camera_fit`` measures the simulated
#: worms (aligned: gains up to 0.004; the turned and magnified cases above)
ALIGNED_MOVE_PX = 1.0
MIN_FIT_GAIN = 0.03
#: frames below this (px) are too small to tell a camera's turn from the light paths' differences
#: (a 64-px simulated field fitted a spurious 3° and 11 %, gaining 0.05): only their shift is measured
MIN_AFFINE_FRAME = 128
#: the turns tried as starting points of the camera fit (degrees)
COARSE_TURNS_DEG = (-20, -15, -10, -5, 5, 10, 15, 20)


def camera_affine(
    hp_a: np.ndarray, hp_b: np.ndarray, shift: np.ndarray, where: tuple[slice, slice]
) -> tuple[float, float, tuple[float, float], float]:
    """Rotation (degrees), scale and shift that carry the high-passed projection ``hp_b`` onto ``hp_a``
    (about the frame's centre), fitted by maximizing their correlation inside ``where`` at half
    resolution, from the best of ``shift`` and a coarse search over turns up to ±20°; and what the fit
    gains in that correlation over ``shift`` alone."""
    from scipy import optimize

    half = (slice(None, None, 2), slice(None, None, 2))
    pa, pb = ndimage.gaussian_filter(hp_a, 1)[half], ndimage.gaussian_filter(hp_b, 1)[half]
    inner = tuple(slice(s.start // 2 if s.start else None, s.stop // 2 if s.stop else None) for s in where)

    def cost(p: np.ndarray) -> float:
        moved = warp_affine(pb, float(p[0]), float(np.exp(p[1])), (float(p[2]), float(p[3])))
        return -_correlation(*_where_structure(pa[inner], moved[inner]))

    starts = [np.array([0.0, 0.0, shift[0] / 2, shift[1] / 2])]
    for turn in COARSE_TURNS_DEG:  # a camera turned further than the fit's reach from no turn
        turned = warp_affine(pb, float(turn), 1.0, (0.0, 0.0))
        sy, sx = phase_cross_correlation(pa, turned, normalization=None)[0]
        starts.append(np.array([turn, 0.0, sy, sx]))
    start = min(starts, key=cost)
    fit = optimize.minimize(cost, start, method="Powell", options={"xtol": 1e-3})
    angle, log_scale, dy, dx = (float(v) for v in fit.x)
    return angle, float(np.exp(log_scale)), (2 * dy, 2 * dx), cost(starts[0]) - float(fit.fun)


def warp_affine(
    image: np.ndarray, rotation_deg: float, scale: float, shift_yx: tuple[float, float]
) -> np.ndarray:
    """``image`` turned by ``rotation_deg`` and scaled about its centre, then shifted (linear)."""
    from skimage.transform import AffineTransform, warp

    h, w = image.shape
    centre = np.array([(w - 1) / 2, (h - 1) / 2])
    tf = (
        AffineTransform(translation=-centre)
        + AffineTransform(scale=scale, rotation=np.deg2rad(rotation_deg))
        + AffineTransform(translation=centre + np.array([shift_yx[1], shift_yx[0]]))
    )
    out: np.ndarray = warp(image, tf.inverse, order=1, mode="edge", preserve_range=True)
    return out


def check_pair(name: str, inputs: Stack, target: Stack, limits: CheckLimits | None = None) -> PairCheck:
    """Measure one pair (see the module doc) and list what keeps it from training."""
    limits = limits or CheckLimits()
    a = inputs.data.astype(np.float32)
    b = target.data.astype(np.float32)
    shift, axial = register(inputs, target)
    pa, pb = _hp(a.max(0)), _hp(b.max(0))
    margin = int(min(a.shape[1:]) * 0.1)  # the border the shift wraps or pads
    aligned = ndimage.shift(pb, shift, order=1, mode="nearest")
    inner = (slice(margin, -margin or None), slice(margin, -margin or None))
    confidence = _correlation(*_where_structure(pa[inner], aligned[inner]))
    con_a, _ = contrast(a)
    con_b, focus = contrast(b)
    rotation, scale = 0.0, 1.0
    if (
        con_a >= limits.min_contrast_input
        and con_b >= limits.min_contrast_target
        and min(a.shape[1:]) >= MIN_AFFINE_FRAME
    ):
        rotation, scale, fitted, gain = camera_affine(pa, pb, np.asarray(shift), inner)
        corner = float(np.hypot(*a.shape[1:])) / 2  # px from the frame's centre to its corners
        moved = corner * (abs(np.deg2rad(rotation)) + abs(scale - 1))
        if gain >= MIN_FIT_GAIN and moved >= ALIGNED_MOVE_PX:
            shift = fitted
            aligned = warp_affine(pb, rotation, scale, shift)
            confidence = _correlation(*_where_structure(pa[inner], aligned[inner]))
        else:
            rotation, scale = 0.0, 1.0
    sat = {"input": saturated_share(a), "target": saturated_share(b)}
    # drift: the shift between the light paths in the stack's first half against its second half, each
    # from that half's projections where both hold structure and align with confidence (0: unknown)
    halves = [
        s
        for h in (slice(0, len(b) // 2), slice(len(b) // 2, len(b)))
        if (s := _registered(a[h].max(0), b[h].max(0), limits)) is not None
    ]
    drift = float(np.hypot(*(halves[0] - halves[1]))) if len(halves) == 2 else 0.0
    check = PairCheck(
        name,
        (float(shift[0]), float(shift[1])),
        float(axial),
        confidence,
        drift,
        {"input": con_a, "target": con_b},
        sat,
        focus,
        len(b),
        rotation,
        scale,
    )
    reasons = check.reasons
    for which, value in check.contrast.items():
        needed = limits.min_contrast_input if which == "input" else limits.min_contrast_target
        if value < needed:
            reasons.append(
                f"the {which} stack has nothing to learn from: its best plane has structure {value:.1f}x "
                f"the noise (needs {needed:g}); no specimen in the field, only its edge or haze, or a dark "
                "light path"
            )
    for which, share in sat.items():
        if share > limits.max_saturated:
            reasons.append(
                f"the {which} stack is saturated ({share:.1%} of pixels at its maximum): lower the exposure "
                "or the light power"
            )
    if not reasons:  # registration means nothing on an empty or saturated field
        if confidence < limits.min_confidence:
            reasons.append(
                "registration is not trustworthy: the light paths' aligned images correlate "
                f"{confidence:.2f} (needs {limits.min_confidence:g}); they show too little in common (a "
                "specimen at the edge of the field) or not the same specimen"
            )
        if max(abs(v) for v in shift) > limits.max_shift_fraction * min(a.shape[1:]):
            reasons.append(
                f"the light paths' images are ({shift[0]:.1f}, {shift[1]:.1f}) px apart, more than "
                f"{limits.max_shift_fraction:.0%} of the frame: check the camera alignment"
            )
        if abs(rotation) > limits.max_rotation_deg or abs(scale - 1) > limits.max_scale_change:
            reasons.append(
                f"the light paths' cameras differ by a rotation of {rotation:.1f}° and a scale of "
                f"{scale:.3f}, more than registration corrects ({limits.max_rotation_deg:g}°, "
                f"{limits.max_scale_change:.0%}): align the cameras or check the objective and binning"
            )
        if abs(axial) > limits.max_axial_um:
            reasons.append(
                f"the light paths are {axial:.1f} µm apart in focus (more than {limits.max_axial_um:g})"
            )
    return check
