"""Does each virtual plane show its own depth? The apparent depth of a model's virtual planes (#32).

``python -m benchmarks.depth_probe --model mm_deepz/models/deepz_2plane.pt --model
runs/le/encode_once_d16_k4.pt [--specimens runs/le/blind] [--out docs/depth_probe.json]
[--png docs/img/depth_probe.png]``

On each blind worm (simulated, never trained on: ``benchmarks.learning``'s) a model's planes are taken
around the stack centre as ``mm-deepz evaluate`` takes them, and a virtual plane is made at every depth
of the scanned confocal stack within the model's range. Each virtual plane is compared (Pearson) with
every confocal plane: its *apparent depth* is the depth of the confocal plane it matches best. A
network that places light in depth has the apparent depth of the requested one; one that only sharpens
the nearest measured plane shows a staircase, every depth looking like one of the measured planes, as
the nearest measured plane repeated at every depth does (the reference row, with the first model's
planes). Reported by distance from the stack centre, as ``mm-deepz evaluate`` reports it for one model
(the neuron experiment's bands, ``[lo, hi)``): the median error
of the apparent depth and the share of virtual planes within one z step of their depth; the picture is
each model's mean PCC between requested and confocal depths.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import Any

import numpy as np

from mm_deepz.engine import Predictor
from mm_deepz.evaluation.evaluate import anchor_planes, depth_placement, repeated_planes
from mm_deepz.metrics import plane_correlations
from mm_deepz.modelfile import DeepZModel, load_model
from mm_deepz.neurons import BANDS, band_name
from mm_deepz.training.stacks import PairedStack, load_pair

from .common import machine

logger = logging.getLogger(__name__)

#: the reference row: the nearest measured plane repeated at every depth (depth-blind by construction)
REPEATED = "nearest measured plane, repeated"


def probe_pair(pair: PairedStack, model: DeepZModel, predictor: Predictor | None) -> dict[str, Any]:
    """One worm: requested depths (from the stack centre, µm), the PCC of each virtual plane with every
    confocal plane, and the confocal depths. ``predictor`` None: the nearest of ``model``'s measured
    planes repeated at each depth."""
    z = pair.z_um
    idx, c, targets = anchor_planes(pair, model)
    planes = pair.inputs.data[idx]
    if predictor is None:
        virtual = repeated_planes(planes, z[idx], z[targets])
    else:
        plane_z = tuple(float(v) for v in z[idx])
        virtual = predictor.predict_stack(planes, plane_z, z[targets], out_dtype=np.float32).data
    return {
        "requested_um": (z[targets] - z[c]).tolist(),
        "confocal_um": (z - z[c]).tolist(),
        "pcc": plane_correlations(virtual, pair.target.data),
    }


def summarize(pairs: list[dict[str, Any]], step_um: float) -> dict[str, Any]:
    """Bands of apparent-depth error over worms (:func:`~mm_deepz.evaluation.evaluate.depth_placement`),
    and the mean PCC matrix on the shared grid."""
    apparent = [np.asarray(p["confocal_um"])[np.argmax(p["pcc"], axis=1)] for p in pairs]
    bands = depth_placement(
        np.concatenate([p["requested_um"] for p in pairs]), np.concatenate(apparent), step_um
    )
    requested = np.round(np.asarray(pairs[0]["requested_um"]), 3)
    confocal = np.round(np.asarray(pairs[0]["confocal_um"]), 3)
    same_grid = all(
        np.allclose(p["requested_um"], requested, atol=1e-3)
        and np.allclose(p["confocal_um"], confocal, atol=1e-3)
        for p in pairs
    )
    matrix = np.mean([p["pcc"] for p in pairs], axis=0) if same_grid else pairs[0]["pcc"]
    return {
        "bands": bands,
        "requested_um": requested.tolist(),
        "confocal_um": confocal.tolist(),
        "mean_pcc": np.round(matrix, 4).tolist(),
    }


def probe(models: list[Path], specimens: Path, device: str = "cpu") -> dict[str, dict[str, Any]]:
    """Every model (and the depth-blind reference) on every blind worm in ``specimens``."""
    worms = sorted(specimens.glob("worm_*_widefield.ome.tif"))
    if not worms:
        raise FileNotFoundError(f"no blind worms (worm_*_widefield.ome.tif) in {specimens}")
    pairs = [
        load_pair(
            w.name.removesuffix("_widefield.ome.tif"), w, w.with_name(w.name.replace("widefield", "confocal"))
        )
        for w in worms
    ]
    step = float(pairs[0].inputs.z_step_um)
    loaded = {str(path): load_model(path) for path in models}
    results: dict[str, dict[str, Any]] = {}
    for name, model in [(REPEATED, next(iter(loaded.values()))), *loaded.items()]:
        predictor = None if name == REPEATED else Predictor(model, device=device)
        results[name] = summarize([probe_pair(pair, model, predictor) for pair in pairs], step)
        results[name]["steps"] = None if predictor is None else model.card.provenance.get("steps_done")
        logger.info("%s: %s", name, results[name]["bands"])
    return results


def _label(name: str, result: dict[str, Any]) -> str:
    """A model's file name and its training steps (the reference row's own name)."""
    if name == REPEATED:
        return name
    steps = result.get("steps")
    return Path(name).stem + (f" ({steps} steps)" if steps else "")


def plot(results: dict[str, dict[str, Any]], png: Path) -> None:
    """Each model's mean PCC between requested (rows) and confocal (columns) depths, identity dashed."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(results), figsize=(3.6 * len(results), 3.6), squeeze=False)
    for ax, (name, r) in zip(axes[0], results.items(), strict=True):
        req, conf = np.asarray(r["requested_um"]), np.asarray(r["confocal_um"])
        m = np.asarray(r["mean_pcc"])
        ax.imshow(m, origin="lower", aspect="auto", cmap="magma", vmin=0, vmax=max(0.5, float(m.max())),
                  extent=(conf[0], conf[-1], req[0], req[-1]))  # fmt: skip
        ax.plot(req, req, "--", color="cyan", lw=1)
        ax.plot(conf[np.argmax(m, axis=1)], req, ".", color="white", ms=4)
        ax.set_title(_label(name, r), fontsize=8)
        ax.set_xlabel("confocal depth (µm from centre)")
        ax.set_ylabel("requested depth (µm)")
    fig.suptitle("apparent depth: the confocal plane each virtual plane matches best (dots)", fontsize=9)
    fig.tight_layout()
    png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(png, dpi=110)
    plt.close(fig)


def table(results: dict[str, dict[str, Any]]) -> str:
    """Markdown: each model's share of virtual planes within one z step of their depth, and the median
    error of their apparent depth, by band."""
    names = [band_name(lo, hi) for lo, hi in BANDS]
    bands = " / ".join(n.replace(" um", "") for n in names)
    within = f"planes at their depth (within one z step), {bands} µm"
    error = f"median depth error µm, {bands} µm"
    lines = [f"| model | {within} | {error} |", "| --- | --- | --- |"]
    for name, r in results.items():
        b = r["bands"]
        shares = " / ".join(f"{b[n]['within_one_step']:.2f}" for n in names)
        errors = " / ".join(f"{b[n]['median_error_um']:g}" for n in names)
        lines.append(f"| {_label(name, r)} | {shares} | {errors} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> dict[str, dict[str, Any]]:
    """Probe the models; write the JSON (without the matrices' noise digits) and the picture."""
    ap = argparse.ArgumentParser(prog="python -m benchmarks.depth_probe", description=__doc__)
    ap.add_argument("--model", type=Path, action="append", required=True, help="a model file (repeatable)")
    ap.add_argument("--specimens", type=Path, default=Path("runs/le/blind"))
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--out", type=Path, default=Path("docs/depth_probe.json"))
    ap.add_argument("--png", type=Path, default=Path("docs/img/depth_probe.png"))
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    results = probe(args.model, args.specimens, args.device)
    plot(results, args.png)
    command = "python -m benchmarks.depth_probe " + " ".join(argv if argv is not None else sys.argv[1:])
    args.out.write_text(json.dumps({"machine": machine(), "command": command, "models": results}))
    logger.info("\n%s", table(results))
    return results


if __name__ == "__main__":
    main()
