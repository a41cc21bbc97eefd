"""pycromanager acquisition hooks for Deep-Z virtual z-stacking."""

from .hooks import DEEPZ_AXIS, DeepZHooks, HookStats
from .plan import DeepZPlan, PlanError
from .request import AcquisitionRequest
from .run import DeepZAcquisition, RunSettings, RunSummary

__all__ = ["DEEPZ_AXIS", "AcquisitionRequest", "DeepZAcquisition", "DeepZHooks", "DeepZPlan", "HookStats",
           "PlanError", "RunSettings", "RunSummary"]
