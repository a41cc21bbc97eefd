"""What a Deep-Z run needs from the microscope, found on the one in hand.

A run switches the light path through a config group, sets the exposure, and where asked the
light power; it reads the delivered light dose where the hardware reports one. :class:`Microscope`
drives any core that answers CMMCore's calls (:class:`MMCore`): pymmcore-plus's as it is, a running
Micro-Manager's through pycromanager's Java backend (snake_case) through :func:`as_mm_core`; it refuses
what this microscope cannot honour before anything moves (:class:`~mm_deepz.errors.HardwareError`).

Nothing here assumes a light source: the light power is set on the ``DEVICE.PROPERTY`` the
microscope's settings name (in mW; ``--power-property``), and the dose is read from the one they name
(in mJ; ``--dose-property``), elsewhere unknown and reported as such, never estimated. The simulator's
settings name its light source's (``Shutter.Power_mW``, ``Shutter.Dose_mJ``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from mm_deepz.bridge import ENGINE_TRIES
from mm_deepz.errors import HardwareError, SettingsError

from .core import as_mm_core
from .plan import DeepZPlan

#: the device commands of pycromanager's engine, as its errors name them ("Changing exposure unsuccessful")
_ENGINE_COMMANDS = (
    "Changing exposure",
    "Changing channels",
    "Moving Z device",
    "Moving XY stage",
    "Changing additional properties",
)
#: pycromanager's words when a camera's sequence ends before all its frames arrived
_SEQUENCE_ENDED = "Expected images did not arrive in circular buffer"
#: what each light path's preset is for, in refusals
PRESET_USES = {"input": "widefield input", "reference": "blind-check reference", "target": "target stacks"}
#: Micro-Manager's camera exposure property (ms)
EXPOSURE_PROPERTY = "Exposure"
#: what to do when the light power cannot be set
_POWER_ADVICE = (
    "leave the light power unset and set it in Micro-Manager, or name the property that sets it in mW "
    "with --power-property DEVICE.PROPERTY."
)


@dataclass(frozen=True)
class PropertyRef:
    """One device property, ``DEVICE.PROPERTY`` on the command line."""

    device: str
    name: str

    @classmethod
    def parse(cls, text: str) -> PropertyRef:
        """``"LED.Power_mW"`` -> ``PropertyRef("LED", "Power_mW")``; :class:`SettingsError` if malformed."""
        device, _, name = text.partition(".")
        if not device.strip() or not name.strip():
            raise SettingsError(
                f"{text!r} names no device property: write DEVICE.PROPERTY, as Micro-Manager's "
                "Device Property Browser shows them (for example LED.Power_mW)."
            )
        return cls(device.strip(), name.strip())

    def __str__(self) -> str:
        return f"{self.device}.{self.name}"


def strings(values: Any) -> list[str]:
    """A core's string list (a Python list, or a Java StrVector through pycromanager)."""
    if hasattr(values, "size") and hasattr(values, "get"):
        return [str(values.get(i)) for i in range(values.size())]
    return [str(v) for v in values]


class Microscope:
    """The run's view of one core: config groups, camera, light power and dose."""

    def __init__(
        self, core: object, *, power_property: str | None = None, dose_property: str | None = None
    ) -> None:
        """``power_property`` / ``dose_property``: the ``DEVICE.PROPERTY`` that sets the light power (mW) /
        reports the light dose delivered (mJ); None where the microscope has none or it is not known."""
        self.core = as_mm_core(core)
        self._power_property = PropertyRef.parse(power_property) if power_property else None
        self._dose_property = PropertyRef.parse(dose_property) if dose_property else None

    # -- what the run reads ------------------------------------------------------------
    @property
    def pixel_size_um(self) -> float:
        """The current objective's pixel size at the sample."""
        return float(self.core.getPixelSizeUm())

    @property
    def image_shape(self) -> tuple[int, int]:
        """The camera's image (height, width) in pixels."""
        return int(self.core.getImageHeight()), int(self.core.getImageWidth())

    def dose_mJ(self) -> float | None:
        """The light dose the light source reports having delivered; None where none is named or the
        named property is not there."""
        ref = self._dose_property
        if ref is None or not self.core.hasProperty(ref.device, ref.name):
            return None
        return float(self.core.getProperty(ref.device, ref.name))

    def snap(self, channel_group: str, preset: str, exposure_ms: float) -> np.ndarray:
        """One camera image at ``preset`` and ``exposure_ms``, where the stage is."""
        self._require_preset(channel_group, preset, "image")
        self.core.setConfig(channel_group, preset)
        self.core.setExposure(float(exposure_ms))
        self.core.snapImage()
        h, w = self.image_shape
        return np.asarray(self.core.getImage()).reshape(h, w)  # the Java backend returns it flat

    def xy_position(self) -> tuple[float, float]:
        """Where the XY stage is (µm); (0, 0) on a microscope without one."""
        if not str(self.core.getXYStageDevice()):
            return (0.0, 0.0)
        return float(self.core.getXPosition()), float(self.core.getYPosition())

    def focus(self) -> float:
        """Where the focus (Z) stage is (µm)."""
        return float(self.core.getPosition())

    def move_xy(self, x_um: float, y_um: float) -> None:
        """Move the XY stage and wait for it (nothing on a microscope without one)."""
        stage = str(self.core.getXYStageDevice())
        if stage:
            self.core.setXYPosition(float(x_um), float(y_um))
            self.core.waitForDevice(stage)

    def move_z(self, z_um: float) -> None:
        """Move the focus stage and wait for it."""
        self.core.setPosition(float(z_um))
        self.core.waitForDevice(str(self.core.getFocusDevice()))

    def dark_frames(self, n: int, exposure_ms: float) -> list[np.ndarray]:
        """``n`` camera frames with the shutter closed (the camera's offset and dark signal); the
        shutter settings are put back."""
        if n <= 0:
            return []
        auto = bool(self.core.getAutoShutter())
        self.core.setAutoShutter(False)
        self.core.setShutterOpen(False)
        self.core.setExposure(float(exposure_ms))
        h, w = self.image_shape
        frames = []
        try:
            for _ in range(n):
                self.core.snapImage()
                frames.append(np.asarray(self.core.getImage()).reshape(h, w))
        finally:
            self.core.setAutoShutter(auto)
        return frames

    # -- what the run sets --------------------------------------------------------------
    def power_property(self) -> PropertyRef | None:
        """The property that sets the light power (None: none named)."""
        return self._power_property

    def set_property(self, device: str, name: str, value: str) -> None:
        """Set a device property (as an event's ``properties`` do)."""
        self.core.setProperty(device, name, value)

    def power_settings(self, plan: DeepZPlan) -> list[list[str]]:
        """The ``properties`` of an event that measures at the plan's light power (none if unset)."""
        if plan.light_power_mW is None:
            return []
        ref = self._check_power(plan.light_power_mW)
        return [[ref.device, ref.name, str(plan.light_power_mW)]]

    # -- failures during a run ------------------------------------------------------------
    def failure_message(self, error: BaseException, plan: DeepZPlan) -> str:
        """One line for a device command that failed during a run: which command, on which device, and
        what to check."""
        chain: list[str] = []  # the engine's error, then what caused it ("Changing channels unsuccessful")
        cause: BaseException | None = error
        while cause is not None and len(chain) < 5:
            if (line := " ".join(str(cause).split()) or type(cause).__name__) not in chain:
                chain.append(line)
            cause = cause.__cause__ or cause.__context__
        text = ": ".join(reversed(chain))
        where = ""
        for command in _ENGINE_COMMANDS:
            if command in text:
                try:
                    where = f" ({command.lower()}, {self._device_of(command, plan)})"
                except Exception:  # noqa: BLE001 - the core itself may be what failed
                    where = f" ({command.lower()})"
                break
        tries = (
            f" after {ENGINE_TRIES} tries" if where else ""
        )  # the engine retries device commands, not snaps
        if _SEQUENCE_ENDED in text:  # a camera sequence (time points due at once) that ended early
            where = (
                f" (camera {self.core.getCameraDevice()!r}: its sequence of frames ended before all of them "
                "arrived; the camera's own error is in Micro-Manager's log)"
            )
        return (
            f"The microscope failed a device command{where}{tries}: {text}. The run stops; what was measured "
            "is kept. Check that device in Micro-Manager (Device Property Browser)."
        )

    def _device_of(self, command: str, plan: DeepZPlan) -> str:
        """The device one of pycromanager's engine commands works on."""
        if command == "Changing exposure":
            return f"camera {self.core.getCameraDevice()!r}"
        if command == "Changing channels":
            return f"config group {plan.channel_group!r}"
        if command == "Moving Z device":
            return f"focus stage {self.core.getFocusDevice()!r}"
        if command == "Moving XY stage":
            return f"XY stage {self.core.getXYStageDevice()!r}"
        return f"light power {self.power_property()}"

    # -- refusals ------------------------------------------------------------------------
    def check(self, plan: DeepZPlan, blind_checks: bool) -> None:
        """Refuse a plan this microscope cannot carry out, before anything moves."""
        presets = {"input": plan.input_preset}
        if blind_checks:
            presets["reference"] = plan.reference_preset
        self.check_presets(plan.channel_group, presets)
        if plan.light_power_mW is not None:
            self._check_power(plan.light_power_mW)
        exposures = {"measured planes (--exposure)": plan.anchor_exposure_ms}
        exposures["full stacks (virtual z-stacking off)"] = plan.stack_exposure_ms
        if blind_checks:
            exposures["blind-check reference stacks"] = plan.reference_exposure_ms
        self.check_exposures(exposures)

    def check_presets(self, group: str, presets: dict[str, str]) -> None:
        """Refuse a config group, or any of its ``presets`` (what each is for -> preset), the microscope
        lacks."""
        groups = strings(self.core.getAvailableConfigGroups())
        if group not in groups:
            raise HardwareError(
                f"The microscope has no config group {group!r} (it has: {', '.join(groups) or 'none'}): name "
                "the group that switches the light path (--channel-group)."
            )
        for what, preset in presets.items():
            self._require_preset(group, preset, PRESET_USES.get(what, what), f"--{what}-preset")

    def check_exposures(self, exposures: dict[str, float]) -> None:
        """Refuse exposures the camera does not take: outside its ``Exposure`` limits, refused when set,
        or set to something else (more than 10 % off). The camera's exposure is put back afterwards."""
        camera = str(self.core.getCameraDevice())
        if not camera:
            raise HardwareError(
                "The microscope has no camera (Core-Camera is empty): choose one in Micro-Manager."
            )
        if self.core.hasPropertyLimits(camera, EXPOSURE_PROPERTY):
            low = float(self.core.getPropertyLowerLimit(camera, EXPOSURE_PROPERTY))
            high = float(self.core.getPropertyUpperLimit(camera, EXPOSURE_PROPERTY))
            for what, ms in exposures.items():
                if not low <= ms <= high:
                    raise HardwareError(
                        f"An exposure of {ms:g} ms for the {what} is outside what camera {camera!r} takes "
                        f"({low:g} to {high:g} ms): choose one in that range."
                    )
        before = float(self.core.getExposure())
        try:
            for what, ms in exposures.items():
                try:
                    self.core.setExposure(float(ms))
                    got = float(self.core.getExposure())
                except Exception as e:  # noqa: BLE001 - the device's refusal, whatever its type
                    first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
                    raise HardwareError(
                        f"Camera {camera!r} refuses an exposure of {ms:g} ms for the {what} ({first}): "
                        "choose one it takes."
                    ) from None
                if abs(got - ms) > 0.1 * ms:
                    raise HardwareError(
                        f"Camera {camera!r} sets {got:g} ms when asked for {ms:g} ms for the {what}: choose "
                        "an exposure it takes."
                    )
        finally:
            self.core.setExposure(before)

    def _require_preset(self, group: str, preset: str, what: str, option: str | None = None) -> None:
        presets = strings(self.core.getAvailableConfigs(group))
        if preset not in presets:
            how = f": name it with {option}" if option else ""
            raise HardwareError(
                f"Config group {group!r} has no preset {preset!r} for the {what} (it has: "
                f"{', '.join(presets) or 'none'}){how}."
            )

    def _check_power(self, mW: float) -> PropertyRef:
        """The property that sets the light power to ``mW``, or :class:`HardwareError` saying why none can."""
        ref = self.power_property()
        if ref is None:
            raise HardwareError("Nothing says where this microscope sets the light power: " + _POWER_ADVICE)
        loaded = strings(self.core.getLoadedDevices())
        if ref.device not in loaded:
            raise HardwareError(
                f"The microscope has no device {ref.device!r} (the light power's property {ref}; it has: "
                f"{', '.join(loaded) or 'none'}): " + _POWER_ADVICE
            )
        if not self.core.hasProperty(ref.device, ref.name):
            raise HardwareError(f"Light source {ref.device!r} has no property {ref.name!r}: " + _POWER_ADVICE)
        if self.core.isPropertyReadOnly(ref.device, ref.name):
            raise HardwareError(f"{ref} is read-only: name a property that sets the light power.")
        if self.core.hasPropertyLimits(ref.device, ref.name):
            low = float(self.core.getPropertyLowerLimit(ref.device, ref.name))
            high = float(self.core.getPropertyUpperLimit(ref.device, ref.name))
            if not low <= mW <= high:
                raise HardwareError(
                    f"A light power of {mW:g} mW is outside what {ref} accepts ({low:g} to {high:g})."
                )
        return ref
