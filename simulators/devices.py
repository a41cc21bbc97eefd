"""Python device adapters of the simulated microscope, for pymmcore-plus's ``UniMMCore``.

Loaded from a Micro-Manager configuration file with ``#py pyDevice`` lines (see
``simulators/demo.cfg`` and ``simulators/mmconfig_demo.cfg``); every device binds to the active
:class:`~simulators.world.SimWorld` when it is initialised, so the camera sees what the stage,
shutter, filters and light path do. Property values are accepted as Micro-Manager sends them
(text, e.g. ``"12"`` for a bit depth of 12). Hardware sequences (``Z`` with ``UseSequences``,
state devices with ``Sequence``) step on each camera exposure, as TTL-triggered hardware does.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
from pymmcore_plus import Keyword
from pymmcore_plus.experimental.unicore import (
    ShutterDevice,
    SimpleCameraDevice,
    StageDevice,
    StateDevice,
    XYStageDevice,
    pymm_property,
)
from typing_extensions import override

from .spectra import OPEN, Band
from .world import SimWorld, active_world

if TYPE_CHECKING:
    from numpy.typing import DTypeLike

#: Labels of the light-path states; the camera sees the matching modality.
LIGHT_PATHS = {0: "Widefield", 1: "Confocal"}
#: Camera binnings and pixel types (with the bit depth each sets)
BINNINGS = (1, 2, 4, 8)
PIXEL_TYPES = {"8bit": 8, "16bit": 16}
#: the exposures the simulated camera takes (ms), as its Exposure property's limits
EXPOSURE_LIMITS_MS = (0.01, 10_000.0)


#: Maximum length of the hardware sequences the simulated devices accept.
SEQUENCE_MAX_LENGTH = 10_000


class _WorldBound:
    """Mixin: the device's world, bound on initialisation; property values accepted as text."""

    _world: SimWorld | None = None

    @property
    def world(self) -> SimWorld:
        if self._world is None:
            self._world = active_world()
        return self._world

    def initialize(self) -> None:
        self._world = active_world()

    def set_property_value(self, prop_name: str, value: Any) -> None:
        super().set_property_value(prop_name, self._as_allowed(prop_name, value))  # type: ignore[misc]

    def load_property_sequence(self, prop_name: str, sequence: Sequence[Any]) -> None:
        values = [self._as_allowed(prop_name, v) for v in sequence]
        super().load_property_sequence(prop_name, values)  # type: ignore[misc]

    def _as_allowed(self, prop_name: str, value: Any) -> Any:
        """The allowed value that ``value`` spells (``"12"`` for 12), or ``value`` unchanged for the
        property's own check to refuse, naming the allowed values."""
        allowed = self.get_property_info(prop_name).allowed_values  # type: ignore[attr-defined]
        if not allowed or value in allowed:
            return value
        return next((a for a in allowed if str(a) == str(value) or _same_number(a, value)), value)


def _same_number(a: Any, b: Any) -> bool:
    try:
        return not isinstance(a, str) and float(a) == float(b)
    except (TypeError, ValueError):
        return False


class SimCamera(_WorldBound, SimpleCameraDevice):
    """Simulated sCMOS camera: renders the specimen at the current focus, with noise.

    Its sensor size (``OnCameraCCDXSize`` / ``OnCameraCCDYSize``), binning, software ROI, bit depth
    and pixel type (``8bit``: uint8 images clipped at 255; ``16bit``: uint16) behave as on a camera:
    image size and dtype follow them.
    """

    def __init__(self) -> None:
        super().__init__()
        self._exposure = 10.0
        self._binning = 1
        self._real_time = True
        self.set_property_allowed_values(Keyword.Binning, BINNINGS)
        self.set_property_limits(Keyword.Exposure, EXPOSURE_LIMITS_MS)

    @override
    def sensor_shape(self) -> tuple[int, int]:
        h, w = self.world.sensor_shape
        return (h // self._binning, w // self._binning)

    @override
    def dtype(self) -> DTypeLike:
        return self.world.camera.dtype

    @override
    def get_exposure(self) -> float:
        return self._exposure

    @override
    def set_exposure(self, exposure: float) -> None:
        low, high = EXPOSURE_LIMITS_MS
        if not low <= float(exposure) <= high:
            raise ValueError(f"Exposure {exposure} ms is outside {low:g}-{high:g} ms.")
        self._exposure = float(exposure)

    @override
    def get_binning(self) -> int:
        return self._binning

    def set_binning(self, value: int) -> None:
        """Micro-Manager's standard ``Binning`` property (found by name by UniMMCore)."""
        if int(value) not in BINNINGS:
            raise ValueError(f"Binning {value} is not supported; use {', '.join(map(str, BINNINGS))}.")
        self._binning = int(value)
        self.clear_roi()

    def get_gain(self) -> float:
        """The standard ``Gain`` property: ADU per electron."""
        return self.world.camera.gain_adu_per_e

    def set_gain(self, value: float) -> None:
        """Set the standard ``Gain`` property (ADU per electron)."""
        self._set_camera(gain_adu_per_e=float(value))

    def get_offset(self) -> float:
        """The standard ``Offset`` property: the camera's bias in ADU."""
        return self.world.camera.offset_adu

    def set_offset(self, value: float) -> None:
        """Set the standard ``Offset`` property (ADU)."""
        self._set_camera(offset_adu=float(value))

    @pymm_property(limits=(0.0, 20.0), name="ReadNoise_e")
    def read_noise_e(self) -> float:
        """Read noise, electrons rms."""
        return self.world.camera.read_noise_e

    @read_noise_e.setter
    def read_noise_e(self, value: float) -> None:
        self._set_camera(read_noise_e=float(value))

    @pymm_property(allowed_values=[8, 10, 12, 14, 16], name="BitDepth")
    def bit_depth(self) -> int:
        """Bit depth of the analogue-to-digital converter; counts saturate at 2**bits - 1."""
        return self.world.camera.bit_depth

    @bit_depth.setter
    def bit_depth(self, value: int) -> None:
        self._set_camera(bit_depth=int(value))

    @pymm_property(allowed_values=list(PIXEL_TYPES), name="PixelType")
    def pixel_type(self) -> str:
        """``8bit`` (8-bit converter, uint8 images) or ``16bit`` (10-16 bits, uint16 images)."""
        return "8bit" if self.world.camera.bit_depth <= 8 else "16bit"

    @pixel_type.setter
    def pixel_type(self, value: str) -> None:
        if value != self.pixel_type:
            self._set_camera(bit_depth=PIXEL_TYPES[value])

    @pymm_property(limits=(16, 4096), name="OnCameraCCDXSize")
    def ccd_x_size(self) -> int:
        """Sensor width, pixels (unbinned)."""
        return self.world.sensor_shape[1]

    @ccd_x_size.setter
    def ccd_x_size(self, value: int) -> None:
        self._set_sensor(self.world.sensor_shape[0], int(value))

    @pymm_property(limits=(16, 4096), name="OnCameraCCDYSize")
    def ccd_y_size(self) -> int:
        """Sensor height, pixels (unbinned)."""
        return self.world.sensor_shape[0]

    @ccd_y_size.setter
    def ccd_y_size(self, value: int) -> None:
        self._set_sensor(int(value), self.world.sensor_shape[1])

    def _set_sensor(self, height: int, width: int) -> None:
        with self.world.lock:
            self.world.sensor_shape = (height, width)
        self.clear_roi()

    def _set_camera(self, **changes: Any) -> None:
        w = self.world
        w.camera = dataclasses.replace(w.camera, **changes)

    @pymm_property(allowed_values=[0, 1], name="RealTime")
    def real_time(self) -> int:
        """1: a frame takes at least its exposure time, as on a real camera; 0: as fast as it renders."""
        return int(self._real_time)

    @real_time.setter
    def real_time(self, value: int) -> None:
        self._real_time = bool(int(value))

    @override
    def snap(self, buffer: np.ndarray) -> Mapping[str, Any]:
        w = self.world
        start = time.perf_counter()
        with w.lock:
            w.trigger()  # the exposure's trigger pulse steps any running hardware sequence
            buffer[:] = w.expose(self._exposure, self._binning)
            meta = {
                "SimZ-um": f"{w.z_um:.4f}",
                "SimModality": w.modality,
                "SimChannelEfficiency": f"{w.channel_efficiency:.6g}",
                "SimDose-mJ": f"{w.dose.dose_mJ:.6f}",
                "SimTime-s": f"{w.now_s():.4f}",
            }
            w.last_frame_metadata = meta
        if self._real_time:
            time.sleep(max(0.0, self._exposure / 1000 - (time.perf_counter() - start)))
        return meta


class SimZStage(_WorldBound, StageDevice):
    """Simulated focus drive: moves the focal plane through the specimen (µm).

    With ``UseSequences`` = ``Yes`` it takes hardware z sequences (up to
    :data:`SEQUENCE_MAX_LENGTH` positions), stepping one position per camera exposure.
    """

    def __init__(self) -> None:
        super().__init__()
        self._limits = (-1000.0, 1000.0)
        self._use_sequences = "No"
        self._sequence: tuple[float, ...] = ()

    @override
    def set_position_um(self, val: float) -> None:
        lo, hi = self._limits
        if not lo <= val <= hi:
            raise ValueError(f"Z {val} µm is outside the stage range [{lo}, {hi}] µm.")
        with self.world.lock:
            self.world.z_um = float(val)

    @override
    def get_position_um(self) -> float:
        return self.world.z_um

    @override
    def home(self) -> None:
        self.set_position_um(0.0)

    def stop(self) -> None:
        """Moves are instantaneous; nothing to stop."""

    @override
    def set_origin(self) -> None:
        raise NotImplementedError("The simulated Z stage's origin is the specimen's centre.")

    @pymm_property(allowed_values=["No", "Yes"], name="UseSequences")
    def use_sequences(self) -> str:
        """``Yes``: the stage takes hardware-triggered z sequences."""
        return self._use_sequences

    @use_sequences.setter
    def use_sequences(self, value: str) -> None:
        self._use_sequences = value

    @override
    def get_sequence_max_length(self) -> int:
        return SEQUENCE_MAX_LENGTH if self._use_sequences == "Yes" else 0

    @override
    def send_sequence(self, sequence: tuple[float, ...]) -> None:
        lo, hi = self._limits
        if bad := [z for z in sequence if not lo <= float(z) <= hi]:
            raise ValueError(f"Z sequence positions {bad[:3]} are outside the stage range [{lo}, {hi}] µm.")
        self._sequence = tuple(float(z) for z in sequence)

    @override
    def start_sequence(self) -> None:
        self.world.start_sequence(self.get_label(), self.set_position_um, self._sequence)

    @override
    def stop_sequence(self) -> None:
        self.world.stop_sequence(self.get_label())


class SimXYStage(_WorldBound, XYStageDevice):
    """Simulated XY stage: moves the field of view over the specimen (µm)."""

    @override
    def set_position_um(self, x: float, y: float) -> None:
        with self.world.lock:
            self.world.xy_um = (float(x), float(y))

    @override
    def get_position_um(self) -> tuple[float, float]:
        return self.world.xy_um

    @override
    def home(self) -> None:
        self.set_position_um(0.0, 0.0)

    def stop(self) -> None:
        """Moves are instantaneous; nothing to stop."""

    @override
    def set_origin(self) -> None:
        raise NotImplementedError("The simulated XY stage's origin is the specimen's centre.")

    @override
    def set_origin_x(self) -> None:
        self.set_origin()

    @override
    def set_origin_y(self) -> None:
        self.set_origin()


class SimLightSource(_WorldBound, ShutterDevice):
    """Excitation light with a shutter and a power setting; exposures count light dose."""

    @override
    def get_open(self) -> bool:
        return self.world.shutter_open

    @override
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


class _StoredState(_WorldBound, StateDevice):
    """A state device that applies its position to the world, also when it is initialised
    (``START``), and keeps it once applied (a refused position changes nothing)."""

    START: ClassVar[int] = 0

    def __init__(self, states: Mapping[int, str]) -> None:
        super().__init__(states)
        self._state = self.START

    def initialize(self) -> None:
        super().initialize()
        self.set_state(self._state)

    def get_state(self) -> int:
        return self._state

    def set_state(self, position: int) -> None:
        self._apply(int(position))
        self._state = int(position)

    def _apply(self, position: int) -> None:
        raise NotImplementedError


class _SequenceableState(_StoredState):
    """A state device whose ``State`` takes hardware sequences while ``Sequence`` is ``On``."""

    def __init__(self, states: Mapping[int, str]) -> None:
        self._sequence_on = "Off"
        self._sequence: list[int] = []
        super().__init__(states)

    def register_standard_properties(self) -> None:
        super().register_standard_properties()
        self.register_property(
            name=Keyword.State,
            default_value=next(iter(self._state_to_label)),
            allowed_values=tuple(self._state_to_label),
            getter=type(self).get_state,
            setter=type(self)._set_state,
            sequence_max_length=0,
            sequence_loader=type(self)._load_states,
            sequence_starter=type(self)._start_states,
            sequence_stopper=type(self)._stop_states,
        )

    @pymm_property(allowed_values=["Off", "On"], name="Sequence")
    def sequence(self) -> str:
        """``On``: the ``State`` property takes hardware-triggered sequences."""
        return self._sequence_on

    @sequence.setter
    def sequence(self, value: str) -> None:
        self._sequence_on = value
        self.set_property_sequence_max_length(Keyword.State, SEQUENCE_MAX_LENGTH if value == "On" else 0)

    def _load_states(self, states: Sequence[int]) -> None:
        self._sequence = [int(s) for s in states]

    def _start_states(self) -> None:
        self.world.start_sequence(self.get_label(), self.set_state, self._sequence)

    def _stop_states(self) -> None:
        self.world.stop_sequence(self.get_label())


class SimLightPath(_SequenceableState):
    """Selects widefield or confocal (spinning-disk) detection. Its state is the world's modality,
    so the core and the rendered images always agree, also on a reused world."""

    def __init__(self) -> None:
        super().__init__(LIGHT_PATHS)

    @override
    def initialize(self) -> None:
        _WorldBound.initialize(self)  # the world's modality stands (the configuration's Startup sets it)

    @override
    def get_state(self) -> int:
        return next(i for i, label in LIGHT_PATHS.items() if label.lower() == self.world.modality)

    def _apply(self, position: int) -> None:
        self.world.modality = LIGHT_PATHS[position].lower()  # type: ignore[assignment]


class SimPortSwitch(_StoredState):
    """The microscope's light-path switch (Micro-Manager demo's ``Path``): the image goes to the
    eyepiece or to a camera port; the one simulated camera sees it on either camera port."""

    START = 1

    def __init__(self) -> None:
        super().__init__({0: "Eyepiece", 1: "Camera-left", 2: "Camera-right"})

    def _apply(self, position: int) -> None:
        self.world.light_to_camera = position != 0


class SimLED(_SequenceableState):
    """A four-colour LED light source (Micro-Manager demo's ``LED``) plus a white position.
    Its power at the sample is the shutter's ``Power_mW``; the colour sets the excitation band.
    ``Sequence`` = ``On`` lets channel sequences switch colours on each camera trigger."""

    COLOURS: ClassVar[dict[int, tuple[str, Band]]] = {
        0: ("UV", Band.around(385, 20)),
        1: ("Blue", Band.around(470, 20)),
        2: ("Green", Band.around(550, 20)),
        3: ("Red", Band.around(640, 20)),
        4: ("White", OPEN),
    }
    START = 4

    def __init__(self) -> None:
        super().__init__({i: name for i, (name, _) in self.COLOURS.items()})

    def _apply(self, position: int) -> None:
        self.world.set_light_path(source=self.COLOURS[position][1])


class _FilterWheel(_StoredState):
    """A ten-position filter wheel; each filter changes one part of the channel's spectrum
    (:class:`~simulators.spectra.LightPathSpectra`); unnamed positions are empty."""

    PART: ClassVar[str]
    FILTERS: ClassVar[dict[int, tuple[str, Any]]]

    def __init__(self) -> None:
        super().__init__({i: self.FILTERS.get(i, (f"State-{i}", None))[0] for i in range(10)})

    def _apply(self, position: int) -> None:
        part = self.FILTERS.get(position, ("", None))[1]
        if part is None and self.PART != "dichroic_cut":  # an empty slot passes everything
            part = OPEN
        self.world.set_light_path(**{self.PART: part})


class SimExcitationWheel(_FilterWheel):
    """Excitation filters of Micro-Manager's demo configuration (Chroma), plus a multiband one."""

    PART = "excitation"
    FILTERS: ClassVar[dict[int, tuple[str, Any]]] = {
        0: ("Chroma-D360", Band.around(360, 40)),
        1: ("Chroma-HQ480", Band.around(480, 40)),
        2: ("Chroma-HQ570", Band.around(570, 40)),
        3: ("Chroma-HQ620", Band.around(620, 60)),
        4: ("Multiband", None),
    }


class SimEmissionWheel(_FilterWheel):
    """Emission filters of Micro-Manager's demo configuration (Chroma), plus a multiband one."""

    PART = "emission"
    FILTERS: ClassVar[dict[int, tuple[str, Any]]] = {
        0: ("Chroma-HQ620", Band.around(620, 60)),
        1: ("Chroma-D460", Band.around(460, 50)),
        2: ("Chroma-HQ535", Band.around(535, 50)),
        3: ("Chroma-HQ700", Band.around(700, 75)),
        4: ("Multiband", None),
    }


class SimDichroicWheel(_FilterWheel):
    """Long-pass dichroics of Micro-Manager's demo configuration (edge in nm), plus a multiband one."""

    PART = "dichroic_cut"
    FILTERS: ClassVar[dict[int, tuple[str, Any]]] = {
        0: ("400DCLP", 400.0),
        1: ("Q505LP", 505.0),
        2: ("Q585LP", 585.0),
        4: ("Multiband", None),
    }


#: Objectives the simulator can put in the path: label -> (NA, magnification / base objective's);
#: NA None is the base objective's own (the world's ``base_optics``)
OBJECTIVES: dict[str, tuple[float | None, float]] = {
    "20x/0.75 Air": (None, 1.0),
    "20X/0.75 Air": (None, 1.0),
    "10X/0.30 Air": (0.30, 0.5),
    "40X/0.75 Air": (0.75, 2.0),
}


class SimObjective(_StoredState):
    """Objective turret with the one objective the optics model describes."""

    TURRET: ClassVar[dict[int, str]] = {0: "20x/0.75 Air"}

    def __init__(self) -> None:
        super().__init__(self.TURRET)

    def _apply(self, position: int) -> None:
        label = self.TURRET.get(position, "")
        if label not in OBJECTIVES:
            held = ", ".join(f"{i}: {lbl}" for i, lbl in self.TURRET.items() if lbl in OBJECTIVES)
            raise ValueError(f"Turret position {position} holds no objective; use one of {held}.")
        na, ratio = OBJECTIVES[label]
        self.world.set_objective(self.world.base_optics.na if na is None else na, ratio)


class SimObjectiveTurret(SimObjective):
    """The demo configuration's six-position turret, holding 40X (0), 10X (1) and 20X (3);
    the 20X is the base objective (20x/0.75 air, the one Deep-Z's models are trained for)."""

    TURRET: ClassVar[dict[int, str]] = {
        0: "40X/0.75 Air",
        1: "10X/0.30 Air",
        2: "Objective-2",
        3: "20X/0.75 Air",
        4: "Objective-4",
        5: "Objective-5",
    }
    START = 3
