"""The inference worker keeps order, pushes back when full, and surfaces errors without hanging."""

import threading
import time

import numpy as np
import pytest
import torch
from helpers import blobs, tiny_model

from mm_deepz.engine import InferenceWorker, PlaneBundle, Predictor
from mm_deepz.errors import InferenceError, WorkerBusy, WorkerClosed


class GatedPredictor(Predictor):
    """A real predictor that waits for a gate before each stack (to hold the queue full)."""

    def __init__(self, *a, **k):
        super().__init__(*a, **k)
        self.gate = threading.Event()

    def predict_stack(self, *a, **k):
        assert self.gate.wait(10)
        return super().predict_stack(*a, **k)


def bundle(i: int, target=(-1.0, 1.0)) -> PlaneBundle:
    return PlaneBundle((i, 0, 0), blobs((1, 48, 48), seed=i), (0.0,), np.array(target))


def test_results_come_back_in_submission_order():
    seen = []
    with InferenceWorker(
        Predictor(tiny_model(), "cpu"), max_pending=8, on_result=lambda b, s: seen.append(b.key[0])
    ) as worker:
        futures = [worker.submit(bundle(i), timeout=5) for i in range(6)]
        stacks = [f.result(timeout=30) for f in futures]
    assert seen == list(range(6))
    assert all(s.data.shape == (2, 48, 48) for s in stacks)
    assert worker.stats.done == 6 and worker.stats.planes_out == 12


def test_full_queue_pushes_back_instead_of_blocking():
    predictor = GatedPredictor(tiny_model(), "cpu")
    worker = InferenceWorker(predictor, max_pending=1)
    first = worker.submit(bundle(0))
    deadline = time.time() + 5
    while worker.pending and time.time() < deadline:  # the worker took bundle 0
        time.sleep(0.01)
    worker.submit(bundle(1))  # fills the queue
    t0 = time.perf_counter()
    with pytest.raises(WorkerBusy, match="queue full"):
        worker.submit(bundle(2), timeout=0.05)
    assert time.perf_counter() - t0 < 1.0
    assert worker.stats.rejected == 1
    predictor.gate.set()
    assert first.result(timeout=30).data.shape[0] == 2
    assert worker.close(timeout=30)


def test_model_errors_fail_one_bundle_and_the_worker_goes_on():
    model = tiny_model()
    predictor = Predictor(model, "cpu")
    errors = []
    worker = InferenceWorker(predictor, on_error=lambda b, e: errors.append((b.key, e)))
    bad = worker.submit(bundle(0, target=(50.0,)), timeout=5)  # outside the trained range
    good = worker.submit(bundle(1), timeout=5)
    with pytest.raises(Exception, match="trained for"):
        bad.result(timeout=30)
    assert good.result(timeout=30).data.shape == (2, 48, 48)
    assert errors and errors[0][0] == (0, 0, 0)
    with torch.no_grad():
        model.network.head.bias.fill_(float("nan"))
    with pytest.raises(InferenceError):
        worker.submit(bundle(2), timeout=5).result(timeout=30)
    assert worker.stats.failed == 2
    assert worker.close(timeout=30)
    with pytest.raises(WorkerClosed):
        worker.submit(bundle(3))


def test_a_worker_starts_its_thread_with_the_first_bundle_and_an_unused_one_closes_at_once():
    def model_threads() -> int:
        return sum(t.name == "deepz-inference" for t in threading.enumerate())

    before = model_threads()
    unused = InferenceWorker(Predictor(tiny_model(), "cpu"))
    assert model_threads() == before  # making a worker starts nothing
    assert unused.close(timeout=1)
    with pytest.raises(WorkerClosed):
        unused.submit(bundle(0))
    with InferenceWorker(Predictor(tiny_model(), "cpu")) as worker:
        assert worker.submit(bundle(0), timeout=5).result(timeout=30).data.shape == (2, 48, 48)
        assert model_threads() == before + 1
    assert model_threads() == before  # closed: the thread ended


def test_stopping_takes_back_the_queued_bundles_and_finishes_the_one_in_progress():
    # a Stop does not wait for every queued stack: those the model has not started come back to the
    # caller (who records them as still to make); the one in progress is finished
    predictor = GatedPredictor(tiny_model(), "cpu")
    made = []
    worker = InferenceWorker(predictor, max_pending=4, on_result=lambda b, s: made.append(b.key[0]))
    futures = [worker.submit(bundle(0))]
    deadline = time.time() + 5
    while worker.pending and time.time() < deadline:  # the model took bundle 0
        time.sleep(0.01)
    futures += [worker.submit(bundle(i)) for i in (1, 2, 3)]
    taken = worker.cancel_pending()
    assert [b.key[0] for b in taken] == [1, 2, 3] and all(f.cancelled() for f in futures[1:])
    predictor.gate.set()
    assert worker.close(timeout=30) and made == [0] and futures[0].result().data.shape[0] == 2


def test_a_failing_listener_stops_neither_inference_nor_the_runs_own_listener():
    # the run's virtual results listen first (a higher priority); a display that raises is logged
    heard = []

    def broken(b, s):
        raise RuntimeError("a display that broke")

    with InferenceWorker(Predictor(tiny_model(), "cpu"), on_result=broken) as worker:
        worker.made.connect(lambda b, s: heard.append((b.key[0], s.data.shape[0])), priority=1)
        futures = [worker.submit(bundle(i), timeout=None) for i in range(3)]
    assert [f.result().data.shape[0] for f in futures] == [2, 2, 2] and worker.stats.done == 3
    assert heard == [(0, 2), (1, 2), (2, 2)]
