"""The run's view of the microscope: the same answers from a pymmcore-plus core and from a core that
speaks pycromanager's snake_case (as the Java backend's does), light set and read only where named, and
refusals before anything moves."""

import numpy as np
import pytest

from acquisition_hooks import AcquisitionRequest, DeepZPlan
from acquisition_hooks.microscope import Microscope, PropertyRef
from acquisition_hooks.request import MicroManagerSpec, SimulatorSpec
from mm_deepz.errors import HardwareError, SettingsError


class SnakeCaseOnly:
    """A core with pycromanager's method names only (``get_pixel_size_um``), as its Java backend serves."""

    def __init__(self, core):
        from mm_deepz.bridge import snake_case

        self._core, self._snake_case = core, snake_case

    def __getattr__(self, name):
        if name != name.lower():
            raise AttributeError(name)
        camel = next(m for m in dir(self._core) if self._snake_case(m) == name and not m.startswith("_"))
        return getattr(self._core, camel)


#: where the simulator's light source sets its power and counts its dose (as its settings name them)
LIGHT = {"power_property": SimulatorSpec().power_property, "dose_property": SimulatorSpec().dose_property}


@pytest.fixture(params=["camelCase", "snake_case"])
def scope(core, request):
    return Microscope(core if request.param == "camelCase" else SnakeCaseOnly(core), **LIGHT)


def _plan(**kw):
    return DeepZPlan(z_start_um=-2, z_end_um=2, z_step_um=1, **kw)


def test_reads_the_camera_and_the_dose_the_light_source_reports(scope, core, world):
    assert scope.pixel_size_um == pytest.approx(core.getPixelSizeUm())
    assert scope.image_shape == (128, 128)
    before = scope.dose_mJ()
    image = scope.snap("Channel", "Widefield", 20.0)
    assert image.shape == (128, 128) and image.dtype == np.uint16 and image.std() > 0
    # the simulator counts the light it delivers: the dose the run reports is the hardware's own
    assert scope.dose_mJ() - before == pytest.approx(world.light_power_mW * 20.0 / 1000, rel=1e-6)
    assert scope.dose_mJ() == pytest.approx(world.dose.dose_mJ)


def test_a_light_source_without_a_dose_counter_reports_none(core):
    class NoDose(SnakeCaseOnly):
        def __getattr__(self, name):
            if name == "has_property":
                return lambda device, prop: prop != "Dose_mJ" and core.hasProperty(device, prop)
            return super().__getattr__(name)

    assert Microscope(NoDose(core), **LIGHT).dose_mJ() is None  # unknown, not estimated
    # a microscope whose settings name no dose counter: unknown, though this light source has one
    assert Microscope(core).dose_mJ() is None and Microscope(core, **LIGHT).dose_mJ() is not None


def test_only_the_simulator_names_its_light_source():
    # a Micro-Manager microscope's light source is not assumed to be the simulator's: nothing is named
    assert MicroManagerSpec().power_property is None and MicroManagerSpec().dose_property is None
    named = MicroManagerSpec(power_property="LED.Power", dose_property="LED.Energy_mJ")
    assert (named.power_property, named.dose_property) == ("LED.Power", "LED.Energy_mJ")


def test_the_light_power_goes_where_the_microscope_sets_it(scope, core):
    plan = _plan(light_power_mW=3.0)
    scope.check(plan, blind_checks=False)
    assert scope.power_settings(plan) == [["Shutter", "Power_mW", "3.0"]]
    assert scope.power_settings(_plan()) == []  # no power asked for: none is set
    named = Microscope(core, power_property="Shutter.Power_mW")
    assert named.power_settings(_plan(light_power_mW=5.0)) == [["Shutter", "Power_mW", "5.0"]]
    with pytest.raises(HardwareError, match="Nothing says where this microscope sets the light power"):
        Microscope(core).power_settings(_plan(light_power_mW=5.0))  # none named: none assumed


@pytest.mark.parametrize(
    ("power_property", "power", "words"),
    [
        ("LED.Power_mW", 3.0, "no device 'LED' (the light power's property LED.Power_mW; it has: "),
        ("Shutter.Intensity", 3.0, "Light source 'Shutter' has no property 'Intensity'"),
        ("Shutter.Dose_mJ", 3.0, "Shutter.Dose_mJ is read-only"),
        ("Shutter.Power_mW", 500.0, "500 mW is outside what Shutter.Power_mW accepts (0 to 100)"),
    ],
)
def test_a_light_power_the_hardware_cannot_take_is_refused(core, power_property, power, words):
    with pytest.raises(HardwareError, match=words.replace("(", r"\(").replace(")", r"\)")):
        Microscope(core, power_property=power_property).check(_plan(light_power_mW=power), blind_checks=False)
    assert core.getProperty("Shutter", "Power_mW") == "10.0"  # nothing moved


def test_a_microscope_without_power_control_refuses_a_power(core, tmp_path):
    with pytest.raises(HardwareError, match="--power-property DEVICE.PROPERTY"):
        Microscope(core).check(_plan(light_power_mW=3.0), blind_checks=False)
    Microscope(core).check(_plan(), blind_checks=False)  # without a power it runs
    # refused in the request already, before anything opens
    with pytest.raises(SettingsError, match="nothing says where this microscope sets it"):
        AcquisitionRequest(output=tmp_path / "r.ome.zarr", power_mW=3.0, microscope=MicroManagerSpec())


@pytest.mark.parametrize(
    ("kw", "words"),
    [
        ({"channel_group": "Filters"}, "no config group 'Filters'"),
        ({"input_preset": "Brightfield"}, "no preset 'Brightfield' for the widefield input"),
        ({"reference_preset": "TIRF"}, "no preset 'TIRF' for the blind-check reference"),
    ],
)
def test_missing_groups_and_presets_are_refused_by_name(scope, kw, words):
    with pytest.raises(HardwareError, match=words):
        scope.check(_plan(**kw), blind_checks=True)


@pytest.mark.parametrize("text", ["Power_mW", ".Power_mW", "Shutter.", " . "])
def test_a_property_name_without_its_device_is_refused(text, tmp_path):
    with pytest.raises(SettingsError, match="DEVICE.PROPERTY"):
        PropertyRef.parse(text)
    with pytest.raises(SettingsError, match="DEVICE.PROPERTY"):
        AcquisitionRequest(output=tmp_path / "r.ome.zarr", microscope=MicroManagerSpec(dose_property=text))


def test_the_power_property_of_earlier_versions_moves_into_the_microscope(tmp_path):
    with pytest.warns(DeprecationWarning, match="power_property is deprecated"):
        request = AcquisitionRequest(output=tmp_path / "r.ome.zarr", power_mW=3.0, power_property="LED.P")
    assert request.microscope.power_property == "LED.P" and request.microscope.kind == "simulator"
    with pytest.warns(DeprecationWarning):
        request = AcquisitionRequest(
            output=tmp_path / "r.ome.zarr", power_property="LED.P", microscope=MicroManagerSpec(port=4900)
        )
    assert (request.microscope.kind, request.microscope.port, request.microscope.power_property) == (
        "micro-manager",
        4900,
        "LED.P",
    )


def test_an_acquisition_measures_at_the_light_power_it_was_asked_for(session, tmp_path):
    from acquisition_hooks import DeepZAcquisition, RunSettings
    from mm_deepz.modelfile import load_model
    from mm_deepz.shipped import shipped_model_path

    model = load_model(shipped_model_path(1))
    plan = DeepZPlan.for_model(
        model,
        -4,
        4,
        1,
        anchor_exposure_ms=8.0,
        light_power_mW=2.5,
        light_power_property=LIGHT["power_property"],
        dose_property=LIGHT["dose_property"],
    )
    run = DeepZAcquisition(
        session.core, model, plan, RunSettings(output=tmp_path / "run.ome.zarr", time_points=2, device="cpu")
    )
    summary = run.run()
    world = session.world
    # one input plane per time point; the two time points are one camera sequence, whose events' light
    # power pycromanager's engine does not set (the hook before the hardware does)
    assert world.light_power_mW == 2.5 and world.dose.exposures == 2
    assert summary.dose_mJ == pytest.approx(2 * 2.5 * 8.0 / 1000)  # read from the light source's counter
