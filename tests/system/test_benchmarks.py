"""The benchmark suite runs end to end (quick mode): its figures are checked for sanity, not for speed."""

import json

import pytest

from benchmarks.__main__ import main


@pytest.mark.slow
def test_quick_benchmark_suite_writes_figures_that_make_sense(tmp_path):
    main(["--quick", "--out", str(tmp_path)])
    results = json.loads((tmp_path / "benchmarks.json").read_text())
    for row in results["inference"]:  # every stack made, at a finite positive rate
        assert row["planes_per_s"] > 0 and row["stack_s"] > 0 and row["peak_mb"] >= 0, row
        assert abs(row["planes_out"] / row["planes_per_s"] - row["stack_s"]) < 0.5 * row["stack_s"], row
    for row in results["acquisition"]:  # a frame rate no higher than plain pycromanager's could be...
        assert 0 < row["ratio"] < 1.5 and row["plain_fps"] > 0 and row["deepz_fps"] > 0, row
        assert row["virtual_missing"] == 0  # ... and no virtual stack lost (the backlog makes them)
    # the software's own cost, with a camera whose frames cost no CPU (as a real camera's), beside the
    # simulated camera rendering every frame on the same cores
    assert {row["camera"] for row in results["acquisition"]} == {"rendered on the CPU", "replayed (no CPU)"}
    assert {row["runner"] for row in results["acquisition"]} == {"pycromanager", "mda"}  # both runners
    assert len({row["frames"] for row in results["acquisition"]}) == 2  # short runs, and long ones
    writing = results["writing"]
    # frames back to back are stored as they came, or compressed (never larger than a header and a page)
    assert writing["raw_mb_s"] > 0 and 0 < writing["lz4_vs_raw"] < 2 and writing["lz4_size_ratio"] > 0.95
    assert 0 < writing["uncompressed_vs_raw"] < 2 and writing["rounds"] == 3
    assert writing["files_per_time_point"] < 1  # 20 time points in one shard
    # a 100 frames/s camera of 256² frames leaves the codec time for every frame but the first (stored as
    # it came while a probe measures the codec)
    first_only = round(1 / writing["camera_frames"], 3)
    assert writing["camera_lz4_uncompressed_share"] == first_only and writing["camera_lz4_size_ratio"] > 1
    light = results["light"]  # the light saved is the planes not measured, exactly
    assert light["dose_ratio"] == light["planes_requested_per_time_point"] == 21
    assert light["deepz_brightness_left"] > light["full_brightness_left"]
    # every stack depth measured (which is faster is the benchmark's figure, not a test's: one quick
    # stack of 11 against one of 21 planes swapped order under a background load)
    depth = {row["depth"]: row["stack_s"] for row in results["scaling"]["depth"]}
    assert sorted(depth) == [11, 21] and all(s > 0 for s in depth.values())
    assert all(row["neurons_per_stack"] > 0 and row["detect_s"] > 0 for row in results["neurons"])
    assert all(row["step_s"] > 0 and row["patches_per_s"] > 0 for row in results["training_step"])
    md = (tmp_path / "benchmarks.md").read_text()
    assert "### Inference" in md and "### Acquisition overhead" in md and "Quick mode" in md
    # one section run again replaces that section only, and the tables say so
    main(["--quick", "--out", str(tmp_path), "--section", "writing"])
    again = json.loads((tmp_path / "benchmarks.json").read_text())
    assert again["inference"] == results["inference"] and again["light"] == results["light"]
    assert again["writing"]["recorder_ms_per_frame"]["write_plane"] > 0
    assert list(again["rerun"]) == ["writing"]
    assert "Section writing run again" in (tmp_path / "benchmarks.md").read_text()


@pytest.mark.slow
def test_the_gpu_training_leg_runs_at_toy_scale_on_the_cpu(tmp_path, monkeypatch):
    # the script a lent GPU session runs at once: its steps sized from a probe, its model files and
    # summary written where the device tool brings them back
    from benchmarks.gpu_train import main as gpu_train

    # one thread per training process: on a CPU with another busy process, two threads per run made
    # its steps over 100x slower (25 s against more than 10 minutes here, beside a training run)
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    from mm_deepz.modelfile import load_model

    def leg(out, *extra):
        common = ["--device", "cpu", "--scale", "toy", "--budget", "1", "--probe-steps", "6"]
        sizes = ["--batch-size", "2", "--patch", "32", "--data", str(tmp_path / "data")]
        return gpu_train([*common, *sizes, "--work", str(tmp_path / "work"), "--out", str(out), *extra])

    out = tmp_path / "out"
    assert leg(out, "--runs", "2plane_d3", "--keep-checkpoints", "2plane_d3") == 0
    summary = json.loads((out / "gpu_train.json").read_text())
    run = summary["runs"]["2plane_d3"]
    assert summary["probe_seconds_per_step"]["2plane_d3"] > 0 and run["steps"] == 250  # the least it trains
    assert [h["step"] for h in run["history"]] == [250] and run["history"][0]["seconds"] > 0
    card = load_model(out / "2plane_d3.pt").card
    assert card.n_planes == 2 and card.provenance["steps_done"] == 250
    assert sorted(p.name for p in out.iterdir()) == [
        "2plane_d3.ckpt",
        "2plane_d3.pt",
        "gpu_train.json",
        "train_logs.txt",
    ]
    # a run trained elsewhere goes on from its checkpoint, which is copied, not moved
    again = tmp_path / "again"
    assert leg(again, "--runs", "2plane_d3", "--resume", f"2plane_d3={out / '2plane_d3.ckpt'}") == 0
    assert (out / "2plane_d3.ckpt").is_file()
    run = json.loads((again / "gpu_train.json").read_text())["runs"]["2plane_d3"]
    assert run["start_step"] == 250 and run["steps"] == 500
    assert [h["step"] for h in run["history"]] == [250, 500]
    card = load_model(again / "2plane_d3.pt").card
    assert card.provenance["steps_done"] == 500 and [leg["steps"] for leg in card.provenance["legs"]] == [
        [0, 250],
        [250, 500],
    ]
    assert sorted(p.name for p in again.iterdir()) == ["2plane_d3.pt", "gpu_train.json", "train_logs.txt"]


def test_the_inference_rows_run_alone_for_a_bare_gpu_machine(tmp_path):
    # the GPU speed goal is measured on a machine without the suite's other dependencies: this part
    # runs on torch and the engine, and writes the suite's inference table
    from benchmarks.inference import PHASES
    from benchmarks.inference import main as inference

    assert inference(["--quick", "--device", "cpu", "--out", str(tmp_path)]) == 0
    rows = json.loads((tmp_path / "inference.json").read_text())["rows"]
    assert [(r["architecture"], r["device"], r["frame"]) for r in rows] == [
        ("unet", "cpu", 128),
        ("encode-once", "cpu", 128),
    ]
    assert all(r["planes_per_s"] > 0 for r in rows)
    table = (tmp_path / "inference.md").read_text()
    assert "| unet | cpu | 128² | 1 | 5 |" in table and "| encode-once | cpu | 128² | 1 | 5 |" in table
    # trained model files side by side, each at its own widths (the candidate against the shipped model)
    from mm_deepz.shipped import shipped_model_path

    shipped = shipped_model_path(2)
    assert inference(["--quick", "--device", "cpu", "--out", str(tmp_path), "--model", str(shipped)]) == 0
    (row,) = json.loads((tmp_path / "inference.json").read_text())["rows"]
    assert (
        row["architecture"] == f"unet ({shipped.name})" and row["planes_in"] == 2 and row["planes_per_s"] > 0
    )
    # the engine's tiles chosen on the command line (whole frames against tiles, on a GPU's next lease)
    assert inference(["--quick", "--device", "cpu", "--out", str(tmp_path), "--tile-size", "64"]) == 0
    assert {r["tile"] for r in json.loads((tmp_path / "inference.json").read_text())["rows"]} == {64}
    # where a stack's time goes: each engine phase timed under torch's profiler, with its operators' table
    assert inference(["--quick", "--device", "cpu", "--out", str(tmp_path / "p"), "--profile"]) == 0
    profiles = json.loads((tmp_path / "p" / "profile.json").read_text())["profiles"]
    assert [p["architecture"] for p in profiles] == ["unet", "encode-once"]
    for p in profiles:
        assert set(p["phases_s"]) == set(PHASES) and p["phases_s"]["mm_deepz.network"] > 0
        assert "aten::" in (tmp_path / "p" / p["table"]).read_text()


def test_the_learning_efficiency_table_and_curves_come_from_the_cards(tmp_path):
    # benchmarks.learning plots what each arm's card recorded: validation PCC against CPU time and
    # against supervised target planes (the encode-once arm supervises several planes per step)
    from benchmarks.learning import compute_row, compute_table, curves
    from mm_deepz.training.stacks import load_pairs
    from mm_deepz.training.train import TrainConfig, train
    from simulators.training_data import PairSpec, make_stack_pair, write_stack_pair

    for seed in (150, 151):
        spec = PairSpec(phantom="sheet", seed=seed, shape=(64, 64), z_half_range_um=4, z_step_um=1)
        write_stack_pair(make_stack_pair(spec), tmp_path / "data", f"sheet_{seed}")
    pairs = load_pairs([tmp_path / "data"])
    small = {"z_range_um": 4, "patch": 32, "batch_size": 2, "base_channels": 4, "depth": 2, "val_every": 2}
    models = {}
    for arm, extra in (
        ("unet", {}),
        ("encode-once", {"architecture": "encode-once", "targets_per_sample": 3}),
    ):
        models[arm] = tmp_path / f"{arm}.pt"
        train(pairs, TrainConfig(steps=4, device="cpu", **small, **extra), models[arm])
    rows = {arm: compute_row(path) for arm, path in models.items()}
    assert (
        rows["unet"]["supervised_planes"] == 4 * 2 and rows["encode-once"]["supervised_planes"] == 4 * 2 * 3
    )
    assert all(r["cpu_hours"] > 0 and -1 <= r["val_pcc_best"] <= 1 for r in rows.values())
    table = compute_table(rows)
    assert "| unet | 4 |" in table and "| encode-once | 4 |" in table
    curves(models, tmp_path / "learning.png")
    assert (tmp_path / "learning.png").read_bytes()[:4] == b"\x89PNG"
    # an arm is scored with its last weights too (a flat validation loss hides a rise): its checkpoint's
    import torch

    from benchmarks.learning import last_weights
    from mm_deepz.modelfile import load_model

    checkpoint = models["encode-once"].with_suffix(".ckpt")
    trained = torch.load(checkpoint, map_location="cpu", weights_only=False)
    # the last weights made unlike the best (in 4 steps they were the same)
    trained["net"] = {k: v + 1 if v.is_floating_point() else v for k, v in trained["net"].items()}
    torch.save(trained, checkpoint)
    last = last_weights(models["encode-once"])
    weights = load_model(last).network.state_dict()
    best = load_model(models["encode-once"]).network.state_dict()
    assert last.name == "encode-once.last.pt"
    assert all(torch.equal(weights[k], v) for k, v in trained["net"].items())
    assert not all(torch.equal(best[k], v) for k, v in trained["net"].items())  # the best file is kept


@pytest.fixture
def training_commands(tmp_path, monkeypatch) -> list[list[str]]:
    """benchmarks.learning's training commands, recorded instead of run; committed checkpoints in
    ``tmp_path / "committed"``."""
    from benchmarks import learning

    commands: list[list[str]] = []
    monkeypatch.setattr(learning, "_mz", lambda args, log=None, threads=None: commands.append(args))
    monkeypatch.setattr(learning, "CHECKPOINTS", tmp_path / "committed")
    (tmp_path / "committed").mkdir()
    return commands


def test_a_learning_arm_resumes_from_its_committed_checkpoint_on_a_new_machine(tmp_path, training_commands):
    # runs/ does not outlive a machine: a long arm's checkpoint is committed, and a run whose output
    # folder lacks it continues from that copy (--resume), never starting over with --overwrite
    import torch

    from benchmarks import learning

    commands = training_commands
    torch.save({"step": 4200}, tmp_path / "committed" / "encode_once_d16_k4_bf16.ckpt")
    learning.train("encode-once-d16-k4-bf16", tmp_path / "data", tmp_path / "out", 15600)
    assert torch.load(tmp_path / "out" / "encode_once_d16_k4_bf16.ckpt")["step"] == 4200
    (command,) = commands
    assert "--resume" in command and "--overwrite" not in command
    assert command.count("--precision") == 1 and command[command.index("--precision") + 1] == "bf16"
    # an arm with no checkpoint anywhere starts afresh, in the precision chosen for the device
    learning.train("unet", tmp_path / "data", tmp_path / "out", 3200)
    assert "--overwrite" in commands[1] and commands[1][commands[1].index("--precision") + 1] == "auto"


def test_an_arm_that_changes_the_recipe_carries_on_its_parents_training(tmp_path, training_commands):
    # the balanced arm is the bfloat16 arm's training carried on with targets drawn at every distance
    # equally often: on a new machine it starts from the parent's committed checkpoint, not from scratch
    import torch

    from benchmarks import learning

    torch.save({"step": 32000}, tmp_path / "committed" / "encode_once_d16_k4_bf16.ckpt")
    learning.train("encode-once-d16-k4-bf16-balanced", tmp_path / "data", tmp_path / "out", 36000)
    assert torch.load(tmp_path / "out" / "encode_once_d16_k4_bf16_balanced.ckpt")["step"] == 32000
    (command,) = training_commands
    assert "--resume" in command and "--balance-defocus" in command
    assert command[command.index("--steps") + 1] == "36000"
    # once it has a committed checkpoint of its own, that is where it goes on
    torch.save({"step": 34000}, tmp_path / "committed" / "encode_once_d16_k4_bf16_balanced.ckpt")
    learning.train("encode-once-d16-k4-bf16-balanced", tmp_path / "data", tmp_path / "again", 36000)
    assert torch.load(tmp_path / "again" / "encode_once_d16_k4_bf16_balanced.ckpt")["step"] == 34000


def test_the_shipped_u_net_arm_trains_the_shipped_weights_on_and_then_resumes_its_own(
    tmp_path, training_commands
):
    # #32's verdict carries the U-Net on: its arm starts from the shipped 2-plane file (train --init) at a
    # converged model's rate, in bfloat16; once it has a checkpoint it resumes that, not the shipped file
    import torch

    from benchmarks import learning
    from mm_deepz.shipped import shipped_model_path

    learning.train("unet-shipped-ft", tmp_path / "data", tmp_path / "out", 24000)
    (command,) = training_commands
    assert command[command.index("--init") + 1] == str(shipped_model_path(2)) and "--overwrite" in command
    assert command[command.index("--lr") + 1] == "2.3e-4"
    assert command.count("--precision") == 1 and command[command.index("--precision") + 1] == "bf16"
    torch.save({"step": 5000}, tmp_path / "committed" / "unet_shipped_ft.ckpt")
    learning.train("unet-shipped-ft", tmp_path / "data", tmp_path / "again", 24000)
    assert "--resume" in training_commands[1] and "--init" not in training_commands[1]


def test_a_learning_arm_in_legs_goes_on_from_the_leg_its_checkpoint_reached(tmp_path, training_commands):
    # the float32 encode-once arm's curve was made in legs, each rebuilding its one-cycle schedule over
    # its own budget; a resumed run trains only the legs its checkpoint has not reached, each in turn
    import torch

    from benchmarks import learning

    torch.save({"step": 3000}, tmp_path / "committed" / "encode_once_d16_k4.ckpt")
    learning.train("encode-once-d16-k4", tmp_path / "data", tmp_path / "out", 11700)
    legs = [int(c[c.index("--steps") + 1]) for c in training_commands]
    assert legs == [3900, 7800, 11700] and all("--resume" in c for c in training_commands)


def test_the_sustained_rate_benchmark_loses_no_frame_and_samples_the_process(tmp_path):
    from benchmarks.sustained import main as sustained

    out = tmp_path / "sustained.json"
    args = ["--minutes", "0.05", "--size", "128", "--runner", "mda", "--model", "left-out"]
    (row,) = sustained([*args, "--out", str(out), "--png", str(tmp_path / "s.png"), "--plain-seconds", "0.5"])
    assert row["frames_exposed"] > 20 and row["frames_lost"] == 0  # every exposed frame on disk
    assert 0 < row["fps"] <= row["camera_fps"] * 1.05  # no faster than the camera
    assert 0 < row["plain_fps"] <= row["camera_fps"] * 1.05  # the same camera without Deep-Z
    assert row["of_plain"] == round(row["fps"] / row["plain_fps"], 3)
    assert 0 < row["latency_ms"]["median"] <= row["latency_ms"]["max"]
    assert len(row["series"]) >= 2 and all(s["open_files"] > 0 and s["rss_mb"] > 0 for s in row["series"])
    assert json.loads(out.read_text())["runs"][0]["frames_written"] == row["frames_written"]
    assert (tmp_path / "s.png").stat().st_size > 10_000


def test_the_sustained_rate_is_the_camera_s_while_it_ran_not_the_wait_for_the_model_s_last_stack():
    from benchmarks.sustained import camera_rate

    running = [{"s": float(t), "exposed": 80 * t} for t in range(121)]  # 80 frames/s for 2 minutes
    waiting = [{"s": 120.0 + t, "exposed": 9600} for t in range(1, 76)]  # then 75 s for the model's stack
    assert camera_rate(running + waiting) == 80.0
    assert camera_rate(running[:2]) is None  # too short to say


def test_the_writers_comparison_streams_the_same_frames_through_each_writer(tmp_path):
    from benchmarks.backends import WRITERS
    from benchmarks.backends import main as backends

    rows = backends(["--size", "64", "--frames", "8", "--shard", "4", "--out", str(tmp_path / "b.json")])
    assert [r["writer"] for r in rows[1:]] == list(WRITERS) and rows[0]["mb_s"] > 0
    for row in rows[1:]:
        assert "error" not in row and row["reads_back"] and row["mb_s"] > 0 and row["cpu_ms_per_frame"] > 0
    sharded = [r["files_per_frame"] for r in rows[1:] if "shard" in r["writer"]]
    assert sharded == [0.25] * 5  # a shard file per 4 frames: the recorder's writer (twice) and the others
    assert rows[1]["files_per_frame"] == 1.0  # zarr-python's one chunk per frame, as the recorder was


def test_the_hook_path_times_each_frame_on_both_runners(tmp_path):
    from benchmarks.hook_path import main as hook_path

    rows = hook_path(["--size", "64", "--time-points", "12", "--out", str(tmp_path / "h.json")])
    assert [r["runner"] for r in rows] == ["pycromanager", "mda"]
    for row in rows:
        assert row["time_points"] == 12 and row["fps"] > 0 and row["virtual_made"] == 12
        # the measured plane's write is a part of the hook's time for that frame
        assert 0 < row["measured_write_ms"]["median"] <= row["hook_ms"]["median"]
    assert json.loads((tmp_path / "h.json").read_text())["rows"] == rows


def test_the_hook_path_parts_take_out_what_they_say_and_put_it_back(tmp_path):
    from acquisition_hooks.virtual import VirtualResults
    from benchmarks.hook_path import PARTS, PLAIN
    from benchmarks.hook_path import main as hook_path
    from mm_deepz.io import Recorder

    submit, write_plane = VirtualResults.submit, Recorder.write_plane
    out = tmp_path / "p.json"
    rows = hook_path(["--parts", "--size", "64", "--time-points", "12", "--repeats", "1", "--out", str(out)])
    assert [r["run"] for r in rows] == [PLAIN, *PARTS]
    made = {r["run"]: r["virtual_made"] for r in rows}
    assert made["deepz"] == 12  # the whole run makes every stack; the runs without them make none
    assert made["without the virtual stacks"] == made[list(PARTS)[-1]] == 0
    assert all(r["fps_median"] > 0 and r["cpu_ms_per_frame"] > 0 for r in rows)
    assert rows[0]["of_plain"] == 1.0
    assert (VirtualResults.submit, Recorder.write_plane) == (submit, write_plane)  # put back
    assert json.loads(out.read_text())["rows"] == rows


def test_the_depth_probe_tells_a_network_that_places_light_in_depth_from_a_depth_blind_stack(tmp_path):
    # #32: the restarted encode-once arm scored neuron F1 0.09 with sharp spots at every depth; the probe
    # finds each virtual plane's best-matching confocal plane. The shipped model's planes match their own
    # depth out to 10 µm; the nearest measured plane repeated (depth-blind by construction) does not
    from benchmarks.depth_probe import REPEATED
    from benchmarks.depth_probe import main as depth_probe
    from benchmarks.gpu_train import pair_specs
    from mm_deepz.shipped import shipped_model_path
    from simulators.training_data import make_stack_pair, write_stack_pair

    blind = tmp_path / "blind"
    for _, spec in pair_specs("blind", "worm", (100, 101), 192):
        write_stack_pair(make_stack_pair(spec), blind, f"{spec.phantom}_{spec.seed:04d}")
    model = shipped_model_path(2)
    out, png = tmp_path / "probe.json", tmp_path / "probe.png"
    args = ["--model", str(model), "--specimens", str(blind), "--out", str(out), "--png", str(png)]
    results = depth_probe(args)
    far = "6-10 um"
    shipped, blind_stack = results[str(model)]["bands"], results[REPEATED]["bands"]
    assert shipped["0-3 um"]["median_error_um"] <= 1.0 and shipped[far]["median_error_um"] <= 2.0
    assert shipped[far]["within_one_step"] >= 0.5
    assert blind_stack[far]["within_one_step"] == 0.0 and blind_stack[far]["median_error_um"] >= 4.0
    assert png.stat().st_size > 10_000
    assert json.loads(out.read_text())["models"][str(model)]["bands"] == shipped


def test_a_trained_encoder_grown_by_self_attention_makes_the_same_stacks_until_the_block_learns():
    # benchmarks.learning's paired test of global context: the block starts as the identity, so the grown
    # model's stacks are its parent's, and every part of the block still receives gradients
    import numpy as np
    import torch
    from helpers import blobs, encode_once_model, tiny_model

    from benchmarks.learning import with_attention
    from mm_deepz.engine import Predictor

    parent = encode_once_model(seed=1)
    grown = with_attention(parent, 4)
    assert "attention, 4 heads" in grown.card.architecture.describe()
    planes, targets = blobs((1, 64, 64), seed=2), [-4.0, 0.0, 4.0]
    before = Predictor(parent, "cpu").predict_stack(planes, (0.0,), targets, out_dtype=np.float32).data
    after = Predictor(grown, "cpu").predict_stack(planes, (0.0,), targets, out_dtype=np.float32).data
    np.testing.assert_allclose(after, before, rtol=1e-5, atol=1e-3)
    with torch.no_grad():  # the encoding itself, bottleneck included (an untrained decoder hardly reads it)
        x = torch.rand(1, 1, 64, 64)
        for ours, theirs in zip(grown.network.encode(x), parent.network.encode(x), strict=True):
            torch.testing.assert_close(ours, theirs)
    net = grown.network.train()
    net(torch.rand(2, 2, 64, 64)).square().mean().backward()
    block = net.bottom[-1]
    for part in (block.position, block.attention.out_proj, block.mlp[-1]):
        assert part.weight.grad is not None and part.weight.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="attention is added to an encode-once model"):
        with_attention(tiny_model(), 4)


def test_a_grown_arm_fine_tunes_its_parents_last_weights_with_attention_added(tmp_path, training_commands):
    # the paired test of global context: both arms start from the balanced arm's last weights, one as it
    # is and one with self-attention at its bottleneck, fine-tuned at a fine-tune's peak rate
    import torch
    from helpers import encode_once_model

    from benchmarks import learning
    from mm_deepz.modelfile import load_model

    out = tmp_path / "out"
    arm = "encode-once-d16-k4-bf16-balanced-attention-ft"
    with pytest.raises(FileNotFoundError, match="--arm encode-once-d16-k4-bf16-balanced"):
        learning.train(arm, tmp_path / "data", out, 2000)
    parent = encode_once_model(seed=4)
    out.mkdir()
    parent.save(out / "encode_once_d16_k4_bf16_balanced.pt")
    last = {k: v + 0.01 for k, v in parent.network.state_dict().items()}  # the checkpoint's, not the best
    torch.save(
        {"step": 36000, "net": last, "history": [{"val_loss": 0.67}]},
        out / "encode_once_d16_k4_bf16_balanced.ckpt",
    )
    learning.train(arm, tmp_path / "data", out, 2000)
    (command,) = training_commands
    grown = load_model(command[command.index("--init") + 1])
    assert grown.card.architecture.attention_heads == 4
    assert torch.equal(grown.network.state_dict()["head.weight"], last["head.weight"])
    assert command[command.index("--lr") + 1] == learning.FINE_TUNE_LR and "--balance-defocus" in command
    assert "--overwrite" in command and "--resume" not in command


def test_a_trained_decoder_widened_makes_the_same_images_and_its_new_channels_learn():
    # the paired test of decoder width: the coarse levels widened from 32 to 64 channels keep the trained
    # network's images exactly (old channels blind to the new ones), and the weights that would let the
    # old channels read the new ones receive gradients, so the width is used once training starts
    import torch
    from helpers import encode_once_model

    from benchmarks.learning import with_wider_decoder
    from mm_deepz.model import EncodeOnceConfig

    parent = encode_once_model(n_planes=2, seed=5, config=EncodeOnceConfig(2, 16, 4, 64, 16, 32))
    with torch.no_grad():  # trained-looking weights: nothing at its initial zero
        for p in parent.network.parameters():
            p.add_(0.05 * torch.randn_like(p))
    grown = with_wider_decoder(parent, 64)
    assert grown.card.architecture.decoder_widths == [16, 32, 64, 64, 64]
    x = torch.rand(2, 4, 96, 96)
    with torch.no_grad():
        torch.testing.assert_close(grown.network(x), parent.network(x))
    grown.network.train()
    grown.network(x).square().mean().backward()
    merge = grown.network.merge[0][0]  # its inputs: the upsampled path (64) | the scaled features (64)
    assert not merge.weight[:32, 32:64].any() and merge.weight.grad[:32, 32:64].abs().sum() > 0
    assert not merge.weight[:32, 96:].any() and merge.weight.grad[:32, 96:].abs().sum() > 0
    with pytest.raises(ValueError, match="widened, not narrowed"):
        with_wider_decoder(parent, 16)


def test_where_a_generator_is_heading_is_fitted_off_the_plateau_and_extrapolated_to_the_goal(tmp_path):
    # #32's verdict: a lineage's gain per doubling of compute is fitted from where its far band first
    # found a neuron (the plateau before it would flatten the slope), and the compute to a goal follows
    import math

    from benchmarks.heading import gain, hours_to, main

    def point(hours, far):
        return {"hours": hours, "pcc": 0.5, "f1_all": 0.8, "f1_far": far}

    plateau = [point(0.5, 0.0), point(1.0, 0.0)]
    rising = [point(2.0, 0.1), point(4.0, 0.2), point(8.0, 0.3)]  # +0.1 per doubling
    points = plateau + rising
    assert gain(points, "f1_far") == pytest.approx(0.1)
    assert gain(points, "f1_far", last_doubling=True) == pytest.approx(0.1)  # 4 and 8 hours
    assert hours_to(points, "f1_far", 0.5, 0.1) == pytest.approx(8.0 * 4)  # two doublings more
    assert math.isinf(hours_to(points, "f1_far", 0.5, 0.0))  # flat: never
    assert gain(plateau, "f1_far") != gain(plateau, "f1_far")  # never left the plateau: no slope (NaN)
    lineage = {"name": "toy", "blind_set": "toy", "points": points}
    (tmp_path / "points.json").write_text(json.dumps({"lineages": [lineage]}))
    main(["--points", str(tmp_path / "points.json"), "--png", str(tmp_path / "heading.png")])
    assert (tmp_path / "heading.png").stat().st_size > 10_000
