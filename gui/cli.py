"""The ``mm-deepz gui`` command, registered into the core's command line through the entry-point group
``mm_deepz.commands``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from acquisition_hooks.cli import (
    ChannelGroupOption,
    ConfigOption,
    ConnectOption,
    InputPresetOption,
    PortOption,
    ReferencePresetOption,
    simulator_config,
)
from mm_deepz.bridge import DEFAULT_PORT


def register(app: typer.Typer) -> None:
    """Add the panel's command to ``app``."""
    app.command("gui")(gui_cmd)


def gui_cmd(
    screenshot: Annotated[
        Path | None, typer.Option(help="Run a short simulated acquisition and save the panel as PNG.")
    ] = None,
    size: Annotated[str, typer.Option(help="Window size of --screenshot, WIDTHxHEIGHT pixels.")] = "1400x820",
    connect: ConnectOption = False,
    port: PortOption = DEFAULT_PORT,
    output: Annotated[Path, typer.Option("--output", "-o", help="Default OME-Zarr container.")] = Path(
        "deepz_run.ome.zarr"
    ),
    config: ConfigOption = None,
    channel_group: ChannelGroupOption = "Channel",
    input_preset: InputPresetOption = "Widefield",
    reference_preset: ReferencePresetOption = "Confocal",
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
