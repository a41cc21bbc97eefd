"""pycromanager's own acquisition tests on the simulator: ``python -m benchmarks.pycromanager_suite``.

pycromanager ships its test suite (``pycromanager/test``), written for Micro-Manager's
``MMConfig_demo.cfg`` behind a running Micro-Manager. This command copies its test files (all but
the viewer's, :data:`TEST_FILES` says why) into a temporary folder beside a conftest that
gives their two fixtures (``launch_mm_headless``: mm-deepz's simulator under the demo
configuration's names, as pycromanager's Python-backend core; ``setup_data_folder``: a temporary
folder), runs them with pytest and prints pytest's summary. The tests themselves are unchanged.
"""

from __future__ import annotations

import argparse
import importlib.util
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

#: every test file of pycromanager's but test_viewer.py: its NDViewer tests need the Java backend
#: (pycromanager's Python backend drops ``show_display``, so ``acq.get_viewer()`` is None and they fail
#: with AttributeError whatever the core), and its napari tests block in ``napari.run()`` until a person
#: closes the window
TEST_FILES = (
    "test_acquisition.py",
    "test_callback_functions.py",
    "test_notifications_futures.py",
    "test_MDA_events.py",
    "test_startup.py",
)

CONFTEST = """
import shutil
import tempfile

import pytest

import simulators
from mm_deepz.bridge import start_simulator


@pytest.fixture(scope=SCOPE)
def launch_mm_headless():
    world = simulators.SimWorld(sensor_shape=(512, 512))
    with start_simulator(world, config=simulators.MM_DEMO_CONFIG) as session:
        yield session


@pytest.fixture(scope="session")
def setup_data_folder():
    folder = tempfile.mkdtemp()
    yield folder
    shutil.rmtree(folder, ignore_errors=True)
"""


def run(extra_args: list[str] | None = None, fresh_world: bool = False) -> int:
    """Run pycromanager's tests on the simulator; pytest's exit code. ``fresh_world``: a new simulated
    microscope for every test (as a Micro-Manager started for each; slower), else one for the session."""
    spec = importlib.util.find_spec("pycromanager")
    if spec is None or spec.origin is None:
        raise SystemExit("pycromanager is not installed.")
    tests = Path(spec.origin).parent / "test"
    with tempfile.TemporaryDirectory() as tmp:
        for name in TEST_FILES:
            shutil.copy(tests / name, Path(tmp) / name)
        scope = "function" if fresh_world else "session"
        (Path(tmp) / "conftest.py").write_text(CONFTEST.replace("SCOPE", repr(scope)))
        # napari's pytest plugin (when installed) would change every log record's arguments
        cmd = [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:napari",
            "-p",
            "no:cacheprovider",
            tmp,
            *(extra_args or []),
        ]
        return subprocess.run(cmd, check=False).returncode


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.pycromanager_suite", description=__doc__)
    ap.add_argument("pytest_args", nargs="*", help="passed on to pytest after -- (e.g. -- -k zstack)")
    ap.add_argument("--fresh-world", action="store_true", help="A new simulated microscope for every test.")
    args = ap.parse_args(argv)
    raise SystemExit(run(args.pytest_args, args.fresh_world))


if __name__ == "__main__":
    main()
