"""`mm-deepz train` + `mm-deepz evaluate` end to end on a small simulated set (CPU, tiny model)."""

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from mm_deepz.cli import app
from mm_deepz.errors import DeepZError, ReportError
from mm_deepz.modelfile import load_model
from simulators.training_data import PairSpec, make_stack_pair, write_stack_pair


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("data")
    # textured sheets: dense structure, so a tiny model learns the widefield->confocal map in seconds
    for seed in (150, 151, 152):
        spec = PairSpec(
            phantom="sheet", seed=seed, shape=(64, 64), z_half_range_um=4, z_step_um=1, randomize=True
        )
        write_stack_pair(make_stack_pair(spec), root / "train", f"sheet_{seed}")
    spec = PairSpec(phantom="sheet", seed=160, shape=(64, 64), z_half_range_um=4, z_step_um=1, randomize=True)
    write_stack_pair(make_stack_pair(spec), root / "blind", "sheet_160")
    return root


@pytest.fixture
def two_threads():
    """Training pinned to 2 threads: the same sums in the same order on any machine, so the same model."""
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(before)


@pytest.mark.slow
def test_train_then_blind_evaluation_beats_repeated_input(data, tmp_path, two_threads):
    # Deep-Z's core task, refocusing (widefield -> widefield at another depth): a tiny model learns
    # it in seconds. The cross-modality quality of the shipped models is measured in docs/models.md.
    runner = CliRunner()
    model_path = tmp_path / "tiny.pt"
    res = runner.invoke(
        app,
        [
            "train",
            str(data / "train"),
            "--output",
            str(model_path),
            "--z-range",
            "4",
            "--target-modality",
            "widefield",
            "--steps",
            "800",
            "--batch-size",
            "8",
            "--patch",
            "48",
            "--base-channels",
            "8",
            "--depth",
            "2",
            "--val-fraction",
            "0.34",
            "--device",
            "cpu",
        ],
    )
    assert res.exit_code == 0, res.output
    model = load_model(model_path)
    assert model.card.z_range_um == 4 and model.card.provenance["steps_done"] > 0
    assert model.card.optics.na == pytest.approx(0.75)  # taken from the stacks' metadata
    assert json.loads(model_path.with_suffix(".dataset.json").read_text())["n_pairs"] == 3
    report = tmp_path / "report"
    res = runner.invoke(
        app,
        [
            "evaluate",
            str(model_path),
            str(data / "blind"),
            "--output",
            str(report),
            "--target-modality",
            "widefield",
            "--device",
            "cpu",
            "--write-card",
        ],
    )
    assert res.exit_code == 0, res.output
    summary = json.loads((report / "metrics.json").read_text())["summary"]
    assert summary["mean_ssim"]["virtual"] > summary["mean_ssim"]["repeated"]
    assert summary["mean_psnr"]["virtual"] > summary["mean_psnr"]["repeated"]
    assert summary["mean_pcc"]["virtual"] > summary["mean_pcc"]["repeated"]
    for name in ("metrics_vs_defocus.png", "montage_sheet_160.png", "xz_sheet_160.png"):
        assert (report / name).read_bytes()[:4] == b"\x89PNG"
    blind = load_model(model_path).card.metrics["blind"]
    assert blind["pairs"] == ["sheet_160"] and set(blind["margin_over_baselines"]) == {"ssim", "pcc", "psnr"}


def test_train_rejects_inconsistent_settings(data, tmp_path):
    res = CliRunner().invoke(
        app, ["train", str(data / "train"), "--output", str(tmp_path / "m.pt"), "--planes", "3"]
    )
    assert res.exit_code != 0 and "n_planes must be 1 or 2" in str(res.exception)
    res = CliRunner().invoke(
        app,
        [
            "train",
            str(data / "train"),
            "--output",
            str(tmp_path / "m.pt"),
            "--planes",
            "2",
            "--separation",
            "1.5",
            "--z-range",
            "4",
        ],
    )
    assert "not multiples of the stacks' z step" in str(res.exception)


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["--z-range", "50"], "more than the stacks cover: the farthest target plane is 8 µm"),
        (["--lr", "nan"], "lr must be a finite number"),
        (["--z-range", "inf"], "z_range_um must be a finite number"),
        (["--adversarial", "-1"], "adversarial_weight cannot be negative"),
    ],
)
def test_train_refuses_what_the_data_or_numbers_cannot_back(data, tmp_path, args, words):
    # a card never claims a range its stacks did not cover (±4 µm stacks reach 8 µm at most)
    res = CliRunner().invoke(app, ["train", str(data / "train"), "--output", str(tmp_path / "m.pt"), *args])
    assert res.exit_code != 0 and words in str(res.exception)
    assert not (tmp_path / "m.pt").exists()


def test_train_never_replaces_a_model_unasked(data, tmp_path):
    (tmp_path / "m.pt").write_bytes(b"someone's model")
    res = CliRunner().invoke(app, ["train", str(data / "train"), "--output", str(tmp_path / "m.pt")])
    assert "already exist" in str(res.exception) and "--overwrite" in str(res.exception)
    assert (tmp_path / "m.pt").read_bytes() == b"someone's model"
    res = CliRunner().invoke(app, ["train", str(data / "train"), "--output", str(tmp_path)])
    assert "is a folder" in str(res.exception)
    res = CliRunner().invoke(
        app, ["train", str(data / "train"), "--output", str(tmp_path / "new.pt"), "--resume"]
    )
    assert "Nothing to resume" in str(res.exception)
    for modality in ("widefield", "confocal"):  # a copy cut short, as an interrupted transfer leaves it
        whole = (data / "train" / f"sheet_150_{modality}.ome.tif").read_bytes()
        (data / "train" / f"broken_{modality}.ome.tif").write_bytes(whole[: len(whole) // 2])
    try:
        res = CliRunner().invoke(app, ["train", str(data / "train"), "--output", str(tmp_path / "new.pt")])
        assert "broken_" in str(res.exception) and "truncated" in str(res.exception)
    finally:
        for f in (data / "train").glob("broken_*"):
            f.unlink()


def test_training_resumes_from_its_checkpoint(data, tmp_path, monkeypatch):
    from mm_deepz.model import PatchDiscriminator
    from mm_deepz.training.stacks import load_pairs
    from mm_deepz.training.train import TrainConfig, train

    pairs = load_pairs([data / "train"])
    cfg = {
        "z_range_um": 4,
        "batch_size": 4,
        "patch": 32,
        "base_channels": 4,
        "depth": 1,
        "val_every": 10,
        "device": "cpu",
    }
    first = train(pairs, TrainConfig(steps=20, **cfg), tmp_path / "m.pt", command="first leg")
    assert tmp_path.joinpath("m.ckpt").exists() and first.steps_done == 20
    saved = torch.load(tmp_path / "m.ckpt", weights_only=True)["disc"]  # the critic, on by default
    restored = []
    original = PatchDiscriminator.load_state_dict
    monkeypatch.setattr(
        PatchDiscriminator,
        "load_state_dict",
        lambda self, state, *a, **k: restored.append(state) or original(self, state, *a, **k),
    )
    resumed = train(
        pairs, TrainConfig(steps=30, lr=1e-3, **cfg), tmp_path / "m.pt", resume=True, command="second leg"
    )
    assert resumed.steps_done == 30
    assert [h["step"] for h in resumed.history] == [10, 20, 30]  # continued, not restarted
    assert len(restored) == 1 and all(torch.equal(restored[0][k], saved[k]) for k in saved)  # critic too
    assert resumed.seconds > first.seconds  # the card's training time covers both legs
    assert resumed.model.card.provenance["train_seconds"] == round(resumed.seconds, 1)
    # the card names every leg's command, step range and learning rate: the recipe to reproduce it
    legs = resumed.model.card.provenance["legs"]
    assert [(leg["command"], leg["steps"], leg["lr"]) for leg in legs] == [
        ("first leg", [0, 20], 2e-3),
        ("second leg", [20, 30], 1e-3),
    ]
    # ... and the second leg ran at its own rate, not at the peak the resumed optimizer carried
    ck = torch.load(tmp_path / "m.ckpt", weights_only=True)
    assert [g["max_lr"] for g in ck["opt"]["param_groups"]] == [1e-3]
    assert [g["lr"] for g in ck["d_opt"]["param_groups"]] == [5e-4]
    # the model file carries its whole learning curve, both legs', and `mm-deepz curves` draws it
    from mm_deepz.evaluation.curves import training_record

    history, legs = training_record(tmp_path / "m.pt")
    assert [h["step"] for h in history] == [10, 20, 30] and history == training_record(tmp_path / "m.ckpt")[0]
    assert min(h["val_loss"] for h in history) == pytest.approx(
        resumed.model.card.metrics["validation_loss"], abs=1e-4
    )
    out = CliRunner().invoke(app, ["curves", f"run={tmp_path / 'm.pt'}", "--output", str(tmp_path / "c.png")])
    assert out.exit_code == 0 and (tmp_path / "c.png").stat().st_size > 10_000, out.output
    del resumed.model.card.provenance["history"]  # a model trained before models kept their curve
    resumed.model.save(tmp_path / "old.pt")
    with pytest.raises(DeepZError, match=r"no training history .* plot its checkpoint"):
        training_record(tmp_path / "old.pt")


def test_fine_tuning_starts_from_a_model_and_records_it_as_the_parent(data, tmp_path):
    # train --init: the parent's architecture and weights, not random ones; the card names the parent
    from mm_deepz.training.stacks import load_pairs
    from mm_deepz.training.train import TrainConfig, train

    pairs = load_pairs([data / "train"])
    cfg = {"z_range_um": 4, "batch_size": 4, "patch": 32, "val_every": 10, "device": "cpu", "seed": 3}
    parent = train(
        pairs, TrainConfig(steps=40, base_channels=4, depth=1, **cfg), tmp_path / "parent.pt"
    ).model
    # the options' own architecture (16 channels, depth 3) gives way to the parent's (4, 1)
    child = train(pairs, TrainConfig(steps=10, lr=1e-4, **cfg), tmp_path / "child.pt", init=parent.path)
    assert child.model.card.architecture == parent.card.architecture
    first_val = child.history[0]["val_loss"]
    scratch = train(pairs, TrainConfig(steps=10, lr=1e-4, base_channels=4, depth=1, **cfg), tmp_path / "s.pt")
    assert first_val < scratch.history[0]["val_loss"]  # it started where the parent stood, not at random
    # resumed, it goes on as the parent's architecture (its checkpoint says which), not the options' own
    more = train(pairs, TrainConfig(steps=20, lr=1e-4, **cfg), tmp_path / "child.pt", resume=True)
    assert more.steps_done == 20 and more.model.card.architecture == parent.card.architecture
    # a run that is not a fine-tune, resumed with other architecture options, is refused by name
    with pytest.raises(DeepZError, match="was trained as U-Net.*Resume with the architecture options"):
        train(pairs, TrainConfig(steps=50, depth=2, **cfg), tmp_path / "parent.pt", resume=True)
    record = load_model(tmp_path / "child.pt").card.provenance["parent"]
    assert record["path"] == str(parent.path) and record["sha256"] == parent.sha256
    assert record["steps_done"] == 40 and record["card"]["architecture"]["base_channels"] == 4
    # a parent of another plane count, plane spacing or z range is refused by name, before training
    for args, words in (
        (["--planes", "2"], "is a 1-plane model but this training asks for 2"),
        (["--z-range", "3"], "use --z-range 4"),
    ):
        res = CliRunner().invoke(
            app,
            [
                "train",
                str(data / "train"),
                "--init",
                str(parent.path),
                "--output",
                str(tmp_path / "x.pt"),
                *args,
            ],
        )
        assert isinstance(res.exception, DeepZError) and words in str(res.exception), res.output
    assert not (tmp_path / "x.pt").exists()


@pytest.mark.parametrize("steps", [1, 2, 10])
def test_a_run_of_a_few_steps_trains(data, tmp_path, steps):
    # a smoke run or a throughput probe is a few steps long: its schedule must still have a warm-up
    from mm_deepz.training.stacks import load_pairs
    from mm_deepz.training.train import TrainConfig, train

    cfg = TrainConfig(
        steps=steps, z_range_um=4, batch_size=2, patch=32, base_channels=4, depth=1, device="cpu"
    )
    result = train(load_pairs([data / "train"]), cfg, tmp_path / "m.pt")
    assert result.steps_done == steps and math.isfinite(result.best_val_loss)
    assert [h["step"] for h in result.history] == [steps]


def test_early_stopping_follows_patience(data, tmp_path):
    from mm_deepz.training.stacks import load_pairs
    from mm_deepz.training.train import TrainConfig, train

    pairs = load_pairs([data / "train"])
    # a learning rate too small to change anything: validation never improves after its first value
    cfg = {
        "z_range_um": 4,
        "batch_size": 2,
        "patch": 32,
        "base_channels": 4,
        "depth": 1,
        "val_every": 10,
        "steps": 60,
        "lr": 1e-12,
        "adversarial_weight": 0,
        "device": "cpu",
    }
    assert train(pairs, TrainConfig(patience=2, **cfg), tmp_path / "a.pt").steps_done == 30
    assert train(pairs, TrainConfig(patience=0, **cfg), tmp_path / "b.pt").steps_done == 60  # 0 = never
    with pytest.raises(DeepZError, match="patience"):
        TrainConfig(patience=-1)


def test_fixed_validation_set_and_capped_deeper_network(data, tmp_path):
    # a user's own validation stacks (--val) are what the card names, and a deeper network with a
    # width cap (more receptive field, few parameters) trains, saves and loads with its architecture
    model_path = tmp_path / "deep.pt"
    res = CliRunner().invoke(
        app,
        [
            "train",
            str(data / "train"),
            "--val",
            str(data / "blind"),
            "--output",
            str(model_path),
            "--z-range",
            "4",
            "--steps",
            "2",
            "--batch-size",
            "2",
            "--patch",
            "64",
            "--base-channels",
            "8",
            "--depth",
            "5",
            "--max-channels",
            "16",
            "--balance-defocus",
            "--adversarial",
            "0",
            "--device",
            "cpu",
        ],
    )
    assert res.exit_code == 0, res.output
    model = load_model(model_path)
    assert model.card.provenance["validation_pairs"] == ["sheet_160"]
    assert model.card.provenance["data"]["n_pairs"] == 4  # 3 training + 1 validation stack
    assert model.card.architecture.widths == [8, 16, 16, 16, 16, 16]
    assert model.card.provenance["train_config"]["balance_defocus"] is True
    assert model.network.head.in_channels == 8
    res = CliRunner().invoke(
        app,
        ["train", str(data / "train"), "--output", str(tmp_path / "x.pt"), "--patch", "32", "--depth", "5"],
    )
    assert res.exit_code != 0 and "must be a multiple of 32 and at least 64 px" in str(res.exception)


def test_balanced_sampling_draws_far_defocus_targets_as_often_as_near_ones(data):
    # the far-defocus lever (#18): by default each (stack, anchor, target) triple is equally likely,
    # so distances that more anchors reach dominate; --balance-defocus draws every distance from the
    # nearest plane equally often (read here from the DPM channels of the drawn patches), while
    # validation batches stay as they were
    from mm_deepz.training.sampler import PatchSampler, SamplingConfig
    from mm_deepz.training.stacks import load_pairs

    pairs = load_pairs([data / "train"])

    def distances(balance: bool, fixed: bool = False) -> np.ndarray:
        cfg = SamplingConfig(plane_offsets_um=(0.0,), z_range_um=4.0, patch=32, balance_defocus=balance)
        sampler = PatchSampler(pairs, cfg, seed=3)
        if fixed:
            x, _ = sampler.fixed_batch(3000, seed=1)
            dpm = x[:, 1::2, 0, 0]
        else:
            dpm = sampler.sample(3000)[1][:, 0]
        dpm_um = dpm.numpy() * cfg.z_range_um  # target minus each input plane
        return np.round(np.abs(dpm_um).min(axis=1)).astype(int)

    # 9-plane stacks, targets within 4 µm: 9 / 16 / 14 / 12 / 10 (anchor, target) pairs at 0-4 µm
    uniform, balanced = np.bincount(distances(False)), np.bincount(distances(True))
    assert len(uniform) == len(balanced) == 5
    assert uniform[1] > 1.4 * uniform[0]  # by default a distance is drawn as often as it occurs
    assert balanced.min() > 0.8 * balanced.max()  # balanced: every distance about equally often
    assert balanced[0] > 1.2 * uniform[0]
    np.testing.assert_array_equal(distances(True, fixed=True), distances(False, fixed=True))


def test_precision_is_chosen_per_device_and_validated():
    from mm_deepz.training.train import TrainConfig, _use_bf16

    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert (
        _use_bf16("fp32", cuda) is False
        and _use_bf16("bf16", cpu) is True
        and _use_bf16("auto", cuda) is True
    )
    assert _use_bf16("auto", cpu) is False  # opt-in on the CPU until a full bf16 leg matches fp32
    with pytest.raises(DeepZError, match="precision must be auto, bf16 or fp32"):
        TrainConfig(precision="fp16")


def test_bfloat16_training_computes_its_loss_in_float32(monkeypatch):
    # the networks run in bfloat16 autocast; the loss (SSIM's convolutions, the correlation's sums)
    # must not: its variances are differences of nearly equal sums
    from mm_deepz.model import DeepZUNet, PatchDiscriminator, UNetConfig
    from mm_deepz.training import train

    seen = []
    loss_fn = train._loss

    def recording_loss(pred, y, cfg):
        seen.append((torch.is_autocast_enabled("cpu"), pred.dtype))
        return loss_fn(pred, y, cfg)

    monkeypatch.setattr(train, "_loss", recording_loss)
    torch.manual_seed(0)
    net, disc = DeepZUNet(UNetConfig(2, 8, 2)), PatchDiscriminator(5)
    planes, dpm = torch.rand(2, 2, 64, 64), torch.rand(2, 1, 2, 64, 64)
    y = 0.002 * torch.rand(2, 1, 64, 64)
    y[:, :, 20:24, 30:34] += 0.03  # one dim neuron per patch
    cfg = train.TrainConfig(n_planes=2, adversarial_weight=0.05)
    _, loss = train.generator_loss(train.EncodeDecode(net), disc, planes, dpm, y, cfg, amp=True)
    assert seen == [(False, torch.float32)]
    assert loss.dtype == torch.float32 and math.isfinite(float(loss))
    loss.backward()  # and it trains: gradients reach the first layer, finite
    grads = [p.grad for p in net.parameters() if p.grad is not None]
    assert grads and all(torch.isfinite(g).all() for g in grads)


def test_training_settings_from_a_config_file_with_command_line_overrides(data, tmp_path):
    settings = {
        "z_range_um": 4,
        "steps": 30,
        "lr": 5e-4,
        "batch_size": 2,
        "patch": 32,
        "base_channels": 4,
        "depth": 1,
        "adversarial_weight": 0,
        "device": "cpu",
    }
    (tmp_path / "settings.json").write_text(json.dumps(settings))
    res = CliRunner().invoke(
        app,
        [
            "train",
            str(data / "train"),
            "--output",
            str(tmp_path / "m.pt"),
            "--config",
            str(tmp_path / "settings.json"),
            "--steps",
            "4",
        ],
    )
    assert res.exit_code == 0, res.output
    used = load_model(tmp_path / "m.pt").card.provenance["train_config"]
    assert used["steps"] == 4  # the command line wins over the file
    assert (used["lr"], used["z_range_um"], used["base_channels"], used["adversarial_weight"]) == (
        5e-4,
        4,
        4,
        0,
    )
    assert used["patience"] == 5  # neither in the file nor given: the default
    # the card's settings are a config file for the same training
    (tmp_path / "again.json").write_text(json.dumps(used))
    res = CliRunner().invoke(
        app,
        [
            "train",
            str(data / "train"),
            "--output",
            str(tmp_path / "again.pt"),
            "--config",
            str(tmp_path / "again.json"),
        ],
    )
    assert res.exit_code == 0, res.output
    assert load_model(tmp_path / "again.pt").card.provenance["train_config"] == used


@pytest.mark.parametrize(
    ("content", "words"),
    [
        (None, "does not exist"),
        ("{steps: 10", "not readable JSON"),
        ("[1, 2]", "holds a list, not an object"),
        ('{"learning_rate": 0.001}', "learning_rate: Extra inputs are not permitted"),
        ('{"lr": NaN}', "lr must be a finite number"),
        ('{"steps": "many"}', "steps: Input should be a valid integer"),
    ],
)
def test_a_config_file_that_cannot_be_used_is_refused_by_name(data, tmp_path, content, words):
    path = tmp_path / "settings.json"
    if content is not None:
        path.write_text(content)
    res = CliRunner().invoke(
        app, ["train", str(data / "train"), "--output", str(tmp_path / "m.pt"), "--config", str(path)]
    )
    assert res.exit_code != 0 and words in str(res.exception)
    assert not (tmp_path / "m.pt").exists()


def test_the_schema_of_the_training_settings_is_printed_and_documented():
    res = CliRunner().invoke(app, ["train", "--schema"])  # no data needed
    assert res.exit_code == 0, res.output
    schema = json.loads(res.output)
    assert {"n_planes", "lr", "steps", "precision", "val_every"} <= set(schema["properties"])
    assert schema["additionalProperties"] is False  # a misspelt setting is an error, not ignored
    documented = Path(__file__).parents[2] / "docs" / "train_config.schema.json"
    assert (
        json.loads(documented.read_text()) == schema
    )  # `mm-deepz train --schema > docs/train_config.schema.json`


@pytest.mark.slow
def test_compare_puts_blind_tests_of_several_models_side_by_side(data, tmp_path):
    # `mm-deepz compare`: the table a user reads to pick a model, one row per evaluation report, and
    # a refusal when the reports scored different specimens (the comparison would mean nothing)
    runner = CliRunner()

    def trained_and_scored(name: str, steps: int, stacks: str) -> Path:
        model = tmp_path / f"{name}.pt"
        args = ["train", str(data / "train"), "--output", str(model), "--z-range", "4", "--steps", str(steps)]
        args += [
            "--batch-size",
            "2",
            "--patch",
            "32",
            "--base-channels",
            "4",
            "--depth",
            "2",
            "--device",
            "cpu",
        ]
        assert runner.invoke(app, args).exit_code == 0
        report = tmp_path / f"report_{name}_{Path(stacks).name}"
        res = runner.invoke(
            app, ["evaluate", str(model), str(data / stacks), "--output", str(report), "--device", "cpu"]
        )
        assert res.exit_code == 0, res.output
        return report

    a, b = trained_and_scored("a", 1, "blind"), trained_and_scored("b", 30, "blind")
    res = runner.invoke(
        app, ["compare", f"zeta={a}", str(b / "metrics.json"), "--output", str(tmp_path / "c.png")]
    )
    assert res.exit_code == 0, res.output
    rows = [line for line in res.stdout.splitlines() if line.startswith("| ") and "---" not in line][1:]
    assert [r.split(" | ")[0] for r in rows] == ["| zeta", f"| {b.name}"]  # in the order given
    for row, report in zip(rows, (a, b), strict=True):
        s = json.loads((report / "metrics.json").read_text())["summary"]
        cells = row.strip("| ").split(" | ")
        assert cells[1:3] == [f"{s['mean_ssim']['virtual']:.3f}", f"{s['mean_pcc']['virtual']:.3f}"]
    assert (tmp_path / "c.png").read_bytes()[:4] == b"\x89PNG"
    res = runner.invoke(app, ["compare", f"{b}/metrics.json", str(b), "--output", str(tmp_path / "d.png")])
    assert res.exit_code != 0 and "label them NAME=PATH" in res.output  # not one row silently dropped

    other = trained_and_scored("c", 1, "train")  # three other specimens
    zattrs = tmp_path / "zarr" / "metrics.json"  # another tool's JSON where a report should be
    zattrs.parent.mkdir()
    zattrs.write_text('{"multiscales": []}')
    for args, words in (
        ([str(a), str(other)], "evaluate every model on the same stacks"),
        ([str(a), str(zattrs.parent)], "is not an mm-deepz evaluation report"),
        ([str(a), str(tmp_path / "nowhere")], "no metrics.json"),
    ):
        res = runner.invoke(app, ["compare", *args, "--output", str(tmp_path / "x.png")])
        assert isinstance(res.exception, ReportError) and words in str(res.exception), res.output
    assert not (tmp_path / "x.png").exists()


@pytest.mark.parametrize("context", ["dilated", "attention"])
def test_the_encode_once_generator_trains_several_targets_per_crop(data, tmp_path, context):
    # one encoding supervises several target planes: the card says which generator it is (and its
    # bottleneck's context) and how much compute and supervision the learning curve cost, and the loss
    # comes down within a few steps
    from mm_deepz.model import DeepZEncodeOnce, EncodeOnceConfig
    from mm_deepz.training.stacks import load_pairs
    from mm_deepz.training.train import TrainConfig, train

    cfg = TrainConfig(
        architecture="encode-once",
        targets_per_sample=3,
        z_range_um=4,
        target_modality="widefield",
        steps=120,
        val_every=20,
        batch_size=4,
        patch=32,
        base_channels=8,
        depth=2,
        max_channels=16,
        decoder_channels=4,
        context=context,
        adversarial_weight=0,
        device="cpu",
    )
    result = train(load_pairs([data / "train"]), cfg, tmp_path / "eo.pt")
    model = load_model(tmp_path / "eo.pt")
    assert isinstance(model.network, DeepZEncodeOnce) and model.card.architecture.kind == "encode-once"
    arch = model.card.architecture
    assert isinstance(arch, EncodeOnceConfig)
    assert (arch.dilations, arch.attention_heads) == {"dilated": ((2, 4), 0), "attention": ((), 4)}[context]
    history = result.history
    assert history[-1]["supervised_planes"] == 120 * 4 * 3
    assert 0 < history[0]["cpu_seconds"] < history[-1]["cpu_seconds"]
    assert min(h["val_loss"] for h in history[2:]) < history[0]["val_loss"]
    assert all(-1 <= h["val_pcc"] <= 1 for h in history)
    assert model.card.provenance["train_cpu_seconds"] >= history[-1]["cpu_seconds"]
    with pytest.raises(DeepZError, match="decoder_channels"):
        TrainConfig(architecture="encode-once", decoder_channels=2)
    with pytest.raises(DeepZError, match="architecture must be one of unet, encode-once"):
        TrainConfig(architecture="vit")
    with pytest.raises(DeepZError, match="context must be one of dilated, attention, none"):
        TrainConfig(architecture="encode-once", context="global")
    with pytest.raises(DeepZError, match="context 'attention' is an encode-once option"):
        TrainConfig(context="attention")
    wide = TrainConfig(
        architecture="encode-once", depth=4, max_channels=64, decoder_channels=16, decoder_max=64
    )
    assert wide.generator().decoder_widths == [16, 32, 64, 64, 64]  # type: ignore[union-attr]
    with pytest.raises(DeepZError, match="decoder_channels must be >= 4 and <= decoder_max"):
        TrainConfig(architecture="encode-once", decoder_channels=32, decoder_max=16)
    with pytest.raises(DeepZError, match="patch .32 px. is smaller than the encode-once generator's 80 px"):
        TrainConfig(architecture="encode-once", depth=4, patch=32)
    with pytest.raises(DeepZError, match="attention_heads must be 0 .* divide the bottleneck's 6"):
        TrainConfig(architecture="encode-once", context="attention", base_channels=4, max_channels=6)


@pytest.mark.slow
def test_two_processes_train_as_one_with_the_whole_batch_and_resume_on_one(data, tmp_path):
    # torchrun's 2 CPU processes (gloo) each train on half of the same global batch: DDP's averaged
    # gradients take the steps one process takes with the whole batch; the checkpoint goes on in 1 process
    import subprocess
    import sys

    from helpers import env_with_root

    from mm_deepz.training.stacks import load_pairs
    from mm_deepz.training.train import TrainConfig, train

    args = {"z_range_um": 4, "batch_size": 4, "patch": 32, "base_channels": 4, "depth": 1, "val_every": 5}
    options = [
        "--z-range=4",
        "--batch-size=4",
        "--patch=32",
        "--base-channels=4",
        "--depth=1",
        "--device=cpu",
    ]
    res = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2"]
        + ["-m", "mm_deepz", "train", str(data / "train"), "--steps=20", "--val-every=5", *options]
        + ["--output", str(tmp_path / "two.pt")],
        capture_output=True,
        text=True,
        env={**env_with_root(), "OMP_NUM_THREADS": "1"},
        check=False,
        timeout=300,
    )
    assert res.returncode == 0, res.stderr[-3000:]
    assert res.stdout.count("model written to") == 1  # one process reports, and writes
    pairs = load_pairs([data / "train"])
    one = train(pairs, TrainConfig(steps=20, device="cpu", **args), tmp_path / "one.pt", command="one")
    two = load_model(tmp_path / "two.pt").card.provenance
    assert two["world_size"] == 2 and len(two["devices"]) == 2 and two["devices"][0].startswith("cpu")

    def curve(history: list[dict]) -> list[tuple[float, float, float]]:
        return [(h["step"], h["train_loss"], h["val_loss"]) for h in history]

    assert [h[0] for h in curve(two["history"])] == [5, 10, 15, 20]
    np.testing.assert_allclose(curve(two["history"]), curve(one.history), rtol=1e-4)
    # resumed on one process, the 2-process checkpoint goes on as the 1-process one does
    cfg = TrainConfig(steps=30, device="cpu", **args)
    after_two = train(pairs, cfg, tmp_path / "two.pt", resume=True, command="resumed")
    after_one = train(pairs, cfg, tmp_path / "one.pt", resume=True, command="resumed")
    np.testing.assert_allclose(curve(after_two.history), curve(after_one.history), rtol=1e-4)
    assert [leg["world_size"] for leg in after_two.model.card.provenance["legs"]] == [2, 1]


def test_a_batch_that_does_not_split_over_the_processes_is_refused(data, tmp_path, monkeypatch):
    from mm_deepz.training.stacks import load_pairs
    from mm_deepz.training.train import TrainConfig, train

    monkeypatch.setenv("WORLD_SIZE", "2")  # as torchrun starts the second of 2 processes
    monkeypatch.setenv("RANK", "1")
    with pytest.raises(DeepZError, match=r"batch of 5 does not split evenly over 2 processes.*multiple of 2"):
        train(load_pairs([data / "train"]), TrainConfig(batch_size=5, device="cpu"), tmp_path / "m.pt")
    assert not list(tmp_path.iterdir())
