"""Deep-Z networks: the U-Net generator and the patch discriminator."""

from .discriminator import PatchDiscriminator
from .unet import DeepZUNet, UNetConfig

__all__ = ["DeepZUNet", "PatchDiscriminator", "UNetConfig"]
