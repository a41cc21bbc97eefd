"""What a user asks for: one declarative, validated description of a Deep-Z acquisition.

The CLI's options and the panel's fields both fill an :class:`AcquisitionRequest`; it
checks them (settings, model file, plan against the model's trained range) before any
hardware moves, opens the microscope (simulator or a running Micro-Manager) and builds the
one :class:`~acquisition_hooks.run.DeepZAcquisition` both front ends run.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from mm_deepz.bridge import DEFAULT_PORT
from mm_deepz.engine import VirtualStack
from mm_deepz.engine.predictor import DEVICES
from mm_deepz.errors import SettingsError
from mm_deepz.modelfile import DeepZModel, load_model, shipped_model_path

from .plan import DeepZPlan
from .run import DeepZAcquisition, RunSettings

PHANTOMS = ("worm", "beads", "sheet")


@dataclass
class AcquisitionRequest:
    """One Deep-Z time-lapse as the user asked for it (µm, ms, s)."""

    output: Path = Path("deepz_run.ome.zarr")
    time_points: int = 5
    interval_s: float = 0.0
    z_start_um: float = -10.0
    z_end_um: float = 10.0
    z_step_um: float = 1.0
    #: measured planes per time point; picks the shipped model when ``model`` is None
    planes: int = 1
    model: Path | None = None
    exposure_ms: float = 10.0
    power_mW: float | None = None
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

    def check(self) -> None:
        """Refuse settings outside their valid range (:class:`SettingsError`)."""
        problems = []
        if self.time_points < 1:
            problems.append(f"time points must be at least 1 (got {self.time_points})")
        if self.interval_s < 0:
            problems.append(f"the interval cannot be negative (got {self.interval_s:g} s)")
        if self.model is None and self.planes not in (1, 2):
            problems.append(f"the shipped models take 1 or 2 input planes (got {self.planes})")
        if self.power_mW is not None and self.power_mW <= 0:
            problems.append(f"light power must be positive (got {self.power_mW:g} mW)")
        if self.device not in DEVICES:
            problems.append(f"device must be one of {', '.join(DEVICES)} (got {self.device!r})")
        if not self.connect:
            if self.phantom not in PHANTOMS:
                problems.append(f"the simulator's specimen must be one of {', '.join(PHANTOMS)} (got {self.phantom!r})")
            if self.frame < 32:
                problems.append(f"the simulated camera needs at least 32 pixels (got {self.frame})")
        if not 0 < self.port < 65536:
            problems.append(f"port must be 1-65535 (got {self.port})")
        if problems:
            raise SettingsError("Invalid acquisition settings: " + "; ".join(problems) + ".")

    @property
    def model_path(self) -> Path:
        """The model file to use (the shipped one for ``planes`` unless one was given)."""
        return self.model if self.model is not None else shipped_model_path(self.planes)

    def prepare(self, model: DeepZModel | None = None) -> tuple[DeepZModel, DeepZPlan]:
        """Check everything that can be checked before the microscope moves; the model and plan.

        ``model``: the already loaded model file of :attr:`model_path` (else it is loaded).
        """
        self.check()
        model = model or load_model(self.model_path)
        plan = DeepZPlan.for_model(model, self.z_start_um, self.z_end_um, self.z_step_um,
                                   anchor_exposure_ms=self.exposure_ms, light_power_mW=self.power_mW,
                                   blind_check_every=self.blind_check_every)
        return model, plan

    def run_settings(self) -> RunSettings:
        """The run's time-lapse, output and device settings."""
        return RunSettings(self.output, self.time_points, self.interval_s, self.device, self.overwrite,
                           deepz=self.deepz, positions_xy_um=self.positions_xy_um)

    @contextlib.contextmanager
    def microscope(self) -> Iterator[Any]:
        """The core to acquire with: a running Micro-Manager, or the simulator (closed on exit)."""
        from mm_deepz.bridge import connect_micromanager, start_simulator

        if self.connect:
            yield connect_micromanager(self.port)
            return
        import simulators

        world = simulators.SimWorld(simulators.make_phantom(self.phantom, seed=self.seed),
                                    sensor_shape=(self.frame, self.frame), seed=self.seed)
        with start_simulator(world) as session:
            yield session.core

    def acquisition(self, core: Any, model: DeepZModel, plan: DeepZPlan,
                    on_image: Callable[[str, int, int, np.ndarray], None] | None = None,
                    on_virtual: Callable[[int, VirtualStack], None] | None = None) -> DeepZAcquisition:
        """The acquisition of this request on ``core`` (checks model against the core's optics)."""
        return DeepZAcquisition(core, model, plan, self.run_settings(), on_image=on_image, on_virtual=on_virtual)
