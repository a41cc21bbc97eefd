"""The acquisition request (#36 item 3): a pure description, each value checked against its declared
range and named in the user's words, the microscope one of two specs, earlier files still read."""

import pytest
from helpers import heavy_modules_after

from acquisition_hooks import AcquisitionRequest, MicroManagerSpec, SimulatorSpec, prepare
from mm_deepz.errors import SettingsError


def test_making_a_request_loads_neither_the_model_nor_the_microscope():
    code = (
        "from acquisition_hooks.request import AcquisitionRequest, MicroManagerSpec; "
        "AcquisitionRequest(time_points=3, microscope=MicroManagerSpec(port=5000))"
    )
    heavy = {"torch", "pycromanager", "pymmcore_plus", "zarr", "ome_types", "PyQt5", "simulators"}
    assert heavy_modules_after(code, heavy) == []


@pytest.mark.parametrize(
    ("settings", "words"),
    [
        ({"time_points": 0}, "time points must be 1 to 1,000,000 (got 0)"),
        ({"exposure_ms": 0.0}, "the exposure must be above 0 and at most 10,000 ms (got 0 ms)"),
        ({"exposure_ms": float("inf")}, "the exposure must be a finite number"),
        ({"z_step_um": -1.0}, "the z step must be positive (got -1 µm)"),
        ({"interval_s": 1e9}, "the interval must be 0 to 86,400 s (got 1e+09 s)"),
        ({"positions_xy_um": ((0, 0), (1, float("nan")))}, "position 2 must be a finite number"),
        ({"positions_xy_um": ((2e5, 0),)}, "position 1 must be at most 100,000 µm (got 200000 µm)"),
        ({"microscope": {"frame": 16}}, "the simulated camera must be 32 to 4096 pixels square (got 16"),
        ({"microscope": {"phantom": "cat"}}, "the simulator's specimen must be 'worm', 'beads' or 'sheet'"),
        ({"microscope": {"kind": "micro-manager", "port": 70000}}, "the port must be 1 to 65,535"),
        ({"z_step_um": 0.01}, "is 2,001 planes; at most 1001"),
    ],
)
def test_each_value_out_of_range_is_named_with_its_range(settings, words):
    with pytest.raises(SettingsError, match="Invalid acquisition settings") as e:
        AcquisitionRequest(**settings)
    assert words in str(e.value)


def test_every_problem_is_named_in_one_error_the_microscopes_too():
    with pytest.raises(SettingsError) as e:
        AcquisitionRequest(time_points=-1, planes=3, microscope={"kind": "micro-manager", "port": 0})
    assert str(e.value).count(";") == 2 and "time points" in str(e.value) and "the port" in str(e.value)
    with pytest.raises(
        SettingsError, match="Invalid simulator settings: the specimen seed must be 0 or more"
    ):
        SimulatorSpec(seed=-3)  # a spec made alone is refused by itself


def test_the_microscope_is_the_simulator_unless_micro_manager_is_named():
    assert AcquisitionRequest().microscope == SimulatorSpec()
    assert AcquisitionRequest(microscope={"frame": 64}).microscope == SimulatorSpec(frame=64)
    mm = AcquisitionRequest(microscope=MicroManagerSpec(port=4900))
    assert isinstance(mm.microscope, MicroManagerSpec) and mm.microscope.port == 4900
    # the specs survive a round trip through JSON, as the panel's settings files keep them
    again = AcquisitionRequest.model_validate_json(mm.model_dump_json())
    assert again == mm


def test_the_flat_names_of_earlier_versions_are_read_with_a_warning():
    with pytest.warns(DeprecationWarning, match="connect, port, phantom"):
        old = AcquisitionRequest(phantom="beads", seed=7, frame=64)
    assert old.microscope == SimulatorSpec(phantom="beads", seed=7, frame=64)
    with pytest.warns(DeprecationWarning):
        connected = AcquisitionRequest(connect=True, port=4900, phantom="worm", frame=256)
    assert connected.microscope == MicroManagerSpec(port=4900)  # the simulator's settings it saved are moot
    with pytest.warns(DeprecationWarning), pytest.raises(SettingsError, match="load it there"):
        AcquisitionRequest(connect=True, config="scope.cfg")
    with pytest.raises(SettingsError, match="give the microscope once"):
        AcquisitionRequest(frame=64, microscope=SimulatorSpec())


def test_prepare_refuses_what_the_disk_and_the_model_say_before_anything_opens(tmp_path):
    request = AcquisitionRequest(output=tmp_path / "r.ome.zarr", microscope={"config": tmp_path / "none.cfg"})
    with pytest.raises(SettingsError, match="none.cfg does not exist"):
        prepare(request)
    prepared = prepare(request.changed(microscope=SimulatorSpec(frame=64), z_start_um=-6, z_end_um=6))
    assert prepared.model.card.n_planes == 1 and len(prepared.plan.requested_z()) == 13
    assert prepared.settings.specimen == {
        "phantom": "worm",
        "seed": 100,
        "sensor_shape": [64, 64],
        "config": "demo.cfg",
    }
    assert not (tmp_path / "r.ome.zarr").exists()  # nothing written


def test_the_run_settings_and_the_plan_check_the_same_declared_ranges(tmp_path):
    from acquisition_hooks import DeepZPlan, PlanError, RunSettings

    with pytest.raises(
        SettingsError, match="time points must be 1 to 1,000,000 .got 0.; .*Unknown device 'gpu'"
    ):
        RunSettings(output=tmp_path / "r.ome.zarr", time_points=0, device="gpu")
    with pytest.raises(SettingsError, match="position 1 must be a finite number"):
        RunSettings(output=tmp_path / "r.ome.zarr", positions_xy_um=((float("inf"), 0.0),))
    with pytest.raises(PlanError, match="the exposure must be above 0 and at most 10,000 ms .got -5 ms."):
        DeepZPlan(z_start_um=-2, z_end_um=2, z_step_um=1, anchor_exposure_ms=-5)
    with pytest.raises(PlanError, match="z start must be a finite number"):
        DeepZPlan(z_start_um=float("nan"), z_end_um=2, z_step_um=1)
