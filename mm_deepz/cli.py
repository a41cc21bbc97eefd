"""The ``mm-deepz`` command line."""

from __future__ import annotations

import logging
import sys
from importlib.metadata import entry_points
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.logging import RichHandler

from .options import (
    DeviceOption,
    InputModalityOption,
    OldInt,
    OldPath,
    PositionIndexOption,
    TargetModalityOption,
    TimeIndexOption,
    output_option,
    renamed,
    required_output,
)

app = typer.Typer(help="Deep-Z virtual z-stacking for Micro-Manager.", no_args_is_help=True)
#: what the pairs commands read, and which of their stacks are input and target
PairsDataArgument = Annotated[
    list[Path], typer.Argument(help="Pairs datasets, or folders of OME-TIFF / OME-Zarr pairs.")
]


#: training pairs from the user's microscope: ``check`` here, ``acquire`` added by acquisition_hooks
pairs_app = typer.Typer(
    help="Training pairs from your own microscope: acquire and check them.", no_args_is_help=True
)
app.add_typer(pairs_app, name="pairs")


@app.callback()
def _main(verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Debug logging.")] = False) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(message)s",
        handlers=[RichHandler(show_path=False)],
        force=True,
    )
    for noisy in (
        "matplotlib",
        "pymmcore-plus",
        "zarr",
        "asyncio",
        "pycromanager",
        "mmpycorex",
        "numcodecs",
        "ome_zarr",
    ):
        logging.getLogger(noisy).setLevel(logging.DEBUG if verbose else logging.WARNING)


def _print_train_schema(value: bool) -> None:
    """``--schema``: the training settings' JSON schema, then exit (no data needed)."""
    if value:
        import json

        from mm_deepz.training.train import TrainConfig

        typer.echo(json.dumps(TrainConfig.model_json_schema(), indent=2))
        raise typer.Exit()


@app.command("train")
def train_cmd(
    ctx: typer.Context,
    data: Annotated[
        list[Path],
        typer.Argument(help="Folders/files with <name>_<input>.ome.tif + <name>_<target>.ome.tif pairs."),
    ],
    output: Annotated[Path, output_option("Model file to write.")] = Path("deepz_model.pt"),
    planes: Annotated[int, typer.Option(help="Input planes: 1, or 2 (Recurrent-MZ style).")] = 1,
    separation: Annotated[float, typer.Option(help="2 planes: their separation (µm).")] = 4.0,
    z_range: Annotated[
        float, typer.Option(help="Largest propagation distance from an input plane (µm).")
    ] = 10.0,
    input_modality: Annotated[str, typer.Option(help="File suffix of the input stacks.")] = "widefield",
    target_modality: Annotated[
        str, typer.Option(help="File suffix of the targets (= input for refocusing only).")
    ] = "confocal",
    steps: Annotated[int, typer.Option(help="Training steps.")] = 2000,
    batch_size: Annotated[
        int, typer.Option(help="Crops per step (under torchrun: in all, split between the processes).")
    ] = 6,
    patch: Annotated[int, typer.Option(help="Patch size (pixels).")] = 128,
    architecture: Annotated[
        str,
        typer.Option(
            help="Generator: unet (planes and DPM enter together) or encode-once (the planes encoded once, "
            "every target plane decoded from that; docs/models.md)."
        ),
    ] = "unet",
    base_channels: Annotated[
        int, typer.Option(help="Width of the first level (the encoder's for encode-once).")
    ] = 16,
    depth: Annotated[int, typer.Option(help="Down-samplings (encode-once: 4 recommended).")] = 3,
    max_channels: Annotated[
        int | None, typer.Option(help="Widest level (default: doubling at each level; encode-once: 64).")
    ] = None,
    decoder_channels: Annotated[
        int, typer.Option(help="encode-once: the decoder's full-resolution width.")
    ] = 8,
    decoder_max: Annotated[
        int,
        typer.Option(help="encode-once: the decoder's widest level (its width doubles per level up to it)."),
    ] = 32,
    context: Annotated[
        str,
        typer.Option(
            help="encode-once: the bottleneck's wider view: dilated (residual dilated convolutions), "
            "attention (self-attention over the bottleneck) or none."
        ),
    ] = "dilated",
    targets_per_sample: Annotated[
        int, typer.Option(help="Target planes supervised per training crop (encode-once: 4 recommended).")
    ] = 1,
    lr: Annotated[float, typer.Option(help="Learning rate (Adam).")] = 2e-3,
    adversarial: Annotated[float, typer.Option(help="Weight of the patch-GAN loss (0 = off).")] = 0.05,
    pcc_weight: Annotated[float, typer.Option(help="Weight of the (1 - correlation) loss.")] = 1.0,
    ssim_weight: Annotated[float, typer.Option(help="Weight of the (1 - SSIM) loss.")] = 1.0,
    balance_defocus: Annotated[
        bool,
        typer.Option(
            help="Draw every target distance from the nearest input plane equally often (more "
            "far-defocus targets; validation batches unchanged)."
        ),
    ] = False,
    val_fraction: Annotated[float, typer.Option(help="Fraction of stacks held out for validation.")] = 0.2,
    val: Annotated[
        list[Path] | None,
        typer.Option(
            help="Fixed validation stacks (folders/files; repeatable); then --val-fraction is not used."
        ),
    ] = None,
    patience: Annotated[
        int, typer.Option(help="Stop after this many validations without improvement; 0 = never.")
    ] = 5,
    val_every: Annotated[int, typer.Option(help="Validate (and save the checkpoint) every N steps.")] = 250,
    seed: Annotated[int, typer.Option(help="Seed of the weights, the crops and the validation split.")] = 0,
    device: DeviceOption = "auto",
    precision: Annotated[
        str,
        typer.Option(
            help="auto (bfloat16 on CUDA, float32 on the CPU), bf16 (also on AMX CPUs: faster, less "
            "stable) or fp32."
        ),
    ] = "auto",
    resume: Annotated[bool, typer.Option(help="Continue from --output's checkpoint.")] = False,
    init: Annotated[
        Path | None,
        typer.Option(
            help="Fine-tune this model file (a shipped model or your own) instead of starting from random "
            "weights: its architecture, input planes and z range are kept; the card names it as the parent."
        ),
    ] = None,
    no_register: Annotated[
        bool, typer.Option("--no-register", help="Skip lateral/axial registration.")
    ] = False,
    blind: Annotated[
        Path | None,
        typer.Option(help="Blind manifest (`mm-deepz pairs split`): its pairs are left out, copies refused."),
    ] = None,
    specimen_pattern: Annotated[
        str | None,
        typer.Option(
            help="Regular expression whose first group names a pair's specimen (e.g. '(.*)_t\\d+'): "
            "validation holds out whole specimens."
        ),
    ] = None,
    overwrite: Annotated[
        bool, typer.Option(help="Replace an existing model file and its checkpoint.")
    ] = False,
    config: Annotated[
        Path | None,
        typer.Option(
            help="JSON file of training settings (the names of --schema); options given here override it."
        ),
    ] = None,
    schema: Annotated[
        bool,
        typer.Option(
            "--schema",
            is_eager=True,
            callback=_print_train_schema,
            help="Print the JSON schema of the training settings (for --config files) and exit.",
        ),
    ] = False,
    out: OldPath = None,
) -> None:
    """Train a Deep-Z model from z-stack pairs (simulated or from your microscope); across processes
    or GPUs: `torchrun --nproc-per-node N -m mm_deepz train ...` (docs/scaling.md)."""
    import json
    import sys

    from mm_deepz.training.blind import read_manifest, without_blind
    from mm_deepz.training.distributed import Ranks
    from mm_deepz.training.stacks import dataset_summary, load_pairs
    from mm_deepz.training.train import TrainConfig, check_output_model, read_train_config, train

    out = renamed(output, out, "--out", "--output")
    # the settings: these options' defaults, then the --config file, then the options given on the command
    # line
    options = {
        "planes": ("n_planes", planes),
        "separation": ("plane_separation_um", separation),
        "z_range": ("z_range_um", z_range),
        "steps": ("steps", steps),
        "batch_size": ("batch_size", batch_size),
        "patch": ("patch", patch),
        "architecture": ("architecture", architecture),
        "base_channels": ("base_channels", base_channels),
        "depth": ("depth", depth),
        "max_channels": ("max_channels", max_channels),
        "decoder_channels": ("decoder_channels", decoder_channels),
        "decoder_max": ("decoder_max", decoder_max),
        "context": ("context", context),
        "targets_per_sample": ("targets_per_sample", targets_per_sample),
        "lr": ("lr", lr),
        "adversarial": ("adversarial_weight", adversarial),
        "pcc_weight": ("pcc_weight", pcc_weight),
        "ssim_weight": ("ssim_weight", ssim_weight),
        "balance_defocus": ("balance_defocus", balance_defocus),
        "val_fraction": ("val_fraction", val_fraction),
        "patience": ("patience", patience),
        "val_every": ("val_every", val_every),
        "seed": ("seed", seed),
        "device": ("device", device),
        "precision": ("precision", precision),
        "input_modality": ("input_modality", input_modality),
        "target_modality": ("target_modality", target_modality),
        "specimen_pattern": ("specimen_pattern", specimen_pattern),
    }
    given = {
        name: value
        for option, (name, value) in options.items()
        if (source := ctx.get_parameter_source(option)) is not None and source.name == "COMMANDLINE"
    }
    settings = dict(options.values())
    cfg = TrainConfig(**{**settings, **(read_train_config(config) if config else {}), **given})
    check_output_model(out, resume=resume, overwrite=overwrite)
    if init is not None and not resume:
        from mm_deepz.training.train import load_parent

        load_parent(init, cfg)  # refused before the stacks are read
    manifest = read_manifest(blind) if blind is not None else None
    pairs = load_pairs(data, cfg.input_modality, cfg.target_modality, do_register=not no_register)
    val_pairs = (
        load_pairs(val, cfg.input_modality, cfg.target_modality, do_register=not no_register) if val else None
    )
    if manifest is not None:  # nothing blind is trained or validated on
        pairs = without_blind(pairs, manifest, "training data")
        val_pairs = without_blind(val_pairs, manifest, "validation data") if val_pairs else val_pairs
    summary_path = out.with_suffix(".dataset.json")
    main_process = Ranks.from_env().main  # under torchrun, one process writes and reports
    if main_process:
        summary_path.parent.mkdir(parents=True, exist_ok=True)
        summary_path.write_text(json.dumps(dataset_summary(pairs), indent=2))
    result = train(
        pairs,
        cfg,
        out,
        resume=resume,
        command="mm-deepz " + " ".join(sys.argv[1:]),
        val_pairs=val_pairs,
        init=init,
    )
    if main_process:
        typer.echo(
            f"model written to {out} (validation loss {result.best_val_loss:.4f}, "
            f"{result.steps_done} steps, {result.seconds:.0f} s); dataset summary: {summary_path}"
        )


@pairs_app.command("check")
def pairs_check_cmd(
    data: PairsDataArgument,
    output: Annotated[Path, output_option("Folder for checks.json and checks.png.")] = Path("pairs_check"),
    input_modality: InputModalityOption = "widefield",
    target_modality: TargetModalityOption = "confocal",
    report: OldPath = None,
) -> None:
    """Check every pair before training: specimen present, not saturated, registration trustworthy, no
    drift; the pairs that fail are quarantined with their reasons (`train` leaves them out)."""
    from rich.console import Console
    from rich.progress import track
    from rich.table import Table

    from mm_deepz.errors import SettingsError
    from mm_deepz.training.check import CheckLimits, check_pair
    from mm_deepz.training.check_report import write_check_report
    from mm_deepz.training.stacks import find_pairs, read_stack

    report = renamed(output, report, "--report", "--output")
    if report.exists() and not report.is_dir():
        raise SettingsError(f"--output {report} is a file: give a folder for checks.json and checks.png.")
    limits = CheckLimits()
    checks, stacks = [], {}
    for name, a, b in track(find_pairs(data, input_modality, target_modality), description="checking pairs"):
        stacks[name] = (read_stack(a), read_stack(b))
        checks.append(check_pair(name, *stacks[name], limits))
    files = write_check_report(checks, stacks, report, limits)
    table = Table(title="pairs check", show_header=True)
    columns = (
        "pair",
        "confidence",
        "shift (px)",
        "camera turn, scale",
        "drift (px)",
        "structure in / target",
    )
    for column in (*columns, "verdict"):
        table.add_column(column)
    for c in checks:
        table.add_row(
            c.name,
            f"{c.confidence:.2f}",
            f"{c.shift_yx_px[0]:.1f}, {c.shift_yx_px[1]:.1f}",
            f"{c.rotation_deg:.2f}°, {c.scale:.4f}" if (c.rotation_deg, c.scale) != (0.0, 1.0) else "aligned",
            f"{c.drift_px:.1f}",
            f"{c.contrast['input']:.0f} / {c.contrast['target']:.0f}",
            "ok" if c.passed else "quarantined: " + "; ".join(c.reasons),
        )
    Console().print(table)
    bad = sum(not c.passed for c in checks)
    typer.echo(f"{len(checks) - bad} of {len(checks)} pairs pass; report: {', '.join(map(str, files))}")
    if bad:
        raise typer.Exit(1)


@pairs_app.command("split")
def pairs_split_cmd(
    data: PairsDataArgument,
    output: Annotated[Path, output_option("The blind manifest to write (JSON).")] = Path("blind.json"),
    blind_fraction: Annotated[float, typer.Option(help="Share of the specimens to hold out.")] = 0.2,
    seed: Annotated[int, typer.Option(help="Seed of the choice.")] = 0,
    specimen_pattern: Annotated[
        str | None,
        typer.Option(
            help="Regular expression whose first group names a pair's specimen (default: each pair)."
        ),
    ] = None,
    input_modality: InputModalityOption = "widefield",
    target_modality: TargetModalityOption = "confocal",
    overwrite: Annotated[bool, typer.Option(help="Replace an existing manifest.")] = False,
    out: OldPath = None,
) -> None:
    """Hold whole specimens out for the blind test: a manifest that `train --blind` never overlaps
    and `evaluate --blind` scores."""
    import json

    from mm_deepz.errors import SettingsError
    from mm_deepz.training.blind import make_manifest
    from mm_deepz.training.blind import specimen_pattern as compile_pattern
    from mm_deepz.training.stacks import load_pairs

    out = renamed(output, out, "--out", "--output")
    if out.exists() and (out.is_dir() or not overwrite):
        raise SettingsError(f"{out} exists: choose another --output, or --overwrite a manifest.")
    pattern = compile_pattern(specimen_pattern)
    pairs = load_pairs(data, input_modality, target_modality, do_register=False)
    manifest = make_manifest(pairs, blind_fraction, seed, pattern)
    out.write_text(json.dumps(manifest, indent=2))
    typer.echo(
        f"held out {len(manifest['specimens'])} specimen(s), {len(manifest['pairs'])} pair(s): "
        f"{', '.join(manifest['specimens'])} -> {out}"
    )


@app.command("evaluate")
def evaluate_cmd(
    model: Annotated[Path, typer.Argument(help="Model file or bioimage.io package.")],
    stacks: Annotated[list[Path], typer.Argument(help="Held-out stack pairs (folders or files).")],
    output: Annotated[Path, output_option("Folder for metrics.json and PNG plots.")] = Path("report"),
    input_modality: InputModalityOption = "widefield",
    target_modality: TargetModalityOption = "confocal",
    device: DeviceOption = "auto",
    write_card: Annotated[
        bool, typer.Option(help="Store the blind metrics in the model file's card.")
    ] = False,
    blind: Annotated[
        Path | None, typer.Option(help="Blind manifest (`mm-deepz pairs split`): score exactly its pairs.")
    ] = None,
    specimen: Annotated[
        str,
        typer.Option(
            help="What the specimens are: neurons (scored against the neurons of the scanned reference), "
            "beads (against its beads), none, or auto (the simulator's record; nothing for real data)."
        ),
    ] = "auto",
    parent: Annotated[
        Path | None,
        typer.Option(help="A model to score beside it on the same pairs (the one it was fine-tuned from)."),
    ] = None,
    report: OldPath = None,
) -> None:
    """Blind test of a model against mechanically scanned reference stacks."""
    report = renamed(output, report, "--report", "--output")
    from rich.progress import track

    from mm_deepz.engine import Predictor
    from mm_deepz.errors import SettingsError
    from mm_deepz.evaluation import evaluate_pair, summarize, write_report
    from mm_deepz.evaluation.evaluate import SPECIMENS
    from mm_deepz.evaluation.verdict import verdict, verdict_lines
    from mm_deepz.modelfile import load_model
    from mm_deepz.training.blind import blind_only, read_manifest
    from mm_deepz.training.stacks import load_pairs

    if report.exists() and not report.is_dir():
        raise SettingsError(f"--output {report} is a file: give a folder for metrics.json and the plots.")
    if specimen not in SPECIMENS:
        raise SettingsError(f"--specimen must be one of {', '.join(SPECIMENS)}, got {specimen!r}.")
    m = load_model(model)
    parent_model = load_model(parent) if parent is not None else None
    if (input_modality, target_modality) != (m.card.input_modality, m.card.target_modality):
        raise SettingsError(
            f"{model.name} turns {m.card.input_modality} into {m.card.target_modality} images, but "
            f"{input_modality} -> {target_modality} was asked for: use --input-modality "
            f"{m.card.input_modality} --target-modality {m.card.target_modality}."
        )
    pairs = load_pairs(stacks, input_modality, target_modality)
    if blind is not None:  # exactly the held-out specimens
        pairs = blind_only(pairs, read_manifest(blind))
    predictor = Predictor(m, device)
    evals = [evaluate_pair(m, p, predictor, specimen) for p in track(pairs, description="evaluating")]
    summary = summarize(evals, m)
    if parent_model is not None:
        parent_predictor = Predictor(parent_model, device)
        parent_evals = [
            evaluate_pair(parent_model, p, parent_predictor, specimen)
            for p in track(pairs, description="evaluating the parent")
        ]
        summary["parent"] = summarize(parent_evals, parent_model)
    summary["verdict"] = verdict(summary, summary.get("parent"))
    files = write_report(summary, evals, report)
    ms = summary["mean_ssim"]
    typer.echo(
        f"mean SSIM: virtual {ms['virtual']:.3f}, repeated input {ms['repeated']:.3f}, "
        f"scanned widefield {ms['widefield']:.3f}; report: {report} ({len(files)} files)"
    )
    for line in verdict_lines(summary["verdict"]):
        typer.echo(line)
    if write_card:
        m.card.metrics = {
            **m.card.metrics,
            "blind": {
                k: summary[k]
                for k in ("mean_ssim", "mean_psnr", "mean_pcc", "margin_over_baselines", "pairs")
                if k in summary
            },
        }
        m.save(model)
        typer.echo(f"blind metrics stored in {model}")


@app.command("curves")
def curves_cmd(
    runs: Annotated[
        list[Path],
        typer.Argument(help="Model files or training checkpoints (.ckpt); NAME=PATH to label one."),
    ],
    output: Annotated[Path, output_option("PNG file to write.")] = Path("learning_curves.png"),
    out: OldPath = None,
) -> None:
    """Learning curves: validation loss against step, each training leg's start marked."""
    from mm_deepz.evaluation.curves import plot_curves

    out = renamed(output, out, "--out", "--output")
    labelled = _labelled(runs)
    missing = [str(p) for p in labelled.values() if not p.is_file()]
    if missing:
        raise typer.BadParameter(f"no such file: {', '.join(missing)}")
    typer.echo(f"wrote {plot_curves(labelled, out)}")


@app.command("compare")
def compare_cmd(
    reports: Annotated[
        list[Path],
        typer.Argument(
            help="Report folders of `mm-deepz evaluate` on the same stacks; NAME=PATH to label one."
        ),
    ],
    output: Annotated[Path, output_option("PNG file to write (PCC against defocus, neuron F1).")] = Path(
        "comparison.png"
    ),
    out: OldPath = None,
) -> None:
    """Several models' blind tests side by side: a markdown table on stdout and a plot."""
    from mm_deepz.evaluation.compare import compare_reports, comparison_markdown, plot_comparison

    out = renamed(output, out, "--out", "--output")
    summaries = compare_reports(_labelled(reports))
    typer.echo(comparison_markdown(summaries), nl=False)
    typer.echo(f"wrote {plot_comparison(summaries, out)}", err=True)  # stdout: the table alone


def _labelled(paths: list[Path]) -> dict[str, Path]:
    """``NAME=PATH`` arguments (or bare paths, named by their file or folder name), in order."""
    labelled: dict[str, Path] = {}
    for arg in paths:
        name, _, path = str(arg).rpartition("=")
        p = Path(path)
        # the file name (a model and its .ckpt differ); a report's metrics.json goes by its folder
        name = name or (p.parent.name if p.name == "metrics.json" else p.name)
        if name in labelled:
            raise typer.BadParameter(f"two inputs are named {name!r}: label them NAME=PATH")
        labelled[name] = p
    return labelled


def check_environment() -> None:
    """Refuse, in one line, an environment the libraries underneath cannot start in: pymmcore-plus makes
    its log folder under the user's data folder (``$XDG_DATA_HOME``, else ``$HOME/.local/share``) when
    it is imported, and fails with a traceback where that cannot be made (``HOME=/proc``)."""
    import os

    from platformdirs import user_data_dir

    from mm_deepz.errors import SettingsError

    folder = Path(user_data_dir(appname="pymmcore-plus"))
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise SettingsError(
            f"Cannot make {folder} ({e.strerror or e}): pymmcore-plus keeps its logs there, under "
            f"HOME={os.environ.get('HOME', '')!r}. Set HOME (or XDG_DATA_HOME) to a writable folder."
        ) from None


def main() -> None:
    """The ``mm-deepz`` entry point: errors a user can act on are one clear line, not a traceback."""
    from mm_deepz.bridge import BridgeError
    from mm_deepz.errors import DeepZError

    try:
        check_environment()
        app()
    except (DeepZError, BridgeError) as e:
        # one unwrapped line on stderr, whatever the terminal's width (scripts grep it)
        print(f"mm-deepz: error: {' '.join(str(e).split())}", file=sys.stderr)
        raise SystemExit(2) from None


@app.command("export")
def export_cmd(
    model: Annotated[Path, typer.Argument(help="Model file (.pt) to export.")],
    author: Annotated[
        list[str], typer.Option(help="Who made the model, as the model zoo lists them (repeat for several).")
    ],
    output: Annotated[Path | None, output_option("The bioimage.io package to write (NAME.zip).")] = None,
    name: Annotated[
        str | None, typer.Option(help="The model's name in the zoo (default: what it does).")
    ] = None,
    sample: Annotated[
        Path | None,
        typer.Option(help="TIFF or .npy of your measured plane(s) (planes, y, x) for the test images."),
    ] = None,
    overwrite: Annotated[bool, typer.Option(help="Replace a package exported earlier.")] = False,
    bmz: OldPath = None,
) -> None:
    """A model as a bioimage.io package (napari, Fiji / deepImageJ, the model zoo), tested before written."""
    from mm_deepz.modelfile import load_model
    from mm_deepz.zoo import export_package

    bmz = required_output(output, bmz, "--bmz")
    m = load_model(model)
    planes = _read_sample(sample) if sample is not None else None
    out = export_package(m, bmz, authors=author, name=name, sample=planes, overwrite=overwrite)
    typer.echo(f"wrote {out} (bioimage.io's test passed)")


def _read_sample(path: Path) -> Any:
    """The measured planes of ``--sample`` (a TIFF or a .npy array)."""
    import numpy as np
    import tifffile

    from mm_deepz.errors import SettingsError

    try:
        if path.suffix == ".npy":
            return np.load(path, allow_pickle=False)
        return tifffile.imread(path)
    except (OSError, ValueError, tifffile.TiffFileError) as e:
        raise SettingsError(f"--sample {path} is not a readable TIFF or .npy image: {e}.") from None


@app.command("track")
def track_cmd(
    source: Annotated[
        Path, typer.Argument(help="A run (.ome.zarr), an NGFF image or an OME-TIFF z-stack series.")
    ],
    image: Annotated[
        str, typer.Option(help="In a run: virtual, reference, or measured (full-stack runs).")
    ] = "virtual",
    position_index: PositionIndexOption = 0,
    csv: Annotated[Path | None, typer.Option(help="CSV to write (default: beside SOURCE).")] = None,
    picture: Annotated[Path | None, typer.Option(help="PNG to write (default: beside SOURCE).")] = None,
    diameter: Annotated[float, typer.Option(help="Neuron diameter, lateral (µm).")] = 3.0,
    axial_diameter: Annotated[float, typer.Option(help="Neuron extent along z (µm).")] = 4.0,
    search_range: Annotated[float, typer.Option(help="Largest move between time points (µm).")] = 3.0,
    memory: Annotated[int, typer.Option(help="Time points a neuron may be missed and keep its track.")] = 2,
    overwrite: Annotated[bool, typer.Option(help="Replace an existing CSV / PNG.")] = False,
    position: OldInt = None,
) -> None:
    """Find every neuron in 3D, follow it over time and read its activity (dF/F)."""
    position = renamed(position_index, position, "--position", "--position-index")
    from rich.console import Console
    from rich.progress import Progress
    from rich.table import Table

    from mm_deepz.errors import SettingsError
    from mm_deepz.io import is_container
    from mm_deepz.io.claim import ContainerLock
    from mm_deepz.io.validate import check_json_file
    from mm_deepz.neurons import DetectionConfig, LinkConfig
    from mm_deepz.neurons.analyse import analyse, save_pictures, write_tracks_to_container
    from mm_deepz.neurons.series import container_series, external_series

    if not source.exists():
        raise SettingsError(f"{source} does not exist.")
    if (source / "zarr.json").is_file():
        check_json_file(source / "zarr.json")  # a damaged one is named, not read as another tool's
    run = is_container(source)
    if run:  # refused before the analysis while a run still writes it (nothing is written then)
        ContainerLock(source).release()
    series = container_series(source, image, position) if run else external_series(source)
    stem = source.name.removesuffix(".ome.zarr").removesuffix(".ome.tif").removesuffix(".zarr")
    label = f"{image}_p{position}" if run and position else (image if run else "stacks")
    csv = csv or source.with_name(f"{stem}_{label}_tracks.csv")
    picture = picture or source.with_name(f"{stem}_{label}_tracks.png")
    for f in (csv, picture):
        if f.exists() and not overwrite:
            raise SettingsError(
                f"{f} already exists: pass --overwrite to replace it, or choose another name."
            )
    with Progress() as bar:
        task = bar.add_task(f"tracking neurons in {series.name}", total=len(series.time_points))
        tracks = analyse(
            series,
            DetectionConfig(diameter_um=diameter, axial_diameter_um=axial_diameter),
            LinkConfig(search_range_um=search_range, memory=memory),
            progress=lambda: bar.advance(task),
        )
    tracks.to_csv(csv, index=False)
    save_pictures(series, tracks, picture)
    where = write_tracks_to_container(source, label, tracks) if run else None
    n_t = len(series.time_points)
    per_t = tracks.groupby("t").size().reindex(series.time_points, fill_value=0) if len(tracks) else None
    long_tracks = int((tracks.groupby("track").size() >= 0.9 * n_t).sum()) if len(tracks) else 0
    table = Table(title=f"neurons in {series.name}", show_header=False)
    table.add_row("time points analysed", str(n_t))
    table.add_row(
        "neurons per time point",
        f"{per_t.mean():.1f} (min {per_t.min()}, max {per_t.max()})" if per_t is not None else "none found",
    )
    table.add_row(
        "tracks",
        f"{tracks['track'].nunique() if len(tracks) else 0} ({long_tracks} over ≥ 90 % of the time points)",
    )
    table.add_row("tracks table", f"{csv}" + (f"; in the container as {where}" if where else ""))
    table.add_row("picture", str(picture))
    Console().print(table)


@app.command("preview")
def preview_cmd(
    container: Annotated[Path, typer.Argument(help="A container written by `mm-deepz acquire`.")],
    output: Annotated[Path, output_option("PNG to write.")] = Path("deepz_preview.png"),
    time_index: TimeIndexOption = 0,
    position_index: PositionIndexOption = 0,
    out: OldPath = None,
    t: OldInt = None,
    p: OldInt = None,
) -> None:
    """Picture of measured vs virtual (and reference) data of one time point."""
    from mm_deepz.io.preview import preview_png

    out = renamed(output, out, "--out", "--output")
    t = renamed(time_index, t, "--t", "--time-index")
    p = renamed(position_index, p, "--p", "--position-index")
    typer.echo(f"wrote {preview_png(container, out, t, p)}")


def _register_commands() -> None:
    """The commands of the packages above the core (acquisition, panel) and of the simulator's plugin,
    from their entry points."""
    for ep in entry_points(group="mm_deepz.commands"):
        ep.load()(app)


_register_commands()
