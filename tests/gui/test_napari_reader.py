"""The napari plugin: a run opens from its root as named layers in one physical space.

napari's viewer model (the layer list, dims and transforms a window shows) through napari's own
plugin machinery (npe2 discovers the ``napari.manifest`` entry point); this machine has no
OpenGL, so no canvas is drawn.
"""

from __future__ import annotations

import numpy as np
import pytest
from typer.testing import CliRunner

from acquisition_hooks import DeepZAcquisition, DeepZPlan, RunSettings
from gui.napari_reader import get_reader
from mm_deepz.cli import app
from mm_deepz.io import image_array, open_container
from mm_deepz.modelfile import load_model
from mm_deepz.shipped import shipped_model_path

napari = pytest.importorskip("napari", reason="the [napari] extra is part of the test install")


@pytest.fixture(scope="module")
def viewer_model():
    from napari.components import ViewerModel
    from napari.plugins import _initialize_plugins

    _initialize_plugins()  # what napari.Viewer() does: discover installed plugins (npe2 manifests)
    return ViewerModel


def _two_position_run(session, out):
    model = load_model(shipped_model_path(1))
    run = DeepZAcquisition(
        session.core,
        model,
        DeepZPlan.for_model(model, -10.0, 10.0, 1.0, blind_check_every=2),
        RunSettings(output=out, time_points=3, device="cpu", positions_xy_um=((0.0, 0.0), (20.0, 0.0))),
    )
    run.run()


@pytest.mark.slow
def test_a_run_opens_as_named_layers_in_place_with_contrast_and_tracks(session, tmp_path, viewer_model):
    out = tmp_path / "run.ome.zarr"
    _two_position_run(session, out)
    res = CliRunner().invoke(app, ["track", str(out), "--image", "virtual", "--position-index", "1"])
    assert res.exit_code == 0, res.output
    viewer = viewer_model()
    viewer.open(str(out), plugin="mm-deepz")
    layers = {layer.name: layer for layer in viewer.layers}
    assert list(layers) == [
        "measured p0",
        "virtual p0",
        "reference p0",
        "measured p1",
        "virtual p1",
        "reference p1",
        "virtual_p1 tracks",
    ]
    m0, m1, v1 = layers["measured p0"], layers["measured p1"], layers["virtual p1"]
    # the input plane on the run's z grid (one plane thick at its own depth, #37 item 5), as the virtual
    assert m0.data.shape == v1.data.shape == (3, 21, 64, 64)
    measured = image_array(open_container(out), "measured", 0)
    np.testing.assert_array_equal(np.asarray(m0.data[1, 10]), measured[1, 0, 0])  # z = 0 µm
    assert not np.asarray(m0.data[1, :10]).any() and not np.asarray(m0.data[1, 11:]).any()
    assert layers["reference p0"].data.shape[0] == 3
    np.testing.assert_array_equal(
        np.asarray(v1.data[2]), image_array(open_container(out), "virtual", 1)[2, 0]
    )
    # one physical space: z in µm around the focus, positions side by side, measured and virtual overlaid
    assert v1.translate[1] == pytest.approx(-10.0) and v1.scale[1] == pytest.approx(1.0)
    assert (m0.translate[1], m0.scale[1]) == pytest.approx((-10.0, 1.0))  # the same z grid
    assert m1.translate[3] - m0.translate[3] == pytest.approx(20.0)
    np.testing.assert_allclose([v1.translate[i] for i in (0, 2, 3)], [m1.translate[i] for i in (0, 2, 3)])
    np.testing.assert_allclose([v1.scale[i] for i in (0, 2, 3)], [m1.scale[i] for i in (0, 2, 3)])
    assert viewer.dims.axis_labels == ("t", "z", "y", "x")  # the sliders are named (#37 item 5)
    z_world = viewer.dims.range[1]
    assert z_world.start == pytest.approx(-10.0) and z_world.stop == pytest.approx(10.0)
    assert (m0.colormap.name, v1.colormap.name, layers["reference p0"].colormap.name) == (
        "green",
        "magenta",
        "gray",
    )
    for layer in (m0, v1):
        lo, hi = layer.contrast_limits
        data = np.asarray(layer.data[0])
        assert data[data > 0].min() - 1 <= lo < hi <= data.max() + 1  # a window on the data
    tracks = layers["virtual_p1 tracks"]
    t_s, z, _, x = tracks.data[:, 1:].T
    assert len(np.unique(tracks.data[:, 0])) >= 1
    # found at every time point, at the images' own world times (s)
    np.testing.assert_allclose(np.unique(t_s), v1.translate[0] + v1.scale[0] * np.arange(3), rtol=1e-6)
    x_lo, x_hi = v1.translate[3], v1.translate[3] + 63 * v1.scale[3]
    assert (
        z.min() >= -10.5 and z.max() <= 10.5 and x.min() >= x_lo - 1 and x.max() <= x_hi + 1
    )  # on position 1


def test_the_reader_leaves_other_folders_to_other_readers(tmp_path):
    (tmp_path / "plain").mkdir()
    (tmp_path / "plain" / "notes.txt").write_text("x")
    other = tmp_path / "other.zarr"
    other.mkdir()
    (other / "zarr.json").write_text('{"zarr_format": 3, "node_type": "group", "attributes": {}}')
    assert get_reader(str(tmp_path / "plain")) is None
    assert get_reader(str(other)) is None
    assert get_reader(str(tmp_path / "plain" / "notes.txt")) is None
    assert get_reader([str(other), str(other)]) is None


def test_two_measured_planes_are_drawn_at_their_own_depths_not_as_slabs():
    # drawn at their spacing (4 µm), the -2 µm plane filled -4..0 µm: 8 of 21 depths showed measured data
    import dask.array as da

    from gui.napari_reader import _on_grid

    planes = da.from_array(np.arange(1, 2 * 2 * 4 + 1, dtype=np.uint16).reshape(2, 2, 2, 2))
    grid = tuple(float(z) for z in np.arange(-4.0, 4.5, 1.0))
    data, step, start = _on_grid(planes, [-2.0, 2.0], grid)
    assert (step, start) == (1.0, -4.0) and data.shape == (2, 9, 2, 2)
    filled = [i for i in range(9) if np.asarray(data[:, i]).any()]
    assert filled == [2, 6]  # -2 and +2 µm, one plane each
    np.testing.assert_array_equal(np.asarray(data[:, 6]), np.asarray(planes[:, 1]))
