"""A microscopist's journey, as the commands of docs/your_microscope.md, on the simulator under
Micro-Manager's demo-configuration names (`--config mmdemo`: group Channel, presets Widefield and
Confocal) at CI size:
pairs acquire -> pairs check -> pairs split -> train --init -> evaluate --blind -> export ->
acquire with the exported package. No Python written by hand between the commands, as a user has none."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
import zarr
from helpers import run_cli

import simulators as sim
from mm_deepz.io import image_array, open_container
from mm_deepz.io.pairs import PAIRS_KEY
from mm_deepz.modelfile import file_sha256, load_model
from mm_deepz.shipped import shipped_model_path

SEED = 104  # the simulated worm (`--seed`)
WIDE = {**os.environ, "COLUMNS": "250"}  # tables not wrapped, so lines can be looked for


def _dense_spots(phantom, n: int, spacing: float) -> list[tuple[float, float]]:
    """``n`` stage positions on the worm where its neurons are densest, ``spacing`` µm apart."""
    xy = np.asarray(phantom.emitters.xyz)[:, :2]
    crowd = ((xy[:, None] - xy[None]) ** 2).sum(-1) < 15**2
    spots: list[tuple[float, float]] = []
    for i in np.argsort(-crowd.sum(1)):
        if all(np.hypot(*(xy[i] - s)) > spacing for s in spots):
            spots.append((float(xy[i, 0]), float(xy[i, 1])))
        if len(spots) == n:
            break
    return spots


def _ok(result, code: int = 0):
    assert result.returncode == code, result.stdout + result.stderr
    return result


@pytest.mark.slow
def test_from_the_first_pairs_to_a_live_run_with_a_fine_tuned_exported_model(tmp_path):
    data = tmp_path / "pairs.ome.zarr"
    # 1. six fields, interleaved: five on the worm, the last far from it (empty)
    fields = [*_dense_spots(sim.worm(seed=SEED), 5, 45.0), (3000.0, 3000.0)]
    positions = [a for x, y in fields for a in ("--position", f"{x:.1f},{y:.1f}")]
    _ok(
        run_cli(
            "pairs", "acquire", "-o", str(data), *positions, "--config", "mmdemo", "--frame", "128",
            "--seed", str(SEED), "--z-start", "-12", "--z-end", "12", "--z-step", "2", "--dark", "2",
        )
    )  # fmt: skip
    record = json.loads((data / "zarr.json").read_text())["attributes"][PAIRS_KEY]
    assert record["plan"]["order"] == "interleaved" and len(record["fields"]) == 6
    # field_004: its target camera's image shifted by a quarter of the frame (a misaligned camera)
    target = zarr.open_array(str(data / record["fields"]["field_004"]["images"]["confocal"] / "0"), mode="r+")
    target[0, 0] = np.roll(np.asarray(target[0, 0]), 32, axis=2)

    # 2. the check quarantines the empty and the shifted field, with their reasons
    check = _ok(run_cli("pairs", "check", str(data), "--output", str(tmp_path / "check"), env=WIDE), 1)
    assert "4 of 6 pairs pass" in check.stdout
    report = json.loads((tmp_path / "check" / "checks.json").read_text())
    assert report["passed"] == [f"pairs/field_{i:03d}" for i in range(4)]
    assert "has nothing to learn from" in report["quarantined"]["pairs/field_005"][0]
    assert any("check the camera alignment" in r for r in report["quarantined"]["pairs/field_004"])
    assert (tmp_path / "check" / "checks.png").stat().st_size > 20_000

    # 3. one specimen held out blind
    blind = tmp_path / "blind.json"
    _ok(run_cli("pairs", "split", str(data), "--blind-fraction", "0.25", "--output", str(blind)))
    held_out = [p["name"] for p in json.loads(blind.read_text())["pairs"]]
    assert len(held_out) == 1 and held_out[0] in report["passed"]

    # 4. fine-tune the shipped 2-plane model on the others (train leaves the quarantined fields out)
    parent = shipped_model_path(2)
    model = tmp_path / "mine.pt"
    two_planes = ["--planes", "2", "--separation", "4", "--z-range", "12"]
    train = _ok(
        run_cli(
            "train", str(data), "--init", str(parent), *two_planes, "--blind", str(blind),
            "--steps", "6", "--batch-size", "2", "--patch", "64", "--val-every", "3", "--lr", "5e-4",
            "--device", "cpu", "--output", str(model), env=WIDE,
        )
    )  # fmt: skip
    said = train.stdout + train.stderr
    assert "field_004 is quarantined" in said and "field_005 is quarantined" in said
    assert f"Left out of the training data, blind: {held_out[0]}" in said
    card = load_model(model).card
    assert card.provenance["parent"]["sha256"] == file_sha256(parent)
    assert held_out[0] not in json.dumps(card.provenance["data"])

    # 5. scored blind on the held-out specimen against the neurons of its scanned confocal stack
    scores = tmp_path / "eval"
    evaluate = _ok(
        run_cli(
            "evaluate", str(model), str(data), "--blind", str(blind), "--specimen", "neurons",
            "--parent", str(parent), "--output", str(scores), "--device", "cpu", env=WIDE,
        )
    )  # fmt: skip
    summary = json.loads((scores / "metrics.json").read_text())["summary"]
    assert summary["pairs"] == held_out
    assert summary["neurons"]["reference"] == ["neurons of the scanned reference"]
    assert summary["neurons"]["widefield f1 0-3 um"] > 0.5  # the widefield scan finds the confocal's neurons
    bands = [r for r in summary["verdict"] if r["what"].startswith("neuron F1")]
    assert [r["what"] for r in bands] == [
        "neuron F1 all",
        "neuron F1 0-3 um",
        "neuron F1 3-6 um",
        "neuron F1 6-10 um",
    ]
    assert all(r["vs_parent"] in ("pass", "fail") and r["vs_widefield"] in ("pass", "fail") for r in bands)
    assert "neuron F1 0-3 µm:" in evaluate.stdout and "parent" in evaluate.stdout
    assert (scores / "neurons_f1.png").stat().st_size > 10_000

    # 6. exported to the model zoo's format, tested by bioimage.io's own test on the way
    package = tmp_path / "mine.zip"
    _ok(run_cli("export", str(model), "--output", str(package), "--author", "A. Microscopist"))
    assert load_model(package).card == card

    # 7. a live Deep-Z acquisition with the package
    run = tmp_path / "run.ome.zarr"
    _ok(
        run_cli(
            "acquire", "-o", str(run), "--model", str(package), "--planes", "2", "--time-points", "1",
            "--config", "mmdemo", "--frame", "128", "--seed", str(SEED), "--device", "cpu",
        )
    )  # fmt: skip
    recorded = (run / "zarr.json").read_text()
    assert str(package) in recorded and file_sha256(package) in recorded
    stack = np.asarray(image_array(open_container(run), "virtual"))[0, 0]
    assert stack.shape[1:] == (128, 128) and (stack.reshape(len(stack), -1).std(axis=1) > 0).all()
