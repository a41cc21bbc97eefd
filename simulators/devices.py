"""Python device adapters of the simulated microscope, for pymmcore-plus's ``UniMMCore``.

Loaded from a Micro-Manager configuration file with ``#py pyDevice`` lines (see
``simulators/demo.cfg``); every device binds to the active :class:`~simulators.world.SimWorld`
when it is initialised, so the camera sees what the stage, shutter and light path do.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING

import numpy as np
from pymmcore_plus.experimental.unicore import (
    ShutterDevice,
    SimpleCameraDevice,
    StageDevice,
    StateDevice,
    XYStageDevice,
    pymm_property,
)

from .world import SimWorld, active_world

if TYPE_CHECKING:
    from numpy.typing import DTypeLike

#: Labels of the light-path states; the camera sees the matching modality.
LIGHT_PATHS = {0: "Widefield", 1: "Confocal"}


class _WorldBound:
    """Mixin: the device's world, bound on initialisation."""

    _world: SimWorld | None = None

    @property
    def world(self) -> SimWorld:
        if self._world is None:
            self._world = active_world()
        return self._world

    def initialize(self) -> None:
        self._world = active_world()


class SimCamera(_WorldBound, SimpleCameraDevice):
    """Simulated sCMOS camera: renders the specimen at the current focus, with noise."""

    def __init__(self) -> None:
        super().__init__()
        self._exposure = 10.0
        self._binning = 1
        self._real_time = True

    def sensor_shape(self) -> tuple[int, int]:
        h, w = self.world.sensor_shape
        return (h // self._binning, w // self._binning)

    def dtype(self) -> DTypeLike:
        return np.uint16

    def get_exposure(self) -> float:
        return self._exposure

    def set_exposure(self, exposure: float) -> None:
        if not 0.01 <= float(exposure) <= 10_000:
            raise ValueError(f"Exposure {exposure} ms is outside 0.01-10000 ms.")
        self._exposure = float(exposure)

    def get_binning(self) -> int:
        return self._binning

    def set_binning(self, value: int) -> None:
        if int(value) not in (1, 2, 4):
            raise ValueError(f"Binning {value} is not supported; use 1, 2 or 4.")
        self._binning = int(value)
        self.clear_roi()

    def get_gain(self) -> float:
        return self.world.camera.gain_adu_per_e

    def set_gain(self, value: float) -> None:
        self._set_camera(gain_adu_per_e=float(value))

    def get_offset(self) -> float:
        return self.world.camera.offset_adu

    def set_offset(self, value: float) -> None:
        self._set_camera(offset_adu=float(value))

    @pymm_property(limits=(0.0, 20.0), name="ReadNoise_e")
    def read_noise_e(self) -> float:
        """Read noise, electrons rms."""
        return self.world.camera.read_noise_e

    @read_noise_e.setter
    def read_noise_e(self, value: float) -> None:
        self._set_camera(read_noise_e=float(value))

    @pymm_property(allowed_values=[10, 12, 14, 16], name="BitDepth")
    def bit_depth(self) -> int:
        """Bit depth of the analogue-to-digital converter; counts saturate at 2**bits - 1."""
        return self.world.camera.bit_depth

    @bit_depth.setter
    def bit_depth(self, value: int) -> None:
        self._set_camera(bit_depth=int(value))

    def _set_camera(self, **changes: float) -> None:
        w = self.world
        w.camera = dataclasses.replace(w.camera, **changes)

    @pymm_property(allowed_values=[0, 1], name="RealTime")
    def real_time(self) -> int:
        """1: a frame takes at least its exposure time, as on a real camera; 0: as fast as it renders."""
        return int(self._real_time)

    @real_time.setter
    def real_time(self, value: int) -> None:
        self._real_time = bool(int(value))

    def snap(self, buffer: np.ndarray) -> Mapping:
        w = self.world
        start = time.perf_counter()
        with w.lock:
            buffer[:] = w.expose(self._exposure, self._binning)
            meta = {
                "SimZ-um": f"{w.z_um:.4f}",
                "SimModality": w.modality,
                "SimDose-mJ": f"{w.dose.dose_mJ:.6f}",
                "SimTime-s": f"{w.now_s():.4f}",
            }
        if self._real_time:
            time.sleep(max(0.0, self._exposure / 1000 - (time.perf_counter() - start)))
        return meta


class SimZStage(_WorldBound, StageDevice):
    """Simulated focus drive: moves the focal plane through the specimen (µm)."""

    def __init__(self) -> None:
        super().__init__()
        self._limits = (-1000.0, 1000.0)

    def set_position_um(self, val: float) -> None:
        lo, hi = self._limits
        if not lo <= val <= hi:
            raise ValueError(f"Z {val} µm is outside the stage range [{lo}, {hi}] µm.")
        with self.world.lock:
            self.world.z_um = float(val)

    def get_position_um(self) -> float:
        return self.world.z_um

    def home(self) -> None:
        self.set_position_um(0.0)

    def stop(self) -> None:
        """Moves are instantaneous; nothing to stop."""

    def set_origin(self) -> None:
        raise NotImplementedError("The simulated Z stage's origin is the specimen's centre.")


class SimXYStage(_WorldBound, XYStageDevice):
    """Simulated XY stage: moves the field of view over the specimen (µm)."""

    def set_position_um(self, x: float, y: float) -> None:
        with self.world.lock:
            self.world.xy_um = (float(x), float(y))

    def get_position_um(self) -> tuple[float, float]:
        return self.world.xy_um

    def home(self) -> None:
        self.set_position_um(0.0, 0.0)

    def stop(self) -> None:
        """Moves are instantaneous; nothing to stop."""

    def set_origin(self) -> None:
        raise NotImplementedError("The simulated XY stage's origin is the specimen's centre.")

    def set_origin_x(self) -> None:
        self.set_origin()

    def set_origin_y(self) -> None:
        self.set_origin()


class SimLightSource(_WorldBound, ShutterDevice):
    """Excitation light with a shutter and a power setting; exposures count light dose."""

    def get_open(self) -> bool:
        return self.world.shutter_open

    def set_open(self, open: bool) -> None:
        self.world.shutter_open = bool(open)

    @pymm_property(limits=(0.0, 100.0), name="Power_mW")
    def power_mw(self) -> float:
        """Light power at the sample (mW)."""
        return self.world.light_power_mW

    @power_mw.setter
    def power_mw(self, value: float) -> None:
        self.world.light_power_mW = float(value)

    @pymm_property(is_read_only=True, name="Dose_mJ")
    def dose_mj(self) -> float:
        """Cumulative light dose delivered to the sample (mJ)."""
        return self.world.dose.dose_mJ

    @pymm_property(is_read_only=True, name="RemainingBrightness")
    def remaining_brightness(self) -> float:
        """Fraction of the specimen's brightness left after photobleaching."""
        return self.world.bleach_factor


class SimLightPath(_WorldBound, StateDevice):
    """Selects widefield or confocal (spinning-disk) detection."""

    def __init__(self) -> None:
        super().__init__(LIGHT_PATHS)
        self._state = 0

    def get_state(self) -> int:
        return self._state

    def set_state(self, position: int) -> None:
        self._state = int(position)
        self.world.modality = LIGHT_PATHS[self._state].lower()  # type: ignore[assignment]


class SimObjective(_WorldBound, StateDevice):
    """Objective turret with the one objective the optics model describes."""

    def __init__(self) -> None:
        super().__init__({0: "20x/0.75 Air"})

    def get_state(self) -> int:
        return 0

    def set_state(self, position: int) -> None:
        if int(position) != 0:
            raise ValueError("The simulated turret holds one objective (position 0).")
