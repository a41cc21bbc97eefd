"""Simulated training pairs: what a user records on a real microscope, written as OME-TIFF."""

import json

import numpy as np
import pytest
import tifffile
from typer.testing import CliRunner

from mm_deepz.cli import app
from simulators.training_data import PairSpec, StackPair, make_stack_pair, write_stack_pair


@pytest.fixture(scope="module")
def pair():
    return make_stack_pair(
        PairSpec(phantom="beads", seed=120, shape=(64, 64), z_half_range_um=4, z_step_um=2)
    )


def test_pair_geometry_and_modalities(pair):
    assert pair.widefield.shape == pair.confocal.shape == (5, 64, 64)
    np.testing.assert_allclose(pair.z_um, [-4, -2, 0, 2, 4])
    assert pair.widefield.dtype == np.uint16
    # widefield carries out-of-focus haze, confocal rejects it: confocal background is darker
    assert np.median(pair.confocal) < np.median(pair.widefield) + 1
    assert not np.array_equal(pair.widefield[0], pair.widefield[-1])


def test_pair_round_trips_through_ome_tiff(pair, tmp_path):
    wf_path, cf_path = write_stack_pair(pair, tmp_path, "beads_0120")
    with tifffile.TiffFile(wf_path) as tif:
        np.testing.assert_array_equal(tif.asarray(), pair.widefield)
        ome = tif.ome_metadata
    assert 'PhysicalSizeX="0.325"' in ome and 'PhysicalSizeZ="2.0"' in ome
    assert 'PositionZ="-4.0"' in ome
    desc = json.loads(
        tifffile.TiffFile(cf_path)
        .series[0]
        .pages[0]
        .description.split("<Description>")[1]
        .split("</Description>")[0]
        .replace("&quot;", '"')
    )
    assert desc["modality"] == "confocal" and desc["spec"]["seed"] == 120


def test_mismatched_stacks_are_refused():
    with pytest.raises(ValueError, match="differ in shape"):
        StackPair(np.zeros((3, 8, 8)), np.zeros((2, 8, 8)), np.arange(3.0), 0.3)


def test_cli_writes_pairs_and_focus_sweep(tmp_path):
    runner = CliRunner()
    res = runner.invoke(
        app,
        [
            "simulate",
            "pairs",
            "--output",
            str(tmp_path / "pairs"),
            "--phantom",
            "sheet",
            "--n",
            "1",
            "--frame",
            "32",
            "--z-half-range",
            "2",
            "--z-step",
            "2",
        ],
    )
    assert res.exit_code == 0, res.output
    assert sorted(p.name for p in (tmp_path / "pairs").iterdir()) == [
        "sheet_0000_confocal.ome.tif",
        "sheet_0000_widefield.ome.tif",
    ]
    res = runner.invoke(app, ["simulate", "focus-sweep", "--output", str(tmp_path / "sweep.png")])
    assert res.exit_code == 0, res.output
    assert (tmp_path / "sweep.png").read_bytes()[:4] == b"\x89PNG"
