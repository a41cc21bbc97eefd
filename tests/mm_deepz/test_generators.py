"""The two generators: the U-Net and the encode-once network, through every place a model goes."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from helpers import blobs, encode_once_model, tiny_model

from mm_deepz.engine import InferenceWorker, PlaneBundle, Predictor
from mm_deepz.errors import ModelFileError
from mm_deepz.model import DeepZEncodeOnce, EncodeOnceConfig, UNetConfig, interleave
from mm_deepz.modelfile import FORMAT, DeepZModel, ModelCard, load_model


def _model(kind: str) -> DeepZModel:
    return encode_once_model() if kind == "encode-once" else tiny_model()


def test_one_encoding_decodes_many_planes_as_each_alone():
    net = encode_once_model(n_planes=2).network
    planes = torch.rand(3, 2, 64, 48)
    dpm = torch.randn(3, 5, 2, 64, 48)
    with torch.no_grad():
        together = net.decode(net.encode(planes), dpm)  # one encoder pass for 5 targets per sample
        alone = torch.stack([net(interleave(planes, dpm[:, [k]]))[:, 0] for k in range(5)], dim=1)
    assert together.shape == (3, 5, 64, 48)
    torch.testing.assert_close(together, alone, rtol=1e-4, atol=1e-5)
    assert not torch.allclose(together[:, 0], together[:, 1])  # the DPM changes the image


@pytest.mark.parametrize("kind", ["unet", "encode-once"])
def test_a_tilted_dpm_refocuses_each_region_to_its_own_depth(kind):
    # a step DPM (left half at -6 µm, right half at +4 µm): far from the step, each half is the
    # image the uniform DPM at its depth makes; the per-pixel distance reaches every decoder level
    model = _model(kind)
    planes = blobs((1, 64, 256), seed=1)
    predictor = Predictor(model, "cpu")
    uniform = predictor.predict_stack(planes, (0.0,), np.array([-6.0, 4.0]), out_dtype=np.float32).data
    step = np.full((1, 64, 256), -6.0, np.float32)
    step[..., 128:] = 4.0
    tilted = predictor.predict_dpm(planes, (0.0,), step, out_dtype=np.float32)[0]
    apart = np.abs(uniform[0] - uniform[1])  # how much the two depths differ, per pixel
    assert apart[:, :40].max() > 0 and apart[:, -40:].max() > 0
    np.testing.assert_allclose(tilted[:, :40], uniform[0][:, :40], atol=0.01 * apart[:, :40].max())
    np.testing.assert_allclose(tilted[:, -40:], uniform[1][:, -40:], atol=0.01 * apart[:, -40:].max())


def test_the_card_names_the_architecture_and_the_model_file_round_trips(tmp_path):
    model = encode_once_model(n_planes=2)
    path = model.save(tmp_path / "eo.pt")
    loaded = load_model(path)
    assert loaded.card.architecture == model.card.architecture
    assert isinstance(loaded.network, DeepZEncodeOnce)
    assert json.loads(loaded.card.to_json())["architecture"]["kind"] == "encode-once"
    x = torch.rand(1, 4, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(loaded.network(x), model.network(x))
    # a card written before the encode-once generator names no kind: it is a U-Net
    unet = tiny_model()
    values = json.loads(unet.card.to_json())
    del values["architecture"]["kind"]
    assert ModelCard.from_json(json.dumps(values)).architecture == UNetConfig(1, 8, 2)
    values["architecture"]["kind"] = "transformer"
    blob = {"format": FORMAT, "format_version": 1, "card": json.dumps(values), "state_dict": {}}
    torch.save(blob, tmp_path / "future.pt")
    with pytest.raises(ModelFileError, match="unknown architecture 'transformer'.*unet, encode-once"):
        load_model(tmp_path / "future.pt")


@pytest.mark.parametrize(("tile", "encodings"), [(None, 1), (64, 4)])
def test_the_engine_encodes_each_tile_once_for_the_whole_stack(tile, encodings, monkeypatch):
    model = encode_once_model()
    calls = []
    encode = model.network.encode
    monkeypatch.setattr(model.network, "encode", lambda planes: calls.append(planes.shape) or encode(planes))
    predictor = Predictor(model, "cpu", batch_size=3, tile_size=tile, tile_overlap=16)
    planes = blobs((1, 112, 112), seed=2)
    z = np.linspace(-8, 8, 9)
    stack = predictor.predict_stack(planes, (0.0,), z, out_dtype=np.float32).data
    assert len(calls) == encodings  # not once per virtual plane (9) or per batch (3)
    assert stack.shape == (9, 112, 112) and np.isfinite(stack).all()
    if tile is None:  # the same planes as one whole pass per plane
        scale = predictor.predict_stack(planes, (0.0,), z[:1]).scale
        x = torch.from_numpy(scale.forward(planes).astype(np.float32))
        for k in (0, 8):
            d = torch.full_like(x, z[k] / model.card.z_range_um)
            padded = torch.nn.functional.pad(torch.cat([x, d])[None], (4, 4, 4, 4), mode="reflect")
            with torch.no_grad():
                alone = scale.inverse(model.network(padded)[0, 0, 4:-4, 4:-4].numpy())
            np.testing.assert_allclose(stack[k], alone, rtol=1e-4, atol=1e-3 * float(np.ptp(stack)))


def test_the_worker_makes_stacks_with_an_encode_once_model():
    with InferenceWorker(Predictor(encode_once_model(), "cpu"), max_pending=4) as worker:
        futures = [
            worker.submit(
                PlaneBundle((t, 0, 0), blobs((1, 64, 64), seed=t), (0.0,), np.arange(-4.0, 5.0, 2)), timeout=5
            )
            for t in range(2)
        ]
        stacks = [f.result(timeout=60) for f in futures]
    assert [s.data.shape for s in stacks] == [(5, 64, 64)] * 2 and worker.stats.planes_out == 10
    assert not np.array_equal(stacks[0].data[0], stacks[0].data[-1])  # depth matters


def test_a_camera_roi_smaller_than_the_dilated_context_still_makes_its_stack():
    # a depth-4 encode-once model with dilations up to 4 needs a bottleneck wider than 4 px (80-px frames):
    # a smaller ROI (here 20 x 36 px) is padded up to that and cropped back, not refused by torch's padding
    from mm_deepz.engine.tiling import pad_to_multiple

    config = EncodeOnceConfig(1, 8, 4, 16, 4, 16, (2, 4))
    assert config.min_size == 80 and UNetConfig(1, 8, 4, 16).min_size == 16
    x = torch.arange(20 * 36, dtype=torch.float32).view(1, 1, 20, 36)
    padded, (ys, xs) = pad_to_multiple(x, config.multiple, minimum=config.min_size)
    assert padded.shape[-2:] == (80, 80) and torch.equal(padded[..., ys, xs], x)
    predictor = Predictor(encode_once_model(config=config), "cpu")
    stack = predictor.predict_stack(blobs((1, 20, 36), seed=1), (0.0,), [-4.0, 0.0, 4.0])
    assert stack.data.shape == (3, 20, 36) and np.isfinite(stack.data).all()
    assert not np.array_equal(stack.data[0], stack.data[-1])  # depth matters


def test_the_panel_card_says_which_generator_a_model_is():
    from gui.texts import card_text

    assert "generator: encode-once (encoder depth 3" in card_text(encode_once_model())
    assert "generator: U-Net (depth 2" in card_text(tiny_model())


@pytest.mark.parametrize("kind", ["unet", "encode-once"])
def test_uniform_dpms_given_as_one_distance_make_the_same_image_as_their_maps(kind):
    # the engine and training pass uniform DPMs as (B, K, n, 1, 1): broadcast, never a per-pixel map
    net = _model(kind).network
    planes = torch.rand(2, 1, 32, 48)
    distances = torch.randn(2, 3, 1, 1, 1)
    with torch.no_grad():
        encoded = net.encode(planes)
        compact = net.decode(encoded, distances)
        maps = net.decode(encoded, distances.expand(2, 3, 1, 32, 48).contiguous())
    torch.testing.assert_close(compact, maps, rtol=1e-4, atol=1e-5)
    # and train alike: the same gradients (the encode-once decoder folds uniform DPMs into its weights)
    grads = []
    for dpm in (distances, distances.expand(2, 3, 1, 32, 48).contiguous()):
        net.zero_grad()
        net.decode(net.encode(planes), dpm).square().mean().backward()
        grads.append([p.grad.clone() for p in net.parameters() if p.grad is not None])
    assert len(grads[0]) == len(grads[1]) == len(list(net.parameters()))
    for folded, mapped in zip(*grads, strict=True):
        torch.testing.assert_close(folded, mapped, rtol=1e-3, atol=1e-6)


@pytest.mark.parametrize(("heads", "reaches"), [(0, False), (4, True)])
def test_bottleneck_attention_sees_the_whole_frame_and_dilated_context_does_not(heads, reaches):
    # a change in one corner of a 512² frame reaches the far corner's encoding through self-attention;
    # the dilated blocks' view (about ±13 bottleneck pixels of 32) stops short of it
    config = EncodeOnceConfig(1, 8, 4, 16, 4, 16, (2, 4), attention_heads=heads)
    torch.manual_seed(0)
    net = DeepZEncodeOnce(config).eval()
    with torch.no_grad():
        for p in net.parameters():  # the attention block starts as the identity: wake it up
            if not p.any():
                p.normal_(0, 0.3)
        planes = torch.rand(1, 1, 512, 512)
        changed = planes.clone()
        changed[..., :64, :64] += 1
        before, after = net.encode(planes)[-2], net.encode(changed)[-2]  # the bottleneck's map
    near = (after[..., :4, :4] - before[..., :4, :4]).abs().max()
    far = (after[..., -4:, -4:] - before[..., -4:, -4:]).abs().max()
    assert near > 0  # near the change: always
    assert bool(far > 0.01 * near) == reaches and (reaches or far == 0)
    assert ("attention, 4 heads" in config.describe()) == reaches


def test_the_bottleneck_attention_is_torch_multihead_attention_by_a_lighter_kernel():
    # the block computes nn.MultiheadAttention's result through scaled_dot_product_attention (whose
    # CPU kernel does not build the whole attention matrix): the same numbers from the same weights
    from mm_deepz.model.unet import _Attention

    torch.manual_seed(0)
    block = _Attention(64, 4)
    with torch.no_grad():
        for p in block.parameters():
            p.normal_(0, 0.2)
        tokens = torch.rand(2, 100, 64)
        torch.testing.assert_close(
            block.attend(tokens), block.attention(tokens, tokens, tokens, need_weights=False)[0]
        )
