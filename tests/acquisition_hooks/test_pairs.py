"""`mm-deepz pairs acquire` (issue #31): training pairs of many fields from the microscope, interleaved,
with dark frames, in one OME-Zarr that `train` and `evaluate` read directly."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import yaozarrs
import zarr

import simulators as sim
from acquisition_hooks.pairs import PairsPlan, acquire_pairs, grid_positions, read_position_list
from mm_deepz.errors import HardwareError, SettingsError
from mm_deepz.io import Geometry, Recorder
from mm_deepz.io.pairs import PAIRS_KEY
from mm_deepz.training.stacks import StackDataError, load_pairs


@pytest.fixture
def scope():
    """The simulator's core (pymmcore-plus) imaging a worm on a 64-px camera."""
    world = sim.SimWorld(sim.worm(seed=104), sensor_shape=(64, 64), seed=104)
    core = sim.load_demo_core(world)
    yield core
    core.unloadAllDevices()


def _record(path):
    return json.loads((path / "zarr.json").read_text())["attributes"][PAIRS_KEY]


@pytest.mark.slow
def test_six_fields_interleaved_with_dark_frames_are_one_dataset_train_reads(scope, tmp_path):
    plan = PairsPlan(
        positions_xy_um=tuple(grid_positions((0.0, 0.0), (2, 3), 15.0)),
        z_start_um=-4,
        z_end_um=4,
        z_step_um=1,
        dark_frames=4,
    )
    path = acquire_pairs(scope, plan, tmp_path / "pairs.ome.zarr")
    yaozarrs.validate_zarr_store(path)  # valid OME-Zarr: validators, ome-zarr-py and napari open it
    record = _record(path)
    assert len(record["fields"]) == 6 and all(f["complete"] for f in record["fields"].values())
    assert record["fields"]["field_001"]["xy_um"] == [0.0, -7.5]  # a snake-ordered grid around the stage
    # interleaved: at every plane the widefield frame, then the confocal one, before the next plane
    times = record["fields"]["field_000"]["plane_times_s"]
    order = sorted(
        [(t, "w", i) for i, t in enumerate(times["widefield"])]
        + [(t, "c", i) for i, t in enumerate(times["confocal"])]
    )
    assert [(kind, i) for _, kind, i in order] == [(k, i) for i in range(9) for k in ("w", "c")]
    # the stage went back where it was
    assert scope.getXPosition() == pytest.approx(0.0) and scope.getPosition() == pytest.approx(0.0)
    # the images depend on focus and light path: the confocal stack is sharper where the worm is
    wf = np.asarray(
        zarr.open_array(str(path / record["fields"]["field_000"]["images"]["widefield"] / "0"))[0, 0]
    )
    cf = np.asarray(
        zarr.open_array(str(path / record["fields"]["field_000"]["images"]["confocal"] / "0"))[0, 0]
    )
    assert wf.shape == cf.shape == (9, 64, 64)
    assert not np.array_equal(wf[0], wf[4]) and not np.array_equal(cf[0], cf[4])
    # dark frames: the camera's offset and noise, no light
    dark = np.asarray(zarr.open_array(str(path / record["dark"]["image"] / "0"))[:, 0, 0])
    assert record["dark"]["frames"] == 4 and dark.shape == (4, 64, 64)
    assert dark.mean() < wf.mean() and dark.std() < wf.std()
    # train / evaluate read the dataset directly: six pairs, dark-corrected (the offset is gone)
    pairs = load_pairs([path], do_register=False)
    assert [p.name for p in pairs] == [f"pairs/field_{i:03d}" for i in range(6)]
    first = pairs[0].inputs.data
    assert first.min() >= 0 and np.median(first) < np.median(wf) - 0.5 * np.median(dark)


def test_stacks_order_takes_one_stack_then_the_other(scope, tmp_path):
    plan = PairsPlan(z_start_um=-2, z_end_um=2, z_step_um=1, order="stacks", dark_frames=0)
    path = acquire_pairs(scope, plan, tmp_path / "p.ome.zarr")
    times = _record(path)["fields"]["field_000"]["plane_times_s"]
    assert max(times["widefield"]) < min(times["confocal"])
    assert _record(path)["dark"] is None


def test_light_paths_and_exposures_the_microscope_lacks_are_refused_before_anything_is_written(
    scope, tmp_path
):
    for plan, words in (
        (PairsPlan(target_preset="SpinningDisk"), "no preset 'SpinningDisk' for the target stacks"),
        (PairsPlan(target_exposure_ms=0.001), "outside what camera 'Camera' takes"),
    ):
        with pytest.raises(HardwareError, match=words):
            acquire_pairs(scope, plan, tmp_path / "p.ome.zarr")
        assert not (tmp_path / "p.ome.zarr").exists()


@pytest.mark.parametrize(
    ("kw", "words"),
    [
        ({"z_start_um": 5, "z_end_um": -5}, "must be above z start"),
        ({"z_step_um": 0.001}, "20,001 planes"),
        ({"z_step_um": float("nan")}, "finite number"),
        ({"input_exposure_ms": -1}, "greater than 0"),
        ({"order": "zigzag"}, "interleaved"),
        ({"positions_xy_um": ((float("nan"), 0.0),)}, "finite"),
        ({"target_modality": "widefield", "target_preset": "Confocal"}, "two modality names"),
    ],
)
def test_impossible_plans_are_refused_by_name(kw, words):
    with pytest.raises(SettingsError, match=words):
        PairsPlan(**kw)


def test_micro_managers_position_lists_are_read(tmp_path):
    mm2 = {
        "encoding": "UTF-8",
        "format": "Micro-Manager Property Map",
        "major_version": 2,
        "minor_version": 0,
        "map": {
            "StagePositions": {
                "type": "PROPERTY_MAP",
                "array": [
                    {
                        "DefaultXYStage": {"type": "STRING", "scalar": "XY"},
                        "DefaultZStage": {"type": "STRING", "scalar": "Z"},
                        "Label": {"type": "STRING", "scalar": f"Pos{i}"},
                        "DevicePositions": {
                            "type": "PROPERTY_MAP",
                            "array": [
                                {
                                    "Device": {"type": "STRING", "scalar": "Z"},
                                    "Position_um": {"type": "DOUBLE", "array": [1.5]},
                                },
                                {
                                    "Device": {"type": "STRING", "scalar": "XY"},
                                    "Position_um": {"type": "DOUBLE", "array": [10.0 * i, -5.0]},
                                },
                            ],
                        },
                    }
                    for i in range(3)
                ],
            }
        },
    }
    (tmp_path / "mm2.pos").write_text(json.dumps(mm2))
    assert read_position_list(tmp_path / "mm2.pos") == [
        ("Pos0", 0.0, -5.0),
        ("Pos1", 10.0, -5.0),
        ("Pos2", 20.0, -5.0),
    ]
    mm14 = {"POSITIONS": [{"LABEL": "A", "DEVICES": [{"DEVICE": "XY", "AXES": 2, "X": 1.0, "Y": 2.0}]}]}
    (tmp_path / "mm14.pos").write_text(json.dumps(mm14))
    assert read_position_list(tmp_path / "mm14.pos") == [("A", 1.0, 2.0)]
    for name, text in (
        ("bad.pos", "{"),
        ("empty.pos", json.dumps({"POSITIONS": []})),
        ("other.pos", "[1, 2]"),
    ):
        (tmp_path / name).write_text(text)
        with pytest.raises(SettingsError):
            read_position_list(tmp_path / name)


@pytest.mark.slow
def test_a_run_is_not_training_pairs_and_the_cli_refuses_in_one_line(tmp_path):
    run = Recorder(tmp_path / "run.ome.zarr", Geometry((-1.0, 0.0, 1.0), 0.5, 1.0, (8, 8)))
    run.finish()
    with pytest.raises(StackDataError, match="is a Deep-Z run, not training pairs"):
        load_pairs([tmp_path / "run.ome.zarr"])
    res = subprocess.run(
        [
            sys.executable,
            "-c",
            "from mm_deepz.cli import main; main()",
            "pairs",
            "acquire",
            str(tmp_path / "p.ome.zarr"),
            "--grid",
            "2x2",
            "--position",
            "0,0",
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert res.returncode == 2 and "Give the fields one way: --position or --grid" in res.stderr, res.stderr
    assert "Traceback" not in res.stderr and not (tmp_path / "p.ome.zarr").exists()
    from typer.testing import CliRunner

    from mm_deepz.cli import app

    out = CliRunner().invoke(app, ["pairs", "--help"]).output
    assert "│ acquire " in out and "│ check " in out  # the acquisition's command joins the core's group
