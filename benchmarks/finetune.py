"""Fine-tuning the shipped model to a changed microscope against training from scratch, at equal compute.

``python -m benchmarks.finetune --out runs/finetune --steps 3000`` (docs/your_microscope.md, step 4):

1. simulates stack pairs on a microscope the shipped models never saw (:data:`CHANGED_OPTICS`: a
   20x/0.5 air objective, with the stronger spherical aberration of imaging deeper into water),
   training, validation and blind specimens apart (blind: other worms and bead slides);
2. trains two models with the same architecture, batch, patch and number of steps, so the same
   arithmetic: ``finetune`` starts from the shipped 2-plane model (``train --init``, a lower peak
   rate), ``scratch`` from random weights (the shipped recipe's peak rate);
3. scores the parent (the shipped model as it is), both models and the scanned baselines on the blind
   specimens with ``mm-deepz evaluate`` and writes ``finetune.json`` and ``finetune.md`` (the table of
   docs/your_microscope.md).

Each run resumes from its checkpoint when run again (``--steps`` larger continues both; a finished run
is kept); ``--jobs 2`` trains both side by side. Run it beside other work with ``OMP_NUM_THREADS=1
nice``. ``--scale toy`` is the same at a size CI affords.
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from benchmarks.gpu_train import FINE_TUNE_LR, TWO_PLANES, _mz, pair_specs, train_command
from mm_deepz.modelfile import load_model
from mm_deepz.shipped import shipped_model_path
from simulators.optics import Optics
from simulators.training_data import PairSpec, make_stack_pair, write_stack_pair

logger = logging.getLogger("benchmarks.finetune")

#: the changed microscope: a 20x/0.5 air objective (the shipped models know 20x/0.75), with 0.2 waves rms
#: of spherical aberration (they know 0.08); same camera, so the same pixel size in the sample
CHANGED_OPTICS = Optics(na=0.5, spherical_aberration_waves=0.2)
#: the two runs: name -> (the model it starts from, None: random weights; its peak learning rate)
RUNS: dict[str, tuple[Path | None, str]] = {
    "finetune": (shipped_model_path(2), FINE_TUNE_LR),
    "scratch": (None, "2e-3"),
}


def _specs(scale: str) -> list[tuple[str, PairSpec]]:
    """(folder, spec) of every stack pair: seeds never used by the shipped models' data."""
    size = 64 if scale == "toy" else 256
    specs: list[tuple[str, PairSpec]] = []

    def add(folder: str, phantom: str, seeds: range | tuple[int, ...]) -> None:
        # toy: the field on the worm's centre (a randomized 64-px field may hold only its haze)
        specs.extend(pair_specs(folder, phantom, seeds, size, randomize=scale != "toy"))

    if scale == "toy":
        add("train", "worm", (500, 501))
        add("val", "worm", (512,))
        add("blind", "worm", (560,))
        return specs
    add("train", "worm", range(500, 512))
    add("train", "beads", range(520, 524))
    add("train", "sheet", range(540, 542))
    add("val", "worm", (512, 513))
    add("val", "beads", (524,))
    add("blind", "worm", range(560, 564))
    add("blind", "beads", (570, 571))
    return specs


def simulate(data: Path, scale: str) -> None:
    """The stack pairs on the changed microscope (skipped when already there)."""
    from rich.progress import track

    done = data / ".complete"
    if done.exists():
        return
    specs = _specs(scale)
    t0 = time.perf_counter()
    for folder, spec in track(specs, description="simulating the changed microscope"):
        pair = make_stack_pair(spec, optics=CHANGED_OPTICS)
        write_stack_pair(pair, data / folder, f"{spec.phantom}_{spec.seed:04d}")
    done.write_text(json.dumps({"pairs": len(specs), "seconds": round(time.perf_counter() - t0, 1)}))


def train(name: str, data: Path, out: Path, steps: int, scale: str) -> dict[str, Any]:
    """Train (or continue) one run to ``steps`` steps; its model file and training seconds (the card's)."""
    model = out / f"{name}.pt"
    if not _done(model, steps):
        _train(name, data, model, steps, scale)
    provenance = load_model(model).card.provenance
    return {"model": str(model), "seconds": provenance["train_seconds"], "legs": len(provenance["legs"])}


def _done(model: Path, steps: int) -> bool:
    return model.exists() and load_model(model).card.provenance.get("steps_done", 0) >= steps


def _train(name: str, data: Path, model: Path, steps: int, scale: str) -> None:
    toy = scale == "toy"
    # --precision auto: float32 on the CPU (bfloat16 only where the CPU has it: train warns otherwise)
    options = [*TWO_PLANES, "--batch-size", "6", "--precision", "auto"]
    parent, lr = RUNS[name]
    options += ["--lr", lr]  # on every leg: a resumed leg rebuilds its schedule for the rate it is given
    if model.with_suffix(".ckpt").exists():
        options.append("--resume")
    elif parent is not None:
        options += ["--init", str(parent)]
    args = train_command(data, model, steps, 64 if toy else 128, 50 if toy else 250, "cpu", options)
    _mz(args, model.with_suffix(".log"))


def evaluate(name: str, model: Path, data: Path, out: Path) -> dict[str, Any]:
    """``mm-deepz evaluate`` on the blind specimens; its summary."""
    report = out / "eval" / name
    _mz(
        ["evaluate", str(model), str(data / "blind"), "--output", str(report), "--device", "cpu"],
        out / "evaluate.log",
    )
    summary: dict[str, Any] = json.loads((report / "metrics.json").read_text())["summary"]
    return summary


def table(results: dict[str, dict[str, Any]]) -> str:
    """The markdown table: SSIM, PCC, PSNR, neuron F1 by band and bead FWHM ratios per model."""
    bands = ("f1 all", "f1 0-3 um", "f1 3-6 um", "f1 6-10 um")
    head = (
        "| model | steps | SSIM | PCC | PSNR dB | neuron F1 all (0-3 / 3-6 / 6-10 µm) "
        "| bead FWHM ratio lat. / ax. |"
    )
    rows = [head, "| " + " | ".join(["---"] * 7) + " |"]
    for name, r in results.items():
        s = r["summary"]
        n = s.get("neurons", {})
        f1 = [n.get(b, float("nan")) for b in bands]
        beads = s.get("beads", {})
        lateral, axial = (beads.get(k, float("nan")) for k in ("lateral_ratio", "axial_ratio"))
        ssim, pcc, psnr = (s[k]["virtual"] for k in ("mean_ssim", "mean_pcc", "mean_psnr"))
        rows.append(
            f"| {name} | {r.get('steps', 0)} | {ssim:.3f} | {pcc:.3f} | {psnr:.1f} "
            f"| {f1[0]:.2f} ({f1[1]:.2f} / {f1[2]:.2f} / {f1[3]:.2f}) | {lateral:.2f} / {axial:.2f} |"
        )
    first = next(iter(results.values()))["summary"]
    rows.append(
        f"| scanned widefield (baseline) | - | {first['mean_ssim']['widefield']:.3f} "
        f"| {first['mean_pcc']['widefield']:.3f} | {first['mean_psnr']['widefield']:.1f} | | |"
    )
    return "\n".join(rows) + "\n"


def main(argv: list[str] | None = None) -> None:
    """Simulate, train both runs, score them blind, write the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("runs/finetune"))
    parser.add_argument("--steps", type=int, default=3000, help="Steps of each run (equal compute).")
    parser.add_argument("--scale", choices=("full", "toy"), default="full")
    parser.add_argument("--jobs", type=int, default=1, help="Runs trained side by side (one thread each).")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    data = args.out / "data"
    simulate(data, args.scale)
    results: dict[str, dict[str, Any]] = {
        "parent (shipped 2-plane, not trained here)": {
            "steps": 0,
            "summary": evaluate("parent", shipped_model_path(2), data, args.out),
        }
    }
    with ThreadPoolExecutor(max(1, args.jobs)) as pool:
        trained = pool.map(lambda n: train(n, data, args.out, args.steps, args.scale), RUNS)
        runs = dict(zip(RUNS, trained, strict=True))
    for name, run in runs.items():
        logger.info("%s: %d steps, %.0f s of training", name, args.steps, run["seconds"])
        run |= {"steps": args.steps, "summary": evaluate(name, Path(run["model"]), data, args.out)}
        results[name] = run
    (args.out / "finetune.json").write_text(json.dumps(results, indent=2))
    (args.out / "finetune.md").write_text(table(results))
    logger.info("wrote %s\n%s", args.out / "finetune.md", table(results))


if __name__ == "__main__":
    main()
