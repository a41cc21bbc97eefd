"""A GPU training leg in one command, for a session that is lent a GPU machine for minutes.

``python -m benchmarks.gpu_train --budget 420 --out DIR`` on the GPU machine:

1. simulates the training set on all CPU cores (the shipped recipe's stacks of
   docs/models.md, plus more varied worms, bead slides and sheets; the shipped models'
   four validation stacks kept apart as a fixed validation set),
2. probes every configuration of :data:`RUNS` side by side for a few steps to measure its
   seconds per step while they share the GPU,
3. trains them all side by side with as many steps as the budget allows (each a full
   one-cycle schedule that anneals; ``--resume NAME=CKPT`` continues a run trained elsewhere,
   re-entering its schedule as ``mm-deepz train --resume`` does), and
4. writes each model file and ``gpu_train.json`` (steps, seconds, validation history) to DIR,
   with the checkpoints of ``--keep-checkpoints`` runs, so that the CPU can continue them.

The same command runs on the CPU at toy scale (``--device cpu --budget 20 --scale toy``),
which is how it is tested before a GPU is at hand. Only the Python physics and training
code are needed there: no Micro-Manager core, zarr or pycromanager.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shlex
import shutil
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from mm_deepz.shipped import shipped_model_path
from simulators.training_data import PairSpec, make_stack_pair, write_stack_pair

logger = logging.getLogger("benchmarks.gpu_train")

TWO_PLANES = ["--planes", "2", "--separation", "4", "--z-range", "12"]
#: the 2-plane recipe at batch 32 with a lower peak (2e-3 in bfloat16 diverged at batch 32 on the H100,
#: validation loss 7-25, when the loss still ran under autocast; float32 at 1e-3 was stable on the H200)
BIG_BATCH = [*TWO_PLANES, "--lr", "1e-3"]
#: the CPU recipe of the shipped 2-plane model and of the data-lever run (docs/models.md): batch 6, peak
#: 2e-3, float32. At batch 6 a step is bound by kernel launches on a GPU, not by arithmetic, so the GPU
#: runs this recipe unchanged, many times faster than one CPU thread: the same curve, further.
CPU_RECIPE = [*TWO_PLANES, "--lr", "2e-3", "--batch-size", "6", "--precision", "fp32"]
#: the encode-once generator of the learning runs (benchmarks.learning's arms): depth 4, at most 64 channels
ENCODE_ONCE = ("--architecture", "encode-once", "--depth", "4", "--max-channels", "64")
#: its leading options: decoder 16 channels wide, 4 targets per crop, bfloat16
D16_K4_BF16 = (*ENCODE_ONCE, "--decoder-channels", "16", "--targets-per-sample", "4", "--precision", "bf16")
#: the encode-once arm's recipe on the CPU (benchmarks.learning's encode-once-d16-k4-bf16)
EO_BF16 = [*CPU_RECIPE, *D16_K4_BF16]
#: the peak learning rate of a fine-tune (benchmarks.finetune's, benchmarks.learning's grown arms)
FINE_TUNE_LR = "5e-4"
#: the peak learning rate at which the shipped U-Net's weights are trained on: where its last leg
#: re-entered its schedule (a converged model lost ground at 1e-3, docs/models.md "Status")
SHIPPED_FT_LR = "2.3e-4"
#: the configurations trained side by side: name -> extra ``mm-deepz train`` options (a run's own
#: ``--batch-size`` replaces the command's)
RUNS: dict[str, list[str]] = {
    "2plane_d3": [*BIG_BATCH, "--precision", "fp32", "--depth", "3"],
    # bfloat16 again since the loss is computed in float32 (its NaN was SSIM under autocast): does it
    # train as float32 does, at its speed?
    "2plane_d3_bf16": [*BIG_BATCH, "--precision", "bf16", "--depth", "3"],
    "2plane_d4": [*BIG_BATCH, "--precision", "fp32", "--depth", "4"],
    "2plane_d5c64": [*BIG_BATCH, "--precision", "fp32", "--depth", "5", "--max-channels", "64"],
    "1plane_d5c64": ["--planes", "1", "--z-range", "10", "--depth", "5", "--max-channels", "64"],
    # the receptive-field lever at the CPU recipe's batch and rate, so that each learning curve compares
    # step for step with the depth-3 data-lever run's (whose checkpoint ``2plane_d3_b6`` can resume)
    "2plane_d3_b6": [*CPU_RECIPE, "--depth", "3"],
    "2plane_d4_b6": [*CPU_RECIPE, "--depth", "4"],
    "2plane_d5c64_b6": [*CPU_RECIPE, "--depth", "5", "--max-channels", "64"],
    # the encode-once generator (#32) at the CPU recipe, beside the U-Net's: one encoding per crop
    # supervises 4 target planes (benchmarks.learning's CPU arms, further)
    "2plane_eo_b6": [
        *CPU_RECIPE,
        *("--architecture", "encode-once", "--depth", "4", "--max-channels", "64"),
        *("--decoder-channels", "16", "--targets-per-sample", "4"),
    ],
    # the arm carried on in legs on the CPU until step 32000 (benchmarks.learning's encode-once-d16-k4-bf16;
    # its checkpoint there is in git's history at b8517cd: ``--resume 2plane_eo_b6_bf16=CKPT``)
    "2plane_eo_b6_bf16": EO_BF16,
    # its successor, with the target distances balanced (encode-once-d16-k4-bf16-balanced)
    "2plane_eo_b6_bf16_balanced": [*EO_BF16, "--balance-defocus"],
    # the wider decoder that follows it (encode-once-d16m64-k4-bf16-balanced, session 28)
    "2plane_eo_b6_d16m64_bf16_balanced": [*EO_BF16, "--decoder-max", "64", "--balance-defocus"],
    # the balanced arm's last weights fine-tuned at a fine-tune's rate (benchmarks.learning's
    # encode-once-d16-k4-bf16-balanced-ft, session 29: the best blind PCC of the encode-once arms), resumed
    # from its checkpoint
    "2plane_eo_b6_bf16_balanced_ft": [*EO_BF16, "--balance-defocus", "--lr", FINE_TUNE_LR],
    # the shipped U-Net's weights trained on at the rate its last leg re-entered at (#32: its curve still
    # rises where the encode-once generator's has flattened; docs/models.md, "Where each generator is
    # heading"); a later lease resumes its checkpoint (``--resume 2plane_d3_b6_shipped_ft=CKPT``)
    "2plane_d3_b6_shipped_ft": [*CPU_RECIPE, "--init", str(shipped_model_path(2)), "--lr", SHIPPED_FT_LR],
    # the bottleneck's context mechanism chosen by measurement: that recipe from scratch with each
    **{
        f"eo_context_{c}": [*EO_BF16, "--balance-defocus", "--context", c]
        for c in ("dilated", "attention", "none")
    },
}
#: seconds a main phase spends outside its steps (loading the stacks, CUDA set-up, the last saves), kept
#: free under ``--total``
START_AND_SAVE_S = 45
#: the shipped models' validation stacks (their cards' ``validation_pairs``)
VALIDATION = {"worm": (2, 4), "beads": (22, 23)}


def pair_specs(
    folder: str,
    phantom: str,
    seeds: range | tuple[int, ...],
    size: int,
    exposure_ms: float = 10.0,
    randomize: bool = True,
) -> list[tuple[str, PairSpec]]:
    """(folder, spec) of the stack pairs of ``seeds``: ``size``-px frames, ±14 µm stacks."""
    return [
        (
            folder,
            PairSpec(
                phantom=phantom,
                seed=s,
                shape=(size, size),
                z_half_range_um=14.0,
                randomize=randomize,
                widefield_exposure_ms=exposure_ms,
            ),
        )
        for s in seeds
    ]


def _specs(scale: str) -> list[tuple[str, PairSpec]]:
    """(folder, spec) of every stack pair."""
    size = 96 if scale == "toy" else 256  # toy: room for an 80-px patch (depth 4 with dilated context)
    specs: list[tuple[str, PairSpec]] = []

    def add(folder: str, phantom: str, seeds: range | tuple[int, ...], exposure_ms: float = 10.0) -> None:
        specs.extend(pair_specs(folder, phantom, seeds, size, exposure_ms))

    if scale == "toy":
        add("train", "worm", (0, 1))
        add("train", "beads", (20,))
        add("val", "worm", (2,))
        return specs
    # the shipped recipe (docs/models.md), its validation stacks apart
    add("train", "worm", tuple(s for s in range(10) if s not in VALIDATION["worm"]))
    add("train", "beads", tuple(s for s in range(20, 24) if s not in VALIDATION["beads"]))
    add("train", "sheet", range(40, 44))
    add("val", "worm", VALIDATION["worm"])
    add("val", "beads", VALIDATION["beads"])
    # more varied: dimmer and brighter exposures, more bead slides and sheets (seeds never used elsewhere)
    add("train", "worm", range(200, 220))
    add("train", "worm", range(220, 230), exposure_ms=3.0)
    add("train", "worm", range(230, 240), exposure_ms=5.0)
    add("train", "worm", range(240, 245), exposure_ms=20.0)
    add("train", "beads", range(280, 292))
    add("train", "sheet", range(300, 308))
    return specs


def _mz(args: list[str], log: Path | None = None, threads: int | None = None) -> None:
    """Run ``mm-deepz ARGS`` with this Python (the package need not be installed).

    ``threads``: torch's CPU threads for it, unless the environment sets them (runs side by side
    must not each take every core for their patch sampling).
    """
    cmd = [sys.executable, "-c", "from mm_deepz.cli import main; main()", *args]
    # this checkout first, then what the environment adds (wheels carried to a bare machine)
    path = [str(Path(__file__).resolve().parents[1]), *filter(None, [os.environ.get("PYTHONPATH")])]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(path)}
    if threads and "OMP_NUM_THREADS" not in os.environ:
        env["OMP_NUM_THREADS"] = str(threads)
    with open(log or os.devnull, "a") as out:
        out.write("$ mm-deepz " + shlex.join(args) + "\n")
        out.flush()
        subprocess.run(cmd, check=True, stdout=out, stderr=subprocess.STDOUT, env=env)


def simulate(data: Path, scale: str) -> None:
    """The training and validation stacks (skipped when already there).

    One pair at a time in this process: the renderer's FFTs already use every core, and
    parallel processes would oversubscribe them (16 processes on 16 cores took 285 s for
    83 pairs on the H100 machine).
    """
    from rich.progress import track

    done = data / ".complete"
    if done.exists():
        logger.info("training data already in %s", data)
        return
    specs = _specs(scale)
    t0 = time.perf_counter()
    for folder, spec in track(specs, description="simulating stack pairs"):
        write_stack_pair(make_stack_pair(spec), data / folder, f"{spec.phantom}_{spec.seed:04d}")
    done.write_text(json.dumps({"pairs": len(specs), "seconds": round(time.perf_counter() - t0, 1)}))
    logger.info("simulated %d stack pairs in %.0f s", len(specs), time.perf_counter() - t0)


def train_command(
    data: Path, model: Path, steps: int, patch: int, val_every: int, device: str, options: list[str]
) -> list[str]:
    """``mm-deepz train`` on ``data``/train with ``data``/val as validation, no early stopping."""
    return [
        "train",
        str(data / "train"),
        "--val",
        str(data / "val"),
        *options,
        "--steps",
        str(steps),
        "--patch",
        str(patch),
        "--patience",
        "0",
        "--val-every",
        str(val_every),
        "--device",
        device,
        "--output",
        str(model),
    ]


def _train_args(
    name: str,
    data: Path,
    out: Path,
    steps: int,
    device: str,
    batch: int,
    patch: int,
    val_every: int,
    resume: bool = False,
) -> list[str]:
    options = [
        *([] if "--batch-size" in RUNS[name] else ["--batch-size", str(batch)]),  # a run's own batch wins
        *RUNS[name],
        "--resume" if resume else "--overwrite",
    ]
    return train_command(data, out / f"{name}.pt", steps, patch, val_every, device, options)


def checkpoint_step(ckpt: Path) -> int:
    """The step a training checkpoint stands at."""
    import torch

    return int(torch.load(ckpt, map_location="cpu", weights_only=True)["step"])


def _train_all(
    names: list[str],
    data: Path,
    out: Path,
    steps: dict[str, int],
    device: str,
    batch: int,
    patch: int,
    log: Path,
    val_every: int = 250,
    resume: frozenset[str] = frozenset(),
) -> dict[str, list[dict]]:
    """Train ``names`` side by side (those in ``resume`` from their checkpoint in ``out``); each run's
    validation history (step, seconds, losses)."""
    import torch

    out.mkdir(parents=True, exist_ok=True)
    threads = max(1, (os.cpu_count() or 1) // len(names))
    with ThreadPoolExecutor(len(names)) as pool:
        list(
            pool.map(
                lambda n: _mz(
                    _train_args(n, data, out, steps[n], device, batch, patch, val_every, n in resume),
                    log.with_name(f"{log.stem}_{n}.log"),
                    threads,
                ),
                names,
            )
        )
    return {n: torch.load(out / f"{n}.ckpt", map_location="cpu", weights_only=True)["history"] for n in names}


def seconds_per_step(history: list[dict]) -> float:
    """Training seconds per step between the first and the last validation: the start (CUDA set-up,
    cuDNN's algorithm search) comes before the first and is left out (counted, it made the last
    lease's 40-step probe 2.6x slower per step than the run it sized)."""
    first, last = history[0], history[-1]
    return (last["seconds"] - first["seconds"]) / (last["step"] - first["step"])


def main(argv: list[str] | None = None) -> int:
    """The command line (see the module docstring)."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, required=True, help="where the model files and gpu_train.json go")
    ap.add_argument("--budget", type=float, default=420, help="seconds of training (main phase)")
    ap.add_argument(
        "--total",
        type=float,
        default=None,
        help="seconds the whole command may take: the main phase is cut to fit (data and probes come first)",
    )
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--data", type=Path, default=Path("runs/data/gpu"))
    ap.add_argument("--work", type=Path, default=Path("runs/gpu"))
    ap.add_argument("--scale", choices=("full", "toy"), default="full")
    ap.add_argument("--runs", default=",".join(RUNS), help="comma-separated names of RUNS")
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--patch", type=int, default=128)
    ap.add_argument("--probe-steps", type=int, default=60)
    ap.add_argument(
        "--resume",
        action="append",
        default=[],
        metavar="NAME=CKPT",
        help="run NAME continues the training checkpoint CKPT (the budget's steps after its own)",
    )
    ap.add_argument(
        "--keep-checkpoints",
        default="",
        metavar="NAMES",
        help="comma-separated runs whose checkpoints come back with the model files (to resume elsewhere)",
    )
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    names = args.runs.split(",")
    unknown = set(names) - set(RUNS)
    if unknown:
        ap.error(f"unknown runs {sorted(unknown)}; known: {', '.join(RUNS)}")
    if any("=" not in item for item in args.resume):
        ap.error("--resume takes NAME=CKPT, e.g. --resume 2plane_d3_b6=runs/models/2plane_d3_fp32.ckpt")
    resumed = dict(item.split("=", 1) for item in args.resume)
    if set(resumed) - set(names):
        ap.error(f"--resume names runs that are not in --runs: {sorted(set(resumed) - set(names))}")
    missing = [c for c in resumed.values() if not Path(c).is_file()]
    if missing:
        ap.error(f"no checkpoint at {', '.join(missing)} (carry it to the machine)")
    keep = set(filter(None, args.keep_checkpoints.split(",")))
    t_start = time.perf_counter()
    simulate(args.data, args.scale)
    args.work.mkdir(parents=True, exist_ok=True)
    log = args.work / "train.log"
    probe = _train_all(
        names,
        args.data,
        args.work / "probe",
        dict.fromkeys(names, args.probe_steps),
        args.device,
        args.batch_size,
        args.patch,
        log,
        val_every=max(1, args.probe_steps // 3),
    )
    per_step = {n: seconds_per_step(h) for n, h in probe.items()}
    args.out.mkdir(parents=True, exist_ok=True)
    start = {}
    for n, ckpt in resumed.items():  # a copy: the carried checkpoint stays as it came
        shutil.copy2(ckpt, args.out / f"{n}.ckpt")
        start[n] = checkpoint_step(args.out / f"{n}.ckpt")
    budget = args.budget
    if args.total is not None:  # what is left, less the runs' start and their saving at the end
        budget = min(budget, args.total - (time.perf_counter() - t_start) - START_AND_SAVE_S)
        logger.info("%.0f s of the total left for training", budget)
    steps = {n: start.get(n, 0) + max(250, int(budget / per_step[n] / 1.1) // 250 * 250) for n in names}
    logger.info(
        "probe: seconds per step %s -> steps %s", {n: round(v, 4) for n, v in per_step.items()}, steps
    )
    histories = _train_all(
        names,
        args.data,
        args.out,
        steps,
        args.device,
        args.batch_size,
        args.patch,
        log,
        resume=frozenset(resumed),
    )
    from mm_deepz.modelfile import load_model

    summary = {
        "device": args.device,
        "budget_s": round(budget, 1),
        "batch_size": args.batch_size,
        "patch": args.patch,
        "probe_seconds_per_step": per_step,
        "runs": {},
    }
    for n in names:
        card = load_model(args.out / f"{n}.pt").card
        summary["runs"][n] = {
            "options": RUNS[n],
            "start_step": start.get(n, 0),
            "steps": steps[n],
            "train_seconds": card.provenance["train_seconds"],
            "hardware": card.provenance["hardware"],
            "best_validation_loss": card.metrics["validation_loss"],
            "history": histories[n],
        }
    summary["total_seconds"] = round(time.perf_counter() - t_start, 1)
    (args.out / "gpu_train.json").write_text(json.dumps(summary, indent=2))
    # checkpoints stay on the machine unless kept (the files that come back are few and capped in size):
    # the model files carry the weights
    for n in names:
        if n not in keep:
            (args.out / f"{n}.ckpt").replace(args.work / f"{n}.ckpt")
        (args.out / f"{n}.dataset.json").replace(args.work / f"{n}.dataset.json")
    with open(args.out / "train_logs.txt", "w") as logs:
        logs.writelines(
            f"=== {part.name}\n{part.read_text()}" for part in sorted(args.work.glob("train_*.log"))
        )
    logger.info(
        "done in %.0f s: %s", summary["total_seconds"], ", ".join(f"{n} {steps[n]} steps" for n in names)
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
