"""What a run will take before it starts: images, bytes, duration and light (Micro-Manager's MDA window
shows the same before Acquire).

:class:`PlanEstimate` counts the planes a time-lapse measures and synthesizes, the bytes they take on
disk (uncompressed: compression only makes it smaller), how long the camera needs (the interval, or the
exposures back to back), the light it takes against the same time points as full z-stacks, blind checks
counted in both, and how fast the model must make virtual planes to keep up.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timedelta

from .plan import DeepZPlan

#: bytes per pixel: camera counts (uint16) and virtual planes (float32)
CAMERA_BYTES = 2
VIRTUAL_BYTES = 4


@dataclass(frozen=True)
class PlanEstimate:
    """The size, duration and light of a planned run (every position, every time point)."""

    time_points: int
    positions: int
    measured_planes: int
    virtual_planes: int
    reference_planes: int
    #: on disk, uncompressed (an upper bound)
    bytes: int
    #: camera time from the first frame to the last (exposures and intervals; device moves not counted)
    duration_s: float
    #: exposure time the specimen is lit (s), and as the same time points taken as full z-stacks
    exposure_s: float
    exposure_full_s: float
    #: virtual planes per second the model must make to keep up with the camera
    virtual_planes_per_s: float

    @classmethod
    def of(
        cls,
        plan: DeepZPlan,
        time_points: int,
        interval_s: float,
        positions: int,
        frame_yx: tuple[int, int],
        deepz: bool = True,
    ) -> PlanEstimate:
        """The estimate of ``plan`` run for ``time_points`` every ``interval_s`` at ``positions`` with
        ``frame_yx`` camera frames; ``deepz`` False: full z-stacks measured, nothing synthesized."""
        n_z, n_in = len(plan.requested_z()), len(plan.plane_offsets_um)
        every = plan.blind_check_every
        checks = math.ceil(time_points / every) if every > 0 else 0
        pixels = frame_yx[0] * frame_yx[1]
        per_t_measured = n_in if deepz else n_z
        measured = time_points * positions * per_t_measured
        virtual = time_points * positions * n_z if deepz else 0
        reference = checks * positions * n_z
        stack_s = plan.stack_exposure_ms / 1000
        per_t_s = positions * (n_in * plan.anchor_exposure_ms / 1000 if deepz else n_z * stack_s)
        reference_s = reference * plan.reference_exposure_ms / 1000
        exposure = time_points * per_t_s + reference_s
        full = time_points * positions * n_z * stack_s + reference_s
        camera_s = exposure / max(time_points, 1)  # a time point's exposures, blind checks averaged in
        duration = (time_points - 1) * interval_s + camera_s if interval_s > 0 else time_points * camera_s
        per_t = max(interval_s, camera_s)
        return cls(
            time_points=time_points,
            positions=positions,
            measured_planes=measured,
            virtual_planes=virtual,
            reference_planes=reference,
            bytes=pixels * ((measured + reference) * CAMERA_BYTES + virtual * VIRTUAL_BYTES),
            duration_s=duration,
            exposure_s=exposure,
            exposure_full_s=full,
            virtual_planes_per_s=positions * n_z / per_t if deepz and per_t > 0 else 0.0,
        )

    @property
    def light_saving(self) -> float:
        """Full-stack exposure / the exposure this run takes (blind checks counted in both)."""
        return self.exposure_full_s / self.exposure_s if self.exposure_s else float("nan")

    def end(self, start: datetime) -> datetime:
        """When the camera's part ends, starting at ``start``."""
        return start + timedelta(seconds=self.duration_s)


def size_text(n_bytes: float) -> str:
    """Bytes as people read them (kB, MB, GB, TB; powers of 1000, as disks are sold)."""
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if n_bytes < 1000 or unit == "TB":
            return f"{n_bytes:.0f} {unit}" if unit == "B" else f"{n_bytes:.1f} {unit}"
        n_bytes /= 1000
    raise AssertionError("unreachable")


def duration_text(seconds: float) -> str:
    """A duration in the largest unit that reads naturally (s, min, h, days)."""
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    if seconds < 3 * 86400:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} days"


def when_text(moment: datetime, now: datetime) -> str:
    """A moment as a clock time today, or with its date on any other day."""
    if moment.date() == now.date():
        return f"{moment:%H:%M} today"
    return f"{moment:%a %d %b %Y %H:%M}"
