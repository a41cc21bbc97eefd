"""The simulator's commands in ``mm-deepz``: ``mm-deepz simulate ...`` (pictures, training data, the
neuron experiment).

This is the simulator's plugin: registered through the entry-point group ``mm_deepz.commands`` like the
packages above the core, it builds on mm_deepz's public API, and nothing in mm_deepz imports it. The
rest of the simulator (physics, devices, truth) imports no mm_deepz.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Annotated, ClassVar, Literal

import typer
from pydantic import ConfigDict, Field, model_validator

from mm_deepz.errors import SettingsError
from mm_deepz.options import DeviceOption, OldInt, OldPath, output_option, renamed, required_output
from mm_deepz.settings import Settings

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


def register(app: typer.Typer) -> None:
    """Add ``simulate`` and its commands to ``app``."""
    simulate = typer.Typer(help="The simulated microscope: pictures and training data.", no_args_is_help=True)
    simulate.command("focus-sweep")(focus_sweep_cmd)
    simulate.command("pairs")(pairs_cmd)
    simulate.command("neuron-experiment")(neuron_experiment_cmd)
    app.add_typer(simulate, name="simulate")


def focus_sweep_cmd(
    output: Annotated[Path, output_option("PNG file to write.")] = Path("docs/img/focus_sweep.png"),
    bead_z: Annotated[float, typer.Option(help="Depth of the bead (µm).")] = 2.0,
    out: OldPath = None,
) -> None:
    """Picture of a bead imaged through focus, widefield vs confocal."""
    from .figures import save_focus_sweep_png

    typer.echo(f"wrote {save_focus_sweep_png(renamed(output, out, '--out', '--output'), bead_z)}")


def pairs_cmd(
    output: Annotated[Path | None, output_option("Folder for the OME-TIFF stack pairs.")] = None,
    phantom: Annotated[str, typer.Option(help="worm, beads or sheet.")] = "worm",
    n: Annotated[int, typer.Option(help="Number of stack pairs.")] = 4,
    seed: Annotated[int, typer.Option(help="Seed of the first pair (then seed+1, ...).")] = 0,
    frame: Annotated[int, typer.Option(help="Camera size (pixels, square).")] = 256,
    z_half_range: Annotated[
        float, typer.Option(help="The stacks reach this far either side of focus (µm).")
    ] = 10.0,
    z_step: Annotated[float, typer.Option(help="Step of the stacks (µm).")] = 1.0,
    randomize: Annotated[bool, typer.Option(help="Seeded jitter of field, depth and sheet shape.")] = False,
    tilt_x: Annotated[float, typer.Option(help="Sheets: slope in x (µm/µm).")] = 0.0,
    tilt_y: Annotated[float, typer.Option(help="Sheets: slope in y (µm/µm).")] = 0.0,
    curvature: Annotated[float, typer.Option(help="Sheets: curvature (1/µm).")] = 0.0,
    widefield_exposure: Annotated[float, typer.Option(help="Exposure of the widefield stacks (ms).")] = 10.0,
    out: Annotated[Path | None, typer.Argument(hidden=True)] = None,
    size: OldInt = None,
    z_range: Annotated[float | None, typer.Option(hidden=True)] = None,
) -> None:
    """Simulate widefield / confocal z-stack pairs for training or testing."""
    from rich.progress import track

    from .training_data import PairSpec, make_stack_pair, write_stack_pair

    out = required_output(output, out, "OUT (positional)")
    s = PairsSettings(
        phantom=phantom,
        n=n,
        seed=seed,
        size=renamed(frame, size, "--size", "--frame"),
        z_range_um=renamed(z_half_range, z_range, "--z-range", "--z-half-range"),
        z_step_um=z_step,
        tilt_x=tilt_x,
        tilt_y=tilt_y,
        curvature_per_um=curvature,
        widefield_exposure_ms=widefield_exposure,
    )
    if out.exists() and not out.is_dir():
        raise SettingsError(f"{out} is a file: give a folder for the stack pairs.")
    for i in track(range(s.n), description="simulating stack pairs"):
        spec = PairSpec(
            phantom=s.phantom,
            seed=s.seed + i,
            shape=(s.size, s.size),
            z_half_range_um=s.z_range_um,
            z_step_um=s.z_step_um,
            randomize=randomize,
            tilt_x=s.tilt_x,
            tilt_y=s.tilt_y,
            curvature_per_um=s.curvature_per_um,
            widefield_exposure_ms=s.widefield_exposure_ms,
        )
        write_stack_pair(make_stack_pair(spec), out, f"{s.phantom}_{s.seed + i:04d}")
    typer.echo(f"wrote {s.n} stack pairs to {out}")


#: the neuron experiment's widest settings: a 10 s widefield plane, 16x the 302 neurons of C. elegans
MAX_EXPOSURE_MS = 10_000.0
MAX_NEURONS = 5000


def neuron_experiment_cmd(
    output: Annotated[
        Path | None, output_option("Folder for neurons.json, neurons.md and neurons_f1.png.")
    ] = None,
    model: Annotated[
        list[Path] | None, typer.Option(help="Model file(s) to test (default: both shipped).")
    ] = None,
    seeds: Annotated[
        str, typer.Option(help="Worm seeds, comma-separated (never used in training).")
    ] = "160,161",
    time_points: Annotated[int, typer.Option(help="Time points per worm.")] = 12,
    interval: Annotated[float, typer.Option(help="Time between time points (s).")] = 1.0,
    speed: Annotated[float, typer.Option(help="Crawling speed of the worms (µm/s; 0 = still).")] = 0.45,
    frame: Annotated[int, typer.Option(help="Camera size (pixels, square).")] = 256,
    widefield_exposure: Annotated[
        float,
        typer.Option(help="Widefield exposure per plane (ms): Deep-Z's input planes and the widefield scan."),
    ] = 10.0,
    neurons: Annotated[int, typer.Option(help="Neurons per worm (200 nominal; more: a denser worm).")] = 200,
    device: DeviceOption = "auto",
    out: Annotated[Path | None, typer.Argument(hidden=True)] = None,
) -> None:
    """The C. elegans experiment: neurons found and tracked from Deep-Z vs scanned stacks (blind)."""
    from rich.progress import Progress

    from mm_deepz.evaluation.neuron_experiment import (
        ExperimentConfig,
        results_table,
        run_experiment,
        write_results,
    )
    from mm_deepz.modelfile import load_model
    from mm_deepz.shipped import shipped_model_path

    out = required_output(output, out, "OUT (positional)")
    try:
        seed_list = tuple(int(s) for s in seeds.split(","))
    except ValueError:
        raise SettingsError(f"--seeds must be integers separated by commas, got {seeds!r}.") from None
    if (
        time_points < 2
        or not (math.isfinite(interval) and interval > 0)
        or not math.isfinite(speed)
        or speed < 0
    ):
        raise SettingsError("Need at least 2 time points, a positive interval and a speed of 0 or more.")
    if not (math.isfinite(widefield_exposure) and 0 < widefield_exposure <= MAX_EXPOSURE_MS):
        raise SettingsError(
            f"--widefield-exposure must be in (0, {MAX_EXPOSURE_MS:g}] ms, got {widefield_exposure}."
        )
    if not 1 <= neurons <= MAX_NEURONS:
        raise SettingsError(f"--neurons must be in [1, {MAX_NEURONS}], got {neurons}.")
    paths = model or [shipped_model_path(1), shipped_model_path(2)]
    models = {}
    for p in paths:
        m = load_model(p)
        models[f"Deep-Z {m.card.n_planes} plane{'s' if m.card.n_planes > 1 else ''} ({p.stem})"] = m
    cfg = ExperimentConfig(
        seeds=seed_list,
        time_points=time_points,
        interval_s=interval,
        drift_um_per_s=(speed * 0.894, -speed * 0.447),
        frame=frame,
        widefield_exposure_ms=widefield_exposure,
        n_neurons=neurons,
    )
    with Progress() as bar:
        task = bar.add_task("imaging and analysing", total=len(seed_list) * time_points)
        results = run_experiment(models, cfg, device, progress=lambda: bar.advance(task))
    files = write_results(results, out)
    typer.echo(results_table(results))
    typer.echo(f"wrote {', '.join(map(str, files))}")
