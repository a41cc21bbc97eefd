"""The predictor: tiling is seamless, results deterministic, bad requests refused."""

import numpy as np
import pytest
import torch
from helpers import blobs, tiny_model

from mm_deepz.engine import Predictor, resolve_device
from mm_deepz.errors import DeepZError, InferenceError, InputError, ModelMismatchError, ZRangeError

TILE_TOLERANCE_ADU = 2  # tiled vs whole-frame, max abs difference (documented in docs/engine.md)


def test_tiled_prediction_equals_whole_frame():
    model = tiny_model(seed=1)
    planes = blobs((1, 200, 232), seed=2)
    z = np.array([-6.0, 0.0, 5.0])
    whole = Predictor(model, "cpu", tile_size=512).predict_stack(planes, (0.0,), z).data.astype(int)
    tiled = Predictor(model, "cpu", tile_size=64, tile_overlap=24).predict_stack(planes, (0.0,), z).data
    assert whole.shape == (3, 200, 232)
    assert np.abs(tiled.astype(int) - whole).max() <= TILE_TOLERANCE_ADU


def test_prediction_is_deterministic_and_depends_on_the_dpm():
    p = Predictor(tiny_model(n_planes=2, seed=4), "cpu")
    planes = blobs((2, 64, 64), seed=5)
    a = p.predict_stack(planes, (-2.0, 2.0), np.array([-4.0, 4.0]))
    b = p.predict_stack(planes, (-2.0, 2.0), np.array([-4.0, 4.0]))
    assert np.array_equal(a.data, b.data)
    assert a.data.dtype == np.uint16 and a.data.shape == (2, 64, 64)
    assert not np.array_equal(a.data[0], a.data[1])
    surf = p.predict_dpm(planes, (-2.0, 2.0), np.full((1, 2, 64, 64), [[[-2.0]], [[-6.0]]], np.float32))
    assert np.array_equal(surf[0], a.data[0])  # a uniform surface DPM = the uniform plane


def test_requests_outside_the_trained_range_are_refused():
    p = Predictor(tiny_model(z_range_um=10.0), "cpu")
    with pytest.raises(ZRangeError, match="±10"):
        p.predict_stack(blobs(), (0.0,), np.array([0.0, 12.0]))


def test_bad_planes_are_refused_with_a_reason():
    p = Predictor(tiny_model(n_planes=2), "cpu")
    with pytest.raises(ModelMismatchError, match="takes 2 input plane"):
        p.predict_stack(blobs(), (0.0,), np.array([0.0]))
    with pytest.raises(InputError, match="flat"):
        p.predict_stack(np.full((2, 64, 64), 100, np.uint16), (-2.0, 2.0), np.array([0.0]))
    with pytest.raises(InputError, match="shape"):
        p.predict_stack(np.zeros((2, 4, 64, 64)), (-2.0, 2.0), np.array([0.0]))


def test_nan_from_the_model_is_an_inference_error():
    model = tiny_model()
    with torch.no_grad():
        model.network.head.bias.fill_(float("nan"))
    with pytest.raises(InferenceError, match="NaN"):
        Predictor(model, "cpu").predict_stack(blobs(), (0.0,), np.array([1.0]))


def test_outputs_clip_to_the_camera_range():
    model = tiny_model()
    with torch.no_grad():
        model.network.head.bias.fill_(1e4)  # absurdly bright output
    out = Predictor(model, "cpu").predict_stack(blobs(), (0.0,), np.array([1.0])).data
    assert out.dtype == np.uint16 and out.max() == 65535


@pytest.mark.parametrize("dtype", [np.uint16, np.uint8, np.float32])
def test_network_units_become_camera_counts_plane_by_plane_as_a_whole_stack_would(dtype):
    # the engine converts a stack one plane at a time (no stack-sized temporaries): the same counts,
    # rounded and clipped to the camera's range, as converting the whole stack at once
    from mm_deepz.normalization import IntensityScale, to_dtype

    scale = IntensityScale(100.0, 3100.0)
    y = np.random.default_rng(1).normal(0.5, 12, (2, 3, 40, 30)).astype(np.float32)  # far out of range too
    counts = scale.to_counts(y, dtype)
    assert counts.dtype == dtype and counts.shape == y.shape
    np.testing.assert_array_equal(counts, to_dtype(scale.inverse(y), dtype))
    if dtype is not np.float32:
        assert counts.min() == 0 and counts.max() == np.iinfo(dtype).max
    np.testing.assert_array_equal(scale.to_counts(y[0, 0], dtype), counts[0, 0])  # one plane alone


def test_cuda_request_falls_back_to_cpu_with_a_warning():
    if torch.cuda.is_available():
        assert resolve_device("cuda").type == "cuda"
    else:
        with pytest.warns(RuntimeWarning, match="CPU"):
            assert resolve_device("cuda").type == "cpu"
    with pytest.raises(ValueError, match="Unknown device"):
        resolve_device("tpu")


def test_a_gpu_is_chosen_by_number_and_one_that_is_not_there_is_refused_by_name(tmp_path):
    # #35: `--device cuda:1` was refused as an unknown device; it names the second GPU
    import torch

    from acquisition_hooks import AcquisitionRequest, prepare
    from mm_deepz.errors import DeviceError, SettingsError
    from mm_deepz.training.train import TrainConfig

    gpus = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if gpus:
        assert resolve_device("cuda:0") == torch.device("cuda:0")
    with pytest.raises(DeviceError, match=f"cuda:{gpus} is not on this computer"):
        resolve_device(f"cuda:{gpus}")
    assert AcquisitionRequest(device="cuda:1").device == "cuda:1"  # a valid name, checked on use ...
    with pytest.raises(DeviceError, match=f"cuda:{gpus} is not on this computer"):
        # ... before the microscope opens (an output in tmp_path: the current folder may hold a run)
        prepare(AcquisitionRequest(output=tmp_path / "r.ome.zarr", device=f"cuda:{gpus}"))
    for bad in ("cuda:-1", "cuda:x", "gpu"):
        with pytest.raises(SettingsError, match="use auto, cpu, cuda or cuda:N"):
            AcquisitionRequest(device=bad)
        with pytest.raises(DeepZError, match="use auto, cpu, cuda or cuda:N"):
            TrainConfig(device=bad)


def test_frame_borders_are_as_clean_as_the_inside():
    """The shipped model on a simulated widefield worm: the outermost rows and columns of a
    virtual plane carry no more noise than those just inside them."""
    from mm_deepz.modelfile import load_model
    from mm_deepz.shipped import shipped_model_path
    from simulators.training_data import PairSpec, make_stack_pair

    pair = make_stack_pair(PairSpec(phantom="worm", seed=7, shape=(96, 96), z_half_range_um=1, z_step_um=1))
    planes = pair.widefield[1:2]  # the in-focus plane
    virtual = (
        Predictor(load_model(shipped_model_path(1)), "cpu")
        .predict_stack(planes, (0.0,), np.array([-6.0]), out_dtype=np.float32)
        .data[0]
    )
    edges = [virtual[0], virtual[-1], virtual[:, 0], virtual[:, -1]]
    inside = [virtual[1], virtual[-2], virtual[:, 1], virtual[:, -2]]
    for edge, ref in zip(edges, inside, strict=True):
        assert np.std(np.diff(edge)) < 3 * np.std(np.diff(ref)) + 0.05
