"""The acquisition commands of ``mm-deepz`` (``acquire``, ``infer``), registered into the core's command
line through the entry-point group ``mm_deepz.commands``: the core does not import this package."""

from __future__ import annotations

import logging
import signal
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from typing_extensions import Self

from mm_deepz.bridge import DEFAULT_PORT
from mm_deepz.errors import DeepZError, SettingsError
from mm_deepz.options import (
    DEVICE_HELP,
    InputModalityOption,
    TargetModalityOption,
    known_device,
    output_option,
    required_output,
)

if TYPE_CHECKING:
    from rich.table import Table

    from .infer import InferSummary
    from .plan import DeepZPlan
    from .request import MicroscopeSpec
    from .summary import RunSummary

logger = logging.getLogger(__name__)

#: the panels of the acquisition commands' --help (their many options, grouped by what they set)
MICROSCOPE, SIMULATOR, LIGHT_PATH = "Microscope", "Simulator (without --connect)", "Light path"
STACK, LIGHT, MODEL = "Stack and time-lapse", "Light", "Model"

#: the options that say which microscope a run uses and how its light path is switched (acquire, gui)
ConnectOption = Annotated[
    bool,
    typer.Option(
        "--connect",
        help="Use a running Micro-Manager (Java backend) instead of the simulator.",
        rich_help_panel=MICROSCOPE,
    ),
]
PortOption = Annotated[
    int,
    typer.Option(
        "--port", help="Micro-Manager's pycro-manager port (with --connect).", rich_help_panel=MICROSCOPE
    ),
]
ConfigOption = Annotated[
    str | None,
    typer.Option(
        "--config",
        help="Simulator's Micro-Manager configuration file; 'mmdemo' for the one with Micro-Manager's "
        "demo-config names.",
        rich_help_panel=SIMULATOR,
    ),
]
PhantomOption = Annotated[
    str,
    typer.Option("--phantom", help="Simulator specimen: worm, beads or sheet.", rich_help_panel=SIMULATOR),
]
SeedOption = Annotated[
    int, typer.Option("--seed", help="Simulator specimen seed.", rich_help_panel=SIMULATOR)
]
FrameOption = Annotated[
    int, typer.Option("--frame", help="Simulator camera size (pixels, square).", rich_help_panel=SIMULATOR)
]
ChannelGroupOption = Annotated[
    str,
    typer.Option(
        "--channel-group", help="Config group that switches the light path.", rich_help_panel=LIGHT_PATH
    ),
]
InputPresetOption = Annotated[
    str,
    typer.Option(
        "--input-preset", help="Its preset for the measured (widefield) planes.", rich_help_panel=LIGHT_PATH
    ),
]
ReferencePresetOption = Annotated[
    str,
    typer.Option(
        "--reference-preset", help="Its preset for blind-check reference stacks.", rich_help_panel=LIGHT_PATH
    ),
]


def register(app: typer.Typer) -> None:
    """Add this package's commands to ``app``."""
    app.command("acquire")(acquire_cmd)
    app.command("infer")(infer_cmd)
    app.command("info")(info_cmd)
    from mm_deepz.cli import pairs_app

    pairs_app.command("acquire")(pairs_acquire_cmd)


def pairs_acquire_cmd(
    output: Annotated[Path | None, output_option("The pairs dataset to write (NAME.ome.zarr).")] = None,
    position: Annotated[
        list[str] | None, typer.Option(help="A field's stage position 'X,Y' in µm (repeat for several).")
    ] = None,
    grid: Annotated[
        str | None, typer.Option(help="A grid of fields ROWSxCOLUMNS around where the stage is, e.g. 2x3.")
    ] = None,
    grid_step: Annotated[float, typer.Option(help="The grid's spacing (µm).")] = 100.0,
    positions: Annotated[
        Path | None, typer.Option(help="Micro-Manager position list (.pos) of the fields.")
    ] = None,
    z_start: Annotated[float, typer.Option(help="First plane (µm, absolute).")] = -10.0,
    z_end: Annotated[float, typer.Option(help="Last plane (µm, absolute).")] = 10.0,
    z_step: Annotated[float, typer.Option(help="Plane spacing (µm).")] = 1.0,
    input_preset: InputPresetOption = "Widefield",
    input_exposure: Annotated[float, typer.Option(help="Exposure of the input planes (ms).")] = 10.0,
    target_preset: Annotated[
        str, typer.Option(help="Preset of the target light path (the input's for refocusing).")
    ] = "Confocal",
    target_exposure: Annotated[float, typer.Option(help="Exposure of the target planes (ms).")] = 100.0,
    input_modality: InputModalityOption = "widefield",
    target_modality: TargetModalityOption = "confocal",
    order: Annotated[
        str,
        typer.Option(
            help="interleaved (both light paths at each plane) or stacks (one stack, then the other)."
        ),
    ] = "interleaved",
    dark: Annotated[int, typer.Option(help="Dark frames (shutter closed) to take at the end.")] = 10,
    overwrite: Annotated[bool, typer.Option(help="Replace an earlier pairs dataset.")] = False,
    connect: ConnectOption = False,
    port: PortOption = DEFAULT_PORT,
    config: ConfigOption = None,
    channel_group: ChannelGroupOption = "Channel",
    phantom: PhantomOption = "worm",
    seed: SeedOption = 100,
    frame: FrameOption = 256,
    out: Annotated[Path | None, typer.Argument(hidden=True)] = None,
) -> None:
    """Acquire widefield / confocal z-stack pairs of many fields for training (simulator by default)."""
    from rich.progress import Progress

    from mm_deepz.io.claim import preflight_output

    from .pairs import PairsPlan, acquire_pairs, grid_positions, read_position_list
    from .start import open_microscope

    output = required_output(output, out, "OUTPUT (positional)")
    given = [
        name for name, v in (("--position", position), ("--grid", grid), ("--positions", positions)) if v
    ]
    if len(given) > 1:
        raise SettingsError(f"Give the fields one way: {' or '.join(given)}, not both.")
    labels = None
    xy: list[tuple[float, float]] | None = None
    if position:
        xy = [parse_position(p) for p in position]
    elif positions is not None:
        listed = read_position_list(positions)
        labels, xy = [name for name, _, _ in listed], [(x, y) for _, x, y in listed]
    plan = PairsPlan(
        positions_xy_um=tuple(xy) if xy else None,
        z_start_um=z_start,
        z_end_um=z_end,
        z_step_um=z_step,
        channel_group=channel_group,
        input_preset=input_preset,
        target_preset=target_preset,
        input_exposure_ms=input_exposure,
        target_exposure_ms=target_exposure,
        input_modality=input_modality,
        target_modality=target_modality,
        order=order,
        dark_frames=dark,
    )
    microscope = microscope_spec(connect, port, config, phantom=phantom, seed=seed, frame=frame)
    preflight_output(output, overwrite)
    with (
        StopOnSignals(),
        open_microscope(microscope) as core,
        Progress() as bar,
    ):
        if grid is not None:
            from .microscope import Microscope

            rows, _, cols = grid.lower().partition("x")
            if not (rows.isdigit() and cols.isdigit()):
                raise SettingsError(f"--grid takes ROWSxCOLUMNS, e.g. 2x3; got {grid!r}.")
            centre = Microscope(core).xy_position()
            plan = plan.changed(
                positions_xy_um=tuple(grid_positions(centre, (int(rows), int(cols)), grid_step))
            )
        task = bar.add_task("pairs", total=None)
        path = acquire_pairs(
            core,
            plan,
            output,
            labels=labels,
            overwrite=overwrite,
            specimen=None if connect else {"phantom": phantom, "seed": seed, "frame": frame},
            progress=lambda done, total: bar.update(task, completed=done, total=total),
        )
    n = len(plan.positions_xy_um or [None])
    typer.echo(
        f"wrote {n} field(s) x {len(plan.z_um())} planes x 2 light paths ({plan.order}) and "
        f"{plan.dark_frames} dark frames to {path}: `mm-deepz train {path}` reads it"
    )


def parse_position(text: str) -> tuple[float, float]:
    """``"X,Y"`` in µm; :class:`typer.BadParameter` otherwise."""
    try:
        x, y = (float(v) for v in text.split(","))
    except ValueError:
        raise typer.BadParameter(f"positions must be 'X,Y' in µm, got {text!r}") from None
    return x, y


def acquire_cmd(
    output: Annotated[Path, output_option("OME-Zarr container to write.")] = Path("deepz_run.ome.zarr"),
    overwrite: Annotated[bool, typer.Option(help="Replace an existing output.")] = False,
    compression: Annotated[
        bool,
        typer.Option(
            "--compression/--no-compression",
            help="Store planes losslessly compressed (Blosc-LZ4: 5x smaller on simulated frames) as far as "
            "the camera leaves time for it (faster planes are stored uncompressed), or all as raw bytes.",
        ),
    ] = True,
    time_points: Annotated[
        int, typer.Option("--time-points", "-t", help="Number of time points.", rich_help_panel=STACK)
    ] = 5,
    interval: Annotated[
        float, typer.Option(help="Time between time points (s).", rich_help_panel=STACK)
    ] = 0.0,
    z_start: Annotated[
        float, typer.Option(help="Requested stack: first z (µm).", rich_help_panel=STACK)
    ] = -10.0,
    z_end: Annotated[float, typer.Option(help="Requested stack: last z (µm).", rich_help_panel=STACK)] = 10.0,
    z_step: Annotated[float, typer.Option(help="Requested stack: step (µm).", rich_help_panel=STACK)] = 1.0,
    position: Annotated[
        list[str] | None,
        typer.Option(help="Stage XY position 'X,Y' in µm (repeat for several).", rich_help_panel=STACK),
    ] = None,
    blind_check: Annotated[
        int,
        typer.Option(
            help="Acquire a real confocal stack every N time points (0 = off).", rich_help_panel=STACK
        ),
    ] = 0,
    planes: Annotated[
        int | None,
        typer.Option(
            help="Measured planes per time point (1 or 2; default: the model's, 1 for the shipped models).",
            rich_help_panel=MODEL,
        ),
    ] = None,
    model: Annotated[
        Path | None,
        typer.Option(
            help="Model file or bioimage.io package (default: the shipped model for --planes).",
            rich_help_panel=MODEL,
        ),
    ] = None,
    device: Annotated[
        str, typer.Option("--device", help=DEVICE_HELP, callback=known_device, rich_help_panel=MODEL)
    ] = "auto",
    deepz: Annotated[
        bool,
        typer.Option(
            "--deepz/--no-deepz",
            help="Virtual z-stacking: measure the model's planes (on) or full stacks (off).",
            rich_help_panel=MODEL,
        ),
    ] = True,
    exposure: Annotated[
        float, typer.Option(help="Exposure of the measured planes (ms).", rich_help_panel=LIGHT)
    ] = 10.0,
    power: Annotated[
        float | None, typer.Option(help="Light power for measured planes (mW).", rich_help_panel=LIGHT)
    ] = None,
    power_property: Annotated[
        str | None,
        typer.Option(
            help="DEVICE.PROPERTY that sets the light power in mW (the simulator's: Shutter.Power_mW).",
            rich_help_panel=LIGHT,
        ),
    ] = None,
    dose_property: Annotated[
        str | None,
        typer.Option(
            help="DEVICE.PROPERTY that reports the light dose delivered in mJ, where the light source counts "
            "it (the simulator's: Shutter.Dose_mJ; none named: the dose is reported unknown).",
            rich_help_panel=LIGHT,
        ),
    ] = None,
    connect: ConnectOption = False,
    port: PortOption = DEFAULT_PORT,
    phantom: PhantomOption = "worm",
    seed: SeedOption = 100,
    frame: FrameOption = 256,
    config: ConfigOption = None,
    channel_group: ChannelGroupOption = "Channel",
    input_preset: InputPresetOption = "Widefield",
    reference_preset: ReferencePresetOption = "Confocal",
) -> None:
    """Run a low-light Deep-Z acquisition to OME-Zarr (simulator by default)."""
    from rich.console import Console
    from rich.progress import Progress

    from .request import AcquisitionRequest
    from .start import prepare

    positions = tuple(parse_position(p) for p in position) if position else None
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
        blind_check_every=blind_check,
        positions_xy_um=positions,
        device=device,
        deepz=deepz,
        overwrite=overwrite,
        compression=compression,
        microscope=microscope_spec(
            connect,
            port,
            config,
            light={"power_property": power_property, "dose_property": dose_property},
            phantom=phantom,
            seed=seed,
            frame=frame,
        ),
        channel_group=channel_group,
        input_preset=input_preset,
        reference_preset=reference_preset,
    )
    prepared = prepare(request)
    plan = prepared.plan
    console = Console()
    with (
        StopOnSignals() as signals,
        prepared.microscope() as core,
        prepared.acquisition(core) as run,
        Progress(console=console) as bar,
    ):
        signals.run = run
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
    console.print(summary_table(summary, plan, deepz=deepz, blind_checks=blind_check > 0))
    for err in summary.errors[:5] + summary.warnings[:5]:
        console.print(f"[yellow]warning:[/] {err}")
    if summary.stop_reason:
        console.print(
            f"[red]stopped early:[/] {summary.stop_reason} — completed time points are readable in "
            f"{summary.output} (`mm-deepz info` lists them)"
        )
        raise typer.Exit(1)


def summary_table(summary: RunSummary, plan: DeepZPlan, *, deepz: bool, blind_checks: bool) -> Table:
    """The closing table of ``acquire``: what was measured and made, the light used and saved, the time."""
    from rich.table import Table

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
    if not deepz:
        table.add_row("planes per time point", f"{len(plan.requested_z())} measured (virtual z-stacking off)")
    else:
        table.add_row(
            "planes per time point",
            f"{len(plan.plane_offsets_um)} measured for "
            f"{len(plan.requested_z())} requested ({plan.dose_ratio:.0f}x less light per stack)",
        )
    saving = (
        f" ({summary.light_saving:.1f}x less light{', blind checks included' if blind_checks else ''})"
        if summary.exposure_s and deepz
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
    return table


def microscope_spec(
    connect: bool, port: int, config: str | None, light: dict[str, str | None] | None = None, **simulator: Any
) -> MicroscopeSpec:
    """The microscope the options name: a running Micro-Manager with ``--connect``, else the simulator
    (``simulator``: its specimen, seed and camera size where given); ``light``: its light source's
    power and dose properties where named."""
    from .request import MicroManagerSpec, SimulatorSpec

    named = {k: v for k, v in (light or {}).items() if v is not None}

    if connect:
        if config is not None:
            raise SettingsError(
                "--config is the simulator's configuration file; with --connect, load yours in "
                "Micro-Manager (Devices > Load Hardware Configuration)."
            )
        return MicroManagerSpec(port=port, **named)
    return SimulatorSpec(config=simulator_config(config), **named, **simulator)


def simulator_config(value: str | None) -> Path | None:
    """``--config``: a configuration file, or ``mmdemo`` for the shipped demo-config-named one."""
    if value == "mmdemo":
        from simulators import MM_DEMO_CONFIG

        return MM_DEMO_CONFIG
    return Path(value) if value is not None else None


class StopOnSignals:
    """SIGINT, SIGTERM and SIGHUP (Ctrl-C, ``kill``, a closed terminal), any number, at any moment, end
    a run cleanly: the first stops acquiring (what was measured is finished and its virtual stacks
    made), the second also stops making the backlog after the stack in progress (the rest is recorded
    as pending for ``mm-deepz infer``), later ones are only logged. Before a run exists, the first one
    interrupts (nothing is measured yet). All three are re-armed, even where the shell ignored SIGINT
    (a run started with ``&``). The handler only starts a thread: a signal can arrive while any lock is
    held."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)

    def __init__(self) -> None:
        #: the run the signals stop, once there is one
        self.run: Any = None
        self.received: list[str] = []
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> Self:
        self._previous = {sig: signal.signal(sig, self._handle) for sig in self.SIGNALS}
        return self

    def __exit__(self, *exc: object) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)

    def _handle(self, signum: int, frame: object) -> None:
        name = signal.Signals(signum).name
        self.received.append(name)
        if self.run is None:
            if len(self.received) == 1:
                raise KeyboardInterrupt(name)
            return
        if len(self.received) == 1:
            logger.warning(
                "%s: stopping after the frame in progress; what was measured is kept and its virtual stacks "
                "are made (%s again leaves them to `mm-deepz infer`)",
                name,
                name,
            )
            action = self.run.stop
        elif len(self.received) == 2:
            logger.warning("%s: the virtual stacks not made yet stay recorded as pending", name)
            action = self.run.abort
        else:
            logger.warning("%s: already stopping", name)
            return
        threading.Thread(target=action, args=(f"stopped by {name}",), name="mm-deepz-stop").start()


def infer_cmd(
    runs: Annotated[
        list[Path],
        typer.Argument(
            help="Runs written by `mm-deepz acquire` or the panel, or folders holding runs (searched "
            "through)."
        ),
    ],
    model: Annotated[
        Path | None,
        typer.Option(
            help="Model file or bioimage.io package (default: each run's). Another model's stacks go to a "
            "new image beside the run's."
        ),
    ] = None,
    device: Annotated[
        str,
        typer.Option(
            "--device",
            help=DEVICE_HELP.rstrip(".") + "; auto on a Dask worker of a machine with several GPUs: the "
            "worker's own.",
            callback=known_device,
        ),
    ] = "auto",
    workers: Annotated[
        int | None,
        typer.Option(
            help="Dask workers of a LocalCluster on this machine (default: one per GPU, or one per "
            "2 cores (batch.CORES_PER_WORKER), at most one per run); 1: in this process."
        ),
    ] = None,
    scheduler: Annotated[
        str | None,
        typer.Option(help="The address of a running Dask scheduler (tcp://host:8786) to send the tasks to."),
    ] = None,
    time_points_per_task: Annotated[
        int | None,
        typer.Option(
            help="Split each run into tasks of this many time points (default: one task per run); a "
            "failure then retries only its share."
        ),
    ] = None,
) -> None:
    """Make the virtual stacks runs left to make (backlog, kill, disk full, model off), or another
    model's: one run here, many on Dask distributed (docs/scaling.md)."""
    from rich.progress import Progress

    from .batch import find_runs, plan_batch, run_batch

    found = find_runs(runs)
    tasks = plan_batch(found, model, time_points_per_task)
    planned = sum(t.stacks for t in tasks)
    with Progress() as bar:
        task = bar.add_task("virtual stacks", total=planned)
        summary = run_batch(tasks, model, device, workers, scheduler, progress=lambda run: bar.advance(task))
        # a worker's last reports may not have arrived (or died with it): the bar ends at what was made
        made = sum(s.made for parts in summary.done.values() for s in parts)
        bar.update(task, completed=made, total=max(made, planned))
    if len(found) == 1 and summary.failed:  # a batch of one fails as that run's error
        raise DeepZError(next(iter(summary.failed.values())))
    for run in found:
        _say_inferred(run, summary.done.get(run, []))
    for run, why in summary.failed.items():
        typer.echo(f"failed {run}: {why}", err=True)
    if len(found) > 1:
        typer.echo(
            f"{len(found) - len(summary.failed)} of {len(found)} runs done in {summary.seconds:.1f} s "
            f"({summary.where})"
        )
    if summary.failed:
        raise DeepZError(
            f"{len(summary.failed)} of {len(found)} runs failed (listed above); `mm-deepz infer` again "
            "goes on where they stopped once their problem is fixed."
        )
    if any(s.unreadable for parts in summary.done.values() for s in parts):
        raise typer.Exit(1)


def _say_inferred(run: Path, parts: list[InferSummary]) -> None:
    """What ``infer`` did to one run (its tasks' summaries), and what it skipped."""
    made, already = sum(s.made for s in parts), sum(s.already for s in parts)
    image = parts[0].image if parts else "virtual"
    recovered = sum(s.recovered for s in parts)
    seconds = sum(s.seconds for s in parts)
    typer.echo(
        f"{made} virtual stacks made into image {image} of {run} in {seconds:.1f} s "
        f"({already if parts else 'all'} were there already"
        + (f"; {recovered} measured time points recovered into the record" if recovered else "")
        + ")"
    )
    ignored = sorted({f for s in parts for f in s.ignored})
    if ignored:
        typer.echo(
            f"ignored {len(ignored)} file(s) among the measured chunks that no run writes (e.g. "
            f"{ignored[0]}); they are left as they are",
            err=True,
        )
    for s in parts:
        for where, why in s.unreadable.items():
            typer.echo(f"skipped {where}: {why}", err=True)


def info_cmd(
    container: Annotated[
        Path, typer.Argument(help="A container written by `mm-deepz acquire` or the panel.")
    ],
) -> None:
    """What a container holds: complete time points, missing virtual stacks and why, warnings."""
    from rich.console import Console
    from rich.table import Table

    from mm_deepz.io import read_progress, record_key_parts
    from mm_deepz.io.record import measured_not_recorded

    from .infer import stacks_to_make

    rec = read_progress(container)
    table = Table(title=str(container), show_header=False)
    table.add_column("what", no_wrap=True)
    table.add_column("value")
    state = "finished" if rec.get("finished") else "interrupted (not finished)"
    table.add_row("state", state + (" after an abort" if rec.get("aborted") else ""))
    if images := rec.get("images"):  # layout 2: an OME-Zarr collection of numbered images
        table.add_row(
            "images (folder)", ", ".join(f"{name} {'/, '.join(paths)}/" for name, paths in images.items())
        )
    else:
        table.add_row("layout", "1 (an mm-deepz version before 2026-11-26; images at named folders)")
    for image, done in rec["completed"].items():
        table.add_row(f"{image}: complete time points", _ranges(done) or "none")
    # every measured Deep-Z time point without its stack: the backlog, and what a kill left (the stacks
    # the model was making when it died are recorded nowhere else)
    if unrecorded := measured_not_recorded(container, rec):  # the last second before a kill
        table.add_row(
            "measured, not yet recorded",
            f"{_ranges(unrecorded)} (on disk; `mm-deepz infer` records them and makes their virtual stacks)",
        )
    if todo := stacks_to_make(rec):
        table.add_row(
            "virtual stacks still to make", f"{_ranges([t for t, _ in todo])} (`mm-deepz infer` makes them)"
        )
    for label, key in (("virtual missing", "virtual_missing"), ("rejected frames", "rejected")):
        for where, what in (rec.get(key) or {}).items():
            table.add_row(f"{label} {where}", str(what))
    for where, scores in (rec.get("blind_checks") or {}).items():
        table.add_row(f"blind check {where}", _blind_check_line(scores))
    # the run's errors repeat each missing stack's reason ("t=1, p=0: why"): listed once, above
    listed = {
        "t={}, p={}: {}".format(*record_key_parts(k), why)
        for k, why in (rec.get("virtual_missing") or {}).items()
    }
    for msg in (rec.get("errors") or []) + (rec.get("warnings") or []):
        if msg not in listed:
            table.add_row("note", msg)
    Console().print(table)


def _blind_check_line(scores: dict[str, Any]) -> str:
    """A blind check's scores in one readable line (rounded, the worst plane named)."""
    parts = []
    if (ssim := scores.get("ssim_mean")) is not None:
        parts.append(f"SSIM {ssim:.3f}")
        if per_plane := [s for s in scores.get("ssim_per_plane") or [] if s is not None]:
            parts[-1] += f" (worst plane {min(per_plane):.3f})"
    if (psnr := scores.get("psnr_mean")) is not None:
        parts.append(f"PSNR {psnr:.1f} dB")
    return ", ".join(parts) or "not scored"


def _ranges(values: list[int]) -> str:
    """[0, 1, 2, 5] -> '0-2, 5'."""
    out: list[str] = []
    for v in sorted(values):
        if out and v == int(out[-1].split("-")[-1]) + 1:
            out[-1] = f"{out[-1].split('-')[0]}-{v}"
        else:
            out.append(str(v))
    return ", ".join(out)
