"""Acquisition overhead: frames per second of one simulated time-lapse, plain pycromanager vs Deep-Z.

Both runs take the same frames with the same hardware settings (one 10 ms widefield plane
per time point at the stack centre: z, light path and exposure set by each event, as fast as
possible) on the same simulated microscope: plain pycromanager stores them with its own storage
(NDTiff) on the same disk; the Deep-Z run turns each 21-plane request into that one plane
through the hooks, writes it to the OME-Zarr recorder and synthesizes the virtual stack in the
background. The frame rate counts from the fourth to the last frame: the first frames of a
fresh simulated field also build the simulator's optics caches.

The simulated camera renders each frame on the same CPU (16-22 ms of FFTs per 256² worm frame here,
more than its exposure), so there every millisecond the software takes is also taken from the camera,
which a real camera (computing its frames in hardware) does not feel. The rows with the camera
"replayed" take the camera out of that measurement: it renders its first frames and hands them out in
turn (``SimWorld.replay_frames``, as the sustained benchmark does), so both runs' rates are set by the
exposure and the software alone.

pymmcore-plus's MDA runner is measured the same way, with the camera replayed: plain, the same one
plane per time point as an MDA sequence (which pymmcore-plus runs hardware-sequenced, one camera
sequence for every time point), against Deep-Z's MDA engine (each time point an event of its own: its
capture is decided when it comes).

Runs alternate (plain, Deep-Z with the model, Deep-Z with the model's work left out, and both with the
camera replayed, and the MDA pair), many short ones, so a slow spell of the machine hits all alike;
each Deep-Z run's ratio is taken against the plain run just before it, and the median and spread of
those ratios are reported, with the number of repeats that would make two runs of the benchmark agree
within 0.05 (estimated from that spread).
With the model on the CPU it is slower than the camera: the table says how many virtual stacks
were made while the camera ran, and how long the rest (the backlog) took after it stopped.
"""

from __future__ import annotations

import logging
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import useq
from pycromanager import Acquisition

import simulators as sim
from acquisition_hooks import AcquisitionRequest
from acquisition_hooks.request import SimulatorSpec
from acquisition_hooks.start import prepare
from mm_deepz.bridge import simulated_core, start_simulator
from mm_deepz.engine import Predictor, VirtualStack
from mm_deepz.normalization import IntensityScale
from simulators import world_of

from .common import REPLAY_FRAMES

logger = logging.getLogger(__name__)

EXPOSURE_MS = 10.0
SKIP = 3  # frames not timed (simulator warm-up)


def _fps(stamps: list[float]) -> float:
    timed = stamps[SKIP:]
    return (len(timed) - 1) / (timed[-1] - timed[0])


def _world(size: int, replay: bool) -> sim.SimWorld:
    world = sim.SimWorld(sim.worm(seed=100), sensor_shape=(size, size), seed=100)
    world.replay_frames = REPLAY_FRAMES if replay else None
    return world


def plain_fps(
    size: int,
    frames: int,
    directory: Path,
    replay: bool = False,
    exposure_ms: float = EXPOSURE_MS,
    per_call: bool = False,
) -> float:
    """Frames per second of pycromanager alone (NDTiff storage); ``replay``: the camera's frames
    rendered once and handed out again (they cost no CPU); ``per_call``: one event an ``acquire``
    call, not the whole list as one camera sequence."""
    stamps: list[float] = []

    def stamp(image: np.ndarray, metadata: dict) -> tuple:
        stamps.append(time.perf_counter())
        return image, metadata

    events = [
        {"axes": {"time": t}, "z": 0.0, "exposure": exposure_ms, "config_group": ["Channel", "Widefield"]}
        for t in range(frames)
    ]
    with (
        start_simulator(_world(size, replay)),
        Acquisition(
            directory=str(directory), name="plain", show_display=False, image_process_fn=stamp
        ) as acq,
    ):
        # the whole list in one call, as users give it: pycromanager's engine runs it as one camera
        # sequence (one event a call: 0.92 of this rate, 256² replayed; docs/benchmarks.md)
        for batch in ([e] for e in events) if per_call else [events]:
            acq.acquire(batch)
    return _fps(stamps)


def plain_mda_fps(size: int, frames: int, replay: bool = False, exposure_ms: float = EXPOSURE_MS) -> float:
    """Frames per second of pymmcore-plus's MDA runner alone (no writer): the same plane per time
    point, which it runs as one hardware-sequenced camera sequence."""
    stamps: list[float] = []
    sequence = useq.MDASequence(
        time_plan={"interval": 0, "loops": frames},
        channels=[{"group": "Channel", "config": "Widefield", "exposure": exposure_ms}],
        stage_positions=[{"z": 0.0}],
    )
    with simulated_core(_world(size, replay), runner="mda") as core:
        core.mda.events.frameReady.connect(lambda *_: stamps.append(time.perf_counter()))
        core.mda.run(sequence)
    return _fps(stamps)


def _instant(predictor: Predictor) -> None:
    """Make ``predictor`` return empty stacks at once: the run then shows what the hooks and the
    recorder cost the CPU when the model runs elsewhere (a GPU)."""

    def predict_stack(
        planes: np.ndarray, plane_z_um: tuple, target_z_um: np.ndarray, **kw: object
    ) -> VirtualStack:
        return VirtualStack(
            np.zeros((len(target_z_um), *planes.shape[1:]), np.float32),
            np.asarray(target_z_um),
            plane_z_um,
            IntensityScale(0.0, 1.0),
        )

    predictor.predict_stack = predict_stack  # type: ignore[method-assign]


def deepz_run(
    size: int,
    frames: int,
    output: Path,
    device: str,
    model_on_cpu: bool = True,
    replay: bool = False,
    runner: str = "pycromanager",
) -> dict:
    """Frames per second, virtual stacks made and their latency, with the Deep-Z hooks and recorder
    (``model_on_cpu=False``: the model's work left out, as when it runs on a GPU; ``replay``: the
    camera's frames cost no CPU; ``runner``: ``pycromanager`` or ``mda``)."""
    request = AcquisitionRequest(
        output=output,
        time_points=frames,
        microscope=SimulatorSpec(frame=size),
        device=device,
        exposure_ms=EXPOSURE_MS,
    )
    prepared = prepare(request)
    stamps: dict[int, float] = {}
    latency: list[float] = []
    made_at: list[float] = []

    def on_image(kind: str, t: int, zi: int, image: np.ndarray) -> None:
        stamps[t] = time.perf_counter()

    def on_virtual(t: int, stack: object) -> None:  # called once the stack is on disk
        made_at.append(time.perf_counter())
        latency.append(made_at[-1] - stamps[t])

    with prepared.microscope() as core:
        world_of(core).replay_frames = REPLAY_FRAMES if replay else None
        acq = prepared.acquisition(core, on_image=on_image, on_virtual=on_virtual)
        if not model_on_cpu:
            _instant(acq.predictor)
        summary = acq.run_mda() if runner == "mda" else acq.run()
        end = time.perf_counter()
    camera_done = max(stamps.values())
    return {
        "fps": _fps([stamps[t] for t in sorted(stamps)]),
        "virtual_made": len(latency),
        "virtual_during_run": sum(t <= camera_done for t in made_at),
        "backlog_s": end - camera_done,
        "virtual_missing": summary.virtual_missing,
        "latency_median_s": float(np.median(latency)) if latency else None,
    }


def repeats_for(ratios: list[float], within: float = 0.05) -> int:
    """Repeats after which two runs' median ratios would agree within ``within`` (95 %), estimated
    from these ratios' spread: the median's standard error is about 1.25 sd / sqrt(n)."""
    if len(ratios) < 2:
        return 0
    sd = float(np.std(ratios, ddof=1))
    return max(1, int(np.ceil((1.96 * np.sqrt(2) * 1.25 * sd / within) ** 2)))


@dataclass(frozen=True)
class Arm:
    """One kind of run, each against its own plain runs."""

    runner: str = "pycromanager"
    with_model: bool = False
    replay: bool = False
    #: a long run (:data:`LONG_FRAMES` time points, :data:`LONG_RUNS` pairs): what grows with the run
    #: (the run record) shows, which 30 frames hide
    long: bool = False


ARMS = (
    Arm(with_model=True),
    Arm(),
    Arm(replay=True),
    Arm(runner="mda", replay=True),
    Arm(replay=True, long=True),
    Arm(runner="mda", replay=True, long=True),
)
LONG_FRAMES, LONG_RUNS = 1500, 3


def run(quick: bool, device: str) -> list[dict]:
    """Overhead rows (alternating runs, per-pair ratios): the model on ``device``, and the model's
    work left out (what the hooks and the recorder cost by themselves), with the simulated camera
    rendering each frame and with its frames replayed (costing no CPU, as a real camera's), on
    pycromanager's runner and on pymmcore-plus's MDA runner."""
    size, short, repeats = (128, 12, 1) if quick else (256, 30, 7)
    long_frames = 2 * short if quick else LONG_FRAMES

    def frames_of(arm: Arm) -> int:
        return long_frames if arm.long else short

    plain: dict[Arm, list[float]] = {arm: [] for arm in ARMS}
    deepz: dict[Arm, list[dict]] = {arm: [] for arm in ARMS}
    with tempfile.TemporaryDirectory(dir=".") as tmp:
        for i in range(repeats):  # alternate, so a slow spell of the machine hits all alike
            for n, arm in enumerate(ARMS):
                if arm.long and i >= LONG_RUNS:
                    continue
                frames = frames_of(arm)
                plain[arm].append(
                    plain_mda_fps(size, frames, arm.replay)
                    if arm.runner == "mda"
                    else plain_fps(size, frames, Path(tmp) / f"plain{i}_{n}", arm.replay)
                )
                run_ = deepz_run(
                    size,
                    frames,
                    Path(tmp) / f"deepz{i}_{n}.ome.zarr",
                    device,
                    arm.with_model,
                    arm.replay,
                    arm.runner,
                )
                run_["ratio"] = run_["fps"] / plain[arm][-1]
                deepz[arm].append(run_)
    rows = []
    for arm, runs in deepz.items():
        fps = [d["fps"] for d in runs]
        ratios = [d["ratio"] for d in runs]
        plains = plain[arm]
        rows.append(
            {
                "runner": arm.runner,
                "model": f"on {device}" if arm.with_model else "left out (as on a GPU)",
                "camera": "replayed (no CPU)" if arm.replay else "rendered on the CPU",
                "frame": size,
                "frames": frames_of(arm),
                "runs": len(runs),
                "exposure_ms": EXPOSURE_MS,
                "plain_fps": round(float(np.median(plains)), 1),
                "plain_fps_range": [round(min(plains), 1), round(max(plains), 1)],
                "deepz_fps": round(float(np.median(fps)), 1),
                "deepz_fps_range": [round(min(fps), 1), round(max(fps), 1)],
                "ratio": round(float(np.median(ratios)), 3),
                "ratio_range": [round(min(ratios), 3), round(max(ratios), 3)],
                "repeats_for_0.05": repeats_for(ratios),
                "virtual_made": int(np.median([d["virtual_made"] for d in runs])),
                "virtual_during_run": int(np.median([d["virtual_during_run"] for d in runs])),
                "backlog_s": round(float(np.median([d["backlog_s"] for d in runs])), 2),
                "virtual_missing": max(d["virtual_missing"] for d in runs),
                "latency_median_s": round(
                    float(np.median([d["latency_median_s"] for d in runs if d["latency_median_s"]])), 3
                ),
            }
        )
        logger.info("acquisition %s", rows[-1])
    return rows
