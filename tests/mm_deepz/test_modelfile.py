"""The model file: bit-exact round trip and clear refusal of bad or mismatched files."""

import numpy as np
import pytest
import torch
from helpers import tiny_model

from mm_deepz.errors import ModelFileError, ModelMismatchError
from mm_deepz.modelfile import FORMAT, load_model


def test_round_trip_is_bit_exact(tmp_path):
    model = tiny_model(n_planes=2, seed=3)
    model.card.metrics = {"ssim": 0.91}
    path = model.save(tmp_path / "m.pt")
    loaded = load_model(path)
    assert loaded.card == model.card
    for (k, a), (k2, b) in zip(
        model.network.state_dict().items(), loaded.network.state_dict().items(), strict=True
    ):
        assert k == k2 and torch.equal(a, b)
    x = torch.rand(1, 4, 32, 32)
    with torch.no_grad():
        assert torch.equal(model.network.eval()(x), loaded.network(x))
    assert loaded.sha256 == model.sha256 and len(loaded.sha256) == 64


def test_missing_truncated_and_foreign_files_are_refused(tmp_path):
    with pytest.raises(ModelFileError, match="not found"):
        load_model(tmp_path / "nope.pt")
    path = tiny_model().save(tmp_path / "m.pt")
    data = path.read_bytes()
    (tmp_path / "cut.pt").write_bytes(data[: len(data) // 2])
    with pytest.raises(ModelFileError, match="truncated or corrupt"):
        load_model(tmp_path / "cut.pt")
    torch.save({"weights": torch.zeros(3)}, tmp_path / "other.pt")
    with pytest.raises(ModelFileError, match="not an mm-deepz model"):
        load_model(tmp_path / "other.pt")
    # a file with Python objects is refused without torch's advice to load it unsafely
    torch.save({"weights": {}, "obj": ModelFileError("a pickled object")}, tmp_path / "objects.pt")
    with pytest.raises(ModelFileError, match="Python objects besides weights") as refused:
        load_model(tmp_path / "objects.pt")
    assert "weights_only" not in str(refused.value)
    (tmp_path / "text.pt").write_text("not a model")
    with pytest.raises(ModelFileError, match="not a PyTorch weights file") as refused:
        load_model(tmp_path / "text.pt")
    assert "weights_only" not in str(refused.value)


def test_newer_format_and_wrong_weights_are_refused(tmp_path):
    blob = torch.load(tiny_model().save(tmp_path / "m.pt"), weights_only=True)
    torch.save({**blob, "format_version": 99}, tmp_path / "new.pt")
    with pytest.raises(ModelFileError, match="version 99"):
        load_model(tmp_path / "new.pt")
    other = torch.load(tiny_model(n_planes=2).save(tmp_path / "m2.pt"), weights_only=True)
    torch.save({**blob, "state_dict": other["state_dict"]}, tmp_path / "mixed.pt")
    with pytest.raises(ModelFileError, match="do not fit"):
        load_model(tmp_path / "mixed.pt")
    assert blob["format"] == FORMAT


def test_mismatched_optics_and_planes_are_refused():
    model = tiny_model(n_planes=2)
    model.check_compatible(pixel_size_um=0.325, plane_offsets_um=(10.0, 14.0))
    with pytest.raises(ModelMismatchError, match="0.325 µm/pixel"):
        model.check_compatible(pixel_size_um=0.65)
    with pytest.raises(ModelMismatchError, match="takes 2 input plane"):
        model.check_compatible(plane_offsets_um=(0.0,))
    with pytest.raises(ModelMismatchError, match="spaced"):
        model.check_compatible(plane_offsets_um=(0.0, 6.0))
    assert np.isclose(model.card.z_range_um, 10.0)


@pytest.mark.parametrize(
    ("change", "words"),
    [
        ({"z_range_um": -1.0}, "z_range_um must be positive"),
        ({"z_range_um": float("nan")}, "z_range_um must be positive"),
        ({"input_offsets_um": [0.0, 4.0]}, "2 plane offsets for a 1-plane network"),
        ({"architecture": {"n_planes": 3}}, "1 or 2 input planes"),
        ({"optics": {"pixel_size_um": "wide"}}, "optics.pixel_size_um"),
        ({"colour": "green"}, "colour: Extra inputs are not permitted"),
    ],
)
def test_a_card_with_impossible_values_is_refused_naming_them(tmp_path, change, words):
    import json

    blob = torch.load(tiny_model().save(tmp_path / "m.pt"), weights_only=True)
    card = {**json.loads(blob["card"]), **change}
    torch.save({**blob, "card": json.dumps(card)}, tmp_path / "bad.pt")
    with pytest.raises(ModelFileError, match="damaged card") as refused:
        load_model(tmp_path / "bad.pt")
    assert words in str(refused.value)
