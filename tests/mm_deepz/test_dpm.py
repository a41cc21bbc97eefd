"""Digital propagation matrices: documented values, shapes and the range check."""

import numpy as np
import pytest

from mm_deepz import dpm
from mm_deepz.errors import ZRangeError


def test_uniform_dpm_is_constant():
    m = dpm.uniform((4, 6), -2.5)
    assert m.shape == (4, 6) and m.dtype == np.float32
    assert np.all(m == -2.5)


def test_tilted_dpm_has_its_slopes_and_centre_value():
    m = dpm.tilted((5, 7), distance_um=1.0, slope_x=0.1, slope_y=-0.2, pixel_size_um=0.5)
    assert m[2, 3] == pytest.approx(1.0)  # frame centre
    np.testing.assert_allclose(np.diff(m, axis=1), 0.1 * 0.5, rtol=1e-5)
    np.testing.assert_allclose(np.diff(m, axis=0), -0.2 * 0.5, rtol=1e-5)


def test_surface_dpm_is_height_minus_plane():
    height = np.array([[1.0, 2.0], [3.0, 4.5]])
    np.testing.assert_allclose(dpm.surface(height, plane_z_um=2.0), [[-1, 0], [1, 2.5]])


def test_network_units_and_range_check():
    np.testing.assert_allclose(dpm.to_network_units(np.array([-5.0, 10.0]), 10.0), [-0.5, 1.0])
    with pytest.raises(ZRangeError, match="trained for ±10"):
        dpm.to_network_units(np.array([12.0]), 10.0)
    assert dpm.to_network_units(np.array([12.0]), 10.0, strict=False)[0] == pytest.approx(1.2)
