"""The physical state of the simulated microscope, shared by its devices.

Micro-Manager devices only talk to the core, never to each other, but on a real
microscope the camera sees what the stage and the light path do. :class:`SimWorld` is
that shared physics: specimen, optics, stage positions, light path, the light dose the
sample has received and its photobleaching. Devices bind to the *active* world when they
are initialised (see :func:`use_world`); :func:`simulators.load_demo_core` gives each
core a fresh world.

Light dose: each exposure with the shutter open adds ``power_mW × exposure_ms / 1000``
millijoules. Photobleaching scales the specimen's brightness by
``exp(-dose_mJ / bleach_dose_mJ)``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .optics import MODALITIES, Modality, Optics
from .phantoms import Phantom, worm
from .render import TIME_BUCKET_S, FieldOfView, Renderer
from .spectra import LightPathSpectra


@dataclass(frozen=True)
class CameraModel:
    """sCMOS-like detection: quantum efficiency, gain, read noise, offset, bit depth."""

    quantum_efficiency: float = 0.8
    gain_adu_per_e: float = 0.5
    read_noise_e: float = 1.6
    offset_adu: float = 100.0
    bit_depth: int = 16

    def digitize(self, photons: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Expected photons -> counts: Poisson shot noise, read noise, offset, clipping at the bit
        depth; uint8 pixels at 8 bits, uint16 above."""
        electrons = rng.poisson(photons * self.quantum_efficiency).astype(np.float32)
        electrons += rng.standard_normal(photons.shape, dtype=np.float32) * self.read_noise_e
        adu = electrons * self.gain_adu_per_e + self.offset_adu
        return np.clip(np.round(adu), 0, 2**self.bit_depth - 1).astype(self.dtype)

    @property
    def dtype(self) -> type[np.unsignedinteger]:
        """The pixel type the camera delivers at this bit depth."""
        return np.uint8 if self.bit_depth <= 8 else np.uint16


@dataclass
class DoseLedger:
    """Cumulative light dose delivered to the sample."""

    dose_mJ: float = 0.0
    exposures: int = 0
    exposure_ms_total: float = 0.0
    by_modality: dict[str, float] = field(default_factory=lambda: {m: 0.0 for m in MODALITIES})


class SimWorld:
    """Specimen + optics + hardware state. Thread-safe; one per simulated microscope."""

    def __init__(
        self,
        phantom: Phantom | None = None,
        optics: Optics | None = None,
        camera: CameraModel | None = None,
        sensor_shape: tuple[int, int] = (512, 512),
        bleach_dose_mJ: float = 500.0,
        seed: int = 0,
        dz_um: float = 0.5,
        drift_um_per_s: tuple[float, float] = (0.0, 0.0),
    ):
        self.phantom = phantom if phantom is not None else worm(seed=seed)
        #: the objective the specimen is calibrated for (the native configuration's only one)
        self.base_optics = optics or Optics()
        self.optics = self.base_optics
        self.camera = camera or CameraModel()
        self.sensor_shape = sensor_shape
        self.bleach_dose_mJ = bleach_dose_mJ
        self._dz_um = dz_um
        self._renderers = {self.optics: Renderer(self.phantom, self.optics, dz_um=dz_um)}
        self.renderer = self._renderers[self.optics]
        #: filters and light source of the current channel; brightness relative to the FITC set
        self.light_path = LightPathSpectra()
        self.channel_efficiency = 1.0
        #: hardware sequences started by the core, advanced by the camera's exposures (TTL triggers)
        self._sequences: dict[str, _Sequence] = {}
        self.rng = np.random.default_rng(seed)
        self.lock = threading.RLock()
        # hardware state, in sample coordinates
        self.z_um = 0.0
        self.xy_um = (0.0, 0.0)
        self.shutter_open = False
        self.modality: Modality = "widefield"
        #: False while the light-path switch sends the image to the eyepiece (the camera sees nothing)
        self.light_to_camera = True
        #: the simulated camera's metadata of its latest frame (where it is, what it saw)
        self.last_frame_metadata: dict[str, str] = {}
        self.light_power_mW = 10.0
        self.dose = DoseLedger()
        #: the specimen crawls: it moves by this much (x, y) per second of specimen time
        self.drift_um_per_s = (float(drift_um_per_s[0]), float(drift_um_per_s[1]))
        self._t0 = time.monotonic()
        self.clock_offset_s = 0.0
        #: a camera whose frames cost no rendering (benchmarks of the software's own rate, as a camera
        #: computes its frames in hardware): the first ``replay_frames`` exposures of each microscope
        #: state are rendered, later ones repeat them in turn (the dose is still counted; the specimen's
        #: activity and bleaching stop showing). None: every frame rendered.
        self.replay_frames: int | None = None
        self._replays: dict[tuple[Any, ...], list[np.ndarray]] = {}
        self._replayed = 0

    # -- time -------------------------------------------------------------------
    def now_s(self) -> float:
        """Specimen time in seconds since the world was created (plus ``clock_offset_s``)."""
        return time.monotonic() - self._t0 + self.clock_offset_s

    # -- light ------------------------------------------------------------------
    @property
    def bleach_factor(self) -> float:
        """Remaining fraction of the specimen's brightness after the dose so far."""
        return float(np.exp(-self.dose.dose_mJ / self.bleach_dose_mJ))

    def _deliver_dose(self, exposure_ms: float) -> None:
        if not self.shutter_open or self.light_power_mW <= 0:
            return
        mj = self.light_power_mW * exposure_ms / 1000.0
        self.dose.dose_mJ += mj
        self.dose.exposures += 1
        self.dose.exposure_ms_total += exposure_ms
        self.dose.by_modality[self.modality] += mj

    def reset_dose(self) -> None:
        """Forget the dose (a fresh specimen); brightness returns to 100 %."""
        with self.lock:
            self.dose = DoseLedger()

    # -- light path and objective -----------------------------------------------
    def set_light_path(self, **parts: Any) -> None:
        """Change parts of the channel's light path (``source``, ``excitation``, ``dichroic_cut``,
        ``emission``; see :class:`~simulators.spectra.LightPathSpectra`)."""
        with self.lock:
            self.light_path = dataclasses.replace(self.light_path, **parts)
            self.channel_efficiency = self.light_path.efficiency()

    def set_objective(self, na: float, magnification_ratio: float) -> None:
        """Put another objective in the path: ``na``, and its magnification relative to the base
        objective's (2: pixels half as large in the sample). Light collection scales with NA²."""
        optics = dataclasses.replace(
            self.base_optics, na=na, pixel_size_um=self.base_optics.pixel_size_um / magnification_ratio
        )
        with self.lock:
            if optics not in self._renderers:
                self._renderers[optics] = Renderer(self.phantom, optics, dz_um=self._dz_um)
            self.optics, self.renderer = optics, self._renderers[optics]

    @property
    def collection(self) -> float:
        """Light collected by the current objective relative to the base objective (NA² ratio)."""
        return (self.optics.na / self.base_optics.na) ** 2

    # -- hardware sequences (triggered by the camera) -----------------------------
    def start_sequence(self, key: str, apply: Callable[[Any], None], values: Sequence[Any]) -> None:
        """Arm a loaded sequence: from now on each camera exposure first applies its next value."""
        if not values:
            raise ValueError(f"The sequence of {key} is empty: load values before starting it.")
        with self.lock:
            self._sequences[key] = _Sequence(apply, list(values))

    def stop_sequence(self, key: str) -> None:
        """Disarm a sequence (a no-op when none is running under ``key``)."""
        with self.lock:
            self._sequences.pop(key, None)

    def trigger(self) -> None:
        """One exposure's trigger pulse: every armed sequence steps to its next value (cycling)."""
        with self.lock:
            for seq in self._sequences.values():
                seq.apply(seq.values[seq.index % len(seq.values)])
                seq.index += 1

    # -- imaging ----------------------------------------------------------------
    def field_of_view(self, binning: int = 1) -> FieldOfView:
        """The field of view for the current stage XY and camera binning."""
        h, w = self.sensor_shape
        return FieldOfView(self.xy_um, (h // binning, w // binning), self.optics.pixel_size_um * binning)

    def field_of_view_at(self, t_s: float, binning: int = 1) -> FieldOfView:
        """The field of view in specimen coordinates at time ``t_s``: a crawling specimen moves
        by ``drift_um_per_s`` (in steps of the renderer's time bucket), so the field moves back."""
        fov = self.field_of_view(binning)
        vx, vy = self.drift_um_per_s
        if vx == 0 and vy == 0:
            return fov
        t = round(t_s / TIME_BUCKET_S) * TIME_BUCKET_S
        return FieldOfView(
            (fov.center_xy_um[0] - vx * t, fov.center_xy_um[1] - vy * t), fov.shape, fov.pixel_size_um
        )

    def expected_photons(
        self,
        exposure_ms: float,
        binning: int = 1,
        t_s: float | None = None,
        z_um: float | None = None,
        modality: Modality | None = None,
    ) -> np.ndarray:
        """Noise-free photons per pixel for an exposure, without delivering any dose."""
        with self.lock:
            t = self.now_s() if t_s is None else t_s
            rate = self.renderer.render(
                self.z_um if z_um is None else z_um,
                modality or self.modality,
                self.field_of_view_at(t, binning),
                t,
            )
            scale = (
                exposure_ms
                * (self.light_power_mW / 10.0)
                * self.bleach_factor
                * self.channel_efficiency
                * self.collection
            )
            return np.asarray(rate * np.float32(scale))

    def scan(self, z_um: np.ndarray, exposure_ms: float, modality: Modality, t_s: float = 0.0) -> np.ndarray:
        """A mechanically scanned (z, y, x) uint16 stack as the camera records it (noise included), all
        planes at specimen time ``t_s``; no light dose is charged (training data, experiments)."""
        return np.stack(
            [
                self.camera.digitize(
                    self.expected_photons(exposure_ms, t_s=t_s, z_um=float(z), modality=modality), self.rng
                )
                for z in z_um
            ]
        )

    def expose(self, exposure_ms: float, binning: int = 1) -> np.ndarray:
        """One camera exposure: photons if the shutter is open, then the dose is counted."""
        with self.lock:
            pool = self._replay_pool(exposure_ms, binning)
            if pool is not None and self.replay_frames is not None and len(pool) >= self.replay_frames:
                self._deliver_dose(exposure_ms)
                self._replayed += 1
                return pool[self._replayed % len(pool)]
            if self.shutter_open and self.light_to_camera:
                photons = self.expected_photons(exposure_ms, binning)
            else:
                h, w = self.field_of_view(binning).shape
                photons = np.zeros((h, w), np.float32)
            self._deliver_dose(exposure_ms)
            frame = self.camera.digitize(photons, self.rng)
            if pool is not None:
                frame.flags.writeable = False  # handed out again: nobody may change it
                pool.append(frame)
            return frame

    def _replay_pool(self, exposure_ms: float, binning: int) -> list[np.ndarray] | None:
        """The rendered frames of the current microscope state (None when frames are not replayed)."""
        if not self.replay_frames:
            return None
        state = (
            round(self.z_um, 4),
            self.xy_um,
            self.shutter_open and self.light_to_camera,
            self.modality,
            self.light_path,
            self.optics,
            self.light_power_mW,
            exposure_ms,
            binning,
        )
        return self._replays.setdefault(state, [])


@dataclass
class _Sequence:
    apply: Callable[[Any], None]
    values: list[Any]
    index: int = 0


_DEFAULT: SimWorld | None = None
_ACTIVE: list[SimWorld] = []
_ACTIVE_LOCK = threading.Lock()


def active_world() -> SimWorld:
    """The world devices bind to when initialised (a default one if none is active)."""
    global _DEFAULT
    with _ACTIVE_LOCK:
        if _ACTIVE:
            return _ACTIVE[-1]
        if _DEFAULT is None:
            _DEFAULT = SimWorld()
        return _DEFAULT


@contextlib.contextmanager
def use_world(world: SimWorld) -> Iterator[SimWorld]:
    """Make ``world`` the one that devices initialised inside the block bind to."""
    with _ACTIVE_LOCK:
        _ACTIVE.append(world)
    try:
        yield world
    finally:
        with _ACTIVE_LOCK:
            _ACTIVE.remove(world)
