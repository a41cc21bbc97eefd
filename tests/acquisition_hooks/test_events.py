"""What a requested z-stack becomes, decided once and written for either runner (no storage, no model)."""

import numpy as np
import pytest
import useq
from helpers import heavy_modules_after

from acquisition_hooks import DEEPZ_AXIS, DeepZPlan, EventRewriter
from acquisition_hooks.events import INPUT, REFERENCE, pycromanager_events, sequence_for


@pytest.fixture
def rewriter():
    plan = DeepZPlan(
        z_start_um=-2,
        z_end_um=2,
        z_step_um=1,
        plane_offsets_um=(-1.0, 1.0),
        anchor_exposure_ms=5,
        stack_exposure_ms=20,
        reference_exposure_ms=80,
        light_power_mW=3.0,
    )
    return EventRewriter(plan, anchor_properties=[("Shutter", "Power_mW", "3.0")])


def test_the_rewriting_needs_neither_storage_nor_the_model():
    # the decisions load, and are tested, where zarr and torch are not imported
    code = (
        "from acquisition_hooks import EventRewriter, DeepZPlan; "
        "EventRewriter(DeepZPlan(z_start_um=-2, z_end_um=2, z_step_um=1)).capture(0, 2)"
    )
    assert heavy_modules_after(code, {"torch", "zarr", "pycromanager"}) == []


def test_virtual_z_stacking_keeps_the_input_planes_at_low_light(rewriter):
    captures = [rewriter.capture(0, zi) for zi in range(5)]
    kept = [(zi, c) for zi, c in enumerate(captures) if c is not None]
    assert [zi for zi, _ in kept] == [1, 3]  # -1 and +1 µm: the model's two input planes
    for _, c in kept:
        assert c.kind == "anchor" and c.exposure_ms == 5 and c.config == ("Channel", "Widefield")
        assert c.properties == (("Shutter", "Power_mW", "3.0"),)
    assert [c.z_um for _, c in kept] == [-1.0, 1.0]


def test_the_mode_is_fixed_per_time_point(rewriter):
    assert rewriter.capture(0, 0) is None
    assert rewriter.set_deepz(False) == 1  # toggled mid-stack: it applies from t=1, the first not decided
    assert rewriter.capture(0, 2) is None  # t=0 stays Deep-Z
    full = [rewriter.capture(1, zi) for zi in range(5)]
    assert all(c.kind == "full" and c.exposure_ms == 20 and not c.properties for c in full)
    np.testing.assert_allclose([c.z_um for c in full], [-2, -1, 0, 1, 2])
    assert [rewriter.capture(1, zi, channel=REFERENCE) for zi in range(5)] == [None] * 5  # no blind check


def test_the_reference_light_path_is_taken_at_blind_checks_only(rewriter):
    assert rewriter.capture(0, 0, channel=REFERENCE) is None
    t = rewriter.ask_blind_check()
    ref = [rewriter.capture(t, zi, channel=REFERENCE) for zi in range(5)]
    assert [c.config for c in ref] == [("Channel", "Confocal")] * 5 and {c.exposure_ms for c in ref} == {80}
    assert [c.kind for c in ref] == ["reference"] * 5 and [c.z_um for c in ref] == [-2.0, -1.0, 0.0, 1.0, 2.0]


def test_one_decision_reads_the_same_in_both_runners(rewriter):
    capture = rewriter.capture(0, 3)
    requested = {"axes": {"time": 0, "z": 3}, "z": 1.0, "min_start_time": 0.0}
    d = capture.pycromanager_event(requested)
    assert requested == {"axes": {"time": 0, "z": 3}, "z": 1.0, "min_start_time": 0.0}  # not changed
    assert d == {
        "axes": {"time": 0, "z": 3, DEEPZ_AXIS: "anchor"},
        "z": 1.0,
        "min_start_time": 0.0,
        "exposure": 5,
        "config_group": ["Channel", "Widefield"],
        "properties": [["Shutter", "Power_mW", "3.0"]],
    }
    e = capture.useq_event(useq.MDAEvent(index={"t": 0, "z": 3}, z_pos=1.0, metadata={"run": "x"}))
    assert (e.z_pos, e.exposure, e.channel.group, e.channel.config) == (1.0, 5, "Channel", "Widefield")
    assert e.properties == [useq.PropertyTuple("Shutter", "Power_mW", "3.0")]
    assert e.metadata == {"run": "x", DEEPZ_AXIS: "anchor"} and dict(e.index) == {"t": 0, "z": 3}


@pytest.mark.parametrize(("start", "end", "step"), [(-10, 10, 1), (-3, 3, 0.3), (0, 1.5, 0.15), (-1, 1, 0.1)])
def test_one_sequence_for_both_runners_on_the_plans_grid(start, end, step):
    # steps that are not binary fractions once made pycromanager's float arange add a plane past the end
    plan = DeepZPlan(z_start_um=start, z_end_um=end, z_step_um=step)
    seq = sequence_for(plan, time_points=4, interval_s=2.5, positions_xy_um=[(10.0, 20.0), (30.0, 40.0)])
    z = plan.requested_z()
    events = pycromanager_events(seq, t=3)
    assert len(events) == 2 * 2 * len(z)  # two positions, two light paths (requested and reference)
    for p, (x, y) in enumerate([(10.0, 20.0), (30.0, 40.0)]):
        here = [e for e in events if e["axes"]["position"] == p and e["axes"]["channel"] == INPUT]
        np.testing.assert_allclose(
            [e["z"] for e in here], z, atol=1e-9
        )  # the rewritten events use the plan's z
        assert [e["axes"]["z"] for e in here] == list(range(len(z)))
        assert all(
            e["x"] == x and e["y"] == y and e["axes"]["time"] == 3 and e["min_start_time"] == 7.5
            for e in here
        )
    native = list(seq.iter_events())  # what pymmcore-plus runs: the same grid at every time point
    assert len(native) == 4 * 2 * 2 * len(z)
    np.testing.assert_allclose([e.z_pos for e in native[: len(z)]], z, atol=1e-9)
    assert (
        "position" not in pycromanager_events(sequence_for(plan, 1, 0.0), 0)[0]["axes"]
    )  # where the stage is
