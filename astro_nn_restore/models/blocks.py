"""Shared building blocks: residual conv blocks and a configurable U-Net.

The U-Net optionally works at reduced resolution: ``space_to_depth=2`` packs
each 2x2 pixel block into channels at the input and unpacks at the output
(PixelUnshuffle/PixelShuffle), cutting the work about 4x at the same receptive
field.

Normalisation layers: ``norm="group"`` uses GroupNorm. Its statistics are
taken over the whole tile, so the output of a pixel then depends on the tile
size and on distant content, which breaks the exact agreement of tiled and
whole-image inference. The default ``norm="none"`` keeps the network
translation-equivariant (with residual scaling for stable training).
"""

import torch
from torch import nn

__all__ = ["ResBlock", "UNet"]


def _pairs(channels):
    """Consecutive (finer, coarser) channel counts."""
    return zip(channels[:-1], channels[1:], strict=True)


def _norm(kind, channels):
    if kind == "group":
        return nn.GroupNorm(min(8, channels), channels)
    if kind == "none":
        return nn.Identity()
    raise ValueError(f"unknown norm {kind!r}: use 'group' or 'none'")


class ResBlock(nn.Module):
    """Two 3x3 convolutions with a residual connection.

    Parameters
    ----------
    channels : int
    dilation : int
        Dilation of both convolutions (widens the receptive field cheaply).
    norm : {'none', 'group'}
    """

    def __init__(self, channels, *, dilation=1, norm="none"):
        super().__init__()
        pad = dilation
        self.body = nn.Sequential(
            _norm(norm, channels),
            nn.SiLU(),
            nn.Conv2d(channels, channels, 3, padding=pad, dilation=dilation),
            _norm(norm, channels),
            nn.SiLU(),
            nn.Conv2d(channels, channels, 3, padding=pad, dilation=dilation),
        )
        # start as (nearly) identity so deep stacks train without normalisation
        nn.init.zeros_(self.body[-1].weight)
        nn.init.zeros_(self.body[-1].bias)

    def forward(self, x):
        return x + self.body(x)


class UNet(nn.Module):
    """Encoder-decoder with skip connections and a dilated bottleneck.

    Parameters
    ----------
    in_channels, out_channels : int
    channels : tuple of int
        Feature channels per level, finest first.
    blocks : int
        Residual blocks per level on each side.
    dilations : tuple of int
        Dilations of the bottleneck residual blocks.
    space_to_depth : int
        Work at ``1/space_to_depth`` resolution (1 = full resolution).
    norm : {'none', 'group'}
    """

    def __init__(self, in_channels=1, out_channels=1, channels=(32, 64, 96), *, blocks=1,
                 dilations=(2, 4), space_to_depth=1, norm="none"):
        super().__init__()
        s2 = space_to_depth**2
        self.space_to_depth = space_to_depth
        self.size_multiple = space_to_depth * 2 ** (len(channels) - 1)
        self.pack = nn.PixelUnshuffle(space_to_depth) if space_to_depth > 1 else nn.Identity()
        self.unpack = nn.PixelShuffle(space_to_depth) if space_to_depth > 1 else nn.Identity()
        self.stem = nn.Conv2d(in_channels * s2, channels[0], 3, padding=1)
        self.encoders = nn.ModuleList(self._stage(c, blocks, norm) for c in channels[:-1])
        self.downs = nn.ModuleList(
            nn.Conv2d(a, b, 3, stride=2, padding=1) for a, b in _pairs(channels)
        )
        self.bottleneck = nn.Sequential(
            *(ResBlock(channels[-1], dilation=d, norm=norm) for d in dilations)
        )
        self.ups = nn.ModuleList(
            nn.ConvTranspose2d(b, a, 2, stride=2) for a, b in _pairs(channels)
        )
        self.merges = nn.ModuleList(nn.Conv2d(2 * c, c, 1) for c in channels[:-1])
        self.decoders = nn.ModuleList(self._stage(c, blocks, norm) for c in channels[:-1])
        self.head = nn.Conv2d(channels[0], out_channels * s2, 3, padding=1)

    @staticmethod
    def _stage(channels, blocks, norm):
        return nn.Sequential(*(ResBlock(channels, norm=norm) for _ in range(blocks)))

    def forward(self, x):
        x = self.stem(self.pack(x))
        skips = []
        for encoder, down in zip(self.encoders, self.downs, strict=True):
            x = encoder(x)
            skips.append(x)
            x = down(x)
        x = self.bottleneck(x)
        for up, merge, decoder in zip(
            reversed(self.ups), reversed(self.merges), reversed(self.decoders), strict=True
        ):
            x = decoder(merge(torch.cat([up(x), skips.pop()], dim=1)))
        return self.unpack(self.head(x))
