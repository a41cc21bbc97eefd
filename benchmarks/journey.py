"""The commands of docs/your_microscope.md at full size on the simulator, each timed.

``python -m benchmarks.journey --out runs/journey`` runs the documented sequence as a user types it:
pairs acquire (seven 256-px fields: five on the worm, one beside it, one far from it; 25 planes,
interleaved) -> pairs check -> pairs split -> train --init the shipped 2-plane model -> evaluate
--blind against the scanned confocal stack's neurons, beside the parent -> export --bmz -> a live
acquire with the package. It writes ``journey.json`` (each command, its exit code and seconds) and
copies the blind verdict's picture to ``--img``. ``--steps`` sets the fine-tuning's length.
"""

from __future__ import annotations

import argparse
import json
import logging
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

logger = logging.getLogger("benchmarks.journey")

#: the fields (stage µm): five on the simulated worm (seed 100; 83-µm fields that do not overlap, so each
#: is its own specimen), one beside it, one far from it
FIELDS = ((-40, 0), (43, 0), (-40, 84), (-40, 168), (-40, 252), (120, 84), (3000, 3000))


def commands(out: Path, steps: int) -> list[list[str]]:
    """The documented sequence, with its files under ``out``."""
    data, model, package = out / "my_pairs.ome.zarr", out / "my_model.pt", out / "my_model.zip"
    parent = "mm_deepz/models/deepz_2plane.pt"
    positions = [a for x, y in FIELDS for a in ("--position", f"{x},{y}")]
    two = ["--planes", "2", "--separation", "4", "--z-range", "12"]
    return [
        [
            "pairs",
            "acquire",
            "--output",
            str(data),
            *positions,
            "--config",
            "mmdemo",
            "--z-start",
            "-12",
            "--z-end",
            "12",
            "--z-step",
            "1",
        ],
        ["pairs", "check", str(data), "--output", str(out / "check")],
        ["pairs", "split", str(data), "--blind-fraction", "0.4", "--output", str(out / "blind.json")],
        [
            "train",
            str(data),
            "--init",
            parent,
            *two,
            "--blind",
            str(out / "blind.json"),
            "--lr",
            "5e-4",
            "--steps",
            str(steps),
            "--val-every",
            "50",
            "--output",
            str(model),
        ],
        [
            "evaluate",
            str(model),
            str(data),
            "--blind",
            str(out / "blind.json"),
            "--specimen",
            "neurons",
            "--parent",
            parent,
            "--output",
            str(out / "eval"),
        ],
        ["export", str(model), "--output", str(package), "--author", "A. Microscopist"],
        [
            "acquire",
            "-o",
            str(out / "live.ome.zarr"),
            "--config",
            "mmdemo",
            "--model",
            str(package),
            "--planes",
            "2",
            "-t",
            "3",
        ],
    ]


def main(argv: list[str] | None = None) -> None:
    """Run the sequence, time each command, keep the pictures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("runs/journey"))
    parser.add_argument("--steps", type=int, default=500, help="Fine-tuning steps.")
    parser.add_argument("--img", type=Path, default=None, help="Folder for the pictures (docs/img).")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    if args.out.exists():
        parser.error(f"{args.out} exists: the sequence starts from nothing (remove it or give another --out)")
    args.out.mkdir(parents=True)
    record = []
    for cmd in commands(args.out, args.steps):
        t0 = time.perf_counter()
        with open(args.out / "journey.log", "a") as log:
            log.write(f"$ mm-deepz {shlex.join(cmd)}\n")
            log.flush()
            rc = subprocess.run(
                [sys.executable, "-c", "from mm_deepz.cli import main; main()", *cmd],
                stdout=log,
                stderr=subprocess.STDOUT,
                check=False,
                env={"COLUMNS": "200", **__import__("os").environ},
            ).returncode
        seconds = round(time.perf_counter() - t0, 1)
        record.append({"command": "mm-deepz " + shlex.join(cmd), "exit": rc, "seconds": seconds})
        logger.info("%s: exit %d, %.0f s", cmd[0] + (" " + cmd[1] if cmd[0] == "pairs" else ""), rc, seconds)
        if rc not in (0, 1):  # pairs check exits 1 when it quarantines a pair
            break
    (args.out / "journey.json").write_text(json.dumps(record, indent=2))
    if args.img is not None:
        # the check's picture is the one of docs/img/pairs_check.png (and half a megabyte): not copied
        src = args.out / "eval" / "neurons_f1.png"
        if src.exists():
            shutil.copyfile(src, args.img / "journey_neurons_f1.png")


if __name__ == "__main__":
    main()
