"""Light: dose and photobleaching after a time-lapse, Deep-Z capture vs full z-stacks (simulator counters)."""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path

from acquisition_hooks import AcquisitionRequest
from acquisition_hooks.request import SimulatorSpec
from acquisition_hooks.start import prepare

logger = logging.getLogger(__name__)


def _run(deepz: bool, time_points: int, output: Path, device: str) -> dict:
    request = AcquisitionRequest(
        output=output, time_points=time_points, microscope=SimulatorSpec(frame=64), deepz=deepz, device=device
    )
    prepared = prepare(request)
    with prepared.microscope() as core:
        summary = prepared.acquisition(core).run()
        remaining = float(core.getProperty("Shutter", "RemainingBrightness"))
    return {
        "planes_measured": summary.planes_measured,
        "dose_mJ": summary.dose_mJ,
        "remaining_brightness": remaining,
    }


def run(quick: bool, device: str) -> dict:
    """The light row: 21-plane stacks (10 ms per plane) at every time point, both ways."""
    time_points = 10 if quick else 50
    with tempfile.TemporaryDirectory(dir=".") as tmp:
        deepz = _run(True, time_points, Path(tmp) / "deepz.ome.zarr", device)
        full = _run(False, time_points, Path(tmp) / "full.ome.zarr", device)
    row = {
        "time_points": time_points,
        "planes_requested_per_time_point": 21,
        "deepz_planes": deepz["planes_measured"],
        "full_planes": full["planes_measured"],
        "deepz_dose_mJ": round(deepz["dose_mJ"], 2),
        "full_dose_mJ": round(full["dose_mJ"], 2),
        "dose_ratio": round(full["dose_mJ"] / deepz["dose_mJ"], 1),
        "deepz_brightness_left": round(deepz["remaining_brightness"], 3),
        "full_brightness_left": round(full["remaining_brightness"], 3),
    }
    logger.info("light %s", row)
    return row
