"""The neuron analysis against the simulator's truth: detection, anisotropy, linking, traces."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import simulators as sim
from mm_deepz.neurons import (
    DetectionConfig,
    LinkConfig,
    NeuronAnalysisError,
    detect_neurons,
    detection_scores,
    link_tracks,
    traces,
    tracking_scores,
)
from simulators.truth import neuron_truth

Z = np.arange(-8.0, 8.5, 1.0)
PX = 0.325


def _truth(world, t_s, z=Z):
    tr = neuron_truth(world, t_s, margin_um=1.0)
    keep = (tr["z_um"] >= z[0]) & (tr["z_um"] <= z[-1])
    return {k: v[keep] for k, v in tr.items()}


def _stack(world, t_s, modality="confocal", exposure_ms=100.0, z=Z):
    return world.scan(z, exposure_ms, modality, t_s)


@pytest.fixture(scope="module")
def still_worm():
    return sim.SimWorld(sim.worm(seed=170), sensor_shape=(160, 160), seed=170)


def test_a_scanned_confocal_stack_gives_nearly_every_neuron_at_its_place(still_worm):
    truth = _truth(still_worm, 2.0)
    assert len(truth["z_um"]) > 20  # the field holds a real test
    found = detect_neurons(_stack(still_worm, 2.0), (1.0, PX, PX), z0_um=Z[0])
    s = detection_scores(found, truth, [0.0])
    assert s["all"]["f1"] > 0.85 and s["all"]["precision"] > 0.9, s["all"]
    err = s["localisation_error_um"]
    assert err["y"] < 0.15 and err["x"] < 0.15 and err["z"] < 0.5, err


def test_voxel_anisotropy_is_honoured(still_worm):
    # the same specimen scanned at 2 µm steps: centres come back in µm, between the planes
    coarse = Z[::2]
    truth = _truth(still_worm, 2.0, coarse)
    stack = _stack(still_worm, 2.0, z=coarse)
    right = detection_scores(detect_neurons(stack, (2.0, PX, PX), z0_um=coarse[0]), truth, [0.0])
    assert right["all"]["f1"] > 0.75 and right["localisation_error_um"]["z"] < 0.8, right
    # read as if the planes were 1 µm apart, the same detections land at the wrong depths
    wrong = detection_scores(detect_neurons(stack, (1.0, PX, PX), z0_um=coarse[0]), truth, [0.0])
    assert wrong["all"]["f1"] < right["all"]["f1"] - 0.3


def test_linking_follows_a_crawling_worm_without_identity_switches():
    world = sim.SimWorld(sim.worm(seed=171), sensor_shape=(160, 160), seed=171, drift_um_per_s=(0.8, -0.4))
    detections, truth = [], {}
    for k in range(8):
        d = detect_neurons(_stack(world, 1.5 * k), (1.0, PX, PX), z0_um=Z[0])
        d["t"] = k
        detections.append(d)
        truth[k] = _truth(world, 1.5 * k)
    tracks = link_tracks(pd.concat(detections), LinkConfig(search_range_um=3.0))
    s = tracking_scores(tracks, truth)
    # the worm moves 1.3 µm per time point (8 µm in all): linking in µm keeps every identity
    assert s["identity_switches"] == 0 and s["tracked_fraction"] > 0.6, s
    # GCaMP-like transients: each tracked neuron's brightness follows its true activity
    assert s["trace_r_median"] > 0.8, s
    table = traces(tracks)
    assert table.shape[1] == 8 and table.index.nunique() == tracks["track"].nunique()


def test_a_still_specimen_is_not_tracked_as_moving(still_worm):
    detections = []
    for k in range(4):
        d = detect_neurons(_stack(still_worm, float(k)), (1.0, PX, PX), z0_um=Z[0])
        d["t"] = k
        detections.append(d)
    tracks = link_tracks(pd.concat(detections))
    spread = tracks.groupby("track")[["y_um", "x_um"]].std().max(axis=1)
    assert spread.median() < 0.1  # µm: the same neurons at the same places


@pytest.mark.parametrize(
    ("data", "words"),
    [
        (np.zeros((64, 64)), "needs a z-stack"),
        (np.zeros((0, 64, 64)), "needs a z-stack"),
    ],
)
def test_bad_input_is_refused_clearly(data, words):
    with pytest.raises(NeuronAnalysisError, match=words):
        detect_neurons(data, (1.0, PX, PX))
    with pytest.raises(NeuronAnalysisError, match="positive"):
        detect_neurons(np.zeros((5, 64, 64)), (float("nan"), PX, PX))
    with pytest.raises(NeuronAnalysisError, match="positive"):
        DetectionConfig(diameter_um=-1)


def test_an_empty_or_flat_stack_has_no_neurons():
    assert detect_neurons(np.full((9, 64, 64), 100, np.uint16), (1.0, PX, PX)).empty
    assert link_tracks(pd.DataFrame({"t": [], "z_um": [], "y_um": [], "x_um": [], "mass": []})).empty


def test_evaluate_scores_neurons_against_the_truth_or_the_scanned_reference(tmp_path):
    from mm_deepz.engine import Predictor
    from mm_deepz.evaluation import evaluate_pair
    from mm_deepz.evaluation.evaluate import evaluate_neurons
    from mm_deepz.modelfile import load_model
    from mm_deepz.shipped import shipped_model_path
    from mm_deepz.training.stacks import load_pairs
    from simulators.training_data import PairSpec, make_stack_pair, write_stack_pair

    spec = PairSpec(phantom="worm", seed=172, shape=(128, 128), z_half_range_um=10.0)
    write_stack_pair(make_stack_pair(spec), tmp_path, "worm_0172")
    model = load_model(shipped_model_path(2))
    pair = load_pairs([tmp_path])[0]
    ev = evaluate_pair(model, pair, Predictor(model, "cpu"))
    assert ev.neurons["reference"] == "simulator truth"
    near = ev.neurons["scores"]["0-3 um"]
    assert near["n_reference"] > 5 and near["f1"] > 0.7, near  # in focus of the measured planes
    # a pair from a real microscope carries no specimen: the scanned reference's neurons stand in
    pair.meta = {}
    z = pair.z_um
    confocal = pair.target.data
    alone = evaluate_neurons(pair, confocal.astype(np.float32), confocal, z, z[[8, 12]], pair.inputs.data)
    assert alone["reference"] == "neurons of the scanned reference" and alone["scores"]["all"]["f1"] == 1.0
    # the widefield scan of the same field is scored against the same neurons: it finds most near focus
    scan = alone["widefield_scores"]
    assert scan["0-3 um"]["f1"] > 0.5 and scan["all"]["n_reference"] == alone["scores"]["all"]["n_reference"]


@pytest.mark.slow
def test_the_neuron_experiment_runs_at_a_chosen_light_dose_and_density(tmp_path):
    # `mm-deepz simulate neuron-experiment`, the yardstick of every model (#18's goal rows for dimmer
    # and denser worms): the same blind worm imaged at the nominal and at a tenth of the widefield
    # light; less light must cost the widefield-based methods neurons, not the confocal scan
    import json

    from typer.testing import CliRunner

    from mm_deepz.cli import app
    from mm_deepz.shipped import shipped_model_path

    def run(out: str, *extra: str) -> dict:
        args = [
            "simulate",
            "neuron-experiment",
            "-o",
            str(tmp_path / out),
            "--model",
            str(shipped_model_path(2)),
        ]
        args += ["--seeds", "160", "--time-points", "2", "--frame", "160", "--speed", "0", "--device", "cpu"]
        res = CliRunner().invoke(app, [*args, *extra])
        assert res.exit_code == 0, res.output
        assert (tmp_path / out / "neurons_f1.png").read_bytes()[:4] == b"\x89PNG"
        return json.loads((tmp_path / out / "neurons.json").read_text())

    nominal, dim = run("nominal"), run("dim", "--widefield-exposure", "1")
    assert dim["config"]["widefield_exposure_ms"] == 1.0 and nominal["config"]["n_neurons"] == 200
    f1 = {
        k: {m: r["methods"][m]["detection"]["all"]["f1"] for m in r["methods"]}
        for k, r in (("nominal", nominal), ("dim", dim))
    }
    assert (
        f1["nominal"]["scanned confocal"] > 0.8
        and f1["dim"]["scanned confocal"] == f1["nominal"]["scanned confocal"]
    )
    deepz = next(m for m in f1["dim"] if m.startswith("Deep-Z"))
    assert f1["dim"]["scanned widefield"] < f1["nominal"]["scanned widefield"]
    assert f1["dim"][deepz] < f1["nominal"][deepz]
    assert dim["methods"][deepz]["exposure_ms_per_time_point"] == 2.0  # two planes of 1 ms
    # a denser worm: twice the neurons in the same field, all in the truth the methods are scored by
    dense = run("dense", "--neurons", "400")
    n_true = {
        k: r["methods"]["scanned confocal"]["detection"]["all"]["n_reference"]
        for k, r in (("200", nominal), ("400", dense))
    }
    assert 1.6 * n_true["200"] < n_true["400"] < 2.4 * n_true["200"]


@pytest.mark.parametrize(
    ("option", "value"),
    [
        ("--widefield-exposure", "nan"),
        ("--widefield-exposure", "0"),
        ("--widefield-exposure", "-3"),
        ("--widefield-exposure", "1e9"),
        ("--neurons", "0"),
        ("--neurons", "1000000"),
    ],
)
def test_the_neuron_experiment_refuses_impossible_settings(tmp_path, option, value):
    from typer.testing import CliRunner

    from mm_deepz.cli import app
    from mm_deepz.errors import SettingsError

    res = CliRunner().invoke(app, ["simulate", "neuron-experiment", "-o", str(tmp_path / "x"), option, value])
    assert isinstance(res.exception, SettingsError) and option in str(res.exception)
    assert not (tmp_path / "x").exists()  # refused before imaging anything
