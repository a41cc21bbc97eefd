"""The benchmark suite runs end to end (quick mode; CI asserts no figure, only that it works)."""

import json

from benchmarks.__main__ import main


def test_quick_benchmark_suite_writes_json_and_markdown(tmp_path):
    main(["--quick", "--out", str(tmp_path)])
    results = json.loads((tmp_path / "benchmarks.json").read_text())
    for section in ("simulator", "inference", "acquisition", "writing", "light", "scaling", "neurons", "training_step"):
        assert results[section], section
    md = (tmp_path / "benchmarks.md").read_text()
    assert "### Inference" in md and "### Acquisition overhead" in md and "Quick mode" in md
    assert "### Neuron analysis" in md and "### Training step" in md
