"""What a user asks for: one declarative, validated description of a Deep-Z acquisition.

The CLI's options and the panel's fields both fill an :class:`AcquisitionRequest`; it
checks them (settings, model file, plan against the model's trained range) before any
hardware moves, opens the microscope (simulator or a running Micro-Manager) and builds the
one :class:`~acquisition_hooks.run.DeepZAcquisition` both front ends run.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
from pydantic import model_validator

from mm_deepz.bridge import DEFAULT_PORT
from mm_deepz.engine import VirtualStack
from mm_deepz.engine.predictor import device_problem, resolve_device
from mm_deepz.errors import DeepZError, SettingsError
from mm_deepz.io.claim import preflight_output
from mm_deepz.modelfile import DeepZModel, load_model, shipped_model_path
from mm_deepz.settings import Settings

from .microscope import PropertyRef
from .plan import DeepZPlan
from .run import DeepZAcquisition, RunSettings

PHANTOMS = ("worm", "beads", "sheet")
#: sizes beyond which a request is a typo, not an experiment (each refused with its limit)
LIMITS = {
    "time_points": 1_000_000,
    "interval_s": 86_400.0,
    "z_abs_um": 10_000.0,
    "planes": 1001,
    "exposure_ms": 10_000.0,
    "power_mW": 10_000.0,
    "xy_abs_um": 100_000.0,
    "frame": 4096,
}


class AcquisitionRequest(Settings):
    """One Deep-Z time-lapse as the user asked for it (µm, ms, s), validated when made: each value
    out of its range is named in one :class:`SettingsError`."""

    error: ClassVar[type[DeepZError]] = SettingsError
    what: ClassVar[str] = "acquisition settings"

    output: Path = Path("deepz_run.ome.zarr")
    time_points: int = 5
    interval_s: float = 0.0
    z_start_um: float = -10.0
    z_end_um: float = 10.0
    z_step_um: float = 1.0
    #: measured planes per time point: picks the shipped model when ``model`` is None, and must
    #: match ``model`` when both are given (None: the model's)
    planes: int | None = 1
    model: Path | None = None
    exposure_ms: float = 10.0
    power_mW: float | None = None
    #: where the light power is set, ``DEVICE.PROPERTY`` in mW (None: the shutter device's ``Power_mW``)
    power_property: str | None = None
    blind_check_every: int = 0
    positions_xy_um: tuple[tuple[float, float], ...] | None = None
    device: str = "auto"
    deepz: bool = True
    overwrite: bool = False
    #: True: a running Micro-Manager on ``port``; False: the simulated microscope below
    connect: bool = False
    port: int = DEFAULT_PORT
    phantom: str = "worm"
    seed: int = 100
    frame: int = 256
    #: the simulator's Micro-Manager configuration file (None: its own, ``simulators/demo.cfg``;
    #: ``simulators.MM_DEMO_CONFIG`` gives Micro-Manager's demo-configuration names)
    config: Path | None = None
    #: the config group that switches the light path, and its presets for Deep-Z's input
    #: planes and for blind-check reference stacks (microscopes name them their own way)
    channel_group: str = "Channel"
    input_preset: str = "Widefield"
    reference_preset: str = "Confocal"

    @model_validator(mode="after")
    def _check_values(self) -> AcquisitionRequest:
        """Refuse non-finite values, values below their minimum or above :data:`LIMITS`, and
        settings that contradict each other."""
        problems = self._range_problems()
        if (problem := device_problem(self.device)) is not None:
            problems.append(problem)
        if not self.connect and self.phantom not in PHANTOMS:
            problems.append(
                f"the simulator's specimen must be one of {', '.join(PHANTOMS)} (got {self.phantom!r})"
            )
        if not 0 < self.port < 65536:
            problems.append(f"port must be 1-65535 (got {self.port})")
        if self.power_property is not None:
            if self.power_mW is None:
                problems.append(
                    f"a power property ({self.power_property}) says where the light power is set: give "
                    "the power too (--power), or leave both unset"
                )
            try:
                PropertyRef.parse(self.power_property)
            except SettingsError as e:
                problems.append(str(e).rstrip("."))
        if self.config is not None and self.connect:
            problems.append(
                "a configuration file is the simulator's; with a running Micro-Manager, load it "
                "there (Devices > Load Hardware Configuration)"
            )
        if problems:
            raise ValueError("; ".join(problems))
        return self

    def check(self) -> None:
        """Refuse what depends on the disk now (:class:`SettingsError`, :class:`OutputExistsError`): a
        configuration file that does not exist, an output that may not be written."""
        if self.config is not None and not self.connect and not Path(self.config).is_file():
            raise SettingsError(
                f"Invalid acquisition settings: the configuration file {self.config} does not exist."
            )
        preflight_output(self.output, self.overwrite)

    def _range_problems(self) -> list[str]:
        """What is non-finite, too small or too large among the numeric settings."""
        problems = []
        numbers = {
            "interval": self.interval_s,
            "z start": self.z_start_um,
            "z end": self.z_end_um,
            "z step": self.z_step_um,
            "exposure": self.exposure_ms,
        }
        if self.power_mW is not None:
            numbers["light power"] = self.power_mW
        for i, xy in enumerate(self.positions_xy_um or ()):
            numbers[f"position {i + 1}"] = xy[0] + xy[1]  # nan or inf in either stays non-finite
        bad = [name for name, v in numbers.items() if not math.isfinite(v)]
        if bad:
            return [f"{', '.join(bad)} must be a finite number (got nan or inf)"]
        lim = LIMITS
        if not 1 <= self.time_points <= lim["time_points"]:
            problems.append(f"time points must be 1 to {lim['time_points']:,} (got {self.time_points})")
        if not 0 <= self.interval_s <= lim["interval_s"]:
            problems.append(f"the interval must be 0 to {lim['interval_s']:g} s (got {self.interval_s:g} s)")
        if self.z_step_um <= 0:
            problems.append(f"the z step must be positive (got {self.z_step_um:g} µm)")
        elif max(abs(self.z_start_um), abs(self.z_end_um)) > lim["z_abs_um"]:
            problems.append(
                f"z must stay within ±{lim['z_abs_um']:g} µm (got {self.z_start_um:g} to "
                f"{self.z_end_um:g} µm)"
            )
        elif self.z_end_um > self.z_start_um:
            n = math.floor((self.z_end_um - self.z_start_um) / self.z_step_um + 1e-6) + 1
            if n > lim["planes"]:
                problems.append(
                    f"{self.z_start_um:g} to {self.z_end_um:g} µm in steps of {self.z_step_um:g} µm "
                    f"is {n:,} planes; at most {lim['planes']} (use a larger step)"
                )
            elif n == 1:
                problems.append(
                    f"a z step of {self.z_step_um:g} µm is larger than the range {self.z_start_um:g} "
                    f"to {self.z_end_um:g} µm: the stack would be one plane"
                )
        if not 0 < self.exposure_ms <= lim["exposure_ms"]:
            problems.append(
                f"the exposure must be above 0 and at most {lim['exposure_ms']:g} ms "
                f"(got {self.exposure_ms:g} ms)"
            )
        if self.power_mW is not None and not 0 < self.power_mW <= lim["power_mW"]:
            problems.append(
                f"light power must be above 0 and at most {lim['power_mW']:g} mW (got {self.power_mW:g} mW)"
            )
        if any(abs(v) > lim["xy_abs_um"] for xy in self.positions_xy_um or () for v in xy):
            problems.append(f"stage positions must be within ±{lim['xy_abs_um']:g} µm")
        if self.blind_check_every < 0:
            problems.append(
                f"blind checks are every N >= 1 time points, or 0 for none (got {self.blind_check_every})"
            )
        if self.planes is not None and self.planes not in (1, 2):
            problems.append(f"Deep-Z measures 1 or 2 planes per time point (got {self.planes})")
        if not self.connect:
            if not 32 <= self.frame <= lim["frame"]:
                problems.append(
                    f"the simulated camera is 32 to {lim['frame']} pixels square (got {self.frame})"
                )
            if self.seed < 0:
                problems.append(f"the specimen seed must be 0 or more (got {self.seed})")
        return problems

    @property
    def model_path(self) -> Path:
        """The model file to use (the shipped one for ``planes`` unless one was given)."""
        return self.model if self.model is not None else shipped_model_path(self.planes or 1)

    def prepare(self, model: DeepZModel | None = None) -> tuple[DeepZModel, DeepZPlan]:
        """Check everything that can be checked before the microscope moves; the model and plan.

        ``model``: the already loaded model file of :attr:`model_path` (else it is loaded).
        """
        self.check()
        if self.device.startswith("cuda:"):  # a GPU by number that is not here: refused before anything moves
            resolve_device(self.device)
        model = model or load_model(self.model_path)
        if self.planes is not None and model.card.n_planes != self.planes:
            raise SettingsError(
                f"{self.planes} measured plane(s) were asked for, but the model {self.model_path.name} "
                f"takes {model.card.n_planes}: ask for {model.card.n_planes} or choose another model."
            )
        plan = DeepZPlan.for_model(
            model,
            self.z_start_um,
            self.z_end_um,
            self.z_step_um,
            anchor_exposure_ms=self.exposure_ms,
            light_power_mW=self.power_mW,
            light_power_property=self.power_property,
            blind_check_every=self.blind_check_every,
            channel_group=self.channel_group,
            input_preset=self.input_preset,
            reference_preset=self.reference_preset,
        )
        return model, plan

    def run_settings(self) -> RunSettings:
        """The run's time-lapse, output and device settings."""
        specimen = (
            None
            if self.connect
            else {
                "phantom": self.phantom,
                "seed": self.seed,
                "sensor_shape": [self.frame, self.frame],
                "config": Path(self.config).name if self.config else "demo.cfg",
            }
        )
        return RunSettings(
            output=self.output,
            time_points=self.time_points,
            interval_s=self.interval_s,
            device=self.device,
            overwrite=self.overwrite,
            deepz=self.deepz,
            positions_xy_um=self.positions_xy_um,
            specimen=specimen,
        )

    def microscope(self) -> contextlib.AbstractContextManager[Any]:
        """The core to acquire with: a running Micro-Manager, or the simulator (closed on exit)."""
        return open_microscope(
            connect=self.connect,
            port=self.port,
            phantom=self.phantom,
            seed=self.seed,
            frame=self.frame,
            config=self.config,
        )

    def acquisition(
        self,
        core: Any,
        model: DeepZModel,
        plan: DeepZPlan,
        on_image: Callable[[str, int, int, np.ndarray], None] | None = None,
        on_virtual: Callable[[int, VirtualStack], None] | None = None,
        on_blind_check: Callable[[int, int, dict[str, Any]], None] | None = None,
    ) -> DeepZAcquisition:
        """The acquisition of this request on ``core`` (checks model against the core's optics; not
        yet open, see :class:`DeepZAcquisition`)."""
        return DeepZAcquisition(
            core,
            model,
            plan,
            self.run_settings(),
            on_image=on_image,
            on_virtual=on_virtual,
            on_blind_check=on_blind_check,
        )


@contextlib.contextmanager
def open_microscope(
    *, connect: bool, port: int, phantom: str, seed: int, frame: int, config: Path | None
) -> Iterator[Any]:
    """A running Micro-Manager's core (``connect``), or the simulator's imaging ``phantom`` (seeded,
    ``frame`` pixels square, from its configuration file ``config``), closed on exit."""
    from mm_deepz.bridge import connect_micromanager, start_simulator

    if connect:
        yield connect_micromanager(port)
        return
    import simulators

    world = simulators.SimWorld(
        simulators.make_phantom(phantom, seed=seed), sensor_shape=(frame, frame), seed=seed
    )
    with start_simulator(world, config=config) as session:
        yield session.core
