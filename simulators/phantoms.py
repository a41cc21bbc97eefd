"""Fluorescent specimens in physical units (µm, seconds), reproducible from a seed.

A :class:`Phantom` is a list of point-like emitters (neurons, beads) plus optional
continuous parts (a worm body's dim cytoplasm, a thin fluorescent sheet). Coordinates are
sample coordinates: x, y in µm from the field centre, z in µm with the stage's Z=0 plane
in the middle of the specimen. Brightness is in photons per millisecond at the
reference light power (see :mod:`simulators.world`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

#: height map of a sheet: (x, y) in µm -> z in µm
HeightFn = Callable[[np.ndarray, np.ndarray], np.ndarray]


@dataclass
class Emitters:
    """Point-like emitters: positions (N, 3) as x, y, z in µm, radius in µm, brightness.

    ``activity`` (optional) maps times (s) to a (T, N) array of relative brightness,
    e.g. GCaMP-like calcium transients; ``None`` means constant.
    """

    xyz: np.ndarray
    radius_um: np.ndarray
    brightness: np.ndarray
    activity: Callable[[float], np.ndarray] | None = None

    def __post_init__(self) -> None:
        self.xyz = np.asarray(self.xyz, dtype=np.float64).reshape(-1, 3)
        n = len(self.xyz)
        self.radius_um = np.broadcast_to(np.asarray(self.radius_um, float), (n,)).copy()
        self.brightness = np.broadcast_to(np.asarray(self.brightness, float), (n,)).copy()

    def brightness_at(self, t_s: float) -> np.ndarray:
        """Brightness of every emitter at time ``t_s``."""
        if self.activity is None:
            return self.brightness
        return np.asarray(self.brightness * self.activity(t_s))


@dataclass
class Tube:
    """A dim, uniformly labelled tube (a worm body) around a centreline at height z0."""

    centerline_xy: np.ndarray  # (M, 2) µm
    radius_um: float
    z0_um: float
    density: float  # photons/ms per µm³


@dataclass
class Sheet:
    """A thin fluorescent layer z = height(x, y) with a seeded texture."""

    height: HeightFn
    texture_seed: int
    density: float  # photons/ms per µm² of sheet
    feature_um: float = 2.0  # size of the texture's speckles


@dataclass
class Phantom:
    """A specimen: emitters plus optional tube and sheet, with a name for provenance."""

    name: str
    emitters: Emitters
    tube: Tube | None = None
    sheet: Sheet | None = None
    extent_z_um: tuple[float, float] = (-25.0, 25.0)
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def dynamic(self) -> bool:
        """Whether the specimen changes with time (besides photobleaching)."""
        return self.emitters.activity is not None


def _gcamp_activity(
    rng: np.random.Generator, n: int, rate_hz: float, tau_s: float, duration_s: float = 3600.0
) -> Callable[[float], np.ndarray]:
    """Seeded calcium transients: 1 + Σ A exp(-(t - t_k)/τ) for events t_k < t."""
    n_events = rng.poisson(rate_hz * duration_s, size=n)
    events = [np.sort(rng.uniform(0, duration_s, k)) for k in n_events]
    amps = [rng.uniform(0.5, 3.0, k) for k in n_events]

    def activity(t_s: float) -> np.ndarray:
        out = np.ones(n)
        for i, (tk, ak) in enumerate(zip(events, amps, strict=True)):
            past = tk <= t_s
            if past.any():
                out[i] += float(np.sum(ak[past] * np.exp(-(t_s - tk[past]) / tau_s)))
        return out

    return activity


def worm(
    seed: int = 0,
    n_neurons: int = 200,
    length_um: float = 400.0,
    diameter_um: float = 40.0,
    neuron_brightness: float = 400.0,
    body_density: float = 0.2,
    activity: bool = True,
) -> Phantom:
    """A C. elegans-like worm: a curved tube with point-like, GCaMP-like neurons.

    About 60 % of the neurons sit in the head (nerve ring, first 25 % of the body), the
    rest along the ventral cord. The worm lies on the slide, its centreline at z = 0.
    """
    rng = np.random.default_rng(seed)
    s = np.linspace(0.0, 1.0, 400)
    phase = rng.uniform(0, 2 * np.pi)
    amp = rng.uniform(15, 35)
    # sinusoidal body posture, head near the field centre
    x = (s - 0.15) * length_um
    y = amp * np.sin(2 * np.pi * 1.3 * s + phase) - amp * np.sin(2 * np.pi * 1.3 * 0.15 + phase)
    theta = rng.uniform(0, 2 * np.pi)
    rot = np.array([[np.cos(theta), -np.sin(theta)], [np.sin(theta), np.cos(theta)]])
    centerline = np.stack([x, y], axis=1) @ rot.T
    radius = diameter_um / 2

    head = rng.random(n_neurons) < 0.6
    s_n = np.where(head, rng.uniform(0.02, 0.25, n_neurons), rng.uniform(0.25, 0.95, n_neurons))
    idx = np.clip((s_n * (len(s) - 1)).astype(int), 0, len(s) - 2)
    tangent = centerline[idx + 1] - centerline[idx]
    tangent /= np.linalg.norm(tangent, axis=1, keepdims=True)
    normal = np.stack([-tangent[:, 1], tangent[:, 0]], axis=1)
    # neurons inside the body (head: everywhere in the cross-section; cord: ventral side)
    r_frac = np.sqrt(rng.uniform(0, 1, n_neurons)) * 0.8
    ang = rng.uniform(0, 2 * np.pi, n_neurons)
    ang = np.where(head, ang, -np.pi / 2 + rng.normal(0, 0.3, n_neurons))
    lateral = r_frac * radius * np.cos(ang)
    z = r_frac * radius * np.sin(ang)
    xy = centerline[idx] + normal * lateral[:, None]
    xyz = np.column_stack([xy, z])
    emitters = Emitters(
        xyz=xyz,
        radius_um=rng.uniform(0.8, 1.5, n_neurons),
        brightness=neuron_brightness * rng.uniform(0.5, 1.5, n_neurons),
        activity=_gcamp_activity(rng, n_neurons, rate_hz=0.1, tau_s=1.0) if activity else None,
    )
    tube = Tube(centerline_xy=centerline, radius_um=radius, z0_um=0.0, density=body_density)
    return Phantom(
        name=f"worm(seed={seed})",
        emitters=emitters,
        tube=tube,
        extent_z_um=(-radius - 4, radius + 4),
        meta={"seed": seed, "kind": "worm"},
    )


def beads(
    seed: int = 0,
    n_beads: int = 150,
    field_um: float = 160.0,
    depth_um: tuple[float, float] = (-10.0, 10.0),
    brightness: float = 300.0,
) -> Phantom:
    """Sub-resolution (0.1 µm) beads at random positions and depths."""
    rng = np.random.default_rng(seed)
    half = field_um / 2
    xyz = np.column_stack(
        [
            rng.uniform(-half, half, n_beads),
            rng.uniform(-half, half, n_beads),
            rng.uniform(*depth_um, n_beads),
        ]
    )
    emitters = Emitters(
        xyz=xyz, radius_um=np.asarray(0.05), brightness=brightness * rng.uniform(0.7, 1.3, n_beads)
    )
    lo, hi = depth_um
    return Phantom(
        name=f"beads(seed={seed})",
        emitters=emitters,
        extent_z_um=(lo - 4, hi + 4),
        meta={"seed": seed, "kind": "beads"},
    )


def sheet(
    seed: int = 0,
    tilt_x: float = 0.0,
    tilt_y: float = 0.0,
    curvature_per_um: float = 0.0,
    z0_um: float = 0.0,
    density: float = 20.0,
) -> Phantom:
    """A thin textured fluorescent sheet: tilted (slopes, µm/µm) and/or curved.

    The height is ``z0 + tilt_x x + tilt_y y + curvature (x² + y²) / 2``.
    """

    def height(x: np.ndarray, y: np.ndarray) -> np.ndarray:
        return np.asarray(z0_um + tilt_x * x + tilt_y * y + 0.5 * curvature_per_um * (x * x + y * y))

    reach = 80.0 * (abs(tilt_x) + abs(tilt_y)) + 0.5 * abs(curvature_per_um) * 2 * 80.0**2
    return Phantom(
        name=f"sheet(seed={seed}, tilt=({tilt_x}, {tilt_y}), curvature={curvature_per_um})",
        emitters=Emitters(xyz=np.empty((0, 3)), radius_um=np.zeros(0), brightness=np.zeros(0)),
        sheet=Sheet(height=height, texture_seed=seed, density=density),
        extent_z_um=(z0_um - reach - 4, z0_um + reach + 4),
        meta={
            "seed": seed,
            "kind": "sheet",
            "tilt_x": tilt_x,
            "tilt_y": tilt_y,
            "curvature_per_um": curvature_per_um,
            "z0_um": z0_um,
        },
    )


PHANTOMS: dict[str, Callable[..., Phantom]] = {"worm": worm, "beads": beads, "sheet": sheet}


def make_phantom(kind: str, seed: int = 0, **kwargs: float) -> Phantom:
    """Build a phantom by name (``worm``, ``beads`` or ``sheet``)."""
    try:
        factory = PHANTOMS[kind]
    except KeyError:
        raise ValueError(f"Unknown phantom {kind!r}; choose one of {sorted(PHANTOMS)}.") from None
    return factory(seed=seed, **kwargs)
