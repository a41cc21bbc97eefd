"""What a user asks for: one declarative, validated description of a Deep-Z acquisition.

The CLI's options, the panel's fields and its settings files all fill an
:class:`AcquisitionRequest`. It is a description only: making one checks every value (each out of
its declared range named in one :class:`SettingsError`) and touches nothing, loads no model and
imports neither torch nor the microscope's libraries. :func:`acquisition_hooks.start.prepare` checks
it against the disk and the model; :func:`acquisition_hooks.start.open_microscope` opens the
microscope it names: a :class:`SimulatorSpec` or a :class:`MicroManagerSpec`.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal, get_args

from pydantic import ConfigDict, Discriminator, Field, Tag, field_validator, model_validator

from mm_deepz.bridge import DEFAULT_PORT
from mm_deepz.devices import Device
from mm_deepz.errors import DeepZError, SettingsError
from mm_deepz.settings import Settings
from mm_deepz.shipped import shipped_model_path

from .fields import LIMITS, BlindCheckEvery, Exposure, IntervalS, Positions, TimePoints, unit
from .microscope import PropertyRef
from .plan import grid_planes

#: the simulator's specimens
Phantom = Literal["worm", "beads", "sheet"]
PHANTOMS: tuple[str, ...] = get_args(Phantom)
#: the microscope's settings as earlier versions named them, flat in the request (one release more)
_FLAT_MICROSCOPE = ("connect", "port", "phantom", "seed", "frame", "config")


class _LightSource(Settings):
    """Where a microscope sets its light power and reports the dose it delivered (``DEVICE.PROPERTY``)."""

    #: the property that sets the light power in mW (None: the run does not set it)
    power_property: str | None = None
    #: the read-only property counting the light dose delivered, in mJ (None: the dose is unknown)
    dose_property: str | None = None

    @field_validator("power_property", "dose_property")
    @classmethod
    def _property(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                PropertyRef.parse(value)
            except SettingsError as e:
                raise ValueError(str(e).rstrip(".")) from None
        return value


class SimulatorSpec(_LightSource):
    """The simulated microscope: a specimen (seeded), the camera's size, the configuration file."""

    error: ClassVar[type[DeepZError]] = SettingsError
    what: ClassVar[str] = "simulator settings"
    model_config = ConfigDict(allow_inf_nan=False)

    kind: Literal["simulator"] = "simulator"
    phantom: Phantom = Field("worm", title="the simulator's specimen")
    seed: int = Field(100, ge=0, title="the specimen seed")
    frame: int = Field(
        256, ge=32, le=LIMITS["frame"], title="the simulated camera", json_schema_extra=unit("pixels square")
    )
    #: the Micro-Manager configuration file (None: the simulator's own, ``simulators/demo.cfg``;
    #: ``simulators.MM_DEMO_CONFIG`` gives Micro-Manager's demo-configuration names)
    config: Path | None = None
    #: the simulated light source (device ``Shutter`` in both of the simulator's configurations)
    power_property: str | None = "Shutter.Power_mW"
    dose_property: str | None = "Shutter.Dose_mJ"

    def record(self) -> dict[str, Any]:
        """What the run's record says of the specimen."""
        return {
            "phantom": self.phantom,
            "seed": self.seed,
            "sensor_shape": [self.frame, self.frame],
            "config": self.config.name if self.config else "demo.cfg",
        }


class MicroManagerSpec(_LightSource):
    """A running Micro-Manager (its GUI with pycromanager's Java backend) on ``port``; where its light
    source sets the power and reports the dose, if it does (no property is assumed)."""

    error: ClassVar[type[DeepZError]] = SettingsError
    what: ClassVar[str] = "Micro-Manager settings"

    kind: Literal["micro-manager"] = "micro-manager"
    port: int = Field(DEFAULT_PORT, ge=1, le=65535, title="the port")


def _kind(value: Any) -> str:
    """Which microscope a spec describes (a spec given without ``kind`` is the simulator's)."""
    kind = value.get("kind", "simulator") if isinstance(value, dict) else getattr(value, "kind", "")
    return str(kind)


#: the microscope a request runs on
MicroscopeSpec = Annotated[
    Annotated[SimulatorSpec, Tag("simulator")] | Annotated[MicroManagerSpec, Tag("micro-manager")],
    Discriminator(_kind),
]


class AcquisitionRequest(Settings):
    """One Deep-Z time-lapse as the user asked for it (µm, ms, s), validated when made: each value
    out of its range is named in one :class:`SettingsError`."""

    error: ClassVar[type[DeepZError]] = SettingsError
    what: ClassVar[str] = "acquisition settings"
    model_config = ConfigDict(allow_inf_nan=False)

    output: Path = Path("deepz_run.ome.zarr")
    time_points: TimePoints = 5
    interval_s: IntervalS = 0.0
    z_start_um: float = Field(
        -10.0, ge=-LIMITS["z_abs_um"], le=LIMITS["z_abs_um"], title="z start", json_schema_extra=unit("µm")
    )
    z_end_um: float = Field(
        10.0, ge=-LIMITS["z_abs_um"], le=LIMITS["z_abs_um"], title="z end", json_schema_extra=unit("µm")
    )
    z_step_um: float = Field(1.0, gt=0, title="the z step", json_schema_extra=unit("µm"))
    #: measured planes per time point: picks the shipped model when ``model`` is None, and must
    #: match ``model`` when both are given (None: the model's)
    planes: int | None = Field(1, ge=1, le=2, title="the measured planes per time point")
    model: Path | None = None
    exposure_ms: Exposure = 10.0
    power_mW: float | None = Field(
        None, gt=0, le=LIMITS["power_mW"], title="light power", json_schema_extra=unit("mW")
    )
    blind_check_every: BlindCheckEvery = 0
    positions_xy_um: Positions = None
    device: Device = "auto"
    deepz: bool = True
    overwrite: bool = False
    #: planes stored losslessly compressed (Blosc-LZ4), or as raw bytes (written at about raw disk speed)
    compression: bool = True
    microscope: MicroscopeSpec = Field(default_factory=SimulatorSpec)
    #: the config group that switches the light path, and its presets for Deep-Z's input
    #: planes and for blind-check reference stacks (microscopes name them their own way)
    channel_group: str = "Channel"
    input_preset: str = "Widefield"
    reference_preset: str = "Confocal"

    @model_validator(mode="before")
    @classmethod
    def _earlier_versions(cls, data: Any) -> Any:
        """The request as earlier versions wrote it (deprecated): the microscope's settings flat in it
        (``connect``, ``port``, ``phantom``, ``seed``, ``frame``, ``config``, ``power_property``) are
        gathered into ``microscope``."""
        if not isinstance(data, dict):
            return data
        power_property = data.get("power_property")
        if "power_property" in data:
            warnings.warn(
                "AcquisitionRequest's power_property is deprecated: it belongs to the microscope, "
                "SimulatorSpec(power_property=...) or MicroManagerSpec(power_property=...)",
                DeprecationWarning,
                stacklevel=4,
            )
            data = {k: v for k, v in data.items() if k != "power_property"}
        data = _flat_microscope(data)
        if power_property is not None:
            microscope = data.get("microscope", {})
            microscope = microscope.model_dump() if isinstance(microscope, Settings) else dict(microscope)
            data = {**data, "microscope": {**microscope, "power_property": power_property}}
        return data

    @model_validator(mode="after")
    def _check_values(self) -> AcquisitionRequest:
        """Refuse settings that contradict each other: a power for a microscope that cannot set it, a
        stack of one plane or of too many."""
        problems = []
        if self.power_mW is not None and self.microscope.power_property is None:
            problems.append(
                f"a light power of {self.power_mW:g} mW was asked for, but nothing says where this "
                "microscope sets it: name the property (--power-property DEVICE.PROPERTY, in mW), or "
                "leave the power unset and set it in Micro-Manager"
            )
        if self.z_end_um > self.z_start_um:
            n = grid_planes(self.z_start_um, self.z_end_um, self.z_step_um)
            if n > LIMITS["planes"]:
                problems.append(
                    f"{self.z_start_um:g} to {self.z_end_um:g} µm in steps of {self.z_step_um:g} µm "
                    f"is {n:,} planes; at most {LIMITS['planes']} (use a larger step)"
                )
            elif n == 1:
                problems.append(
                    f"a z step of {self.z_step_um:g} µm is larger than the range {self.z_start_um:g} "
                    f"to {self.z_end_um:g} µm: the stack would be one plane"
                )
        if problems:
            raise ValueError("; ".join(problems))
        return self

    @property
    def model_path(self) -> Path:
        """The model file to use (the shipped one for ``planes`` unless one was given)."""
        return self.model if self.model is not None else shipped_model_path(self.planes or 1)


def _flat_microscope(data: dict[str, Any]) -> dict[str, Any]:
    """``data`` with the microscope's flat settings of earlier versions gathered into ``microscope``."""
    if not set(_FLAT_MICROSCOPE) & data.keys():
        return data
    if "microscope" in data:
        raise ValueError(
            f"give the microscope once: in microscope, or (deprecated) as {', '.join(_FLAT_MICROSCOPE)}"
        )
    warnings.warn(
        "AcquisitionRequest's connect, port, phantom, seed, frame and config are deprecated: give "
        "microscope=SimulatorSpec(...) or MicroManagerSpec(port=...)",
        DeprecationWarning,
        stacklevel=5,
    )
    data = dict(data)
    flat = {name: data.pop(name) for name in _FLAT_MICROSCOPE if name in data}
    if flat.pop("connect", False):
        if flat.get("config") is not None:
            raise ValueError(
                "a configuration file is the simulator's; with a running Micro-Manager, load it "
                "there (Devices > Load Hardware Configuration)"
            )
        data["microscope"] = {"kind": "micro-manager", **({"port": flat["port"]} if "port" in flat else {})}
    else:
        flat.pop("port", None)
        data["microscope"] = {"kind": "simulator", **flat}
    return data
