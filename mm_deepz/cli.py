"""The ``mm-deepz`` command line."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Annotated

import typer
from rich.logging import RichHandler

app = typer.Typer(help="Deep-Z virtual z-stacking for Micro-Manager.", no_args_is_help=True)
simulate = typer.Typer(help="The simulated microscope: pictures and training data.", no_args_is_help=True)
app.add_typer(simulate, name="simulate")


@app.callback()
def _main(verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Debug logging.")] = False) -> None:
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO, format="%(message)s",
                        handlers=[RichHandler(show_path=False)], force=True)
    logging.getLogger("matplotlib").setLevel(logging.WARNING)


@simulate.command("focus-sweep")
def focus_sweep_cmd(
    out: Annotated[Path, typer.Option(help="PNG file to write.")] = Path("docs/img/focus_sweep.png"),
    bead_z: Annotated[float, typer.Option(help="Depth of the bead (µm).")] = 2.0,
) -> None:
    """Picture of a bead imaged through focus, widefield vs confocal."""
    from simulators.figures import save_focus_sweep_png

    typer.echo(f"wrote {save_focus_sweep_png(out, bead_z)}")


@simulate.command("pairs")
def pairs_cmd(
    out: Annotated[Path, typer.Argument(help="Directory for the OME-TIFF stack pairs.")],
    phantom: Annotated[str, typer.Option(help="worm, beads or sheet.")] = "worm",
    n: Annotated[int, typer.Option(help="Number of stack pairs.")] = 4,
    seed: Annotated[int, typer.Option(help="Seed of the first pair (then seed+1, ...).")] = 0,
    size: Annotated[int, typer.Option(help="Frame size (pixels, square).")] = 256,
    z_range: Annotated[float, typer.Option(help="Half range of the stacks (µm).")] = 10.0,
    z_step: Annotated[float, typer.Option(help="Step of the stacks (µm).")] = 1.0,
) -> None:
    """Simulate widefield / confocal z-stack pairs for training or testing."""
    from rich.progress import track

    from simulators.training_data import PairSpec, make_stack_pair, write_stack_pair

    for i in track(range(n), description="simulating stack pairs"):
        spec = PairSpec(phantom=phantom, seed=seed + i, shape=(size, size), z_half_range_um=z_range,
                        z_step_um=z_step)
        write_stack_pair(make_stack_pair(spec), out, f"{phantom}_{seed + i:04d}")
    typer.echo(f"wrote {n} stack pairs to {out}")
