"""`mm-deepz track` on a run's images and on another tool's OME-TIFF series, against the truth."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import tifffile
from typer.testing import CliRunner

import simulators as sim
from mm_deepz.cli import app
from mm_deepz.io import read_progress
from mm_deepz.neurons import detection_scores
from mm_deepz.neurons.analyse import read_tracks
from simulators.truth import neuron_truth

FRAME, SEED, PX = 128, 180, 0.325


def _centred_truth(t_s: float) -> dict:
    """The run's worm as the container places it: the frame centred on the stage position (0, 0)."""
    world = sim.SimWorld(sim.worm(seed=SEED), sensor_shape=(FRAME, FRAME), seed=SEED)
    tr = neuron_truth(world, t_s, margin_um=1.0)
    keep = np.abs(tr["z_um"]) <= 10
    tr = {k: v[keep] for k, v in tr.items()}
    tr["y_um"] = tr["y_um"] - (FRAME - 1) / 2 * PX
    tr["x_um"] = tr["x_um"] - (FRAME - 1) / 2 * PX
    return tr


@pytest.fixture(scope="module")
def full_stack_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("track") / "scan.ome.zarr"
    res = CliRunner().invoke(
        app,
        [
            "acquire",
            "-o",
            str(out),
            "-t",
            "3",
            "--frame",
            str(FRAME),
            "--seed",
            str(SEED),
            "--no-deepz",
            "--exposure",
            "30",
            "--device",
            "cpu",
        ],
    )
    assert res.exit_code == 0, res.output
    return out


def test_track_a_scanned_run_finds_the_neurons_where_they_are(full_stack_run):
    res = CliRunner().invoke(app, ["track", str(full_stack_run), "--image", "measured"])
    assert res.exit_code == 0, res.output
    csv = full_stack_run.with_name("scan_measured_tracks.csv")
    table = pd.read_csv(csv)  # pandas reads it directly; napari's tracks layer takes track, t, z, y, x
    assert list(table.columns[:6]) == ["track", "t", "time_s", "z_um", "y_um", "x_um"]
    assert sorted(table["t"].unique()) == [0, 1, 2]
    # the container records its simulated specimen, so the truth can be rebuilt from the run alone
    specimen = read_progress(full_stack_run)["specimen"]
    assert specimen == {"phantom": "worm", "seed": SEED, "sensor_shape": [FRAME, FRAME], "config": "demo.cfg"}
    scores = detection_scores(table[table["t"] == 0], _centred_truth(0.0), [0.0])
    assert scores["all"]["f1"] > 0.7, scores[
        "all"
    ]  # widefield stacks at 30 ms, physical frame of the container
    stored = read_tracks(full_stack_run, "measured")
    pd.testing.assert_frame_equal(stored, table[stored.columns], check_dtype=False)
    assert full_stack_run.with_name("scan_measured_tracks.png").read_bytes()[:4] == b"\x89PNG"
    # a second run does not replace the outputs unasked
    res = CliRunner().invoke(app, ["track", str(full_stack_run), "--image", "measured"])
    assert res.exit_code != 0 and "already exists" in str(res.exception)


def test_track_refuses_images_without_stacks(full_stack_run, tmp_path):
    res = CliRunner().invoke(app, ["track", str(full_stack_run), "--image", "virtual"])
    assert res.exit_code != 0 and "has no image 'virtual'; it has measured, measured_stack" in str(
        res.exception
    )
    res = CliRunner().invoke(app, ["track", str(full_stack_run), "--image", "nuclei"])
    assert res.exit_code != 0 and "has no image 'nuclei'" in str(res.exception)
    tifffile.imwrite(tmp_path / "plane.tif", np.zeros((64, 64), np.uint16))
    res = CliRunner().invoke(app, ["track", str(tmp_path / "plane.tif")])
    assert res.exit_code != 0 and "needs Z, Y and X" in str(res.exception)
    res = CliRunner().invoke(app, ["track", str(tmp_path / "missing.ome.zarr")])
    assert res.exit_code != 0 and "does not exist" in str(res.exception)


def test_track_an_ome_tiff_series_from_another_tool(tmp_path):
    world = sim.SimWorld(sim.worm(seed=181), sensor_shape=(FRAME, FRAME), seed=181, drift_um_per_s=(0.5, 0.0))
    z = np.arange(-8.0, 8.5, 1.0)
    series = np.stack([world.scan(z, 100, "confocal", 2.0 * k) for k in range(3)])
    path = tmp_path / "other.ome.tif"
    tifffile.imwrite(
        path,
        series,
        ome=True,
        metadata={
            "axes": "TZYX",
            "PhysicalSizeX": PX,
            "PhysicalSizeY": PX,
            "PhysicalSizeZ": 1.0,
            "TimeIncrement": 2.0,
        },
    )
    res = CliRunner().invoke(app, ["track", str(path)])
    assert res.exit_code == 0, res.output
    table = pd.read_csv(tmp_path / "other_stacks_tracks.csv")
    assert table["time_s"].max() == pytest.approx(4.0)
    truth = neuron_truth(world, 4.0, margin_um=1.0)
    keep = np.abs(truth["z_um"]) <= 8
    truth = {k: v[keep] for k, v in truth.items()}
    truth["z_um"] = truth["z_um"] + 8.0  # the file's z starts at 0 (no stage positions in it)
    scores = detection_scores(table[table["t"] == 2], truth, [0.0])
    assert scores["all"]["f1"] > 0.8, scores["all"]


def test_track_a_deep_z_run_reads_its_virtual_stacks(tmp_path):
    out = tmp_path / "deepz.ome.zarr"
    res = CliRunner().invoke(
        app,
        [
            "acquire",
            "-o",
            str(out),
            "-t",
            "2",
            "--frame",
            str(FRAME),
            "--seed",
            str(SEED),
            "--planes",
            "2",
            "--device",
            "cpu",
        ],
    )
    assert res.exit_code == 0, res.output
    res = CliRunner().invoke(app, ["track", str(out)])
    assert res.exit_code == 0, res.output
    table = pd.read_csv(tmp_path / "deepz_virtual_tracks.csv")
    # near the measured planes (centre ± 2 µm) the virtual stack's neurons are the true ones (a margin
    # in z on the other side of each comparison, so a neuron at the band's edge counts once)
    at0 = table[table["t"] == 0]
    truth = _centred_truth(0.0)

    def band(d, lim):
        keep = np.abs(np.asarray(d["z_um"])) <= lim
        return d[keep] if isinstance(d, pd.DataFrame) else {k: v[keep] for k, v in d.items()}

    precision = detection_scores(band(at0, 3), band(truth, 5), [0.0])["all"]["precision"]
    recall = detection_scores(band(at0, 5), band(truth, 3), [0.0])["all"]["recall"]
    assert precision > 0.85 and recall > 0.7, (precision, recall)
    assert read_tracks(out, "virtual")["track"].nunique() == table["track"].nunique()


def test_simulated_worm_pairs_come_with_their_truth_table(tmp_path):
    from mm_deepz.neurons import detect_neurons
    from simulators.training_data import PairSpec, make_stack_pair, write_stack_pair

    pair = make_stack_pair(PairSpec(phantom="worm", seed=182, shape=(FRAME, FRAME), z_half_range_um=8.0))
    write_stack_pair(pair, tmp_path, "worm_0182")
    truth = pd.read_csv(tmp_path / "worm_0182_neurons.csv")
    assert list(truth.columns) == ["id", "z_um", "y_um", "x_um", "brightness"] and len(truth) > 10
    found = detect_neurons(pair.confocal, (1.0, PX, PX), z0_um=float(pair.z_um[0]))
    assert detection_scores(found, truth, [0.0])["all"]["f1"] > 0.8
