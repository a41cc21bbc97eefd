"""The hooks' pieces on their own: frame arrival and whole stacks, the virtual stacks' backlog,
failures and blind checks, the shared stop. No container (zarr) and no model (torch): a store in
memory stands where the recorder does, and a stand-in predictor where the network does."""

import subprocess
import sys
import threading
import time

import numpy as np
import pytest

from acquisition_hooks import frames
from acquisition_hooks.frames import FrameRouter, saturated_fraction
from acquisition_hooks.plan import DeepZPlan
from acquisition_hooks.state import RunState
from acquisition_hooks.virtual import VirtualResults
from mm_deepz.engine.bundle import VirtualStack
from mm_deepz.engine.worker import InferenceWorker
from mm_deepz.errors import StorageError
from mm_deepz.normalization import IntensityScale


def test_the_pieces_load_without_storage_or_model():
    code = (
        "import sys; import acquisition_hooks.frames, acquisition_hooks.virtual, acquisition_hooks.state, "
        "mm_deepz.engine.worker; print(sorted({'torch', 'zarr', 'pycromanager'} & set(sys.modules)))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


# -- frames ------------------------------------------------------------------------------------
@pytest.fixture
def router():
    return FrameRouter(n_z=5, anchors=(1, 3), n_positions=2)


def test_a_time_point_is_acquired_once_every_frame_of_every_position_arrived(router):
    for p in (0, 1):
        router.arrived("anchor", 0, p)
    router.arrived("anchor", 0, 0)  # position 0 whole; position 1 lacks one input plane
    sent = threading.Event()

    def last_frame() -> None:
        sent.set()
        router.arrived("anchor", 0, 1)

    threading.Timer(0.1, last_frame).start()
    assert router.wait_acquired(0, timeout=3600)  # woken by the last frame (not a timeout) ...
    assert sent.is_set()  # ... and not before it came
    router.arrived("anchor", 1, 0)
    router.arrived("anchor", 1, 1)
    assert not router.wait_acquired(1, timeout=0.05)  # given up: one input plane of each position missing


def test_time_points_nobody_waits_for_are_not_kept(router, monkeypatch):
    # the MDA runner never waits for a time point: a 10-minute run at 2048² grew by ~290 bytes a frame
    monkeypatch.setattr(frames, "KEPT_TIME_POINTS", 50)
    for t in range(1000):
        for p in (0, 1):
            router.arrived("anchor", t, p)
            router.arrived("anchor", t, p)
    assert len(router._acquired_t) <= 50
    assert router.wait_acquired(999, timeout=0)  # the latest is still there for a runner that waits
    assert not router._acquired_t  # and with it every earlier one: a runner waits in order


def test_a_whole_block_acquired_before_its_first_wait_is_waited_for_at_once(router):
    # pycromanager's runner submits a block of time points and waits for each in turn, possibly after
    # the camera took all of them (a loaded machine): each wait finds its time point (they were
    # forgotten two time points behind the camera, and each wait ran into its timeout)
    for t in range(40):
        for p in (0, 1):
            router.arrived("anchor", t, p)
            router.arrived("anchor", t, p)
    assert all(router.wait_acquired(t, timeout=0) for t in range(40))
    assert not router._acquired_t


def test_full_stacks_need_every_plane(router):
    for _zi in range(4):
        router.arrived("full", 2, 0)
    assert not router.wait_acquired(2, timeout=0.01)


def test_a_stop_wakes_the_waiting_submitter(router):
    answers: list[bool] = []
    waiter = threading.Thread(target=lambda: answers.append(router.wait_acquired(0, timeout=3600)))
    waiter.start()
    router.stop()
    waiter.join(60)  # an hour's wait, ended by the stop
    assert answers == [False]


def test_a_stack_is_whole_at_its_last_plane_with_its_input_planes_in_order(router):
    a, b = np.full((4, 4), 1, np.uint16), np.full((4, 4), 3, np.uint16)
    assert router.collect("anchor", 0, 0, 3, b) is None
    whole = router.collect("anchor", 0, 0, 1, a)
    assert whole is not None and whole.intact and whole.written == (1, 3)
    assert not whole.completes_time_point  # position 1 of t=0 is still to come
    np.testing.assert_array_equal(router.input_planes(whole)[:, 0, 0], [1, 3])  # plan order, not arrival
    for zi in (1, 3):
        last = router.collect("anchor", 0, 1, zi, a)
    assert last.completes_time_point


def test_a_single_input_plane_goes_to_the_model_without_a_copy():
    # #33: the frame writer copied every 1-plane model's 2048² input frame (np.stack), ~1 ms a frame
    router = FrameRouter(n_z=5, anchors=(2,), n_positions=1)
    frame = np.arange(16, dtype=np.uint16).reshape(4, 4)
    planes = router.input_planes(router.collect("anchor", 0, 0, 2, frame))
    assert planes.shape == (1, 4, 4) and np.shares_memory(planes, frame)
    np.testing.assert_array_equal(planes[0], frame)


def test_a_rejected_plane_leaves_its_stack_not_intact(router):
    router.reject("full", 1, 0, 2)
    wholes = [router.collect("full", 1, 0, zi, None) for zi in range(5)]
    assert wholes[:4] == [None] * 4
    assert not wholes[4].intact and wholes[4].written == (0, 1, 3, 4)
    assert all(v is None for v in wholes[4].planes.values())  # full-stack planes are not kept in memory


def test_saturation_is_counted_at_a_cameras_full_scale_only():
    img = np.zeros((10, 10), np.uint16)
    img[0, :5] = 4095
    assert saturated_fraction(img) == 0.05
    img[0, :5] = 4000  # bright but not at a full scale
    assert saturated_fraction(img) == 0.0
    assert saturated_fraction(np.zeros((0, 0), np.uint16)) == 0.0


# -- the shared stop -------------------------------------------------------------------------------
def test_the_first_stop_reason_is_kept_and_listeners_are_told_once():
    state, told = RunState(), []
    state.on_stop(told.append)
    state.stop("disk full")
    state.stop("aborted by the user")
    assert state.stop_reason == "disk full" and told == ["disk full"]


def test_a_failing_display_callback_is_noted_once_and_never_raises():
    state = RunState()

    def broken(*args):
        raise ValueError("no display")

    for _ in range(3):
        state.notify(broken, 1, 2)
    assert state.stats.errors == ["display callback failed: ValueError: no display"]


def test_counters_are_not_lost_between_threads():
    state = RunState()
    threads = [
        threading.Thread(target=lambda: [state.stats.count("virtual_missing") for _ in range(2000)])
        for _ in range(4)
    ]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert state.stats.virtual_missing == 8000


# -- virtual stacks ---------------------------------------------------------------------------------
class MemoryStore:
    """The recorder's part that the virtual stacks use, in memory."""

    def __init__(self, z_n: int = 5) -> None:
        self.measured: dict[tuple[int, int], np.ndarray] = {}
        self.virtual: dict[tuple[int, int], np.ndarray] = {}
        self.reference: dict[tuple[int, int], np.ndarray] = {}
        self.complete: set[tuple[str, int, int]] = set()
        self.pending: set[tuple[int, int]] = set()
        self.missing: dict[tuple[int, int], str] = {}
        self.blind: dict[tuple[int, int], dict] = {}
        self.full = False

    def read_planes(self, image, t, z_indices, p=0):
        stack = self.measured[t, p]
        return stack[list(z_indices)]

    def write_stack(self, image, t, stack, p=0):
        if self.full:
            raise StorageError("No space left on the output disk.")
        self.virtual[t, p] = stack
        self.pending.discard((t, p))

    def mark_complete(self, image, t, p=0, **info):
        self.complete.add((image, t, p))

    def is_complete(self, image, t, p=0):
        return (image, t, p) in self.complete

    def mark_virtual_pending(self, t, p=0):
        self.pending.add((t, p))

    def mark_virtual_missing(self, t, reason, p=0):
        self.missing[t, p] = reason
        self.pending.discard((t, p))

    def array(self, image, p=0):
        return {(t, 0): stack for (t, pp), stack in self.reference.items() if pp == p}  # [t, channel]

    def record_blind_check(self, t, metrics, p=0):
        self.blind[t, p] = metrics


class MeanPredictor:
    """Stands in for the network: every virtual plane is the mean of the input planes (optionally slow
    or failing on given time points)."""

    def __init__(self, delay_s: float = 0.0, fail_at: tuple[int, ...] = ()) -> None:
        self.delay_s, self.fail_at, self.seen = delay_s, fail_at, []

    def predict_stack(self, planes, plane_z_um, target_z_um, out_dtype=np.float32):
        self.seen.append(float(planes.mean()))
        time.sleep(self.delay_s)
        if round(float(planes.mean())) in self.fail_at:
            raise RuntimeError("CUDA out of memory")
        data = np.repeat(planes.mean(0, keepdims=True), len(target_z_um), 0).astype(out_dtype)
        return VirtualStack(data, np.asarray(target_z_um), plane_z_um, IntensityScale(0.0, 1.0))


PLAN = DeepZPlan(
    z_start_um=-2.0, z_end_um=2.0, z_step_um=1.0, plane_offsets_um=(-1.0, 1.0), blind_check_every=2
)


def _virtual(store, predictor, max_pending=4, score=None):
    state = RunState()
    worker = InferenceWorker(predictor, max_pending=max_pending)
    made, scored = [], []
    results = VirtualResults(
        plan=PLAN,
        recorder=store,
        worker=worker,
        state=state,
        score=score or (lambda v, r: {"ssim_mean": 1.0, "psnr_mean": float(np.abs(v - r).max())}),
    )
    results.signals.virtual.connect(lambda t, stack: made.append(t))
    results.signals.blind_check.connect(lambda t, p, m: scored.append((t, m)))
    return results, worker, state, made, scored


def _planes(t: int) -> np.ndarray:
    """Input planes of time point t whose mean is t (so the stand-in's output tells them apart)."""
    return np.full((2, 4, 4), float(t), np.float32)


def test_a_busy_model_defers_stacks_to_the_backlog_and_makes_them_from_disk():
    store = MemoryStore()
    results, worker, state, made, _ = _virtual(store, MeanPredictor(delay_s=0.2), max_pending=1)
    for t in range(6):  # the camera is faster than the model
        store.measured[t, 0] = np.stack([_planes(t)[0]] * 5)  # the planes as written to disk
        results.submit(t, 0, _planes(t))
    assert state.stats.virtual_deferred >= 3 and results.backlog == state.stats.virtual_deferred
    assert {(t, 0) for t in range(6)} - set(store.virtual) >= store.pending  # recorded as pending
    progress = []
    results.drain_backlog(lambda done, total: progress.append((done, total)))
    worker.close()
    assert sorted(made) == list(range(6)) and not store.pending and results.backlog == 0
    for t in range(6):  # each stack made from its own planes, none dropped
        assert float(store.virtual[t, 0].mean()) == t
    assert progress and progress[-1][0] == progress[-1][1]


def test_a_model_failure_is_recorded_as_missing_with_its_reason_and_the_next_stack_is_made():
    store = MemoryStore()
    results, worker, state, made, _ = _virtual(store, MeanPredictor(fail_at=(1,)))
    for t in range(3):
        results.submit(t, 0, _planes(t))
    worker.close()
    assert made == [0, 2] and state.stats.virtual_missing == 1
    assert store.missing == {(1, 0): "RuntimeError: CUDA out of memory"}
    assert state.stats.errors == ["t=1, p=0: RuntimeError: CUDA out of memory"]


def test_a_full_disk_stops_the_run_and_makes_nothing_more():
    store = MemoryStore()
    store.full = True
    results, worker, state, made, _ = _virtual(store, MeanPredictor())
    results.submit(0, 0, _planes(0))
    worker.close()
    assert state.storage_failed and state.stop_reason == "No space left on the output disk."
    assert made == [] and state.stats.virtual_missing == 1


def test_a_blind_check_is_scored_once_both_stacks_exist_whichever_comes_first():
    store = MemoryStore()
    results, worker, _state, _made, scored = _virtual(store, MeanPredictor())
    # t=0: the virtual stack first, then the reference; t=2: the reference first
    results.submit(0, 0, _planes(0))
    worker.close()
    assert scored == []  # no reference yet
    store.reference[0, 0] = np.full((5, 4, 4), 0.5, np.float32)
    store.complete.add(("reference", 0, 0))
    results.blind_check(0, 0)
    assert scored == [(0, {"ssim_mean": 1.0, "psnr_mean": 0.5})] and store.blind[0, 0] == scored[0][1]
    results.blind_check(0, 0)
    assert len(scored) == 1  # scored once

    results2, worker2, _, _, scored2 = _virtual(store, MeanPredictor())
    store.reference[2, 0] = np.full((5, 4, 4), 2.0, np.float32)
    store.complete.add(("reference", 2, 0))
    results2.submit(2, 0, _planes(2))
    results2.submit(3, 0, _planes(3))  # not a blind-check time point: nothing kept, nothing scored
    worker2.close()
    assert scored2 == [(2, {"ssim_mean": 1.0, "psnr_mean": 0.0})]
