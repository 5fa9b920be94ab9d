"""Colourisation networks: a U-Net generator (L -> a, b) and a PatchGAN critic.

The generator takes the Lab lightness scaled to [0, 1] (``L / 100``) and
returns the a and b channels in Lab units (``tanh`` scaled to
``chroma_scale``). The critic sees ``(L, a, b)`` scaled to about [-1, 1] and
scores overlapping patches; it has no normalisation layer, because the
WGAN-GP gradient penalty is computed per sample and batch statistics would
couple the samples. `ColorizeGAN` holds both, so one ``state_dict`` (and one
training checkpoint) carries the generator and the critic.
"""

import torch
from torch import nn

from .blocks import UNet

__all__ = ["ColorGenerator", "PatchCritic", "ColorizeGAN", "critic_inputs"]


class ColorGenerator(nn.Module):
    """Predict Lab chroma (a, b) from lightness.

    Parameters
    ----------
    channels, blocks, dilations, space_to_depth, norm
        As in `~astro_nn_restore.models.blocks.UNet`.
    chroma_scale : float
        The outputs are ``chroma_scale * tanh(...)`` Lab units.

    Examples
    --------
    >>> import torch
    >>> net = ColorGenerator(channels=(8, 16), dilations=(2,))
    >>> net(torch.rand(1, 1, 32, 32)).shape
    torch.Size([1, 2, 32, 32])
    """

    in_channels = 1
    out_channels = 2

    def __init__(self, channels=(32, 64, 128), *, blocks=1, dilations=(2, 4, 8), space_to_depth=2,
                 norm="none", chroma_scale=110.0):
        super().__init__()
        self.config = dict(channels=tuple(channels), blocks=blocks, dilations=tuple(dilations),
                           space_to_depth=space_to_depth, norm=norm,
                           chroma_scale=float(chroma_scale))
        self.chroma_scale = float(chroma_scale)
        self.unet = UNet(1, 2, channels, blocks=blocks, dilations=dilations,
                         space_to_depth=space_to_depth, norm=norm)
        self.size_multiple = self.unet.size_multiple

    def forward(self, lightness):
        return self.chroma_scale * torch.tanh(self.unet(2 * lightness - 1))


class PatchCritic(nn.Module):
    """PatchGAN critic without normalisation layers (for WGAN-GP).

    Strided 4x4 convolutions with LeakyReLU; one unbounded score per patch.

    Parameters
    ----------
    channels : tuple of int
        Feature channels of the stride-2 convolutions; one stride-1
        convolution follows, then the score layer.
    in_channels : int
        3: the scaled (L, a, b).
    """

    def __init__(self, channels=(32, 64, 128), *, in_channels=3):
        super().__init__()
        self.config = dict(channels=tuple(channels), in_channels=in_channels)
        layers, previous = [], in_channels
        for width in channels:
            layers += [nn.Conv2d(previous, width, 4, stride=2, padding=1), nn.LeakyReLU(0.2)]
            previous = width
        layers += [nn.Conv2d(previous, previous, 4, padding=1), nn.LeakyReLU(0.2),
                   nn.Conv2d(previous, 1, 4, padding=1)]
        self.body = nn.Sequential(*layers)

    def forward(self, x):
        return self.body(x)


def critic_inputs(lightness, chroma, chroma_scale):
    """(B, 3, H, W) critic input: ``2 L/100 - 1`` and ``(a, b) / chroma_scale``."""
    return torch.cat([2 * lightness - 1, chroma / chroma_scale], dim=1)


class ColorizeGAN(nn.Module):
    """Generator and critic in one module; ``forward`` is the generator's.

    Parameters
    ----------
    generator, critic : dict
        Keyword arguments of `ColorGenerator` and `PatchCritic`.
    """

    def __init__(self, generator=None, critic=None):
        super().__init__()
        self.generator = ColorGenerator(**(generator or {}))
        self.critic = PatchCritic(**(critic or {}))
        self.config = dict(generator=self.generator.config, critic=self.critic.config)
        self.size_multiple = self.generator.size_multiple

    def forward(self, lightness):
        return self.generator(lightness)
