"""Measurement tools of the evaluation: FWHM, surface sampling, metrics."""

from pathlib import Path

import numpy as np
import pytest

from mm_deepz.evaluation.evaluate import bead_fwhm, sample_on_surface
from mm_deepz.metrics import fwhm_1d, nrmse, psnr, ssim, stack_scores


def gaussian(x, sigma):
    return np.exp(-0.5 * (x / sigma) ** 2)


def test_fwhm_of_a_gaussian():
    x = np.arange(-20, 21) * 0.1
    assert fwhm_1d(gaussian(x, 0.4), 0.1) == pytest.approx(2.3548 * 0.4, rel=0.02)
    assert np.isnan(fwhm_1d(np.linspace(0, 1, 10)))  # peak not contained


def test_bead_fwhm_measures_known_beads():
    z, y, x = np.meshgrid(np.arange(21), np.arange(64), np.arange(64), indexing="ij")
    stack = np.zeros((21, 64, 64))
    for bz, by, bx in [(10, 20, 20), (8, 44, 40)]:
        stack += gaussian(np.sqrt((y - by) ** 2 + (x - bx) ** 2), 1.5) * gaussian(z - bz, 1.2)
    wider = np.zeros_like(stack)
    for bz, by, bx in [(10, 20, 20), (8, 44, 40)]:
        wider += gaussian(np.sqrt((y - by) ** 2 + (x - bx) ** 2), 1.65) * gaussian(z - bz, 1.2)
    res = bead_fwhm(wider, stack, pixel_um=0.2, z_step_um=0.5)
    assert res["n_beads"] == 2
    assert res["reference_lateral_um"] == pytest.approx(2.3548 * 1.5 * 0.2, rel=0.05)
    assert res["lateral_ratio"] == pytest.approx(1.1, rel=0.03)
    assert res["axial_ratio"] == pytest.approx(1.0, rel=0.03)


def test_sampling_a_stack_on_a_surface():
    z_um = np.array([0.0, 1.0, 2.0])
    stack = np.stack([np.full((4, 4), v) for v in (10.0, 20.0, 30.0)])
    height = np.array([[0.0, 0.5, 1.0, 1.5]] * 4)
    np.testing.assert_allclose(sample_on_surface(stack, z_um, height)[0], [10, 15, 20, 25])


def test_metrics_rank_images_sensibly():
    rng = np.random.default_rng(0)
    ref = rng.random((64, 64))
    close, far = ref + 0.01 * rng.standard_normal(ref.shape), rng.random((64, 64))
    assert ssim(close, ref) > 0.9 > ssim(far, ref)
    assert psnr(close, ref) > psnr(far, ref)
    assert nrmse(close, ref) < nrmse(far, ref)


def test_stack_scores_ignore_brightness_and_offset_but_not_structure():
    """A dim copy on a haze (a widefield-like pedestal) scores as the reference itself; the same
    planes in the wrong order, or a different specimen, do not."""
    rng = np.random.default_rng(1)
    ref = np.zeros((5, 48, 48))
    for k in range(5):
        ref[k, rng.integers(4, 44, 6), rng.integers(4, 44, 6)] = 1000.0
    ref += rng.poisson(2.0, ref.shape)
    scores, matched, refn = stack_scores(0.2 * ref + 300.0, ref)
    assert scores["ssim"].min() > 0.99 and scores["pcc"].min() > 0.99
    np.testing.assert_allclose(matched, refn, atol=1e-4)
    shuffled, _, _ = stack_scores(ref[::-1], ref)
    assert shuffled["ssim"][0] < 0.9 and shuffled["pcc"][0] < 0.2
    flat, _, _ = stack_scores(np.ones_like(ref), ref)  # no structure at all: matched to the mean
    assert flat["pcc"].max() == 0.0 and flat["ssim"].max() < scores["ssim"].min()


def test_the_training_correlation_loss_agrees_with_the_evaluation_metric():
    import torch

    from mm_deepz.metrics import pcc, pcc_torch

    rng = np.random.default_rng(0)
    a = rng.random((3, 1, 32, 32)).astype(np.float32)
    b = (a + rng.random(a.shape).astype(np.float32)).astype(np.float32)
    expected = np.mean([pcc(a[i, 0], b[i, 0]) for i in range(3)])
    assert float(pcc_torch(torch.from_numpy(a), torch.from_numpy(b))) == pytest.approx(expected, abs=1e-4)
    assert float(pcc_torch(torch.from_numpy(a), torch.from_numpy(-a))) == pytest.approx(-1.0, abs=1e-4)


@pytest.mark.slow
def test_a_microscopes_own_stacks_are_scored_as_the_specimen_they_are_said_to_be(tmp_path):
    """Real stacks carry no simulator record: `--specimen` says what they hold (beads: FWHM against the
    scanned bead stack; none: no specimen scores), and without it nothing specimen-specific is scored."""
    from mm_deepz.engine import Predictor
    from mm_deepz.evaluation import evaluate_pair
    from mm_deepz.modelfile import load_model
    from mm_deepz.shipped import shipped_model_path
    from mm_deepz.training.stacks import load_pairs
    from simulators.training_data import PairSpec, make_stack_pair, write_stack_pair

    spec = PairSpec(phantom="beads", seed=173, shape=(160, 160), z_half_range_um=10.0)
    write_stack_pair(make_stack_pair(spec), tmp_path, "slide")
    [pair] = load_pairs([tmp_path])
    pair.meta = {}  # as from a real microscope
    model = load_model(shipped_model_path(2))
    predictor = Predictor(model, "cpu")
    beads = evaluate_pair(model, pair, predictor, "beads").beads
    assert beads is not None and beads["n_beads"] >= 3
    assert 0.3 < beads["reference_lateral_um"] < 1.0  # near the diffraction limit (0.36 µm at NA 0.75)
    unsaid = evaluate_pair(model, pair, predictor)
    assert unsaid.beads is None and unsaid.neurons is None
    assert evaluate_pair(model, pair, predictor, "none").beads is None


def test_the_true_neurons_come_from_the_provider_that_made_the_specimen(monkeypatch):
    # #36 item 5: evaluation asks the registered truth providers (the simulator registers its worms'),
    # it imports no simulator itself
    import ast

    from mm_deepz.evaluation import truth

    assert [name for name, _ in truth.providers()] == ["simulator"]
    worm = {"phantom": "worm", "seed": 160, "xy_um": [0.0, 0.0], "time_s": 0.0}
    found, name = truth.true_neurons(worm, (128, 128), (-10.0, 10.0), margin_um=1.0)
    assert name == "simulator" and len(found["z_um"]) > 10
    assert np.all((found["z_um"] >= -10) & (found["z_um"] <= 10))
    assert truth.true_neurons({"phantom": "beads", "seed": 1}, (64, 64), (-5.0, 5.0)) is None
    assert truth.true_neurons({}, (64, 64), (-5.0, 5.0)) is None  # a microscope's own stacks
    # another package's provider is asked the same way
    mine = {
        "z_um": np.array([1.0]),
        "y_um": np.array([2.0]),
        "x_um": np.array([3.0]),
        "brightness": np.ones(1),
    }
    monkeypatch.setattr(
        truth, "providers", lambda: (("lab", lambda spec, *a: mine if spec.get("lab") else None),)
    )
    assert truth.true_neurons({"lab": 1}, (64, 64), (-5.0, 5.0)) == (mine, "lab")
    source = Path(truth.__file__).with_name("evaluate.py").read_text()
    imported = {
        n.module
        for n in ast.walk(ast.parse(source))
        if isinstance(n, ast.ImportFrom) and n.module is not None
    }
    assert not {m for m in imported if m.startswith("simulators")}


def test_a_virtual_stack_shifted_in_depth_is_found_out_by_its_apparent_depth():
    # a stack that looks right plane by plane but two planes deeper than asked (or a staircase of the
    # nearest measured plane) must not pass as placed in depth
    from mm_deepz.evaluation.evaluate import depth_placement
    from mm_deepz.metrics import apparent_depth

    rng = np.random.default_rng(3)
    z = np.arange(-10.0, 11.0)  # 1 µm steps, centred
    reference = rng.normal(size=(len(z), 32, 32))
    shifted = reference[2:] + 0.3 * rng.normal(size=(len(z) - 2, 32, 32))  # each plane 2 µm deeper
    requested = z[:-2]
    apparent = apparent_depth(shifted, reference, z)
    np.testing.assert_array_equal(apparent, requested + 2)
    placed = depth_placement(requested, apparent, step_um=1.0)
    assert all(b["within_one_step"] == 0.0 and b["median_error_um"] == 2.0 for b in placed.values())
    exact = depth_placement(z, apparent_depth(reference, reference, z), step_um=1.0)
    assert exact["0-3 um"] == {"planes": 5, "within_one_step": 1.0, "median_error_um": 0.0}
    assert exact["6-10 um"]["planes"] == 8  # |z| in [6, 10): the planes at ±10 µm are in no band


@pytest.mark.slow
def test_every_evaluation_scores_where_each_virtual_plane_s_light_comes_from(tmp_path):
    # a microscope's own worm stacks, no specimen named: each virtual plane's apparent depth (the scanned
    # plane it matches best) is in the report; the shipped model's planes within 6 µm of the centre show
    # their own depth to one z step, and the summary bands them
    from benchmarks.gpu_train import pair_specs
    from mm_deepz.engine import Predictor
    from mm_deepz.evaluation import evaluate_pair
    from mm_deepz.evaluation.evaluate import summarize
    from mm_deepz.evaluation.report import summary_markdown
    from mm_deepz.modelfile import load_model
    from mm_deepz.shipped import shipped_model_path
    from mm_deepz.training.stacks import load_pairs
    from simulators.training_data import make_stack_pair, write_stack_pair

    for _, spec in pair_specs("blind", "worm", (100,), 192):
        write_stack_pair(make_stack_pair(spec), tmp_path, "worm")
    [pair] = load_pairs([tmp_path])
    pair.meta = {}  # as from a real microscope
    model = load_model(shipped_model_path(2))
    ev = evaluate_pair(model, pair, Predictor(model, "cpu"), "none")
    assert ev.apparent_um is not None and len(ev.apparent_um) == len(ev.defocus_um)
    near = np.abs(ev.defocus_um) < 6
    assert np.all(np.abs(ev.apparent_um - ev.defocus_um)[near] <= 1.0 + 1e-6)
    placed = summarize([ev], model)["depth_placement"]
    assert placed["0-3 um"]["within_one_step"] == 1.0 and placed["3-6 um"]["planes"] == 6
    assert "at their depth (within one z step)" in summary_markdown(summarize([ev], model))
