"""The Deep-Z plan and the event-generation hook: what gets exposed, at what settings."""

import numpy as np
import pytest
import useq
from helpers import tiny_model

from acquisition_hooks import DEEPZ_AXIS, DeepZHooks, DeepZPlan, PlanError
from acquisition_hooks.microscope import Microscope
from mm_deepz.engine import InferenceWorker, Predictor
from mm_deepz.errors import ZRangeError
from mm_deepz.io import Geometry, Recorder


def test_plan_anchors_and_light_ratio():
    plan = DeepZPlan(z_start_um=-10, z_end_um=10, z_step_um=1, plane_offsets_um=(-2.0, 2.0))
    assert len(plan.requested_z()) == 21
    assert plan.anchor_z() == (-2.0, 2.0) and plan.anchor_indices() == (8, 12)
    assert plan.dose_ratio == pytest.approx(10.5)
    assert DeepZPlan(z_start_um=-10, z_end_um=10, z_step_um=1).dose_ratio == 21


def test_plan_refuses_what_cannot_work():
    with pytest.raises(PlanError, match="step must be positive"):
        DeepZPlan(z_start_um=0, z_end_um=10, z_step_um=-1)
    with pytest.raises(PlanError, match="not on the requested grid"):
        DeepZPlan(z_start_um=-10, z_end_um=10, z_step_um=1.5, plane_offsets_um=(-2.0, 2.0))
    with pytest.raises(ZRangeError, match="trained for ±4"):
        DeepZPlan.for_model(tiny_model(z_range_um=4.0), -10, 10, 1)
    # a range beyond the trained one is named as such, also when its centre falls between grid planes
    with pytest.raises(ZRangeError, match="-10 to 15 µm reaches 12.5 µm .* trained for ±10"):
        DeepZPlan.for_model(tiny_model(z_range_um=10.0), -10, 15, 1)


@pytest.fixture
def hooks(tmp_path, core):
    plan = DeepZPlan(
        z_start_um=-2,
        z_end_um=2,
        z_step_um=1,
        anchor_exposure_ms=5,
        stack_exposure_ms=20,
        light_power_mW=3.0,
        light_power_property="Shutter.Power_mW",
    )
    rec = Recorder(tmp_path / "r.ome.zarr", Geometry(tuple(plan.requested_z()), 0.325, 1.0, (32, 32)))
    with InferenceWorker(
        Predictor(tiny_model(), "cpu")
    ) as worker:  # the light power where the simulator sets it
        yield DeepZHooks(
            plan,
            rec,
            worker,
            anchor_properties=Microscope(core, power_property=plan.light_power_property).power_settings(plan),
        )


def _event(t, zi, z):
    return {"axes": {"time": t, "z": zi}, "z": z, "min_start_time": 0}


def test_hook_keeps_only_the_anchor_plane_at_low_light(hooks):
    out = [hooks.rewrite_event(_event(0, i, z)) for i, z in enumerate(hooks.plan.requested_z())]
    kept = [e for e in out if e is not None]
    assert len(kept) == 1
    e = kept[0]
    assert e["axes"] == {"time": 0, "z": 2, DEEPZ_AXIS: "anchor"} and e["z"] == 0.0
    assert e["exposure"] == 5 and e["config_group"] == ["Channel", "Widefield"]
    assert e["properties"] == [["Shutter", "Power_mW", "3.0"]]
    assert hooks.stats.planes_skipped == 4


def test_toggle_takes_effect_at_the_next_time_point(hooks):
    assert hooks.rewrite_event(_event(0, 0, -2.0)) is None  # t=0 is a Deep-Z time point
    hooks.enabled = False
    assert hooks.rewrite_event(_event(0, 1, -1.0)) is None  # still t=0: stays Deep-Z
    full = [hooks.rewrite_event(_event(1, i, z)) for i, z in enumerate(hooks.plan.requested_z())]
    assert all(e is not None and e["axes"][DEEPZ_AXIS] == "full" and e["exposure"] == 20 for e in full)


def test_other_events_pass_untouched(hooks):
    no_z = {"axes": {"time": 0}, "exposure": 7}
    assert hooks.rewrite_event(no_z) is no_z
    # events are rewritten before submission: pycromanager gets the image hook, and the hook before the
    # hardware, which passes every event until the run stops and then drops what is still queued
    kwargs = hooks.acquisition_kwargs()
    assert set(kwargs) == {"image_process_fn", "pre_hardware_hook_fn"}
    event = {"axes": {"time": 1, "z": 10}, "z": 0.0}
    assert kwargs["pre_hardware_hook_fn"](event) is event
    hooks.stop("stopped by the user")
    assert kwargs["pre_hardware_hook_fn"](event) is None


def test_a_plan_is_sized_in_planes_bytes_time_and_light_before_it_runs():
    from acquisition_hooks.estimate import PlanEstimate

    plan = DeepZPlan(
        z_start_um=-10, z_end_um=10, z_step_um=1, plane_offsets_um=(-2.0, 2.0), blind_check_every=4
    )
    # 10 time points every 5 s, 2 positions, 2 input planes of 10 ms, blind checks at t = 0, 4, 8
    deepz = PlanEstimate.of(plan, 10, 5.0, 2, (100, 100))
    assert (deepz.measured_planes, deepz.virtual_planes, deepz.reference_planes) == (40, 420, 126)
    assert deepz.bytes == 100 * 100 * ((40 + 126) * 2 + 420 * 4)
    assert deepz.exposure_s == pytest.approx(40 * 0.010 + 126 * 0.100)
    assert deepz.exposure_full_s == pytest.approx(420 * 0.010 + 126 * 0.100)
    assert deepz.duration_s == pytest.approx(9 * 5.0 + deepz.exposure_s / 10)
    assert deepz.virtual_planes_per_s == pytest.approx(42 / 5.0)  # both positions' stacks each interval
    full = PlanEstimate.of(plan, 10, 5.0, 2, (100, 100), deepz=False)
    assert (full.measured_planes, full.virtual_planes) == (420, 0) and full.light_saving == pytest.approx(1)


def test_a_time_point_s_useq_events_are_made_once_and_stamped_as_useq_makes_them():
    # the MDA engine builds only the events it takes (useq made all 42 of a time point, 1.4 ms a frame)
    from acquisition_hooks.events import useq_event_at, useq_time_point

    sequence = useq.MDASequence(
        time_plan={"interval": 0.5, "loops": 3},
        z_plan={"range": 2, "step": 1},
        channels=["Widefield", "Confocal"],
        stage_positions=[(0, 0), (5, 5)],
        axis_order="tpcz",
    )
    stamped = [useq_event_at(e, sequence, t) for t in range(3) for e in useq_time_point(sequence)]
    assert stamped == list(sequence)  # index, start time, the first event's timer reset, its sequence
    assert stamped[-1].min_start_time == 1.0 and useq_time_point(sequence) is useq_time_point(sequence)


def test_both_runners_take_a_blind_check_from_the_one_sequence(hooks, core):
    # #36 item 1: a blind check's reference stack is the sequence's reference light path at every position,
    # kept only at a blind check's time points; pycromanager's events and the MDA engine's are two spellings
    from acquisition_hooks.events import pycromanager_events, sequence_for
    from acquisition_hooks.mda import DeepZMDAEngine

    xy = [(0.0, 0.0), (50.0, -20.0)]
    sequence = sequence_for(hooks.plan, time_points=3, interval_s=0.0, positions_xy_um=xy)
    t = hooks.rewriter.ask_blind_check()  # the plan has none: one asked for, as the panel's button does
    assert t == 0

    def taken(e):
        return (e["axes"]["position"], e["axes"]["z"], (e["x"], e["y"]), tuple(e["config_group"]))

    pyc = {t: [hooks.rewrite_event(e) for e in pycromanager_events(sequence, t)] for t in (0, 1)}
    engine = DeepZMDAEngine(core, hooks)
    mda = [e for t in (0, 1) for e in engine.time_point(sequence, t)]
    reference = [(p, zi, xy[p], ("Channel", "Confocal")) for p in (0, 1) for zi in range(5)]
    assert [taken(e) for e in pyc[0] if e and e["axes"][DEEPZ_AXIS] == "reference"] == reference
    assert not [e for e in pyc[1] if e and e["axes"][DEEPZ_AXIS] == "reference"]  # t=1: no blind check
    assert [
        (e.index["p"], e.index["z"], (e.x_pos, e.y_pos), (e.channel.group, e.channel.config))
        for e in mda
        if e.metadata[DEEPZ_AXIS] == "reference"
    ] == reference
    # the input planes of both runners: the anchor at each position, at both time points
    assert [(e.index["t"], e.index["p"], e.metadata[DEEPZ_AXIS]) for e in mda if e.index["c"] == 0] == [
        (t, p, "anchor") for t in (0, 1) for p in (0, 1)
    ]


def test_a_frame_reaches_the_recorder_the_same_way_from_either_runner(hooks):
    # one typed entry for frames: pycromanager's image hook only reads its metadata into it
    plane = np.full((32, 32), 7, np.uint16)
    hooks.frame("reference", 0, 2, 0, plane)
    assert hooks.image_process_fn(plane, {"Axes": {"time": 0, "z": 3, DEEPZ_AXIS: "reference"}}) is None
    other = (plane, {"Axes": {"time": 0}})
    assert hooks.image_process_fn(*other) == other  # not Deep-Z's: left to pycromanager's storage
    stored = hooks.recorder.read_planes("reference", 0, (2, 3))
    assert stored.shape == (2, 32, 32) and (stored == 7).all() and hooks.stats.reference_planes == 2
