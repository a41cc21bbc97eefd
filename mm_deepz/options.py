"""The command-line grammar every ``mm-deepz`` command shares (docs/architecture.md, "The command line"):
one spelling for what a command writes (``-o/--output``), for a time point and a position by index, for
the device, and the earlier spellings still read for one release, with a warning naming the new one."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Annotated, Any

import typer

logger = logging.getLogger(__name__)

#: which stacks of a pair are the input and the target
InputModalityOption = Annotated[str, typer.Option(help="Name of the input stacks.")]
TargetModalityOption = Annotated[str, typer.Option(help="Name of the target stacks.")]
DEVICE_HELP = "auto, cpu, cuda or cuda:N (the N-th GPU)."


def known_device(value: str) -> str:
    """``--device``: a name torch knows the form of (``typer.BadParameter`` otherwise)."""
    from mm_deepz.devices import device_problem

    if (problem := device_problem(value)) is not None:
        raise typer.BadParameter(problem)
    return value


#: where the model runs, checked before any work
DeviceOption = Annotated[str, typer.Option("--device", help=DEVICE_HELP, callback=known_device)]
#: a time point and an XY position of a run, by index from 0
TimeIndexOption = Annotated[int, typer.Option("--time-index", help="Time point (from 0).")]
PositionIndexOption = Annotated[
    int, typer.Option("--position-index", help="XY position (from 0; multi-position runs).")
]
#: an earlier spelling, still read for one release (hidden from --help; a warning names the new one)
OldPath = Annotated[Path | None, typer.Option(hidden=True)]
OldInt = Annotated[int | None, typer.Option(hidden=True)]
OldStr = Annotated[str | None, typer.Option(hidden=True)]


def output_option(help: str) -> Any:
    """``-o/--output``: what a command writes, the same spelling in every command."""
    return typer.Option("--output", "-o", help=help)


def renamed(value: Any, old_value: Any, old: str, new: str) -> Any:
    """The value of an option given under its earlier spelling ``old`` (now ``new``) where given,
    with a warning; else ``value``."""
    if old_value is None:
        return value
    logger.warning("%s is now %s: the old spelling goes in the next release.", old, new)
    return old_value


def required_output(value: Path | None, old_value: Path | None, old: str) -> Path:
    """A command's required ``-o/--output`` (``old``: its earlier, positional spelling)."""
    from mm_deepz.errors import SettingsError

    output = renamed(value, old_value, old, "-o/--output")
    if output is None:
        raise SettingsError("Give what to write with -o/--output PATH.")
    return Path(output)
