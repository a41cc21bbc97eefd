"""Small builders shared by tests."""

from __future__ import annotations

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
    """Store keys of the measured image's chunks (position 0) in a run's container."""
    from mm_deepz.io.layout import IMAGES, number_images

    return f"{number_images(IMAGES, 1)['measured'][0]}/0/c/"
