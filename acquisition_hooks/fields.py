"""The settings an acquisition's descriptions share, declared once with their ranges and their names
in the user's words (:func:`mm_deepz.settings.problems` words a value out of range from them)."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import Field

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


def unit(name: str, **extra: str) -> dict[str, Any]:
    """A field's unit (and ``item``: what one of its items is called), for its errors and its schema."""
    return {"unit": name, **extra}


TimePoints = Annotated[int, Field(ge=1, le=LIMITS["time_points"], title="time points")]
IntervalS = Annotated[
    float, Field(ge=0, le=LIMITS["interval_s"], title="the interval", json_schema_extra=unit("s"))
]
#: a stage coordinate (µm)
_StageUm = Annotated[float, Field(ge=-LIMITS["xy_abs_um"], le=LIMITS["xy_abs_um"])]
#: stage XY positions (µm); None: wherever the stage is
Positions = Annotated[
    tuple[tuple[_StageUm, _StageUm], ...] | None,
    Field(title="stage positions", json_schema_extra=unit("µm", item="position")),
]
#: a camera exposure (ms)
Exposure = Annotated[
    float, Field(gt=0, le=LIMITS["exposure_ms"], title="the exposure", json_schema_extra=unit("ms"))
]
#: a real reference stack every N time points (0: none)
BlindCheckEvery = Annotated[int, Field(ge=0, title="blind checks (every N time points; 0: none)")]
