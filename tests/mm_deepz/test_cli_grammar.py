"""One command-line grammar (#36 item 6): every command writes to -o/--output, names a time point and a
position by index the same way, checks --device the same way, and explains every option; the
spellings of earlier versions are still read for one release, with a warning naming the new one."""

import pytest
import typer
from typer.testing import CliRunner

from mm_deepz.cli import app

#: spellings that went away in favour of -o/--output, --time-index, --position-index, --frame, --window-size
OLD = {"--out", "--report", "--bmz", "--t", "--p", "--size"}


def _commands(group, prefix: str = ""):
    for name, cmd in group.commands.items():
        if hasattr(cmd, "commands"):  # a group (typer ships its own click)
            yield from _commands(cmd, f"{prefix}{name} ")
        else:
            yield f"{prefix}{name}", cmd


COMMANDS = dict(_commands(typer.main.get_command(app)))


def test_every_command_is_found():
    assert {"acquire", "infer", "train", "evaluate", "preview", "simulate pairs", "pairs acquire"} <= set(
        COMMANDS
    )


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_every_visible_option_has_help_and_the_one_spelling(name):
    cmd = COMMANDS[name]
    visible = [p for p in cmd.params if p.param_type_name == "option" and not p.hidden]
    assert [p.name for p in visible if not (p.help or "").strip()] == []
    spellings = {s for p in visible for s in p.opts + p.secondary_opts}
    assert spellings & OLD == set()
    outputs = [p for p in visible if p.name == "output"]
    assert all({"-o", "--output"} <= set(p.opts) for p in outputs)
    # a command that writes one thing names it with -o/--output, never with a positional
    assert not [
        p
        for p in cmd.params
        if p.param_type_name == "argument" and not p.hidden and p.name in {"out", "output"}
    ]


@pytest.mark.parametrize(
    "command", [["acquire"], ["infer", "run.ome.zarr"], ["evaluate", "m.pt", "s"], ["train", "d"]]
)
def test_a_device_name_is_refused_the_same_way_before_any_work(command, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    res = CliRunner().invoke(app, [*command, "--device", "gpu"])
    assert res.exit_code == 2 and "Unknown device 'gpu'" in res.output
    assert list(tmp_path.iterdir()) == []  # nothing written


def test_the_earlier_spellings_still_work_with_a_warning(tmp_path):
    res = CliRunner().invoke(
        app,
        ["simulate", "pairs", str(tmp_path / "old"), "--phantom", "sheet", "--n", "1", "--size", "32",
         "--z-range", "2", "--z-step", "2"],
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    assert len(list((tmp_path / "old").glob("*.ome.tif"))) == 2
    said = " ".join(res.output.split())  # the command's log, as the user reads it
    for old, new in (
        ("OUT (positional)", "-o/--output"),
        ("--size", "--frame"),
        ("--z-range", "--z-half-range"),
    ):
        assert f"{old} is now {new}" in said
    res = CliRunner().invoke(app, ["simulate", "pairs", "--n", "1"])
    assert res.exit_code != 0 and "-o/--output" in str(res.exception)
