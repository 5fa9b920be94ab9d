"""Convolutional autoencoder for fixed-size source cutouts.

The reconstruction passes entirely through the latent vector: the decoder is
a separate module whose ``forward`` takes only ``z`` and there is no skip
connection from encoder to decoder (unlike `~astro_nn_restore.models.UNet`),
so the latent is a true bottleneck. ``latent_dim`` is 8 by default; 16 and 32
work with the same code (pass ``latent_dim=16`` to the architecture, or
``--arch '{"latent_dim": 16}'`` to the training command).

Inputs are cutouts normalised per cutout: ``(cutout - background) / peak``
(see `astro_nn_restore.latent`), so sources peak at 1. The encoder also sees an
asinh-compressed copy that brings out faint wings; the decoder outputs linear
values in the same normalised units.
"""

import math

import torch
from torch import nn

from .blocks import ResBlock

__all__ = ["CutoutAutoencoder", "CutoutDecoder", "CutoutEncoder"]

#: Softening of the encoder's asinh channel, as a fraction of the peak.
_SOFTENING = 0.03


class CutoutEncoder(nn.Module):
    """(B, 1, size, size) normalised cutouts -> (B, latent_dim) latent vectors."""

    def __init__(self, size, latent_dim, channels):
        super().__init__()
        layers = [nn.Conv2d(2, channels[0], 3, padding=1), ResBlock(channels[0])]
        for a, b in zip(channels, channels[1:], strict=False):
            layers += [nn.Conv2d(a, b, 3, stride=2, padding=1), ResBlock(b)]
        self.features = nn.Sequential(*layers, nn.SiLU())
        side = size // 2 ** (len(channels) - 1)
        self.head = nn.Linear(channels[-1] * side * side, latent_dim)

    def forward(self, x):
        compressed = torch.asinh(x / _SOFTENING) / math.asinh(1 / _SOFTENING)
        return self.head(self.features(torch.cat([x, compressed], dim=1)).flatten(1))


class CutoutDecoder(nn.Module):
    """(B, latent_dim) latent vectors -> (B, 1, size, size) normalised cutouts.

    ``forward`` takes only ``z``: nothing from the encoder reaches it.
    """

    def __init__(self, size, latent_dim, channels):
        super().__init__()
        channels = tuple(reversed(channels))
        self.side = size // 2 ** (len(channels) - 1)
        self.first = channels[0]
        self.project = nn.Linear(latent_dim, channels[0] * self.side * self.side)
        layers = [ResBlock(channels[0])]
        for a, b in zip(channels, channels[1:], strict=False):
            layers += [nn.ConvTranspose2d(a, b, 2, stride=2), ResBlock(b)]
        self.features = nn.Sequential(*layers, nn.SiLU())
        self.head = nn.Conv2d(channels[-1], 1, 3, padding=1)

    def forward(self, z):
        x = self.project(z).view(-1, self.first, self.side, self.side)
        return self.head(self.features(x))


class CutoutAutoencoder(nn.Module):
    """Encoder and decoder joined only by the latent vector.

    Parameters
    ----------
    size : int
        Cutout side in pixels; must be divisible by ``2 ** (len(channels) - 1)``.
    latent_dim : int
        Length of the latent vector (8 by default; 16 or 32 for more detail).
    channels : tuple of int
        Feature channels per resolution level of the encoder (the decoder
        mirrors them), finest first.

    Examples
    --------
    >>> import torch
    >>> net = CutoutAutoencoder(size=32, latent_dim=8, channels=(8, 16, 16, 16))
    >>> z = net.encode(torch.zeros(3, 1, 32, 32))
    >>> tuple(z.shape), tuple(net.decode(z).shape)
    ((3, 8), (3, 1, 32, 32))
    """

    def __init__(self, size=32, latent_dim=8, channels=(32, 64, 96, 128)):
        super().__init__()
        levels = 2 ** (len(channels) - 1)
        if size % levels or size < levels:
            raise ValueError(f"size {size} must be a multiple of {levels} for {len(channels)} "
                             "levels of channels")
        if latent_dim < 1:
            raise ValueError(f"latent_dim must be positive, got {latent_dim}")
        self.config = dict(size=int(size), latent_dim=int(latent_dim), channels=tuple(channels))
        self.size, self.latent_dim = int(size), int(latent_dim)
        self.encoder = CutoutEncoder(size, latent_dim, channels)
        self.decoder = CutoutDecoder(size, latent_dim, channels)

    def encode(self, x):
        """Latent vectors of (B, 1, size, size) normalised cutouts."""
        return self.encoder(x)

    def decode(self, z):
        """Normalised cutouts from (B, latent_dim) latent vectors."""
        return self.decoder(z)

    def forward(self, x):
        return self.decode(self.encode(x))
