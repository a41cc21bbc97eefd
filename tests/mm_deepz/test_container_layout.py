"""A run's container is an OME-Zarr that validators and viewers open as the run's images.

Each container is checked with the tools users have: yaozarrs and ome-zarr-models (validators),
ome-zarr-py (its collection finder and image reader) and the OME-XML (ome-types), for the kinds
of runs there are: single and multi-position, with blind checks, 2 planes, toggled to full
stacks, interrupted. Containers of the previous layout are still read.
"""

from __future__ import annotations

import json
import shutil

import ngff_zarr
import numpy as np
import pytest
import torch
import yaozarrs
import zarr
from ome_types import from_xml
from ome_zarr.io import parse_url
from ome_zarr.reader import Reader
from ome_zarr.utils import find_multiscales
from ome_zarr_models.v05 import BioFormats2Raw
from ome_zarr_models.v05 import Image as NgffImage
from typer.testing import CliRunner

from acquisition_hooks import DeepZAcquisition, DeepZPlan, RunSettings
from acquisition_hooks.infer import infer_missing
from mm_deepz.cli import app
from mm_deepz.errors import InputError
from mm_deepz.io import (
    Geometry,
    MissingImageError,
    Recorder,
    image_array,
    image_group_path,
    image_names,
    open_container,
    read_progress,
    record_key_parts,
)
from mm_deepz.io.preview import preview_png
from mm_deepz.modelfile import load_model
from mm_deepz.neurons.series import container_series
from mm_deepz.shipped import shipped_model_path

Z = (-10.0, 10.0, 1.0)
NAMES = ["measured", "virtual", "reference"]


def _run(session, out, planes=1, time_points=2, toggle_at=None, **settings):
    model = load_model(shipped_model_path(planes))
    run = DeepZAcquisition(
        session.core,
        model,
        DeepZPlan.for_model(model, *Z, blind_check_every=1),
        RunSettings(output=out, time_points=time_points, device="cpu", **settings),
    )

    def progress(t, total):
        if t == toggle_at:
            run.enabled = False

    run.run(progress=progress)
    return run


def _napari_layers(path):
    """The layers napari's viewer gets from the mm-deepz plugin (napari's own plugin discovery)."""
    from napari.components import ViewerModel
    from napari.plugins import _initialize_plugins

    _initialize_plugins()
    viewer = ViewerModel()
    viewer.open(str(path), plugin="mm-deepz")
    return list(viewer.layers)


def run_plan_anchors(kind):
    """The input planes (µm) of a kind of run's model."""
    return (-2.0, 2.0) if kind == "two planes" else (0.0,)


RUNS = {
    "single position, blind checks": {},
    "two positions": {"positions_xy_um": ((0.0, 0.0), (20.0, 0.0))},
    "two planes": {"planes": 2},
    # as fast as possible t=1 is already queued when t=0 reports: the toggle applies from t=2
    "toggled to full stacks": {"toggle_at": 0, "time_points": 3},
}


@pytest.mark.parametrize("kind", list(RUNS))
@pytest.mark.slow
def test_run_root_is_an_ome_zarr_collection_for_validators_and_viewers(session, tmp_path, kind):
    out = tmp_path / "run.ome.zarr"
    _run(session, out, **RUNS[kind])
    n_pos = 2 if kind == "two positions" else 1
    names = NAMES + (["measured_stack"] if kind == "toggled to full stacks" else [])  # full stacks: own image
    yaozarrs.validate_zarr_store(out)
    collection = BioFormats2Raw.from_zarr(zarr.open_group(str(out), mode="r"))
    assert len(collection.images) == len(names) * n_pos
    root = open_container(out)
    assert image_names(root) == names
    # ome-zarr-py finds the run's images by name, as napari and its CLI list them
    found = {name: path for path, name, _ in find_multiscales(out)}
    expected = names if n_pos == 1 else [f"{n} p{p}" for p in range(n_pos) for n in names]
    assert sorted(found) == sorted(expected)
    ome = from_xml((out / "OME" / "METADATA.ome.xml").read_text())
    xml_images = {img.name: img for img in ome.images}
    for p in range(n_pos):
        for name in names:
            path = image_group_path(root, name, p)
            title = name if n_pos == 1 else f"{name} p{p}"
            assert found[title] == out / path
            NgffImage.from_zarr(zarr.open_group(str(out / path), mode="r"))
            attrs = json.loads((out / path / "zarr.json").read_text())["attributes"]
            ngff_zarr.validate(attrs, version="0.5", strict=True)  # ngff-zarr's strict schema
            node = next(iter(Reader(parse_url(str(out / path)))()))
            data = np.asarray(node.data[0])
            label = node.metadata["channel_names"][0]
            assert {
                "measured": "widefield (measured)",
                "virtual": "virtual confocal",
                "reference": "confocal",
                "measured_stack": "widefield z-stacks",
            }[name] in label
            if name == "virtual":
                assert "deepz_" in label  # which model made it
            lo, hi = node.metadata["contrast_limits"][0]
            written = data[data > 0]
            if name == "measured":  # what was measured, at its own z: no plane of zeros
                assert (
                    data.shape[2] == len(run_plan_anchors(kind))
                    and (data.reshape(len(data), -1).min(1) > 0).all()
                )
            assert written.min() - 1 <= lo < hi <= written.max() + 1  # a window on the data, not 0-4000
            pixels = xml_images[title].pixels
            assert pixels.channels[0].emission_wavelength == pytest.approx(525)
            assert pixels.size_t == data.shape[0]
    # napari, through the mm-deepz plugin: every image as a layer, where the container puts it
    layers = {layer.name: layer for layer in _napari_layers(out)}
    record = read_progress(out)
    assert sorted(layers) == sorted(expected)
    for title, layer in layers.items():
        name, p = (title.split(" p") + ["0"])[:2] if n_pos > 1 else (title, "0")
        ome = root[image_group_path(root, name, int(p))].attrs["ome"]
        translation = ome["multiscales"][0]["datasets"][0]["coordinateTransformations"][1]["translation"]
        if name == "measured" and record.get("anchor_z_um"):  # drawn on the run's z grid (#37 item 5)
            translation = [*translation[:2], record["z_grid_um"][0], *translation[3:]]
        np.testing.assert_allclose(layer.translate, [translation[0], *translation[2:]])
        assert [str(u) for u in layer.units] == ["second", "micrometer", "micrometer", "micrometer"]
    measured_planes = xml_images[expected[0]].pixels.planes  # the input planes, at every time point
    by_t = {}
    for plane in measured_planes:
        by_t.setdefault(plane.the_t, []).append(plane.delta_t)
        assert plane.exposure_time == pytest.approx(10.0)
    n_t = RUNS[kind].get("time_points", 2)
    assert sorted(by_t) == list(range(n_t)) and max(by_t[0]) < min(by_t[1])  # each frame's own time, in order
    times = read_progress(out)["frame_times_s"]["measured"]
    assert sum(len(v) for k, v in times.items() if record_key_parts(k)[1] == 0) == len(measured_planes)


def _panels(png, n, filled=False):
    """The brightest channel value of each of the ``n`` side-by-side panels of a PNG, 0-1, leaving out
    the rows where napari writes the layer names (top) and the scale bar and caption (bottom); with
    ``filled``, the fraction of each panel's columns that are not black instead."""
    from matplotlib.image import imread

    rgb = imread(png)[..., :3]
    height, width = rgb.shape[:2]
    body = rgb[height // 8 : height * 3 // 4]
    panels = [body[:, i * width // n : (i + 1) * width // n] for i in range(n)]
    if filled:
        return [float((panel.max(axis=(0, 2)) > 0.02).mean()) for panel in panels]
    return [float(panel.max()) for panel in panels]


@pytest.mark.slow
def test_napari_draws_a_run_side_by_side_off_screen(session, tmp_path):
    """``mm-deepz napari RUN --screenshot``: napari's own layer visuals, drawn without a display. At a
    measured plane (where it opens by default) all three images show the worm; 6 µm from it the measured
    image is empty (nothing was measured there) while the virtual and reference ones are not. Of a
    2-position run it shows the first position, fitted to its panel (not shrunk to a third by a view
    fitted to both)."""
    import subprocess
    import sys

    out = tmp_path / "run.ome.zarr"
    _run(session, out, planes=2, time_points=1, positions_xy_um=((0.0, 0.0), (400.0, 0.0)))

    def shot(z, filled=False):
        png = tmp_path / f"z{z}.png"
        args = ["napari", str(out), "--screenshot", str(png), "--window-size", "900x360"]
        args += [] if z is None else ["--z", str(z)]
        # its own process: napari's GL must be set up for EGL before anything loads PyOpenGL
        done = subprocess.run(
            [sys.executable, "-c", "from mm_deepz.cli import main; main()", *args],
            capture_output=True,
            text=True,
            timeout=600,
            check=False,  # its stderr goes into the failure message
        )
        assert done.returncode == 0, done.stderr[-2000:]
        return _panels(png, 3, filled)

    at_plane, away = shot(None), shot(4.0)
    assert min(at_plane) > 0.3, at_plane
    assert away[0] < 0.02 and away[1] > 0.3 and away[2] > 0.3, away
    # the measured image (its camera offset is never black) spans most of its panel's width
    assert shot(-2.0, filled=True)[0] > 0.8


def test_an_interrupted_run_is_a_valid_collection_already(tmp_path):
    """A run killed before it finishes (kill -9, power loss) leaves the collection written at creation."""
    geometry = Geometry(z_um=(-1.0, 0.0, 1.0), pixel_size_um=0.5, interval_s=1.0, shape_yx=(8, 8))
    rec = Recorder(tmp_path / "cut.ome.zarr", geometry)
    rec.write_plane("measured", 0, 1, np.full((8, 8), 120, np.uint16))
    rec.mark_complete("measured", 0, planes=[1])
    rec.close()  # no finish
    yaozarrs.validate_zarr_store(tmp_path / "cut.ome.zarr")
    assert [name for _, name, _ in find_multiscales(tmp_path / "cut.ome.zarr")] == ["measured"]
    assert not read_progress(tmp_path / "cut.ome.zarr")["finished"]


def _as_layout_1(out):
    """Rewrite a container as mm-deepz wrote it before (named folders, a root that is not OME-Zarr)."""
    root = zarr.open_group(str(out), mode="r+")
    attrs = dict(root.attrs["mm_deepz"])
    for name, (path,) in attrs.pop("images").items():
        (out / path).rename(out / name)
    attrs.pop("layout")
    shutil.rmtree(out / "OME")
    meta = json.loads((out / "zarr.json").read_text())
    meta["attributes"] = {"mm_deepz": attrs}
    (out / "zarr.json").write_text(json.dumps(meta))


@pytest.mark.slow
def test_containers_of_the_previous_layout_are_still_read(session, tmp_path):
    out = tmp_path / "old.ome.zarr"
    _run(session, out, time_points=2)
    before = np.asarray(image_array(open_container(out), "virtual"))
    _as_layout_1(out)
    root = open_container(out)
    assert image_group_path(root, "virtual") == "virtual" and image_names(root) == NAMES
    np.testing.assert_array_equal(image_array(root, "virtual"), before)
    assert preview_png(out, tmp_path / "old.png", t=1).read_bytes()[:4] == b"\x89PNG"
    assert container_series(out, "virtual").time_points == (0, 1)
    res = CliRunner().invoke(app, ["info", str(out)])
    assert res.exit_code == 0 and "layout" in res.output and "1 (an mm-deepz version" in res.output
    with pytest.raises(MissingImageError, match="no image 'virtual_other'"):
        image_group_path(root, "virtual_other")
    other = load_model(shipped_model_path(1))
    with torch.no_grad():
        for w in other.network.parameters():
            w.mul_(0.5)  # another model (a retrained one)
    other = other.save(tmp_path / "other.pt")
    with pytest.raises(InputError, match="older mm-deepz"):
        infer_missing(out, other, "cpu")


@pytest.mark.parametrize(
    ("args", "images"), [([], ["measured", "virtual"]), (["--no-deepz"], ["measured", "measured_stack"])]
)
def test_an_image_nothing_was_written_to_is_not_made(tmp_path, args, images):
    # #37 item 2: empty images were zero-length t arrays while the OME-XML said SizeT=1 (napari-ome-zarr
    # added a 0-length layer and pulled its time slider below 0); now every image in the record, the
    # collection and the OME-XML holds time points, and its SizeT is the array's
    out = tmp_path / "run.ome.zarr"
    res = CliRunner().invoke(
        app, ["acquire", "-o", str(out), "-t", "2", "--frame", "64", "--device", "cpu", *args]
    )
    assert res.exit_code == 0, res.output
    root = open_container(out)
    assert image_names(root) == images
    assert [name for _, name, _ in find_multiscales(out)] == images
    sizes = {
        img.name: img.pixels.size_t for img in from_xml((out / "OME" / "METADATA.ome.xml").read_text()).images
    }
    assert sizes == {name: image_array(root, name).shape[0] for name in images} == dict.fromkeys(images, 2)
    yaozarrs.validate_zarr_store(out)
    if not args:  # infer on a finished run reopens it without a reference image
        assert infer_missing(out, None, "cpu").already == 2
