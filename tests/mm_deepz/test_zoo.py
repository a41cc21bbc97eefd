"""bioimage.io packages: exported, tested by bioimage.io's own test, run by its tools and by mm-deepz."""

from __future__ import annotations

import hashlib
import shutil
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from helpers import blobs, run_cli

from mm_deepz.engine import Predictor
from mm_deepz.modelfile import load_model
from mm_deepz.normalization import IntensityScale
from mm_deepz.shipped import shipped_model_path
from mm_deepz.zoo import export_package


@pytest.fixture(scope="module")
def package(tmp_path_factory) -> Path:
    """The shipped 2-plane model as a package (exported once for the module)."""
    out = tmp_path_factory.mktemp("bmz") / "deepz_2plane.zip"
    return export_package(load_model(shipped_model_path(2)), out, authors=["mm-deepz tests"])


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.slow
def test_bioimageios_test_passes_in_both_weight_formats_and_the_package_loads_back_unchanged(package):
    from bioimageio.core import test_model

    before = sorted(package.parent.iterdir())
    summary = test_model(package)
    assert summary.status == "passed"
    names = " ".join(d.name for d in summary.details)
    assert "Reproduce test outputs from test inputs (pytorch_state_dict)" in names
    assert "Reproduce test outputs from test inputs (torchscript)" in names
    shipped = load_model(shipped_model_path(2))
    loaded = load_model(package)
    assert loaded.card == shipped.card
    assert loaded.path == package and loaded.sha256 == _sha(package)
    for key, value in shipped.network.state_dict().items():
        assert torch.equal(loaded.network.state_dict()[key], value)
    assert sorted(package.parent.iterdir()) == before  # read in place, nothing unpacked beside it


def test_the_package_in_bioimageios_pipeline_makes_mm_deepzs_virtual_plane(package):
    """Another tool running the package (bioimage.io's prediction pipeline, its own normalization) on
    new planes and a uniform DPM gets the image mm-deepz makes at that depth: DPM sign and units agree."""
    from bioimageio.core import predict
    from bioimageio.core.tensor import Tensor

    planes = blobs((2, 128, 96), seed=3).astype(np.float32)
    target = 5.0  # µm above the planes' centre: 7 µm from the lower plane, 3 µm from the upper
    offsets = (-2.0, 2.0)
    dpm = np.stack([np.full((128, 96), target - o, np.float32) for o in offsets])
    sample = predict(
        model=package,
        inputs={
            "planes": Tensor.from_numpy(planes[None], dims=("batch", "channel", "y", "x")),
            "dpm": Tensor.from_numpy(dpm[None], dims=("batch", "channel", "y", "x")),
        },
    )
    theirs = np.asarray(sample.members["virtual"].data)[0, 0]
    predictor = Predictor(load_model(shipped_model_path(2)), "cpu", tile_overlap=0)
    ours = predictor.predict_stack(planes, offsets, np.array([target]), out_dtype=np.float32).data[0]
    scale = IntensityScale.from_planes(planes)
    np.testing.assert_allclose(scale.inverse(theirs), ours, atol=0.02 * scale.span)
    # and the DPM matters: the plane 5 µm below differs
    below = predictor.predict_stack(planes, offsets, np.array([-target]), out_dtype=np.float32).data[0]
    assert np.abs(scale.inverse(theirs) - below).mean() > 10 * np.abs(scale.inverse(theirs) - ours).mean()


def _rewrite(src: Path, dst: Path, change) -> Path:
    """A copy of a package with ``change(name, bytes) -> bytes`` applied to its files."""
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w") as zout:
        for item in zin.infolist():
            zout.writestr(item, change(item.filename, zin.read(item.filename)))
    return dst


def _flip_weights(name: str, data: bytes) -> bytes:
    if name != "weights.pt":
        return data
    i = len(data) // 2
    return data[:i] + bytes([data[i] ^ 0xFF]) + data[i + 1 :]


def _foreign(name: str, data: bytes) -> bytes:
    if name != "rdf.yaml":
        return data
    rdf = yaml.safe_load(data)
    del rdf["config"]["mm_deepz"]
    return yaml.safe_dump(rdf).encode()


@pytest.mark.parametrize(
    ("make", "words"),
    [
        (lambda p, d: _rewrite(p, d, _flip_weights), "damaged bioimage.io package"),
        (lambda p, d: _rewrite(p, d, _foreign), "not a Deep-Z model exported by mm-deepz"),
        (lambda p, d: d.write_bytes(p.read_bytes()[: p.stat().st_size // 2]) and d, "not a readable"),
    ],
    ids=["damaged", "another-tools-package", "truncated"],
)
@pytest.mark.slow
def test_a_damaged_or_foreign_package_is_refused_in_one_line(package, tmp_path, make, words):
    bad = make(package, tmp_path / "bad.zip")
    r = run_cli("evaluate", str(bad), str(tmp_path))
    assert r.returncode == 2, r.stderr
    assert r.stderr.strip().startswith("mm-deepz: error:") and words in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1, r.stderr


@pytest.mark.slow
def test_export_refuses_bad_input_and_never_replaces_what_it_did_not_write(package, tmp_path):
    model = str(shipped_model_path(1))
    theirs = tmp_path / "theirs.zip"
    theirs.write_bytes(b"another tool's archive")
    cases = [
        (["--output", str(theirs), "--overwrite"], "not a package exported by mm-deepz"),
        (["--output", str(tmp_path / "m.pt")], "is a .zip file"),
        (["--output", str(tmp_path / "n.zip"), "--name", "Deep-Z, mine!"], "--name"),
        (["--output", str(tmp_path / "n.zip"), "--author", " "], "--author"),
    ]
    nan = tmp_path / "nan.npy"
    np.save(nan, np.full((1, 64, 64), np.nan, np.float32))
    cases.append((["--output", str(tmp_path / "n.zip"), "--sample", str(nan)], "NaN"))
    two = tmp_path / "two.npy"
    np.save(two, np.ones((2, 64, 64), np.float32))
    cases.append((["--output", str(tmp_path / "n.zip"), "--sample", str(two)], "1 measured plane"))
    for args, words in cases:
        r = run_cli("export", model, "--author", "me", *args)
        assert r.returncode == 2 and words in r.stderr, (args, r.stderr)
        assert len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert theirs.read_bytes() == b"another tool's archive"
    assert not (tmp_path / "n.zip").exists()
    # a package mm-deepz exported is replaced on request, and only then
    mine = tmp_path / "mine.zip"
    shutil.copyfile(package, mine)
    assert run_cli("export", model, "--author", "me", "--output", str(mine)).returncode == 2
    assert _sha(mine) == _sha(package)


@pytest.mark.slow
def test_an_encode_once_model_is_packaged_and_loads_back_as_one(tmp_path):
    # the package's architecture source holds both generators; bioimage.io's test (run by the export)
    # passes with the encode-once one too
    from helpers import encode_once_model

    from mm_deepz.model import DeepZEncodeOnce

    model = encode_once_model(n_planes=2)
    package = export_package(model, tmp_path / "eo.zip", authors=["mm-deepz tests"])
    loaded = load_model(package)
    assert isinstance(loaded.network, DeepZEncodeOnce) and loaded.card.architecture == model.card.architecture
    for key, value in model.network.state_dict().items():
        assert torch.equal(loaded.network.state_dict()[key], value)
    with zipfile.ZipFile(package) as z:
        kwargs = yaml.safe_load(z.read("rdf.yaml"))["weights"]["pytorch_state_dict"]["architecture"]["kwargs"]
    assert kwargs["kind"] == "encode-once" and kwargs["dilations"] == [2]
