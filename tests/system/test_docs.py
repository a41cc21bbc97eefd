"""The Python examples users copy from docs/usage.md run as written."""

import re
from pathlib import Path

import pytest

from mm_deepz.io import read_progress

USAGE = Path(__file__).parents[2] / "docs" / "usage.md"


@pytest.mark.slow
def test_the_acquisition_examples_of_the_usage_page_run(tmp_path, monkeypatch):
    blocks = re.findall(r"```python\n(.*?)```", USAGE.read_text(), flags=re.DOTALL)
    assert len(blocks) == 3  # pycromanager, the checked request, pymmcore-plus's MDA runner
    monkeypatch.chdir(tmp_path)  # the examples write run.ome.zarr and mda.ome.zarr where they run
    namespace: dict = {}
    for block in blocks:
        exec(compile(block, str(USAGE), "exec"), namespace)  # noqa: S102 - the documentation's own examples
    assert namespace["summary"].time_points == 5  # the last example's run
    for name in ("run.ome.zarr", "checked.ome.zarr", "mda.ome.zarr"):
        progress = read_progress(tmp_path / name)
        assert progress["finished"] and progress["completed"]["virtual"] == [0, 1, 2, 3, 4]
