"""The shipped models on a specimen they never saw: Deep-Z's refocusing onto a tilted surface."""

import pytest

from mm_deepz.engine import Predictor
from mm_deepz.evaluation.evaluate import evaluate_pair
from mm_deepz.modelfile import load_model
from mm_deepz.shipped import shipped_model_path
from mm_deepz.training.stacks import load_pairs
from simulators.training_data import PairSpec, make_stack_pair, write_stack_pair


@pytest.fixture(scope="module")
def tilted_sheet(tmp_path_factory):
    # a seed no training or blind stack used; the sheet spans about ±5 µm around the focal plane
    spec = PairSpec(phantom="sheet", seed=170, shape=(160, 160), z_half_range_um=8, tilt_x=0.15, tilt_y=-0.05)
    root = tmp_path_factory.mktemp("tilted")
    write_stack_pair(make_stack_pair(spec), root, "sheet_170")
    return load_pairs([root])[0]


@pytest.mark.parametrize("planes", [1, 2])
def test_a_matching_dpm_refocuses_a_tilted_sheet_better_than_a_uniform_one(tilted_sheet, planes):
    """With the DPM that follows the sheet, the virtual image on the sheet is closer to the scanned
    confocal reference there than with a uniform DPM at the sheet's mean height (the seed paper's
    tilted-sample result). It prints the scores:
    `python -m pytest tests/mm_deepz/test_shipped_models.py -s`."""
    model = load_model(shipped_model_path(planes))
    surface = evaluate_pair(model, tilted_sheet, Predictor(model, "cpu")).surface
    matching, uniform = surface["matching_dpm"], surface["uniform_dpm"]
    print(f"{planes}-plane model, matching vs uniform DPM: {matching} {uniform}")
    assert surface["height_range_um"][1] - surface["height_range_um"][0] > 8
    assert matching["ssim"] > uniform["ssim"] and matching["pcc"] > uniform["pcc"], (matching, uniform)
