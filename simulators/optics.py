"""Scalar optics of the simulated microscope: widefield and confocal OTFs per defocus.

The amplitude point spread function of an aberration-free objective is computed in the
Debye (angular-spectrum) approximation, which is exact for the scalar field and valid at
high NA (it contains the Born-Wolf paraxial PSF as its low-NA limit)::

    h(r, d) = 2π ∫_0^{NA/λ} J0(2π r ρ) · exp(2πi d sqrt((n/λ)² - ρ²)) ρ dρ

with ``r`` the lateral radius, ``d`` the defocus (object plane minus focal plane) and
``ρ`` the lateral spatial frequency; the pupil also carries primary spherical aberration
(``Optics.spherical_aberration_waves``), which makes the PSF differ above and below focus.
Intensity PSFs are radially symmetric and real, so
their 2D Fourier transforms (the OTFs) are real and radially symmetric too; they are
computed with a Hankel transform on a 1D radius grid and mapped onto the camera's
frequency grid. That makes one OTF cost about a millisecond instead of two large FFTs.

- widefield: ``I = |h_em|²``, normalised to unit energy for every defocus (a defocused
  point spreads its light, it does not lose it);
- confocal (point pinhole): ``I = |h_ex|² · |h_em|²``, normalised so that the in-focus
  OTF is 1 at zero frequency; out-of-focus planes then carry less total light, which is
  optical sectioning.

The camera pixel integrates light over its area: the OTF is multiplied by
``sinc(p fx) sinc(p fy)``. Frequencies beyond the camera's Nyquist limit are dropped
(no aliasing is simulated).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cached_property
from typing import Literal

import numpy as np
from scipy.special import j0

Modality = Literal["widefield", "confocal"]
MODALITIES: tuple[Modality, ...] = ("widefield", "confocal")

#: Defocus values are rounded to this step (µm) before OTFs are computed and cached.
DEFOCUS_QUANTUM_UM = 0.01


@dataclass(frozen=True)
class Optics:
    """Objective, wavelengths and camera sampling, all in µm.

    The defaults describe a 20x/0.75 air objective imaging GFP (ex 488, em 525 nm) onto a
    6.5 µm-pixel sCMOS camera: 0.325 µm per pixel in the sample, as in Deep-Z's worm data.
    """

    na: float = 0.75
    immersion_index: float = 1.0
    wavelength_em_um: float = 0.525
    wavelength_ex_um: float = 0.488
    pixel_size_um: float = 0.325
    #: primary spherical aberration (Zernike Z(4,0) coefficient, waves rms). Real objectives and,
    #: above all, index mismatch (an air objective focusing into an aqueous specimen, as in
    #: Deep-Z's worm imaging) make the PSF differ above and below focus; without it, a single
    #: widefield plane could not tell +d from -d.
    spherical_aberration_waves: float = 0.08

    def __post_init__(self) -> None:
        if not 0 < self.na < self.immersion_index:
            raise ValueError(
                f"NA {self.na} must be positive and below the immersion index {self.immersion_index}."
            )
        for name in ("wavelength_em_um", "wavelength_ex_um", "pixel_size_um"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}.")

    @property
    def lateral_fwhm_um(self) -> float:
        """Approximate widefield lateral FWHM (0.51 λ / NA)."""
        return 0.51 * self.wavelength_em_um / self.na

    @property
    def axial_fwhm_um(self) -> float:
        """Approximate widefield axial FWHM of a point (0.88 λ / (n - sqrt(n² - NA²)))."""
        n = self.immersion_index
        return 0.88 * self.wavelength_em_um / (n - math.sqrt(n * n - self.na**2))


class RadialOTF:
    """Radially symmetric OTFs of one :class:`Optics`, per modality and defocus.

    Results are cached per defocus (rounded to :data:`DEFOCUS_QUANTUM_UM`).
    """

    def __init__(self, optics: Optics, r_max_um: float = 120.0, dr_um: float = 0.08):
        self.optics = optics
        self.r = (np.arange(int(r_max_um / dr_um)) + 0.5) * dr_um
        self._dr = dr_um
        # frequencies up to the corner of the camera's Nyquist square
        k_max = math.sqrt(2) / (2 * optics.pixel_size_um)
        self.k = np.linspace(0.0, k_max * 1.01, 512)
        self._hankel = j0(2 * np.pi * np.outer(self.k, self.r)) * (2 * np.pi * self.r * dr_um)
        self._cache: dict[tuple[str, int], np.ndarray] = {}

    def _pupil(self, wavelength: float, n_rho: int = 768) -> tuple[np.ndarray, np.ndarray]:
        rho_max = self.optics.na / wavelength
        drho = rho_max / n_rho
        rho = (np.arange(n_rho) + 0.5) * drho
        kernel = j0(2 * np.pi * np.outer(self.r, rho)) * (2 * np.pi * rho * drho)
        kz = np.sqrt((self.optics.immersion_index / wavelength) ** 2 - rho**2)
        r2 = (rho / rho_max) ** 2
        zernike_sa = np.sqrt(5) * (6 * r2 * r2 - 6 * r2 + 1)  # rms-normalised Z(4,0)
        kernel = kernel * np.exp(2j * np.pi * self.optics.spherical_aberration_waves * zernike_sa)[None, :]
        return kernel, kz

    @cached_property
    def _pupil_em(self) -> tuple[np.ndarray, np.ndarray]:
        return self._pupil(self.optics.wavelength_em_um)

    @cached_property
    def _pupil_ex(self) -> tuple[np.ndarray, np.ndarray]:
        return self._pupil(self.optics.wavelength_ex_um)

    def intensity_psf(self, defocus_um: float, modality: Modality) -> np.ndarray:
        """Intensity PSF on the radius grid :attr:`r` (not normalised)."""
        kernel, kz = self._pupil_em
        amp = kernel @ np.exp(2j * np.pi * defocus_um * kz)
        psf = np.abs(amp) ** 2
        if modality == "confocal":
            kernel_ex, kz_ex = self._pupil_ex
            psf = psf * np.abs(kernel_ex @ np.exp(2j * np.pi * defocus_um * kz_ex)) ** 2
        elif modality != "widefield":
            raise ValueError(f"Unknown modality {modality!r}; use one of {MODALITIES}.")
        return np.asarray(psf)

    def otf(self, defocus_um: float, modality: Modality) -> np.ndarray:
        """Real radial OTF sampled at :attr:`k` (cycles/µm)."""
        q = round(defocus_um / DEFOCUS_QUANTUM_UM)
        key = (modality, q)
        if (hit := self._cache.get(key)) is None:
            psf = self.intensity_psf(q * DEFOCUS_QUANTUM_UM, modality)
            otf = self._hankel @ psf
            if modality == "widefield":
                otf /= otf[0]
            else:
                otf /= self._confocal_norm
            hit = self._cache[key] = otf.astype(np.float32)
        return hit

    @cached_property
    def _confocal_norm(self) -> float:
        return float(self._hankel[0] @ self.intensity_psf(0.0, "confocal"))


class OTFGrid:
    """Maps radial OTFs onto the rfft2 frequency grid of one frame shape."""

    def __init__(self, radial: RadialOTF, shape: tuple[int, int], pixel_size_um: float):
        self.radial = radial
        self.shape = shape
        fy = np.fft.fftfreq(shape[0], d=pixel_size_um)
        fx = np.fft.rfftfreq(shape[1], d=pixel_size_um)
        kr = np.hypot(fy[:, None], fx[None, :])
        # linear interpolation weights into radial.k, computed once
        k = radial.k
        pos = np.clip(kr / (k[1] - k[0]), 0, len(k) - 1.000001)
        self._i0 = pos.astype(np.int32)
        self._w = (pos - self._i0).astype(np.float32)
        self._pixel = (np.sinc(fy * pixel_size_um)[:, None] * np.sinc(fx * pixel_size_um)[None, :]).astype(
            np.float32
        )
        self._cache: dict[tuple[str, int], np.ndarray] = {}

    def otf2d(self, defocus_um: float, modality: Modality) -> np.ndarray:
        """The 2D real OTF (shape of ``rfft2`` output) including pixel integration."""
        key = (modality, round(defocus_um / DEFOCUS_QUANTUM_UM))
        if (hit := self._cache.get(key)) is None:
            o = self.radial.otf(defocus_um, modality)
            hit = (o[self._i0] * (1 - self._w) + o[self._i0 + 1] * self._w) * self._pixel
            if len(self._cache) > 512:  # bound memory: ~0.5 MB per entry at 512x512
                self._cache.clear()
            self._cache[key] = hit
        return hit
