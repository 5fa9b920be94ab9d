"""Noise-aware residual U-Net for denoising."""

import torch
from torch import nn

from .blocks import UNet

__all__ = ["ResidualUNet"]


class ResidualUNet(nn.Module):
    """Predict the noise of an image and subtract it.

    Input: (B, 2, H, W) with channel 0 the normalised image and channel 1 the
    normalised noise map (sigma per pixel). Output: (B, 1, H, W), the image
    minus the predicted noise. The noise map lets one model serve any noise
    level, including signal-dependent (Poisson) noise.

    The image channel is also given to the U-Net compressed by ``asinh`` so
    bright stars and faint sky both fall in a range the network handles well;
    the subtraction happens in linear units.
    """

    in_channels = 2

    def __init__(self, channels=(32, 64, 96), *, blocks=1, dilations=(2, 4), space_to_depth=2,
                 norm="none"):
        super().__init__()
        self.config = dict(channels=tuple(channels), blocks=blocks, dilations=tuple(dilations),
                           space_to_depth=space_to_depth, norm=norm)
        self.unet = UNet(3, 1, channels, blocks=blocks, dilations=dilations,
                         space_to_depth=space_to_depth, norm=norm)
        self.size_multiple = self.unet.size_multiple

    def forward(self, x):
        image, sigma = x[:, :1], x[:, 1:2]
        scaled = image / sigma.clamp_min(1e-3)  # signal-to-noise per pixel
        features = torch.cat([4 * torch.asinh(scaled / 4), 40 * torch.asinh(scaled / 40), sigma],
                             dim=1)
        return image - sigma * self.unet(features)
