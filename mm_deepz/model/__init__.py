"""Deep-Z networks: the generators (U-Net, encode-once) and the patch discriminator."""

from .discriminator import PatchDiscriminator
from .unet import (
    ARCHITECTURES,
    DeepZEncodeOnce,
    DeepZUNet,
    EncodeOnceConfig,
    GeneratorConfig,
    UNetConfig,
    build_generator,
    generator_config,
    interleave,
)

__all__ = [
    "ARCHITECTURES",
    "DeepZEncodeOnce",
    "DeepZUNet",
    "EncodeOnceConfig",
    "GeneratorConfig",
    "PatchDiscriminator",
    "UNetConfig",
    "build_generator",
    "generator_config",
    "interleave",
]
