"""Reading, validating and registering training stacks."""

import numpy as np
import pytest
import tifffile
from scipy import ndimage

from mm_deepz.training.stacks import (
    Stack,
    StackDataError,
    find_pairs,
    load_pair,
    load_pairs,
    read_stack,
    register,
)
from simulators.training_data import PairSpec, make_stack_pair, write_stack_pair


@pytest.fixture(scope="module")
def pair_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("pairs")
    pair = make_stack_pair(PairSpec(phantom="worm", seed=130, shape=(96, 96), z_half_range_um=4, z_step_um=1))
    write_stack_pair(pair, d, "worm_0130")
    return d, pair


def test_ome_tiff_pair_reads_with_geometry(pair_dir):
    d, pair = pair_dir
    [p] = load_pairs([d], do_register=False)
    np.testing.assert_array_equal(p.inputs.data, pair.widefield)
    np.testing.assert_allclose(p.z_um, pair.z_um)
    assert p.pixel_size_um == pytest.approx(0.325) and p.inputs.z_step_um == pytest.approx(1.0)
    assert p.meta["optics"]["na"] == pytest.approx(0.75)


def test_registration_recovers_a_known_shift(pair_dir, tmp_path):
    _, pair = pair_dir
    shifted = ndimage.shift(pair.confocal.astype(np.float32), (1.0, 1.5, -2.3), order=1, mode="nearest")
    meta = {"axes": "ZYX", "PhysicalSizeX": 0.325, "PhysicalSizeY": 0.325, "PhysicalSizeZ": 1.0}
    tifffile.imwrite(tmp_path / "w_widefield.ome.tif", pair.widefield, ome=True, metadata=meta)
    tifffile.imwrite(tmp_path / "w_confocal.ome.tif", shifted.astype(np.uint16), ome=True, metadata=meta)
    p = load_pair("w", tmp_path / "w_widefield.ome.tif", tmp_path / "w_confocal.ome.tif")
    # the unshifted pair has a small genuine widefield/confocal focus offset (aberrated optics)
    (by, bx), bz = register(
        read_stack(tmp_path / "w_widefield.ome.tif"), Stack(pair.confocal, pair.z_um, 0.325)
    )
    assert (p.shift_yx_px[0] - by, p.shift_yx_px[1] - bx) == pytest.approx((-1.5, 2.3), abs=0.2)
    assert p.axial_offset_um - bz == pytest.approx(-1.0, abs=0.3)
    inner = (slice(2, -2), slice(4, -4), slice(4, -4))

    def corr(a):
        return np.corrcoef(a[inner].ravel(), pair.confocal[inner].ravel().astype(float))[0, 1]

    assert corr(p.target.data) > 0.9 > corr(shifted)  # the registered target matches the original again


def test_inconsistent_inputs_are_refused(tmp_path):
    meta = {"axes": "ZYX", "PhysicalSizeX": 0.325, "PhysicalSizeZ": 1.0}
    data = np.random.default_rng(0).integers(100, 200, (5, 32, 32)).astype(np.uint16)
    tifffile.imwrite(tmp_path / "a_widefield.ome.tif", data, ome=True, metadata=meta)
    tifffile.imwrite(
        tmp_path / "a_confocal.ome.tif", data, ome=True, metadata={**meta, "PhysicalSizeX": 0.65}
    )
    with pytest.raises(StackDataError, match="pixel sizes differ"):
        load_pairs([tmp_path])
    tifffile.imwrite(tmp_path / "b.tif", data)  # no metadata at all
    with pytest.raises(StackDataError, match="no pixel size"):
        read_stack(tmp_path / "b.tif")
    tifffile.imwrite(tmp_path / "c.ome.tif", data, ome=True, metadata={"axes": "ZYX", "PhysicalSizeX": 0.3})
    with pytest.raises(StackDataError, match="no z step"):
        read_stack(tmp_path / "c.ome.tif")
    tifffile.imwrite(tmp_path / "e.ome.tif", data[0], ome=True, metadata={**meta, "axes": "YX"})
    with pytest.raises(StackDataError, match="expected a z-stack"):
        read_stack(tmp_path / "e.ome.tif")
    (tmp_path / "short").mkdir()
    for m in ("widefield", "confocal"):
        tifffile.imwrite(tmp_path / "short" / f"s_{m}.ome.tif", data[:2], ome=True, metadata=meta)
    with pytest.raises(StackDataError, match="at least 3 planes"):
        load_pairs([tmp_path / "short"])
    (tmp_path / "lonely").mkdir()
    tifffile.imwrite(tmp_path / "lonely" / "x_widefield.ome.tif", data, ome=True, metadata=meta)
    with pytest.raises(StackDataError, match="no matching confocal"):
        find_pairs([tmp_path / "lonely"])
    with pytest.raises(StackDataError, match="No stack pairs"):
        find_pairs([tmp_path / "lonely"], input_modality="brightfield")


def test_ome_zarr_stacks_are_read_with_their_scale(tmp_path):
    import zarr
    from ome_zarr.io import parse_url
    from ome_zarr.writer import write_image

    data = np.random.default_rng(1).integers(0, 1000, (4, 40, 48)).astype(np.uint16)
    root = zarr.open_group(parse_url(str(tmp_path / "s.ome.zarr"), mode="w").store, mode="w")
    write_image(data, root, axes="zyx", scale_factors=None, scale={"z": 2.0, "y": 0.5, "x": 0.5})
    s = read_stack(tmp_path / "s.ome.zarr")
    np.testing.assert_array_equal(s.data, data)
    np.testing.assert_allclose(s.z_um, [0, 2, 4, 6])
    assert s.pixel_size_um == 0.5


@pytest.fixture(scope="module")
def worm_pair():
    """A 128-px simulated worm field (enough structure for the camera fit)."""
    return make_stack_pair(
        PairSpec(phantom="worm", seed=131, shape=(128, 128), z_half_range_um=6, z_step_um=1)
    )


def _write_turned(pair, folder, rotation_deg: float, scale: float):
    """The pair with its target camera turned and magnified about the frame's centre."""
    from mm_deepz.training.check import warp_affine

    turned = np.stack(
        [warp_affine(p.astype(np.float32), rotation_deg, scale, (0.0, 0.0)) for p in pair.confocal]
    )
    meta = {"axes": "ZYX", "PhysicalSizeX": 0.325, "PhysicalSizeY": 0.325, "PhysicalSizeZ": 1.0}
    folder.mkdir()
    tifffile.imwrite(folder / "w_widefield.ome.tif", pair.widefield, ome=True, metadata=meta)
    tifffile.imwrite(
        folder / "w_confocal.ome.tif", np.rint(turned).astype(np.uint16), ome=True, metadata=meta
    )
    return turned


def test_a_turned_and_magnified_target_camera_is_measured_and_corrected(worm_pair, tmp_path):
    pair = worm_pair
    turned = _write_turned(pair, tmp_path / "turned", 2.0, 1.03)
    [p] = load_pairs([tmp_path / "turned"])
    # the correction undoes the cameras' difference: about -2° and 1 / 1.03
    assert p.rotation_deg == pytest.approx(-2.0, abs=0.15) and p.scale == pytest.approx(1 / 1.03, abs=0.004)
    inner = (slice(None), slice(16, -16), slice(16, -16))

    def corr(a):
        return np.corrcoef(a[inner].ravel(), pair.confocal[inner].ravel().astype(float))[0, 1]

    assert corr(p.target.data) > 0.95 > corr(turned)
    # aligned cameras are left as they are (no warp of a pair that needs none)
    aligned = tmp_path / "aligned"
    _write_turned(pair, aligned, 0.0, 1.0)
    [q] = load_pairs([aligned])
    assert (q.rotation_deg, q.scale) == (0.0, 1.0)


def test_cameras_turned_beyond_what_registration_corrects_are_quarantined(worm_pair, tmp_path):
    from mm_deepz.training.check import check_pair

    _write_turned(worm_pair, tmp_path / "t", 12.0, 1.0)
    verdict = check_pair(
        "w",
        read_stack(tmp_path / "t" / "w_widefield.ome.tif"),
        read_stack(tmp_path / "t" / "w_confocal.ome.tif"),
    )
    assert not verdict.passed
    assert any("cameras differ by a rotation of -12" in r for r in verdict.reasons), verdict.reasons
