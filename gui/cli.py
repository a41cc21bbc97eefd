"""The ``mm-deepz gui`` command, registered into the core's command line through the entry-point group
``mm_deepz.commands``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from acquisition_hooks.cli import simulator_config
from mm_deepz.bridge import DEFAULT_PORT


def register(app: typer.Typer) -> None:
    """Add the panel's command to ``app``."""
    app.command("gui")(gui_cmd)


def gui_cmd(
    screenshot: Annotated[
        Path | None, typer.Option(help="Run a short simulated acquisition and save the panel as PNG.")
    ] = None,
    size: Annotated[str, typer.Option(help="Window size of --screenshot, WIDTHxHEIGHT pixels.")] = "1400x820",
    connect: Annotated[
        bool, typer.Option(help="Use a running Micro-Manager instead of the simulator.")
    ] = False,
    port: Annotated[
        int, typer.Option(help="Micro-Manager's pycro-manager port (with --connect).")
    ] = DEFAULT_PORT,
    output: Annotated[Path, typer.Option("--output", "-o", help="Default OME-Zarr container.")] = Path(
        "deepz_run.ome.zarr"
    ),
    config: Annotated[
        str | None,
        typer.Option(
            help="Simulator's configuration file; 'mmdemo' for the one with "
            "Micro-Manager's demo-config names."
        ),
    ] = None,
    channel_group: Annotated[
        str, typer.Option(help="Config group that switches the light path.")
    ] = "Channel",
    input_preset: Annotated[
        str, typer.Option(help="Its preset for the measured (widefield) planes.")
    ] = "Widefield",
    reference_preset: Annotated[
        str, typer.Option(help="Its preset for blind-check reference stacks.")
    ] = "Confocal",
) -> None:
    """The Deep-Z panel: settings, the virtual z-stacking toggle, live measured and virtual views."""
    from acquisition_hooks import AcquisitionRequest

    microscope = {
        "connect": connect,
        "port": port,
        "config": simulator_config(config),
        "channel_group": channel_group,
        "input_preset": input_preset,
        "reference_preset": reference_preset,
    }

    if screenshot is None:
        from .app import run_window

        raise typer.Exit(run_window(AcquisitionRequest(output=output, **microscope)))
    import tempfile

    from .screenshot import render_screenshot

    with tempfile.TemporaryDirectory() as tmp:
        request = AcquisitionRequest(
            output=Path(tmp) / "screenshot.ome.zarr", time_points=5, blind_check_every=4, **microscope
        )
        try:
            width, height = (int(v) for v in size.lower().split("x"))
        except ValueError:
            raise typer.BadParameter(
                f"--size must be WIDTHxHEIGHT in pixels, e.g. 1280x800 (got {size!r})"
            ) from None
        typer.echo(f"wrote {render_screenshot(screenshot, request, virtual_plane=4, size=(width, height))}")
