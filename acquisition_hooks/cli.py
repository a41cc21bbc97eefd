"""The acquisition commands of ``mm-deepz`` (``acquire``, ``infer``), registered into the core's command
line through the entry-point group ``mm_deepz.commands``: the core does not import this package."""

from __future__ import annotations

import contextlib
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any

import typer

from mm_deepz.bridge import DEFAULT_PORT

#: the options that say which microscope a run uses and how its light path is switched (acquire, gui)
ConnectOption = Annotated[
    bool,
    typer.Option("--connect", help="Use a running Micro-Manager (Java backend) instead of the simulator."),
]
PortOption = Annotated[
    int, typer.Option("--port", help="Micro-Manager's pycro-manager port (with --connect).")
]
ConfigOption = Annotated[
    str | None,
    typer.Option(
        "--config",
        help="Simulator's Micro-Manager configuration file; 'mmdemo' for the one with Micro-Manager's "
        "demo-config names.",
    ),
]
ChannelGroupOption = Annotated[
    str, typer.Option("--channel-group", help="Config group that switches the light path.")
]
InputPresetOption = Annotated[
    str, typer.Option("--input-preset", help="Its preset for the measured (widefield) planes.")
]
ReferencePresetOption = Annotated[
    str, typer.Option("--reference-preset", help="Its preset for blind-check reference stacks.")
]


def register(app: typer.Typer) -> None:
    """Add this package's commands to ``app``."""
    app.command("acquire")(acquire_cmd)
    app.command("infer")(infer_cmd)


def acquire_cmd(
    output: Annotated[Path, typer.Option("--output", "-o", help="OME-Zarr container to write.")] = Path(
        "deepz_run.ome.zarr"
    ),
    time_points: Annotated[int, typer.Option("--time-points", "-t", help="Number of time points.")] = 5,
    interval: Annotated[float, typer.Option(help="Time between time points (s).")] = 0.0,
    z_start: Annotated[float, typer.Option(help="Requested stack: first z (µm).")] = -10.0,
    z_end: Annotated[float, typer.Option(help="Requested stack: last z (µm).")] = 10.0,
    z_step: Annotated[float, typer.Option(help="Requested stack: step (µm).")] = 1.0,
    planes: Annotated[
        int | None,
        typer.Option(
            help="Measured planes per time point (1 or 2; default: the model's, 1 for the shipped models)."
        ),
    ] = None,
    model: Annotated[
        Path | None, typer.Option(help="Model file (default: the shipped model for --planes).")
    ] = None,
    exposure: Annotated[float, typer.Option(help="Exposure of the measured planes (ms).")] = 10.0,
    power: Annotated[float | None, typer.Option(help="Light power for measured planes (mW).")] = None,
    power_property: Annotated[
        str | None,
        typer.Option(
            help="DEVICE.PROPERTY that sets the light power in mW (default: the shutter device's Power_mW)."
        ),
    ] = None,
    blind_check: Annotated[
        int, typer.Option(help="Acquire a real confocal stack every N time points (0 = off).")
    ] = 0,
    position: Annotated[
        list[str] | None, typer.Option(help="Stage XY position 'X,Y' in µm (repeat for several).")
    ] = None,
    device: Annotated[str, typer.Option(help="auto, cuda or cpu.")] = "auto",
    no_deepz: Annotated[
        bool, typer.Option("--no-deepz", help="Acquire full stacks (virtual z-stacking off).")
    ] = False,
    overwrite: Annotated[bool, typer.Option(help="Replace an existing output.")] = False,
    connect: ConnectOption = False,
    port: PortOption = DEFAULT_PORT,
    phantom: Annotated[str, typer.Option(help="Simulator specimen: worm, beads or sheet.")] = "worm",
    seed: Annotated[int, typer.Option(help="Simulator specimen seed.")] = 100,
    frame: Annotated[int, typer.Option(help="Simulator camera size (pixels, square).")] = 256,
    config: ConfigOption = None,
    channel_group: ChannelGroupOption = "Channel",
    input_preset: InputPresetOption = "Widefield",
    reference_preset: ReferencePresetOption = "Confocal",
) -> None:
    """Run a low-light Deep-Z acquisition to OME-Zarr (simulator by default)."""
    from rich.console import Console
    from rich.progress import Progress
    from rich.table import Table

    from .request import AcquisitionRequest

    try:
        positions = tuple(tuple(float(v) for v in p.split(",")) for p in position) if position else None
    except ValueError:
        raise typer.BadParameter(f"positions must be 'X,Y' in µm, got {position}") from None
    if positions and any(len(p) != 2 for p in positions):
        raise typer.BadParameter(f"positions must be 'X,Y' in µm, got {position}")
    request = AcquisitionRequest(
        output=output,
        time_points=time_points,
        interval_s=interval,
        z_start_um=z_start,
        z_end_um=z_end,
        z_step_um=z_step,
        planes=planes,
        model=model,
        exposure_ms=exposure,
        power_mW=power,
        power_property=power_property,
        blind_check_every=blind_check,
        positions_xy_um=positions,
        device=device,
        deepz=not no_deepz,
        overwrite=overwrite,
        connect=connect,
        port=port,
        phantom=phantom,
        seed=seed,
        frame=frame,
        config=simulator_config(config),
        channel_group=channel_group,
        input_preset=input_preset,
        reference_preset=reference_preset,
    )
    m, plan = request.prepare()
    console = Console()
    with (
        signals_as_interrupt(),
        request.microscope() as core,
        request.acquisition(core, m, plan) as run,
        Progress(console=console) as bar,
    ):
        task = bar.add_task("time points", total=time_points)
        backlog: list[Any] = []  # the backlog's progress task, added when the backlog is made

        def on_backlog(done: int, total: int) -> None:
            if not backlog:
                backlog.append(
                    bar.add_task("virtual stacks the model could not take during the run", total=total)
                )
            bar.update(backlog[0], completed=done)

        summary = run.run(
            progress=lambda t, total: bar.update(task, completed=t + 1), backlog_progress=on_backlog
        )
    table = Table(title="Deep-Z acquisition", show_header=False)
    table.add_row("output", summary.output)
    table.add_row(
        "time points complete", f"{summary.time_points}" + (" (aborted)" if summary.aborted else "")
    )
    table.add_row("planes measured / requested", f"{summary.planes_measured} / {summary.planes_requested}")
    table.add_row(
        "virtual planes synthesized",
        f"{summary.planes_synthesized}"
        + (f" ({summary.virtual_missing} stacks missing)" if summary.virtual_missing else ""),
    )
    if summary.virtual_pending:
        table.add_row(
            "virtual stacks still to make",
            f"{summary.virtual_pending}: `mm-deepz infer {summary.output}` "
            "makes them from the measured planes",
        )
    if no_deepz:
        table.add_row("planes per time point", f"{len(plan.requested_z())} measured (virtual z-stacking off)")
    else:
        table.add_row(
            "planes per time point",
            f"{len(plan.plane_offsets_um)} measured for "
            f"{len(plan.requested_z())} requested ({plan.dose_ratio:.0f}x less light per stack)",
        )
    saving = (
        f" ({summary.light_saving:.1f}x less light{', blind checks included' if blind_check else ''})"
        if summary.exposure_s and not no_deepz
        else ""
    )
    table.add_row(
        "exposure used / as full stacks",
        f"{summary.exposure_s:.2f} s / {summary.exposure_full_stack_s:.2f} s{saving}",
    )
    if summary.dose_mJ is not None and summary.dose_full_stack_mJ is not None:
        table.add_row(
            "light dose (simulator)",
            f"{summary.dose_mJ:.2f} mJ vs {summary.dose_full_stack_mJ:.2f} mJ as full stacks",
        )
    table.add_row("time", f"{summary.seconds:.1f} s")
    console.print(table)
    for err in summary.errors[:5] + summary.warnings[:5]:
        console.print(f"[yellow]warning:[/] {err}")
    if summary.stop_reason:
        console.print(
            f"[red]stopped early:[/] {summary.stop_reason} — completed time points are readable in "
            f"{summary.output} (`mm-deepz info` lists them)"
        )
        raise typer.Exit(1)


def simulator_config(value: str | None) -> Path | None:
    """``--config``: a configuration file, or ``mmdemo`` for the shipped demo-config-named one."""
    if value == "mmdemo":
        from simulators import MM_DEMO_CONFIG

        return MM_DEMO_CONFIG
    return Path(value) if value is not None else None


@contextlib.contextmanager
def signals_as_interrupt() -> Iterator[None]:
    """SIGTERM and SIGHUP (a closed terminal, ``kill``) end a run like Ctrl-C: what was measured is
    finished and summarized instead of the process dying mid-write."""

    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt(signal.Signals(signum).name)

    previous = {sig: signal.signal(sig, interrupt) for sig in (signal.SIGTERM, signal.SIGHUP)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def infer_cmd(
    container: Annotated[Path, typer.Argument(help="A run written by `mm-deepz acquire` or the panel.")],
    model: Annotated[
        Path | None,
        typer.Option(
            help="Model file (default: the run's). Another model's stacks go to a new image beside the run's."
        ),
    ] = None,
    device: Annotated[str, typer.Option(help="auto, cuda or cpu.")] = "auto",
) -> None:
    """Make the virtual stacks a run left to make (backlog, kill, disk full, model off), or another
    model's."""
    from rich.progress import Progress

    from .infer import infer_missing

    with Progress() as bar:
        task = bar.add_task("virtual stacks", total=None)
        summary = infer_missing(
            container,
            model,
            device,
            progress=lambda done, total: bar.update(task, completed=done, total=total),
        )
    typer.echo(
        f"{summary.made} virtual stacks made into image {summary.image} of {container} in "
        f"{summary.seconds:.1f} s "
        f"({summary.already} were there already"
        + (
            f"; {summary.recovered} measured time points recovered into the record"
            if summary.recovered
            else ""
        )
        + ")"
    )
