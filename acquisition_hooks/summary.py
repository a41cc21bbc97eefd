"""What a run did, in the figures the CLI's closing table, the panel and the container's record show:
planes measured and made, the light used against full stacks, the dose where the microscope reports
it, what is left to make."""

from __future__ import annotations

from dataclasses import dataclass, field

from .hooks import DeepZHooks
from .plan import DeepZPlan
from .state import HookStats


@dataclass(kw_only=True)
class RunSummary:
    """What a run did, for the CLI's closing table and the panel."""

    output: str
    time_points: int
    planes_measured: int
    planes_requested: int
    planes_synthesized: int
    virtual_missing: int
    reference_planes: int
    dose_mJ: float | None
    dose_full_stack_mJ: float | None
    exposure_s: float
    exposure_full_stack_s: float
    seconds: float
    aborted: bool = False
    #: why the run ended early (user abort, storage failure); None when it ran to the end
    stop_reason: str | None = None
    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    #: virtual stacks still to be made from their measured planes (`mm-deepz infer` makes them)
    virtual_pending: int = 0

    @property
    def light_saving(self) -> float:
        """Full-stack exposure time / exposure time actually used."""
        return self.exposure_full_stack_s / self.exposure_s if self.exposure_s else float("nan")


def exposure_used(
    plan: DeepZPlan, stats: HookStats, n_positions: int, time_points: int
) -> tuple[float, float]:
    """Exposure time (s) used, and what ``time_points`` complete time points would have used as full
    z-stacks (blind checks count in both)."""
    n_req = len(plan.requested_z())
    reference_s = stats.reference_planes * plan.reference_exposure_ms
    used = (
        n_positions * stats.time_points_deepz * len(plan.plane_offsets_um) * plan.anchor_exposure_ms
        + n_positions * stats.time_points_full * n_req * plan.stack_exposure_ms
        + reference_s
    )
    return used / 1000, (n_positions * time_points * n_req * plan.stack_exposure_ms + reference_s) / 1000


def summarize(
    plan: DeepZPlan,
    hooks: DeepZHooks,
    *,
    output: str,
    time_points: int,
    n_positions: int,
    dose_mJ: float | None,
    seconds: float,
    aborted: bool,
) -> RunSummary:
    """The summary of a run whose hooks counted what happened; ``time_points``: those complete;
    ``dose_mJ``: the light the microscope reported delivered (None: it reports none)."""
    st = hooks.stats
    exposure_s, full_s = exposure_used(plan, st, n_positions, time_points)
    return RunSummary(
        output=output,
        time_points=time_points,
        planes_measured=st.planes_measured,
        planes_requested=st.planes_requested,
        planes_synthesized=st.virtual_done * len(plan.requested_z()),
        virtual_missing=st.virtual_missing,
        reference_planes=st.reference_planes,
        dose_mJ=dose_mJ,
        dose_full_stack_mJ=dose_mJ * full_s / exposure_s if dose_mJ is not None and exposure_s else None,
        exposure_s=exposure_s,
        exposure_full_stack_s=full_s,
        seconds=seconds,
        aborted=aborted,
        stop_reason=hooks.state.stop_reason,
        errors=list(st.errors),
        warnings=list(st.warnings),
        virtual_pending=hooks.virtual.backlog,
    )
