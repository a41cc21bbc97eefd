"""The Deep-Z plan: which planes to measure for a requested z-stack, and at what light."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, ClassVar

import numpy as np
from pydantic import ConfigDict, Field, model_validator

from mm_deepz.errors import DeepZError, ZRangeError
from mm_deepz.settings import Settings

from .fields import BlindCheckEvery, Exposure, unit

if TYPE_CHECKING:
    from mm_deepz.modelfile import DeepZModel

#: anchors must fall on the requested z grid within this tolerance (µm)
GRID_TOLERANCE_UM = 0.05


def grid_planes(z_start_um: float, z_end_um: float, z_step_um: float) -> int:
    """Planes in the grid ``z_start_um``, ``z_start_um + z_step_um``, ... up to ``z_end_um`` (a step that
    falls short of the end by a rounding error reaches it)."""
    return math.floor((z_end_um - z_start_um) / z_step_um + 1e-6) + 1


class PlanError(DeepZError):
    """A Deep-Z plan that cannot work (empty z range, anchors off the grid ...)."""


class DeepZPlan(Settings):
    """A requested z-stack (absolute stage z, µm) and how Deep-Z captures it (frozen, validated).

    The anchor planes are the model's input offsets around the centre of the requested
    range; they must lie on the requested grid (so measured and virtual planes share it).
    """

    error: ClassVar[type[DeepZError]] = PlanError
    what: ClassVar[str] = "Deep-Z plan"

    model_config = ConfigDict(allow_inf_nan=False)

    z_start_um: float = Field(title="z start", json_schema_extra=unit("µm"))
    z_end_um: float = Field(title="z end", json_schema_extra=unit("µm"))
    z_step_um: float = Field(gt=0, title="the z step", json_schema_extra=unit("µm"))
    plane_offsets_um: tuple[float, ...] = Field((0.0,), title="plane offsets", json_schema_extra=unit("µm"))
    anchor_exposure_ms: Exposure = 10.0
    stack_exposure_ms: Exposure = 10.0
    light_power_mW: float | None = None
    #: the ``DEVICE.PROPERTY`` that sets the light power in mW (None: none; a power cannot be set)
    light_power_property: str | None = None
    #: the ``DEVICE.PROPERTY`` that reports the light dose delivered in mJ (None: the dose is unknown)
    dose_property: str | None = None
    channel_group: str = "Channel"
    input_preset: str = "Widefield"
    reference_preset: str = "Confocal"
    reference_exposure_ms: Exposure = 100.0
    blind_check_every: BlindCheckEvery = 0

    @model_validator(mode="after")
    def _check(self) -> DeepZPlan:
        if self.z_end_um < self.z_start_um:
            raise ValueError(f"z end ({self.z_end_um}) is below z start ({self.z_start_um})")
        self.anchor_indices()  # validates the grid
        return self

    @classmethod
    def for_model(
        cls, model: DeepZModel, z_start_um: float, z_end_um: float, z_step_um: float, **kwargs: object
    ) -> DeepZPlan:
        """A plan with the model's input offsets, checked against its trained range."""
        offs = np.asarray(model.card.input_offsets_um)
        offs = offs - offs.mean()
        # a range the model cannot cover is the problem to name, before where its input planes fall
        centre, reach = (z_start_um + z_end_um) / 2, model.card.z_range_um
        worst = max(abs(z - (centre + o)) for z in (z_start_um, z_end_um) for o in offs)
        if worst > reach + 1e-6:
            raise ZRangeError(
                f"{z_start_um:g} to {z_end_um:g} µm reaches {worst:g} µm from the measured plane(s) but the "
                f"model was trained for ±{reach:g} µm: narrow the z range to within ±{reach:g} µm of the "
                "centre."
            )
        plan = cls(
            z_start_um=z_start_um,
            z_end_um=z_end_um,
            z_step_um=z_step_um,
            plane_offsets_um=tuple(float(o) for o in offs),
            **kwargs,
        )
        plan.check_range(reach)
        return plan

    def requested_z(self) -> np.ndarray:
        """z positions of the requested stack (µm), the grid of every image."""
        n = grid_planes(self.z_start_um, self.z_end_um, self.z_step_um)
        return self.z_start_um + np.arange(n) * self.z_step_um

    @property
    def centre_um(self) -> float:
        """Centre of the requested range."""
        z = self.requested_z()
        return float((z[0] + z[-1]) / 2)

    def anchor_indices(self) -> tuple[int, ...]:
        """Indices (in the requested grid) of the planes Deep-Z measures."""
        z = self.requested_z()
        out = []
        for off in self.plane_offsets_um:
            target = self.centre_um + off
            i = int(np.argmin(np.abs(z - target)))
            if abs(z[i] - target) > GRID_TOLERANCE_UM:
                raise PlanError(
                    f"The model's input plane at {off:+g} µm from the stack centre is not on the requested "
                    f"grid ({self.z_start_um:g} to {self.z_end_um:g} µm, step {self.z_step_um:g}): use a "
                    "step that divides the plane offsets and a range centred between grid points "
                    "accordingly."
                )
            out.append(i)
        if len(set(out)) != len(out):
            raise PlanError("Two input planes fall on the same grid plane: use a finer z step.")
        return tuple(out)

    def anchor_z(self) -> tuple[float, ...]:
        """Absolute z of the measured planes."""
        z = self.requested_z()
        return tuple(float(z[i]) for i in self.anchor_indices())

    def check_range(self, z_range_um: float) -> None:
        """Refuse requested planes farther from an anchor than the model was trained for."""
        z = self.requested_z()
        worst = float(np.max(np.abs(z[:, None] - np.asarray(self.anchor_z())[None, :]).max(axis=1)))
        if worst > z_range_um + 1e-6:
            raise ZRangeError(
                f"The requested stack reaches {worst:g} µm from the measured plane(s) but the model was "
                f"trained for ±{z_range_um:g} µm: narrow the z range to within ±{z_range_um:g} µm of the "
                "centre."
            )

    @property
    def dose_ratio(self) -> float:
        """Planes requested per plane measured (the light saved, at equal exposure)."""
        return len(self.requested_z()) / len(self.plane_offsets_um)

    def is_blind_check(self, t: int) -> bool:
        """Whether time point ``t`` also acquires a real reference stack."""
        return self.blind_check_every > 0 and t % self.blind_check_every == 0
