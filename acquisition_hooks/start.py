"""From a request to a run: check it against the disk and the model, open the microscope it names.

:class:`~acquisition_hooks.request.AcquisitionRequest` describes; :func:`prepare` checks everything
that can be checked before the microscope moves (the output may be written, the configuration file
exists, the GPU is here, the model takes that many planes, the plan fits the model) and gives a
:class:`PreparedRun`; :func:`open_microscope` opens the simulator or connects to Micro-Manager.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from mm_deepz.engine import VirtualStack
from mm_deepz.engine.predictor import resolve_device
from mm_deepz.errors import SettingsError
from mm_deepz.io.claim import preflight_output
from mm_deepz.modelfile import DeepZModel, load_model

from .core import MMCore
from .plan import DeepZPlan
from .request import AcquisitionRequest, MicroManagerSpec, MicroscopeSpec, SimulatorSpec
from .run import DeepZAcquisition, RunSettings

#: the request's fields that the run settings and the plan take as they are
_RUN_FIELDS = {
    "output",
    "time_points",
    "interval_s",
    "device",
    "overwrite",
    "deepz",
    "positions_xy_um",
    "compression",
}
_PLAN_FIELDS = {"blind_check_every", "channel_group", "input_preset", "reference_preset"}


@dataclass(frozen=True)
class PreparedRun:
    """A request checked against the disk and its model, with the plan that fits the model."""

    request: AcquisitionRequest
    model: DeepZModel
    plan: DeepZPlan

    @property
    def settings(self) -> RunSettings:
        """The run's time-lapse, output and device settings."""
        r = self.request
        return RunSettings(
            **r.model_dump(include=_RUN_FIELDS),
            specimen=r.microscope.record() if isinstance(r.microscope, SimulatorSpec) else None,
        )

    def microscope(self) -> contextlib.AbstractContextManager[MMCore]:
        """The request's microscope, open (closed on exit)."""
        return open_microscope(self.request.microscope)

    def acquisition(
        self,
        core: MMCore,
        on_image: Callable[[str, int, int, np.ndarray], None] | None = None,
        on_virtual: Callable[[int, VirtualStack], None] | None = None,
        on_blind_check: Callable[[int, int, dict[str, Any]], None] | None = None,
    ) -> DeepZAcquisition:
        """The acquisition on ``core`` (checks the model against the core's optics; not yet open, see
        :class:`DeepZAcquisition`)."""
        return DeepZAcquisition(
            core,
            self.model,
            self.plan,
            self.settings,
            on_image=on_image,
            on_virtual=on_virtual,
            on_blind_check=on_blind_check,
        )


def check_microscope(spec: MicroscopeSpec) -> None:
    """Refuse what depends on the disk now: a simulator configuration file that does not exist."""
    if isinstance(spec, SimulatorSpec) and spec.config is not None and not Path(spec.config).is_file():
        raise SettingsError(
            f"Invalid acquisition settings: the configuration file {spec.config} does not exist."
        )


def prepare(request: AcquisitionRequest, model: DeepZModel | None = None) -> PreparedRun:
    """Check everything that can be checked before the microscope moves (:class:`SettingsError`,
    :class:`OutputExistsError`, :class:`DeviceError`, the model's and the plan's errors).

    ``model``: the already loaded model file of ``request.model_path`` (else it is loaded).
    """
    check_microscope(request.microscope)
    preflight_output(request.output, request.overwrite)
    if request.device.startswith("cuda:"):  # a GPU by number that is not here: refused before anything moves
        resolve_device(request.device)
    model = model or load_model(request.model_path)
    if request.planes is not None and model.card.n_planes != request.planes:
        raise SettingsError(
            f"{request.planes} measured plane(s) were asked for, but the model {request.model_path.name} "
            f"takes {model.card.n_planes}: ask for {model.card.n_planes} or choose another model."
        )
    plan = DeepZPlan.for_model(
        model,
        request.z_start_um,
        request.z_end_um,
        request.z_step_um,
        anchor_exposure_ms=request.exposure_ms,
        light_power_mW=request.power_mW,
        light_power_property=request.microscope.power_property,
        dose_property=request.microscope.dose_property,
        **request.model_dump(include=_PLAN_FIELDS),
    )
    return PreparedRun(request, model, plan)


@contextlib.contextmanager
def open_microscope(spec: MicroscopeSpec) -> Iterator[MMCore]:
    """A running Micro-Manager's core (:class:`MicroManagerSpec`), or the simulator imaging its seeded
    specimen (:class:`SimulatorSpec`), closed on exit."""
    from mm_deepz.bridge import connect_micromanager, start_simulator

    if isinstance(spec, MicroManagerSpec):
        yield connect_micromanager(spec.port)
        return
    import simulators

    world = simulators.SimWorld(
        simulators.make_phantom(spec.phantom, seed=spec.seed),
        sensor_shape=(spec.frame, spec.frame),
        seed=spec.seed,
    )
    with start_simulator(world, config=spec.config) as session:
        yield session.core
