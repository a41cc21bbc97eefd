"""The simulator's optics: focus, blur and optical sectioning behave as physics says."""

import numpy as np
import pytest

from simulators.figures import focus_sweep
from simulators.optics import Optics, RadialOTF

Z = np.arange(-4.0, 8.01, 0.25)
BEAD_Z = 2.0


@pytest.fixture(scope="module")
def sweep():
    return focus_sweep(Z, bead_z_um=BEAD_Z, shape=(96, 96))


@pytest.mark.parametrize("modality", ["widefield", "confocal"])
def test_bead_is_sharpest_at_its_depth(sweep, modality):
    best = sweep.z_um[np.argmax(sweep.peak(modality))]
    assert best == pytest.approx(BEAD_Z, abs=0.25)


def test_widefield_blur_grows_with_defocus(sweep):
    # fraction of the bead's light in its brightest pixel: falls as the blur spreads it
    peak_fraction = sweep.peak("widefield") / sweep.total("widefield")
    frac = {
        d: peak_fraction[int(np.argmin(np.abs(sweep.z_um - BEAD_Z - d)))] for d in (-4, -2, -1, 0, 1, 2, 4)
    }
    assert frac[0] > frac[1] > frac[2] > frac[4]
    assert frac[0] > frac[-1] > frac[-2] > frac[-4]


def test_spherical_aberration_makes_focus_asymmetric():
    radial = RadialOTF(Optics())
    above, below = radial.intensity_psf(3.0, "widefield"), radial.intensity_psf(-3.0, "widefield")
    assert not np.allclose(above, below, rtol=0.1)  # a single plane can tell +d from -d
    sym = RadialOTF(Optics(spherical_aberration_waves=0.0))
    np.testing.assert_allclose(
        sym.intensity_psf(3.0, "widefield"), sym.intensity_psf(-3.0, "widefield"), rtol=1e-6
    )


def test_widefield_conserves_light_confocal_sections(sweep):
    i0 = int(np.argmin(np.abs(sweep.z_um - BEAD_Z)))
    i3 = int(np.argmin(np.abs(sweep.z_um - (BEAD_Z + 3))))
    wf, cf = sweep.total("widefield"), sweep.total("confocal")
    assert wf[i3] == pytest.approx(wf[i0], rel=0.02)  # a defocused point spreads, keeps its light
    assert cf[i3] < 0.1 * cf[i0]  # out-of-focus light rejected by the pinhole


def test_psf_widths_match_textbook_values():
    optics = Optics(spherical_aberration_waves=0.0)  # the textbook formulas are for a perfect pupil
    radial = RadialOTF(optics, dr_um=0.01, r_max_um=20)
    psf = radial.intensity_psf(0.0, "widefield")
    fwhm = 2 * radial.r[np.argmax(psf < psf[0] / 2)]
    assert fwhm == pytest.approx(optics.lateral_fwhm_um, rel=0.08)
    conf = radial.intensity_psf(0.0, "confocal")
    assert 2 * radial.r[np.argmax(conf < conf[0] / 2)] < 0.8 * fwhm
    dz = np.arange(0.0, 3.0, 0.02)
    on_axis = np.array([radial.intensity_psf(d, "widefield")[0] for d in dz])
    assert 2 * dz[np.argmax(on_axis < on_axis[0] / 2)] == pytest.approx(optics.axial_fwhm_um, rel=0.08)


def test_invalid_optics_are_refused():
    with pytest.raises(ValueError, match="NA"):
        Optics(na=1.2, immersion_index=1.0)
