"""What ``mm-deepz simulate pairs`` may be asked for, validated before anything is simulated."""

from __future__ import annotations

import math
from typing import ClassVar, Literal

from pydantic import ConfigDict, Field, model_validator

from .errors import SettingsError
from .settings import Settings

#: the most planes a simulated stack may have (as an acquisition's request)
MAX_PLANES = 1001


class PairsSettings(Settings):
    """Simulated stack pairs: specimen, count, frame, z range and step, exposure, sheet shape."""

    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)
    error: ClassVar[type[SettingsError]] = SettingsError
    what: ClassVar[str] = "simulation settings"

    phantom: Literal["worm", "beads", "sheet"] = "worm"
    n: int = Field(4, ge=1, le=10_000)
    seed: int = Field(0, ge=0, le=2**31)
    size: int = Field(256, ge=32, le=4096)
    z_range_um: float = Field(10.0, gt=0, le=500)
    z_step_um: float = Field(1.0, gt=0, le=100)
    tilt_x: float = Field(0.0, ge=-1, le=1)
    tilt_y: float = Field(0.0, ge=-1, le=1)
    curvature_per_um: float = Field(0.0, ge=-0.1, le=0.1)
    widefield_exposure_ms: float = Field(10.0, gt=0, le=10_000)

    @model_validator(mode="after")
    def _planes(self) -> PairsSettings:
        planes = math.floor(2 * self.z_range_um / self.z_step_um) + 1
        if planes > MAX_PLANES:
            raise ValueError(
                f"±{self.z_range_um:g} µm in steps of {self.z_step_um:g} µm is {planes:,} planes; at most "
                f"{MAX_PLANES} (a larger step or a smaller range)"
            )
        if planes < 2:
            raise ValueError(f"a step of {self.z_step_um:g} µm leaves one plane in ±{self.z_range_um:g} µm")
        return self
