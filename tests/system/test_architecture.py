"""The packages' dependency direction (docs/architecture.md): each imports only the packages below it."""

import ast
from pathlib import Path

import pytest
from helpers import heavy_modules_after
from typer.testing import CliRunner

ROOT = Path(__file__).parents[2]
#: bottom to top
LAYERS = ["simulators", "mm_deepz", "acquisition_hooks", "gui"]


def _imported_packages(package: str) -> dict[str, set[str]]:
    """Each module of ``package`` -> the project packages it imports (at any depth, lazily too)."""
    found = {}
    for path in (ROOT / package).rglob("*.py"):
        names = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names |= {a.name.split(".")[0] for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names.add(node.module.split(".")[0])
        found[str(path.relative_to(ROOT))] = names & set(LAYERS)
    return found


#: the simulator's plugin (its ``mm-deepz simulate`` commands) -> the highest package it builds on
PLUGINS = {"simulators/commands.py": "mm_deepz"}


@pytest.mark.parametrize("package", LAYERS)
def test_no_package_imports_upward(package):
    def above(module: str) -> set[str]:
        return set(LAYERS[LAYERS.index(PLUGINS.get(module, package)) + 1 :])

    upward = {
        module: sorted(names & above(module))
        for module, names in _imported_packages(package).items()
        if names & above(module)
    }
    assert upward == {}


def test_the_simulators_plugin_is_found_not_imported():
    # item 5 of #36: the simulator registers its own commands; the packages it plugs into never import them
    importers = [
        str(path.relative_to(ROOT))
        for package in LAYERS
        for path in (ROOT / package).rglob("*.py")
        if "simulators.commands" in path.read_text() and str(path.relative_to(ROOT)) not in PLUGINS
    ]
    assert importers == []


def test_the_command_line_holds_every_packages_commands():
    # the commands of the packages above the core come through the entry-point group mm_deepz.commands
    from mm_deepz.cli import app

    out = CliRunner().invoke(app, ["--help"]).output
    for command in (
        "train",
        "evaluate",
        "track",
        "info",
        "preview",
        "simulate",
        "acquire",
        "infer",
        "gui",
        "napari",
        "pairs",
    ):
        assert f"│ {command} " in out, command


def test_the_command_line_lists_its_commands_without_loading_qt_torch_or_the_acquisition():
    # #36 item 3: `mm-deepz --help` imported PyQt5 and torch (5 s here): the gui package loaded its panel
    code = (
        "from typer.testing import CliRunner; from mm_deepz.cli import app; "
        "out = CliRunner().invoke(app, ['--help']).output; assert 'gui' in out and 'acquire' in out"
    )
    assert heavy_modules_after(code, {"torch", "PyQt5.QtWidgets", "pycromanager", "zarr"}) == []
