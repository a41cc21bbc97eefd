"""Blind by specimen (issue #31): `pairs split` holds whole specimens out in a manifest, `train --blind`
leaves them out and refuses any other overlap (a renamed copy, a blind name on changed pixels),
`evaluate --blind` scores exactly the manifest's pairs, and validation never splits one specimen's
time points."""

from __future__ import annotations

import json
import shutil

import pytest
from typer.testing import CliRunner

from mm_deepz.cli import app
from mm_deepz.errors import DeepZError
from mm_deepz.modelfile import load_model
from mm_deepz.training.blind import BlindManifestError, read_manifest
from mm_deepz.training.stacks import load_pairs
from mm_deepz.training.train import TrainConfig, split_pairs
from simulators.training_data import PairSpec, make_stack_pair, write_stack_pair

PATTERN = r"(spec\d)_t\d"


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """Three specimens, two time points each (textured sheets: a tiny model trains on them in seconds)."""
    root = tmp_path_factory.mktemp("blind") / "pairs"
    for s in range(3):
        for t in range(2):
            spec = PairSpec(
                phantom="sheet", seed=170 + 2 * s + t, shape=(64, 64), z_half_range_um=4, randomize=True
            )
            write_stack_pair(make_stack_pair(spec), root, f"spec{s}_t{t}")
    return root


def _invoke(*args):
    res = CliRunner().invoke(app, [str(a) for a in args])
    return res, (str(res.exception) if res.exception else "")


@pytest.mark.slow
def test_split_holds_out_whole_specimens_train_leaves_them_out_and_refuses_copies(data, tmp_path):
    res, _ = _invoke(
        "pairs", "split", data, "--output", tmp_path / "blind.json", "--specimen-pattern", PATTERN
    )
    assert res.exit_code == 0, res.output
    manifest = read_manifest(tmp_path / "blind.json")
    (held,) = manifest["specimens"]  # 0.2 of three specimens: one, with both its time points
    assert sorted(e["name"] for e in manifest["pairs"]) == [f"{held}_t0", f"{held}_t1"]
    train_args = (
        "train",
        "--steps",
        "2",
        "--z-range",
        "4",
        "--patch",
        "32",
        "--base-channels",
        "4",
        "--depth",
        "1",
        "--device",
        "cpu",
        "--blind",
        tmp_path / "blind.json",
    )
    # the folder the split was made from: its blind pairs are left out, the other specimens train
    res, err = _invoke(*train_args, data, "--output", tmp_path / "m.pt")
    assert res.exit_code == 0, res.output
    trained_on = json.dumps(load_model(tmp_path / "m.pt").card.provenance["data"])
    assert held not in trained_on and all(s in trained_on for s in {"spec0", "spec1", "spec2"} - {held})
    # a renamed copy of a blind pair is recognised by its pixels
    rest = tmp_path / "rest"
    rest.mkdir()
    for f in data.iterdir():
        if not f.name.startswith(held):
            shutil.copy(f, rest / f.name)
    for modality in ("widefield", "confocal"):
        shutil.copy(data / f"{held}_t0_{modality}.ome.tif", rest / f"renamed_{modality}.ome.tif")
    res, err = _invoke(*train_args, rest, "--output", tmp_path / "m2.pt")
    assert isinstance(res.exception, BlindManifestError) and "has the same pixels as the blind pair" in err
    # a blind pair's name on other pixels: the data changed since the split
    changed = tmp_path / "changed"
    changed.mkdir()
    other = next(s for s in ("spec0", "spec1", "spec2") if s != held)
    for modality in ("widefield", "confocal"):
        shutil.copy(data / f"{other}_t0_{modality}.ome.tif", changed / f"{held}_t0_{modality}.ome.tif")
        shutil.copy(data / f"{other}_t1_{modality}.ome.tif", changed / f"{other}_t1_{modality}.ome.tif")
    res, err = _invoke(*train_args, changed, "--output", tmp_path / "m3.pt")
    assert isinstance(res.exception, BlindManifestError) and "its pixels changed since the split" in err
    assert not (tmp_path / "m2.pt").exists() and not (tmp_path / "m3.pt").exists()
    # evaluate --blind scores exactly the manifest's pairs
    res, _ = _invoke(
        "evaluate",
        tmp_path / "m.pt",
        data,
        "--blind",
        tmp_path / "blind.json",
        "--output",
        tmp_path / "report",
        "--device",
        "cpu",
    )
    assert res.exit_code == 0, res.output
    scored = json.loads((tmp_path / "report" / "metrics.json").read_text())
    assert sorted(scored["pairs"]) == [f"{held}_t0", f"{held}_t1"]


def test_validation_never_splits_one_specimens_time_points(data):
    pairs = load_pairs([data], do_register=False)
    for seed in range(5):
        train, val = split_pairs(pairs, 0.3, seed, PATTERN)
        held = {p.name.split("_")[0] for p in val}
        assert held and not held & {p.name.split("_")[0] for p in train}
        assert len(val) == 2 * len(held)
    # without a pattern each pair is its own specimen, as before
    assert len(split_pairs(pairs, 0.3, 0)[1]) == 2


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["--specimen-pattern", "spec\\d"], "has no group"),
        (["--specimen-pattern", "(unclosed"], "is not a regular expression"),
        (["--blind-fraction", "1.5"], "between 0 and 1"),
    ],
)
def test_split_refuses_what_cannot_make_a_blind_set(data, tmp_path, args, words):
    res, err = _invoke("pairs", "split", data, "--output", tmp_path / "b.json", *args)
    assert isinstance(res.exception, DeepZError) and words in err
    assert not (tmp_path / "b.json").exists()


def test_a_file_that_is_not_a_manifest_is_refused(tmp_path):
    (tmp_path / "x.json").write_text(json.dumps({"format": "something else"}))
    with pytest.raises(BlindManifestError, match="is not a blind manifest"):
        read_manifest(tmp_path / "x.json")
    with pytest.raises(DeepZError, match="has no group"):
        TrainConfig(specimen_pattern="abc")
