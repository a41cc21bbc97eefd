"""The benchmark suite: ``python -m benchmarks [--quick] [--out DIR] [--section NAME ...]``.

Runs every section side by side in one process (so machine noise hits all alike), on the CPU
and, where one is present, on the GPU; writes ``benchmarks.json`` and the results section of
``benchmarks.md`` into DIR (default ``docs/``). ``--quick`` uses small sizes (CI smoke run).
``--section`` runs only the sections named and replaces them in DIR's ``benchmarks.json``, keeping
the others; the results say which sections were run again, and when.
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path

import torch
from rich.logging import RichHandler
from rich.progress import Progress

from . import acquisition, inference, light, neurons, scaling, simulator, training_step, writing
from .common import machine
from .report import write_markdown

logger = logging.getLogger("benchmarks")

#: the suite's sections, in the order they run
SECTIONS = (
    "simulator",
    "inference",
    "acquisition",
    "writing",
    "light",
    "scaling",
    "neurons",
    "training_step",
)


def main(argv: list[str] | None = None) -> dict:
    """Run the suite; returns the results written to ``benchmarks.json``."""
    ap = argparse.ArgumentParser(
        prog="python -m benchmarks", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--quick", action="store_true", help="small sizes (CI smoke run, figures not meaningful)")
    ap.add_argument(
        "--out", type=Path, default=Path("docs"), help="folder for benchmarks.json / benchmarks.md"
    )
    ap.add_argument(
        "--section",
        action="append",
        choices=SECTIONS,
        help="run only this section (repeatable) and replace it in DIR's benchmarks.json",
    )
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(message)s", handlers=[RichHandler(show_path=False)])
    # a CPU model drops virtual stacks when frames come faster than it: counted in the tables, not logged
    logging.getLogger("acquisition_hooks").setLevel(logging.ERROR)
    devices = (["cuda"] if torch.cuda.is_available() else []) + ["cpu"]
    gpu = devices[0]
    sections = [
        ("simulator", lambda: simulator.run(args.quick)),
        ("inference", lambda: inference.run(args.quick, devices)),
        ("acquisition", lambda: acquisition.run(args.quick, gpu)),
        ("writing", lambda: writing.run(args.quick)),
        ("light", lambda: light.run(args.quick, gpu)),
        ("scaling", lambda: scaling.run(args.quick, gpu)),
        ("neurons", lambda: neurons.run(args.quick)),
        ("training_step", lambda: training_step.run(args.quick)),
    ]
    if args.section:
        previous = args.out / "benchmarks.json"
        if not previous.is_file():
            ap.error(
                f"--section replaces sections of {previous}, which is not there: run the whole suite first"
            )
        results: dict = json.loads(previous.read_text())
        sections = [(name, fn) for name, fn in sections if name in args.section]
        when = time.strftime("%Y-%m-%d %H:%M")
        results.setdefault("rerun", {}).update({name: when for name in args.section})
    else:
        results = {"machine": machine(), "quick": args.quick, "seconds": {}}
    with Progress() as bar:
        task = bar.add_task("benchmarks", total=len(sections))
        for name, fn in sections:
            bar.update(task, description=f"benchmark: {name}")
            t0 = time.perf_counter()
            results[name] = fn()
            results["seconds"][name] = round(time.perf_counter() - t0, 1)
            bar.advance(task)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "benchmarks.json").write_text(json.dumps(results, indent=2))
    write_markdown(results, args.out / "benchmarks.md")
    logger.warning("wrote %s and %s", args.out / "benchmarks.json", args.out / "benchmarks.md")
    return results


if __name__ == "__main__":
    main()
