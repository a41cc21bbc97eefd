"""pycromanager acquisition hooks for Deep-Z virtual z-stacking.

The names below are imported on first use: the plan and the event rewriting
(:mod:`acquisition_hooks.plan`, :mod:`acquisition_hooks.events`) load without the model (torch)
or the container (zarr).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from mm_deepz.lazy import lazy_exports

if TYPE_CHECKING:
    from .batch import BatchSummary, infer_runs
    from .events import DEEPZ_AXIS, Capture, EventRewriter
    from .hooks import DeepZHooks
    from .plan import DeepZPlan, PlanError
    from .request import AcquisitionRequest, MicroManagerSpec, SimulatorSpec
    from .run import DeepZAcquisition, RunSettings
    from .start import PreparedRun, open_microscope, prepare
    from .state import HookStats
    from .summary import RunSummary

#: public name -> the module that defines it
_WHERE = {
    "BatchSummary": ".batch",
    "infer_runs": ".batch",
    "DEEPZ_AXIS": ".events",
    "Capture": ".events",
    "EventRewriter": ".events",
    "DeepZHooks": ".hooks",
    "HookStats": ".state",
    "DeepZPlan": ".plan",
    "PlanError": ".plan",
    "AcquisitionRequest": ".request",
    "MicroManagerSpec": ".request",
    "SimulatorSpec": ".request",
    "PreparedRun": ".start",
    "open_microscope": ".start",
    "prepare": ".start",
    "DeepZAcquisition": ".run",
    "RunSettings": ".run",
    "RunSummary": ".summary",
}

__getattr__ = lazy_exports(__name__, _WHERE)


__all__ = [
    "DEEPZ_AXIS",
    "AcquisitionRequest",
    "BatchSummary",
    "Capture",
    "DeepZAcquisition",
    "DeepZHooks",
    "DeepZPlan",
    "EventRewriter",
    "HookStats",
    "MicroManagerSpec",
    "PlanError",
    "PreparedRun",
    "RunSettings",
    "RunSummary",
    "SimulatorSpec",
    "infer_runs",
    "open_microscope",
    "prepare",
]
