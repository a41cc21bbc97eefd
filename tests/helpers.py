"""Small builders shared by tests."""

from __future__ import annotations

import errno
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import numpy as np
from scipy import ndimage

from mm_deepz.model import UNetConfig
from mm_deepz.modelfile import DeepZModel, ModelCard, OpticsSpec

OPTICS = OpticsSpec(pixel_size_um=0.325, na=0.75, wavelength_em_um=0.525, immersion_index=1.0)


def tiny_model(n_planes: int = 1, seed: int = 0, z_range_um: float = 10.0) -> DeepZModel:
    """An untrained small model (for engine tests that do not need a trained one)."""
    offsets = (0.0,) if n_planes == 1 else (-2.0, 2.0)
    card = ModelCard(
        architecture=UNetConfig(n_planes, 8, 2),
        input_offsets_um=offsets,
        z_range_um=z_range_um,
        optics=OPTICS,
    )
    return DeepZModel.new(card, seed=seed)


def blobs(shape=(1, 96, 96), seed: int = 0) -> np.ndarray:
    """Smooth random uint16 planes with structure (not flat)."""
    rng = np.random.default_rng(seed)
    img = ndimage.gaussian_filter(rng.random(shape) * 4000, (0, 2, 2)) + 100
    return img.astype(np.uint16)


def measured_chunks_prefix() -> str:
    """Store keys of the measured image's shards (position 0) in a run's container."""
    from mm_deepz.io.layout import IMAGES, number_images

    return f"{number_images(IMAGES, 1)['measured'][0]}/0/c/"


def disk_fails_after_measured_planes(monkeypatch, planes: int, code: int = errno.ENOSPC) -> None:
    """From the measured plane after the first ``planes`` on, every write fails with ``OSError(code)`` (a
    full or unwritable disk): zarr-python's writes and the recorder's writes into shards alike."""
    import zarr

    from mm_deepz.io.shards import ShardWriter

    measured = {"n": 0}
    words = "No space left on device" if code == errno.ENOSPC else "Permission denied"
    store_set, plane_write = zarr.storage.LocalStore.set, ShardWriter.write

    async def failing_set(self, key, value):
        if measured["n"] >= planes:
            raise OSError(code, words)
        return await store_set(self, key, value)

    def failing_write(self, t, c, z, plane):
        if measured["n"] >= planes:
            raise OSError(code, words)
        plane_write(self, t, c, z, plane)
        if measured_chunks_prefix() in f"{self._dir.as_posix()}/c/":
            measured["n"] += 1

    monkeypatch.setattr(zarr.storage.LocalStore, "set", failing_set)
    monkeypatch.setattr(ShardWriter, "write", failing_write)


ROOT = Path(__file__).resolve().parents[1]

#: a second process that writes a small container and holds it (prints "writing" once it does)
HOLDER = textwrap.dedent("""
    import sys, time
    import numpy as np
    from mm_deepz.io import Geometry, Recorder
    rec = Recorder(sys.argv[1], Geometry((-1.0, 0.0, 1.0), 0.5, 1.0, (8, 8)), {"plan": {"marker": 1}})
    rec.write_plane("measured", 0, 1, np.ones((8, 8), np.uint16))
    rec.mark_complete("measured", 0, planes=[1])
    print("writing", flush=True)
    time.sleep(120)
""")


def env_with_root() -> dict[str, str]:
    """This environment, with the project's root importable (for subprocesses)."""
    return {**os.environ, "PYTHONPATH": str(ROOT)}


def start_holder(path: Path) -> subprocess.Popen:
    """A second process writing the container ``path`` (kill it when done)."""
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(path)], stdout=subprocess.PIPE, text=True, env=env_with_root()
    )
    assert proc.stdout is not None and proc.stdout.readline().strip() == "writing"
    return proc


def run_cli(*args: str, **kw) -> subprocess.CompletedProcess:
    """``mm-deepz ARGS`` in a new process, as a user types it."""
    return subprocess.run(
        [sys.executable, "-c", "from mm_deepz.cli import main; main()", *args],
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
        **kw,
    )


def start_acquire(out: Path, *args: str, **popen) -> subprocess.Popen:
    """``mm-deepz acquire -o OUT --device cpu ARGS`` in a new process, running on."""
    return subprocess.Popen(
        [
            sys.executable,
            "-c",
            "from mm_deepz.cli import main; main()",
            "acquire",
            "-o",
            str(out),
            "--device",
            "cpu",
            *args,
        ],
        **popen,
    )


def heavy_modules_after(code: str, modules: set[str]) -> list[str]:
    """Which of ``modules`` a fresh interpreter has imported once it ran ``code`` (statements separated
    by ``;``): what a light part of the project must not load."""
    names = sorted(modules)
    script = f"import json, sys; {code}; print(json.dumps(sorted(set({names!r}) & set(sys.modules))))"
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def encode_once_model(n_planes: int = 1, seed: int = 0, config: Any = None) -> DeepZModel:
    """A small encode-once model (or one of ``config``, an ``EncodeOnceConfig``) whose DPM conditioning
    is switched on (its FiLM layers start at zero, which makes every untrained decoder ignore the DPM)."""
    import torch

    from mm_deepz.model import EncodeOnceConfig

    offsets = (0.0,) if n_planes == 1 else (-2.0, 2.0)
    card = ModelCard(
        architecture=config or EncodeOnceConfig(n_planes, 8, 3, 16, 4, 16, (2,)),
        input_offsets_um=offsets,
        z_range_um=10.0,
        optics=OPTICS,
    )
    model = DeepZModel.new(card, seed=seed)
    with torch.no_grad():
        for film in model.network.film:
            for p in film.parameters():
                p.add_(0.3 * torch.randn_like(p))
    return model


def per_block(exposure_ms: float) -> int:
    """Time points due at once that a run hands the camera as one sequence, at ``exposure_ms`` a time
    point (a quarter second of exposures, ``acquisition_hooks.events.SEQUENCE_S``)."""
    from acquisition_hooks.events import SEQUENCE_S

    return int(np.ceil(SEQUENCE_S * 1000 / exposure_ms))


def deepz_run(session: Any, path: Path, time_points: int) -> Path:
    """A finished Deep-Z run on the simulator (measured and virtual stacks)."""
    from acquisition_hooks import DeepZAcquisition, DeepZPlan, RunSettings
    from mm_deepz.modelfile import load_model
    from mm_deepz.shipped import shipped_model_path

    model = load_model(shipped_model_path(1))
    DeepZAcquisition(
        session.core,
        model,
        DeepZPlan.for_model(model, -10, 10, 1),
        RunSettings(output=path, time_points=time_points, device="cpu"),
    ).run()
    return path


def cli(capsys: Any, monkeypatch: Any, *args: str) -> tuple[int, str]:
    """``mm-deepz ARGS`` in this process, as the console script runs it: (exit code, stderr)."""
    from mm_deepz.cli import main

    monkeypatch.setattr(sys, "argv", ["mm-deepz", *args])
    capsys.readouterr()
    try:
        main()
        code = 0
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else 1
    return code, capsys.readouterr().err
