"""Spectra of the simulated label (GFP) and of the filters and LEDs that select a channel.

The specimen carries one fluorophore, GFP-like (excitation peak 488 nm, emission peak 510 nm).
A channel is an excitation band (an LED colour through an excitation filter, reflected by the
dichroic) and an emission band (transmitted by the dichroic and the emission filter). How
bright the specimen is in a channel is the product of

- **excitation**: how well the excitation light is absorbed, the absorption spectrum averaged
  over the light that reaches the sample (its power at the sample is the light source's
  ``Power_mW``, so the dose does not depend on the filters);
- **collection**: the fraction of the emission spectrum that reaches the camera,

both relative to the reference channel (white light through the FITC set), which is the
calibration of the native configuration. So in FITC the specimen is as bright as without filter
wheels, in DAPI or Cy5 it is nearly dark, as a GFP specimen is on a real microscope.

Spectra are smooth model curves on a 1 nm grid, not measured data: absorption and emission are
skewed Gaussians (GFP's absorption has a blue shoulder, its emission a red tail); filters are
band-passes with 5 nm soft edges, dichroics long-passes.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

import numpy as np

#: wavelength grid, nm
WAVELENGTHS = np.arange(300.0, 800.0, 1.0)


def _skewed(center: float, left: float, right: float) -> np.ndarray:
    w = np.where(WAVELENGTHS < center, left, right)
    return np.exp(-0.5 * ((WAVELENGTHS - center) / w) ** 2)


#: GFP-like absorption (peak 1 at 488 nm) and emission (unit area) spectra
ABSORPTION = _skewed(488.0, 25.0, 12.0) + 0.15 * _skewed(400.0, 20.0, 20.0)
EMISSION = _skewed(510.0, 12.0, 30.0)
EMISSION = EMISSION / EMISSION.sum()


def _edge(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x / 2.0))  # 5 nm from 12 % to 88 %


@dataclass(frozen=True)
class Band:
    """A pass band ``low``-``high`` nm (``high=None``: a long-pass from ``low``)."""

    low: float
    high: float | None = None

    def transmission(self) -> np.ndarray:
        """Fraction of light passed at each of :data:`WAVELENGTHS` (smooth band edges)."""
        t = _edge(WAVELENGTHS - self.low)
        if self.high is not None:
            t = t * _edge(self.high - WAVELENGTHS)
        return t

    @staticmethod
    def around(center: float, width: float) -> Band:
        """A band-pass ``width`` nm wide centred on ``center`` (filter names such as HQ535/50)."""
        return Band(center - width / 2, center + width / 2)


#: everything passes (no filter in the path, a white source)
OPEN = Band(300.0, 800.0)


@dataclass(frozen=True)
class LightPathSpectra:
    """The spectral parts of the light path: source, excitation filter, dichroic, emission filter."""

    source: Band = OPEN
    excitation: Band = OPEN
    dichroic_cut: float | None = None  # long-pass edge, nm; None: no dichroic (reflects and passes all)
    emission: Band = OPEN

    def efficiency(self) -> float:
        """Brightness of the GFP specimen in this channel relative to :data:`REFERENCE` (1.0)."""
        return _raw_efficiency(self) / _raw_efficiency(REFERENCE)


@cache
def _raw_efficiency(path: LightPathSpectra) -> float:
    light = path.source.transmission() * path.excitation.transmission()
    emitted = path.emission.transmission()
    if path.dichroic_cut is not None:
        passes = Band(path.dichroic_cut).transmission()
        light = light * (1.0 - passes)  # the dichroic reflects the short wavelengths to the sample
        emitted = emitted * passes
    if light.sum() <= 0:
        return 0.0
    excitation = float((light * ABSORPTION).sum() / light.sum())  # the power at the sample is fixed
    collection = float((emitted * EMISSION).sum())
    return excitation * collection


#: the calibration channel: white light through the FITC set (Chroma HQ480/40, Q505LP, HQ535/50)
REFERENCE = LightPathSpectra(
    excitation=Band.around(480, 40), dichroic_cut=505.0, emission=Band.around(535, 50)
)
