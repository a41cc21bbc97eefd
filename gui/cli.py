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
    microscope_spec,
)
from mm_deepz.bridge import DEFAULT_PORT
from mm_deepz.options import OldInt, OldStr, output_option, renamed


def register(app: typer.Typer) -> None:
    """Add the panel's and napari's commands to ``app``."""
    app.command("gui")(gui_cmd)
    app.command("napari")(napari_cmd)


def _window_size(size: str) -> tuple[int, int]:
    """``WIDTHxHEIGHT`` in pixels."""
    try:
        width, height = (int(v) for v in size.lower().split("x"))
    except ValueError:
        raise typer.BadParameter(
            f"--window-size must be WIDTHxHEIGHT in pixels, e.g. 1280x800 (got {size!r})"
        ) from None
    if width < 64 or height < 64:
        raise typer.BadParameter(
            f"--window-size {size} is too small to show anything: at least 64x64 pixels."
        )
    return width, height


def gui_cmd(
    screenshot: Annotated[
        Path | None, typer.Option(help="Run a short simulated acquisition and save the panel as PNG.")
    ] = None,
    window_size: Annotated[
        str, typer.Option(help="Window size of --screenshot, WIDTHxHEIGHT pixels.")
    ] = "1400x820",
    connect: ConnectOption = False,
    port: PortOption = DEFAULT_PORT,
    output: Annotated[Path, output_option("Default OME-Zarr container.")] = Path("deepz_run.ome.zarr"),
    config: ConfigOption = None,
    channel_group: ChannelGroupOption = "Channel",
    input_preset: InputPresetOption = "Widefield",
    reference_preset: ReferencePresetOption = "Confocal",
    size: OldStr = None,
) -> None:
    """The Deep-Z panel: settings, the virtual z-stacking toggle, live measured and virtual views."""
    from acquisition_hooks import AcquisitionRequest

    microscope = {
        "microscope": microscope_spec(connect, port, config),
        "channel_group": channel_group,
        "input_preset": input_preset,
        "reference_preset": reference_preset,
    }

    if screenshot is None:
        from .app import run_window

        raise typer.Exit(run_window(AcquisitionRequest(output=output, **microscope)))
    import tempfile

    from .screenshot import render_screenshot

    size = renamed(window_size, size, "--size", "--window-size")
    with tempfile.TemporaryDirectory() as tmp:
        request = AcquisitionRequest(
            output=Path(tmp) / "screenshot.ome.zarr", time_points=5, blind_check_every=4, **microscope
        )
        typer.echo(
            f"wrote {render_screenshot(screenshot, request, virtual_plane=4, size=_window_size(size))}"
        )


def napari_cmd(
    run: Annotated[Path, typer.Argument(help="The run's OME-Zarr container.")],
    screenshot: Annotated[
        Path | None,
        typer.Option(
            help="Save the view as PNG, drawn off screen (no display needed), instead of opening napari."
        ),
    ] = None,
    z: Annotated[
        float | None, typer.Option(help="--screenshot: depth shown (µm; default: the first measured plane).")
    ] = None,
    time_index: Annotated[
        int, typer.Option("--time-index", help="--screenshot: time point shown (from 0).")
    ] = 0,
    window_size: Annotated[str, typer.Option(help="--screenshot: WIDTHxHEIGHT pixels.")] = "1500x560",
    t: OldInt = None,
    size: OldStr = None,
) -> None:
    """A run in napari: measured, virtual and reference images side by side (the mm-deepz reader)."""
    from mm_deepz.errors import DeepZError
    from mm_deepz.io import is_container

    if not (run.is_dir() and is_container(run)):
        raise DeepZError(f"{run} is not an mm-deepz run: give the OME-Zarr folder `mm-deepz acquire` wrote.")
    try:
        import napari
    except ImportError:
        raise DeepZError('napari is not installed: pip install "mm-deepz[napari]".') from None
    if screenshot is not None:
        from .napari_render import render_run

        t = renamed(time_index, t, "--t", "--time-index")
        size = renamed(window_size, size, "--size", "--window-size")
        typer.echo(f"wrote {render_run(run, screenshot, z_um=z, t=t, size=_window_size(size))}")
        return
    viewer = napari.Viewer(title=f"mm-deepz: {run.name}")
    viewer.open(str(run), plugin="mm-deepz")
    napari.run()
