"""The ``mm-deepz`` command line."""

from __future__ import annotations

import contextlib
import logging
import signal
import sys
from collections.abc import Iterator
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
    for noisy in ("matplotlib", "pymmcore-plus", "zarr", "asyncio", "pycromanager", "mmpycorex", "numcodecs"):
        logging.getLogger(noisy).setLevel(logging.DEBUG if verbose else logging.WARNING)


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
    randomize: Annotated[bool, typer.Option(help="Seeded jitter of field, depth and sheet shape.")] = False,
    tilt_x: Annotated[float, typer.Option(help="Sheets: slope in x (µm/µm).")] = 0.0,
    tilt_y: Annotated[float, typer.Option(help="Sheets: slope in y (µm/µm).")] = 0.0,
    curvature: Annotated[float, typer.Option(help="Sheets: curvature (1/µm).")] = 0.0,
    widefield_exposure: Annotated[float, typer.Option(help="Exposure of the widefield stacks (ms).")] = 10.0,
) -> None:
    """Simulate widefield / confocal z-stack pairs for training or testing."""
    from rich.progress import track

    from simulators.training_data import PairSpec, make_stack_pair, write_stack_pair

    for i in track(range(n), description="simulating stack pairs"):
        spec = PairSpec(phantom=phantom, seed=seed + i, shape=(size, size), z_half_range_um=z_range,
                        z_step_um=z_step, randomize=randomize, tilt_x=tilt_x, tilt_y=tilt_y,
                        curvature_per_um=curvature, widefield_exposure_ms=widefield_exposure)
        write_stack_pair(make_stack_pair(spec), out, f"{phantom}_{seed + i:04d}")
    typer.echo(f"wrote {n} stack pairs to {out}")


@simulate.command("neuron-experiment")
def neuron_experiment_cmd(
    out: Annotated[Path, typer.Argument(help="Folder for neurons.json, neurons.md and neurons_f1.png.")],
    model: Annotated[list[Path] | None, typer.Option(help="Model file(s) to test (default: both shipped).")] = None,
    seeds: Annotated[str, typer.Option(help="Worm seeds, comma-separated (never used in training).")] = "160,161",
    time_points: Annotated[int, typer.Option(help="Time points per worm.")] = 12,
    interval: Annotated[float, typer.Option(help="Time between time points (s).")] = 1.0,
    speed: Annotated[float, typer.Option(help="Crawling speed of the worms (µm/s; 0 = still).")] = 0.45,
    frame: Annotated[int, typer.Option(help="Camera size (pixels, square).")] = 256,
    device: Annotated[str, typer.Option(help="auto, cuda or cpu.")] = "auto",
) -> None:
    """The C. elegans experiment: neurons found and tracked from Deep-Z vs scanned stacks (blind)."""
    import math

    from rich.progress import Progress

    from mm_deepz.errors import SettingsError
    from mm_deepz.evaluation.neuron_experiment import (
        ExperimentConfig,
        results_table,
        run_experiment,
        write_results,
    )
    from mm_deepz.modelfile import load_model, shipped_model_path

    try:
        seed_list = tuple(int(s) for s in seeds.split(","))
    except ValueError:
        raise SettingsError(f"--seeds must be integers separated by commas, got {seeds!r}.") from None
    if time_points < 2 or not (math.isfinite(interval) and interval > 0) or not math.isfinite(speed) or speed < 0:
        raise SettingsError("Need at least 2 time points, a positive interval and a speed of 0 or more.")
    paths = model or [shipped_model_path(1), shipped_model_path(2)]
    models = {}
    for p in paths:
        m = load_model(p)
        models[f"Deep-Z {m.card.n_planes} plane{'s' if m.card.n_planes > 1 else ''} ({p.stem})"] = m
    cfg = ExperimentConfig(seeds=seed_list, time_points=time_points, interval_s=interval,
                           drift_um_per_s=(speed * 0.894, -speed * 0.447), frame=frame)
    with Progress() as bar:
        task = bar.add_task("imaging and analysing", total=len(seed_list) * time_points)
        results = run_experiment(models, cfg, device, progress=lambda: bar.advance(task))
    files = write_results(results, out)
    typer.echo(results_table(results))
    typer.echo(f"wrote {', '.join(map(str, files))}")


@app.command("train")
def train_cmd(
    data: Annotated[list[Path], typer.Argument(help="Folders/files with <name>_<input>.ome.tif + <name>_<target>.ome.tif pairs.")],
    out: Annotated[Path, typer.Option(help="Model file to write.")] = Path("deepz_model.pt"),
    planes: Annotated[int, typer.Option(help="Input planes: 1, or 2 (Recurrent-MZ style).")] = 1,
    separation: Annotated[float, typer.Option(help="2 planes: their separation (µm).")] = 4.0,
    z_range: Annotated[float, typer.Option(help="Largest propagation distance from an input plane (µm).")] = 10.0,
    input_modality: Annotated[str, typer.Option(help="File suffix of the input stacks.")] = "widefield",
    target_modality: Annotated[str, typer.Option(help="File suffix of the targets (= input for refocusing only).")] = "confocal",
    steps: Annotated[int, typer.Option(help="Training steps.")] = 2000,
    batch_size: Annotated[int, typer.Option()] = 6,
    patch: Annotated[int, typer.Option(help="Patch size (pixels).")] = 128,
    base_channels: Annotated[int, typer.Option(help="U-Net width (16 small, 32+ for GPUs).")] = 16,
    depth: Annotated[int, typer.Option(help="U-Net depth.")] = 3,
    max_channels: Annotated[int | None, typer.Option(help="Widest U-Net level (default: doubling at each level).")] = None,
    lr: Annotated[float, typer.Option()] = 2e-3,
    adversarial: Annotated[float, typer.Option(help="Weight of the patch-GAN loss (0 = off).")] = 0.05,
    pcc_weight: Annotated[float, typer.Option(help="Weight of the (1 - correlation) loss.")] = 1.0,
    ssim_weight: Annotated[float, typer.Option(help="Weight of the (1 - SSIM) loss.")] = 1.0,
    val_fraction: Annotated[float, typer.Option(help="Fraction of stacks held out for validation.")] = 0.2,
    val: Annotated[list[Path] | None, typer.Option(
        help="Fixed validation stacks (folders/files; repeatable); then --val-fraction is not used.")] = None,
    patience: Annotated[int, typer.Option(
        help="Stop after this many validations without improvement; 0 = never.")] = 5,
    val_every: Annotated[int, typer.Option(help="Validate (and save the checkpoint) every N steps.")] = 250,
    seed: Annotated[int, typer.Option()] = 0,
    device: Annotated[str, typer.Option(help="auto, cuda or cpu.")] = "auto",
    precision: Annotated[str, typer.Option(
        help="auto (bfloat16 on CUDA, float32 on the CPU), bf16 (also on AMX CPUs: faster, less stable) or fp32.")] = "auto",
    resume: Annotated[bool, typer.Option(help="Continue from OUT's checkpoint.")] = False,
    no_register: Annotated[bool, typer.Option("--no-register", help="Skip lateral/axial registration.")] = False,
    overwrite: Annotated[bool, typer.Option(help="Replace an existing model file and its checkpoint.")] = False,
) -> None:
    """Train a Deep-Z model from z-stack pairs (simulated or from your microscope)."""
    import json
    import sys

    from mm_deepz.training.stacks import dataset_summary, load_pairs
    from mm_deepz.training.train import TrainConfig, check_output_model, train

    cfg = TrainConfig(n_planes=planes, plane_separation_um=separation, z_range_um=z_range, steps=steps,
                      batch_size=batch_size, patch=patch, base_channels=base_channels, depth=depth,
                      max_channels=max_channels, lr=lr, adversarial_weight=adversarial, pcc_weight=pcc_weight,
                      ssim_weight=ssim_weight, val_fraction=val_fraction, patience=patience, val_every=val_every, seed=seed, device=device,
                      precision=precision,
                      input_modality=input_modality, target_modality=target_modality)
    check_output_model(out, resume=resume, overwrite=overwrite)
    pairs = load_pairs(data, input_modality, target_modality, do_register=not no_register)
    summary_path = out.with_suffix(".dataset.json")
    summary_path.parent.mkdir(parents=True, exist_ok=True)
    summary_path.write_text(json.dumps(dataset_summary(pairs), indent=2))
    val_pairs = load_pairs(val, input_modality, target_modality, do_register=not no_register) if val else None
    result = train(pairs, cfg, out, resume=resume, command="mm-deepz " + " ".join(sys.argv[1:]),
                   val_pairs=val_pairs)
    typer.echo(f"model written to {out} (validation loss {result.best_val_loss:.4f}, "
               f"{result.steps_done} steps, {result.seconds:.0f} s); dataset summary: {summary_path}")


@app.command("evaluate")
def evaluate_cmd(
    model: Annotated[Path, typer.Argument(help="Model file.")],
    stacks: Annotated[list[Path], typer.Argument(help="Held-out stack pairs (folders or files).")],
    report: Annotated[Path, typer.Option(help="Directory for metrics.json and PNG plots.")] = Path("report"),
    input_modality: Annotated[str, typer.Option()] = "widefield",
    target_modality: Annotated[str, typer.Option()] = "confocal",
    device: Annotated[str, typer.Option()] = "auto",
    write_card: Annotated[bool, typer.Option(help="Store the blind metrics in the model file's card.")] = False,
) -> None:
    """Blind test of a model against mechanically scanned reference stacks."""
    from rich.progress import track

    from mm_deepz.engine import Predictor
    from mm_deepz.errors import SettingsError
    from mm_deepz.evaluation import evaluate_pair, summarize, write_report
    from mm_deepz.modelfile import load_model
    from mm_deepz.training.stacks import load_pairs

    if report.exists() and not report.is_dir():
        raise SettingsError(f"--report {report} is a file: give a folder for metrics.json and the plots.")
    m = load_model(model)
    if (input_modality, target_modality) != (m.card.input_modality, m.card.target_modality):
        raise SettingsError(f"{model.name} turns {m.card.input_modality} into {m.card.target_modality} images, but "
                            f"{input_modality} -> {target_modality} was asked for: use --input-modality "
                            f"{m.card.input_modality} --target-modality {m.card.target_modality}.")
    pairs = load_pairs(stacks, input_modality, target_modality)
    predictor = Predictor(m, device)
    evals = [evaluate_pair(m, p, predictor) for p in track(pairs, description="evaluating")]
    summary = summarize(evals, m)
    files = write_report(summary, evals, report)
    ms = summary["mean_ssim"]
    typer.echo(f"mean SSIM: virtual {ms['virtual']:.3f}, repeated input {ms['repeated']:.3f}, "
               f"scanned widefield {ms['widefield']:.3f}; report: {report} ({len(files)} files)")
    if write_card:
        m.card.metrics = {**m.card.metrics, "blind": {k: summary[k] for k in
                          ("mean_ssim", "mean_psnr", "mean_pcc", "margin_over_baselines", "pairs")
                          if k in summary}}
        m.save(model)
        typer.echo(f"blind metrics stored in {model}")


@app.command("acquire")
def acquire_cmd(
    output: Annotated[Path, typer.Option("--output", "-o", help="OME-Zarr container to write.")] = Path(
        "deepz_run.ome.zarr"),
    time_points: Annotated[int, typer.Option("--time-points", "-t", help="Number of time points.")] = 5,
    interval: Annotated[float, typer.Option(help="Time between time points (s).")] = 0.0,
    z_start: Annotated[float, typer.Option(help="Requested stack: first z (µm).")] = -10.0,
    z_end: Annotated[float, typer.Option(help="Requested stack: last z (µm).")] = 10.0,
    z_step: Annotated[float, typer.Option(help="Requested stack: step (µm).")] = 1.0,
    planes: Annotated[int | None, typer.Option(
        help="Measured planes per time point (1 or 2; default: the model's, 1 for the shipped models).")] = None,
    model: Annotated[Path | None, typer.Option(help="Model file (default: the shipped model for --planes).")] = None,
    exposure: Annotated[float, typer.Option(help="Exposure of the measured planes (ms).")] = 10.0,
    power: Annotated[float | None, typer.Option(help="Light power for measured planes (mW).")] = None,
    power_property: Annotated[str | None, typer.Option(
        help="DEVICE.PROPERTY that sets the light power in mW (default: the shutter device's Power_mW).")] = None,
    blind_check: Annotated[int, typer.Option(help="Acquire a real confocal stack every N time points (0 = off).")] = 0,
    position: Annotated[list[str] | None, typer.Option(help="Stage XY position 'X,Y' in µm (repeat for several).")] = None,
    device: Annotated[str, typer.Option(help="auto, cuda or cpu.")] = "auto",
    no_deepz: Annotated[bool, typer.Option("--no-deepz", help="Acquire full stacks (virtual z-stacking off).")] = False,
    overwrite: Annotated[bool, typer.Option(help="Replace an existing output.")] = False,
    connect: Annotated[bool, typer.Option(help="Use a running Micro-Manager (Java backend) instead of the simulator.")] = False,
    port: Annotated[int, typer.Option(help="Micro-Manager's pycro-manager port (with --connect).")] = 4827,
    phantom: Annotated[str, typer.Option(help="Simulator specimen: worm, beads or sheet.")] = "worm",
    seed: Annotated[int, typer.Option(help="Simulator specimen seed.")] = 100,
    frame: Annotated[int, typer.Option(help="Simulator camera size (pixels, square).")] = 256,
    config: Annotated[str | None, typer.Option(help="Simulator's Micro-Manager configuration file; 'mmdemo' for "
                                                    "the one with Micro-Manager's demo-config names.")] = None,
    channel_group: Annotated[str, typer.Option(help="Config group that switches the light path.")] = "Channel",
    input_preset: Annotated[str, typer.Option(help="Its preset for the measured (widefield) planes.")] = "Widefield",
    reference_preset: Annotated[str, typer.Option(help="Its preset for blind-check reference stacks.")] = "Confocal",
) -> None:
    """Run a low-light Deep-Z acquisition to OME-Zarr (simulator by default)."""
    from rich.console import Console
    from rich.progress import Progress
    from rich.table import Table

    from acquisition_hooks import AcquisitionRequest

    try:
        positions = tuple(tuple(float(v) for v in p.split(",")) for p in position) if position else None
    except ValueError:
        raise typer.BadParameter(f"positions must be 'X,Y' in µm, got {position}") from None
    if positions and any(len(p) != 2 for p in positions):
        raise typer.BadParameter(f"positions must be 'X,Y' in µm, got {position}")
    request = AcquisitionRequest(output=output, time_points=time_points, interval_s=interval, z_start_um=z_start,
                                 z_end_um=z_end, z_step_um=z_step, planes=planes, model=model, exposure_ms=exposure,
                                 power_mW=power, power_property=power_property, blind_check_every=blind_check,
                                 positions_xy_um=positions, device=device, deepz=not no_deepz, overwrite=overwrite,
                                 connect=connect, port=port, phantom=phantom, seed=seed, frame=frame,
                                 config=_simulator_config(config), channel_group=channel_group, input_preset=input_preset,
                                 reference_preset=reference_preset)
    m, plan = request.prepare()
    console = Console()
    with _signals_as_interrupt(), request.microscope() as core:
        run = request.acquisition(core, m, plan)
        with Progress(console=console) as bar:
            task = bar.add_task("time points", total=time_points)
            backlog: list = []  # the backlog's progress task, added when the backlog is made

            def on_backlog(done: int, total: int) -> None:
                if not backlog:
                    backlog.append(bar.add_task("virtual stacks the model could not take during the run",
                                                total=total))
                bar.update(backlog[0], completed=done)

            summary = run.run(progress=lambda t, total: bar.update(task, completed=t + 1),
                              backlog_progress=on_backlog)
    table = Table(title="Deep-Z acquisition", show_header=False)
    table.add_row("output", summary.output)
    table.add_row("time points complete", f"{summary.time_points}" + (" (aborted)" if summary.aborted else ""))
    table.add_row("planes measured / requested", f"{summary.planes_measured} / {summary.planes_requested}")
    table.add_row("virtual planes synthesized", f"{summary.planes_synthesized}"
                  + (f" ({summary.virtual_missing} stacks missing)" if summary.virtual_missing else ""))
    if summary.virtual_pending:
        table.add_row("virtual stacks still to make", f"{summary.virtual_pending}: `mm-deepz infer {summary.output}` "
                      "makes them from the measured planes")
    if no_deepz:
        table.add_row("planes per time point", f"{len(plan.requested_z())} measured (virtual z-stacking off)")
    else:
        table.add_row("planes per time point", f"{len(plan.plane_offsets_um)} measured for "
                      f"{len(plan.requested_z())} requested ({plan.dose_ratio:.0f}x less light per stack)")
    saving = (f" ({summary.light_saving:.1f}x less light{', blind checks included' if blind_check else ''})"
              if summary.exposure_s and not no_deepz else "")
    table.add_row("exposure used / as full stacks",
                  f"{summary.exposure_s:.2f} s / {summary.exposure_full_stack_s:.2f} s{saving}")
    if summary.dose_mJ is not None and summary.dose_full_stack_mJ is not None:
        table.add_row("light dose (simulator)", f"{summary.dose_mJ:.2f} mJ vs {summary.dose_full_stack_mJ:.2f} mJ "
                      "as full stacks")
    table.add_row("time", f"{summary.seconds:.1f} s")
    console.print(table)
    for err in summary.errors[:5] + summary.warnings[:5]:
        console.print(f"[yellow]warning:[/] {err}")
    if summary.stop_reason:
        console.print(f"[red]stopped early:[/] {summary.stop_reason} — completed time points are readable in "
                      f"{summary.output} (`mm-deepz info` lists them)")
        raise typer.Exit(1)


def _simulator_config(value: str | None) -> Path | None:
    """``--config``: a configuration file, or ``mmdemo`` for the shipped demo-config-named one."""
    if value == "mmdemo":
        from simulators import MM_DEMO_CONFIG

        return MM_DEMO_CONFIG
    return Path(value) if value is not None else None


@contextlib.contextmanager
def _signals_as_interrupt() -> Iterator[None]:
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


@app.command("gui")
def gui_cmd(
    screenshot: Annotated[Path | None, typer.Option(help="Run a short simulated acquisition and save the panel as PNG.")] = None,
    size: Annotated[str, typer.Option(help="Window size of --screenshot, WIDTHxHEIGHT pixels.")] = "1400x820",
    connect: Annotated[bool, typer.Option(help="Use a running Micro-Manager instead of the simulator.")] = False,
    port: Annotated[int, typer.Option(help="Micro-Manager's pycro-manager port (with --connect).")] = 4827,
    output: Annotated[Path, typer.Option("--output", "-o", help="Default OME-Zarr container.")] = Path(
        "deepz_run.ome.zarr"),
    config: Annotated[str | None, typer.Option(help="Simulator's configuration file; 'mmdemo' for the one with "
                                                    "Micro-Manager's demo-config names.")] = None,
    channel_group: Annotated[str, typer.Option(help="Config group that switches the light path.")] = "Channel",
    input_preset: Annotated[str, typer.Option(help="Its preset for the measured (widefield) planes.")] = "Widefield",
    reference_preset: Annotated[str, typer.Option(help="Its preset for blind-check reference stacks.")] = "Confocal",
) -> None:
    """The Deep-Z panel: settings, the virtual z-stacking toggle, live measured and virtual views."""
    from acquisition_hooks import AcquisitionRequest

    microscope = {"connect": connect, "port": port, "config": _simulator_config(config),
                  "channel_group": channel_group, "input_preset": input_preset, "reference_preset": reference_preset}

    if screenshot is None:
        from gui.app import run_window

        raise typer.Exit(run_window(AcquisitionRequest(output=output, **microscope)))
    import tempfile

    from gui.screenshot import render_screenshot

    with tempfile.TemporaryDirectory() as tmp:
        request = AcquisitionRequest(output=Path(tmp) / "screenshot.ome.zarr", time_points=5, blind_check_every=4,
                                     **microscope)
        try:
            width, height = (int(v) for v in size.lower().split("x"))
        except ValueError:
            raise typer.BadParameter(f"--size must be WIDTHxHEIGHT in pixels, e.g. 1280x800 (got {size!r})") from None
        typer.echo(f"wrote {render_screenshot(screenshot, request, virtual_plane=4, size=(width, height))}")


def main() -> None:
    """The ``mm-deepz`` entry point: errors a user can act on are one clear line, not a traceback."""
    from mm_deepz.bridge import BridgeError
    from mm_deepz.errors import DeepZError

    try:
        app()
    except (DeepZError, BridgeError) as e:
        # one unwrapped line on stderr, whatever the terminal's width (scripts grep it)
        print(f"mm-deepz: error: {' '.join(str(e).split())}", file=sys.stderr)
        raise SystemExit(2) from None


@app.command("info")
def info_cmd(
    container: Annotated[Path, typer.Argument(help="A container written by `mm-deepz acquire` or the panel.")],
) -> None:
    """What a container holds: complete time points, missing virtual stacks and why, warnings."""
    from rich.console import Console
    from rich.table import Table

    from mm_deepz.io import read_progress, record_key_parts

    rec = read_progress(container)
    table = Table(title=str(container), show_header=False)
    table.add_column("what", no_wrap=True)
    table.add_column("value")
    state = "finished" if rec.get("finished") else "interrupted (not finished)"
    table.add_row("state", state + (" after an abort" if rec.get("aborted") else ""))
    if images := rec.get("images"):  # layout 2: an OME-Zarr collection of numbered images
        table.add_row("images (folder)", ", ".join(f"{name} {'/, '.join(paths)}/" for name, paths in images.items()))
    else:
        table.add_row("layout", "1 (an mm-deepz version before 2026-11-26; images at named folders)")
    for image, done in rec["completed"].items():
        table.add_row(f"{image}: complete time points", _ranges(done) or "none")
    if pending := rec.get("virtual_pending"):
        table.add_row("virtual stacks still to make", f"{_ranges([record_key_parts(k)[0] for k in pending])} "
                      "(`mm-deepz infer` makes them)")
    for label, key in (("virtual missing", "virtual_missing"), ("rejected frames", "rejected")):
        for where, what in (rec.get(key) or {}).items():
            table.add_row(f"{label} {where}", str(what))
    for where, scores in (rec.get("blind_checks") or {}).items():
        table.add_row(f"blind check {where}", _blind_check_line(scores))
    # the run's errors repeat each missing stack's reason ("t=1, p=0: why"): listed once, above
    listed = {"t={}, p={}: {}".format(*record_key_parts(k), why) for k, why in (rec.get("virtual_missing") or {}).items()}
    for msg in (rec.get("errors") or []) + (rec.get("warnings") or []):
        if msg not in listed:
            table.add_row("note", msg)
    Console().print(table)


def _blind_check_line(scores: dict) -> str:
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


@app.command("infer")
def infer_cmd(
    container: Annotated[Path, typer.Argument(help="A run written by `mm-deepz acquire` or the panel.")],
    model: Annotated[Path | None, typer.Option(
        help="Model file (default: the run's). Another model's stacks go to a new image beside the run's.")] = None,
    device: Annotated[str, typer.Option(help="auto, cuda or cpu.")] = "auto",
) -> None:
    """Make the virtual stacks a run left to make (backlog, kill, disk full, model off), or another model's."""
    from rich.progress import Progress

    from acquisition_hooks.infer import infer_missing

    with Progress() as bar:
        task = bar.add_task("virtual stacks", total=None)
        summary = infer_missing(container, model, device,
                                progress=lambda done, total: bar.update(task, completed=done, total=total))
    typer.echo(f"{summary.made} virtual stacks made into image {summary.image} of {container} in {summary.seconds:.1f} s "
               f"({summary.already} were there already"
               + (f"; {summary.recovered} measured time points recovered into the record" if summary.recovered else "")
               + ")")


@app.command("track")
def track_cmd(
    source: Annotated[Path, typer.Argument(help="A run (.ome.zarr), an NGFF image or an OME-TIFF z-stack series.")],
    image: Annotated[str, typer.Option(help="In a run: virtual, reference, or measured (full-stack runs).")] = "virtual",
    position: Annotated[int, typer.Option(help="XY position (multi-position runs).")] = 0,
    csv: Annotated[Path | None, typer.Option(help="CSV to write (default: beside SOURCE).")] = None,
    picture: Annotated[Path | None, typer.Option(help="PNG to write (default: beside SOURCE).")] = None,
    diameter: Annotated[float, typer.Option(help="Neuron diameter, lateral (µm).")] = 3.0,
    axial_diameter: Annotated[float, typer.Option(help="Neuron extent along z (µm).")] = 4.0,
    search_range: Annotated[float, typer.Option(help="Largest move between time points (µm).")] = 3.0,
    memory: Annotated[int, typer.Option(help="Time points a neuron may be missed and keep its track.")] = 2,
    overwrite: Annotated[bool, typer.Option(help="Replace an existing CSV / PNG.")] = False,
) -> None:
    """Find every neuron in 3D, follow it over time and read its activity (dF/F)."""
    from rich.console import Console
    from rich.progress import Progress
    from rich.table import Table

    from mm_deepz.errors import SettingsError
    from mm_deepz.io import is_container
    from mm_deepz.neurons import DetectionConfig, LinkConfig
    from mm_deepz.neurons.analyse import analyse, save_pictures, write_tracks_to_container
    from mm_deepz.neurons.series import container_series, external_series

    if not source.exists():
        raise SettingsError(f"{source} does not exist.")
    run = is_container(source)
    series = container_series(source, image, position) if run else external_series(source)
    stem = source.name.removesuffix(".ome.zarr").removesuffix(".ome.tif").removesuffix(".zarr")
    label = f"{image}_p{position}" if run and position else (image if run else "stacks")
    csv = csv or source.with_name(f"{stem}_{label}_tracks.csv")
    picture = picture or source.with_name(f"{stem}_{label}_tracks.png")
    for f in (csv, picture):
        if f.exists() and not overwrite:
            raise SettingsError(f"{f} already exists: pass --overwrite to replace it, or choose another name.")
    with Progress() as bar:
        task = bar.add_task(f"tracking neurons in {series.name}", total=len(series.time_points))
        tracks = analyse(series, DetectionConfig(diameter_um=diameter, axial_diameter_um=axial_diameter),
                         LinkConfig(search_range_um=search_range, memory=memory), progress=lambda: bar.advance(task))
    tracks.to_csv(csv, index=False)
    save_pictures(series, tracks, picture)
    where = write_tracks_to_container(source, label, tracks) if run else None
    n_t = len(series.time_points)
    per_t = tracks.groupby("t").size().reindex(series.time_points, fill_value=0) if len(tracks) else None
    long_tracks = int((tracks.groupby("track").size() >= 0.9 * n_t).sum()) if len(tracks) else 0
    table = Table(title=f"neurons in {series.name}", show_header=False)
    table.add_row("time points analysed", str(n_t))
    table.add_row("neurons per time point", f"{per_t.mean():.1f} (min {per_t.min()}, max {per_t.max()})"
                  if per_t is not None else "none found")
    table.add_row("tracks", f"{tracks['track'].nunique() if len(tracks) else 0} ({long_tracks} over ≥ 90 % of the "
                  "time points)")
    table.add_row("tracks table", f"{csv}" + (f"; in the container as {where}" if where else ""))
    table.add_row("picture", str(picture))
    Console().print(table)


@app.command("preview")
def preview_cmd(
    container: Annotated[Path, typer.Argument(help="A container written by `mm-deepz acquire`.")],
    out: Annotated[Path, typer.Option(help="PNG to write.")] = Path("deepz_preview.png"),
    t: Annotated[int, typer.Option(help="Time point.")] = 0,
    p: Annotated[int, typer.Option(help="XY position (multi-position runs).")] = 0,
) -> None:
    """Picture of measured vs virtual (and reference) data of one time point."""
    from mm_deepz.io.preview import preview_png

    typer.echo(f"wrote {preview_png(container, out, t, p)}")
