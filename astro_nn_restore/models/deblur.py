"""PSF-aware U-Net for deblurring.

The network is told the PSF in two ways:

* **Linear pre-deconvolution channels.** Before the network runs, the image
  is filtered with Tikhonov-regularised inverses of the PSF,
  ``H* / (|H|^2 + lambda)`` for each ``lambda`` in ``wiener_lambdas`` (see
  `astro_nn_restore.deblur.wiener_prefilter`), computed once on the whole
  image: a smooth estimate and a sharp, noisier one. The network then
  corrects linear estimates (noise, ringing, the frequencies the PSF removed)
  instead of learning the inversion itself, and it works for PSFs of any
  shape.
* **A PSF embedding.** An MLP reads the PSF, normalised, centred and cut to
  ``psf_size x psf_size`` pixels (peak-scaled and log-scaled copies, so both
  core and wings count), and gives a per-channel FiLM modulation
  (``features * (1 + gamma) + beta``) of the first feature layer.

With no PSF (blind mode) the pre-deconvolution channels are the image itself and
the embedding is a learned "blind" vector; training hides the PSF in a fixed
fraction of the samples so one set of weights serves both modes.

Channels given to the network, in noise units as for denoising: the image,
the noise map and the pre-deconvolved images. Image-like channels are
compressed with ``asinh`` at two scales; the output is a correction in the
compressed domain (``A asinh(x / A)``, A = `COMPRESSION`), undone with
``sinh``, so bright star cores and faint sky are both handled with relative
precision.
"""

import math

import torch
from torch import nn

from .blocks import UNet

__all__ = ["DeblurUNet", "PSF_SIZE", "COMPRESSION"]

#: Side of the PSF stamp the embedding reads.
PSF_SIZE = 21
#: Scale ``A`` of the output compression ``A asinh(x / A)`` (noise units).
COMPRESSION = 10.0
#: Floor of the log-scaled PSF channel of the embedding (relative to the peak).
_LOG_FLOOR = 1e-5


def compress(x, scale=COMPRESSION):
    return scale * torch.asinh(x / scale)


def expand(y, scale=COMPRESSION):
    return scale * torch.sinh(y / scale)


class PSFEmbedding(nn.Module):
    """MLP from a (B, S, S) normalised PSF stamp to a (B, dim) vector."""

    def __init__(self, psf_size=PSF_SIZE, dim=32, hidden=96):
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(2 * psf_size**2, hidden), nn.SiLU(),
            nn.Linear(hidden, hidden), nn.SiLU(),
            nn.Linear(hidden, dim),
        )

    def forward(self, psf):
        flat = psf.flatten(1)
        peak = flat.amax(dim=1, keepdim=True).clamp_min(1e-12)
        relative = flat / peak
        # 0 at the floor, 1 at the peak
        log = 1 + torch.log10(relative.clamp_min(_LOG_FLOOR)) / -math.log10(_LOG_FLOOR)
        return self.net(torch.cat([relative, log], dim=1))


class DeblurUNet(nn.Module):
    """U-Net deblurrer conditioned on the PSF (or blind).

    Input ``x``: (B, 2 + L, H, W) with channel 0 the normalised image, 1 the
    normalised noise map and 2... the images pre-deconvolved with each of the
    L ``wiener_lambdas`` (equal to channel 0 in blind mode). ``psf``: (B, S, S)
    normalised PSF stamps (S = ``psf_size``), or None for blind mode. For the training loop, which
    passes one object, ``x`` may also be the pair ``(x, psf)``.

    Output: (B, 1, H, W), the deblurred image in the same normalised units.

    Parameters
    ----------
    channels, blocks, dilations, space_to_depth, norm
        Of the shared `~astro_nn_restore.models.blocks.UNet`.
    features : int
        Channels of the PSF-modulated first layer (the U-Net's input).
    embed_dim : int
        Size of the PSF embedding.
    psf_size : int
        Side of the PSF stamp the embedding reads.
    wiener_lambdas : tuple of float
        Regularisations of the pre-deconvolutions (noise units: noise power 1).
    """

    def __init__(self, channels=(32, 64, 128), *, blocks=2, dilations=(2, 4), space_to_depth=2,
                 norm="none", features=24, embed_dim=32, psf_size=PSF_SIZE,
                 wiener_lambdas=(0.02, 0.002)):
        super().__init__()
        self.config = dict(channels=tuple(channels), blocks=blocks, dilations=tuple(dilations),
                           space_to_depth=space_to_depth, norm=norm, features=features,
                           embed_dim=embed_dim, psf_size=psf_size,
                           wiener_lambdas=tuple(wiener_lambdas))
        self.psf_size = psf_size
        self.wiener_lambdas = tuple(wiener_lambdas)
        self.in_channels = 2 + len(self.wiener_lambdas)
        self.embedding = PSFEmbedding(psf_size, embed_dim)
        self.blind = nn.Parameter(torch.zeros(embed_dim))
        self.film = nn.Linear(embed_dim, 2 * features)
        nn.init.zeros_(self.film.weight)
        nn.init.zeros_(self.film.bias)
        self.stem = nn.Conv2d(2 * self.in_channels - 1, features, 3, padding=1)
        self.unet = UNet(features, 1, channels, blocks=blocks, dilations=dilations,
                         space_to_depth=space_to_depth, norm=norm)
        self.size_multiple = self.unet.size_multiple

    def embed(self, psf, batch=1):
        """(B, embed_dim) PSF embedding.

        The learned blind vector is used when ``psf`` is None, and for the
        samples of a batch whose stamp is NaN (training mixes both).
        """
        if psf is None:
            return self.blind.expand(batch, -1)
        hidden = torch.isnan(psf).flatten(1).any(dim=1, keepdim=True)
        embedding = self.embedding(torch.nan_to_num(psf, nan=0.0))
        return torch.where(hidden, self.blind.to(embedding.dtype), embedding)

    def forward(self, x, psf=None):
        if isinstance(x, (tuple, list)):
            x, psf = x
        return self.forward_embedded(x, self.embed(psf, x.shape[0]))

    def forward_embedded(self, x, embedding):
        """Forward pass with a precomputed (B or 1, embed_dim) embedding."""
        image, sigma, prefiltered = x[:, :1], x[:, 1:2], x[:, 2:]
        start = compress(image)
        features = torch.cat([start, compress(prefiltered), 4 * torch.asinh(image / 4),
                              4 * torch.asinh(prefiltered / 4), sigma], dim=1)
        gamma, beta = self.film(embedding)[:, :, None, None].chunk(2, dim=1)
        h = torch.nn.functional.silu(self.stem(features) * (1 + gamma) + beta)
        return expand(start + self.unet(h))

    def conditioned(self, psf):
        """A module for tiled inference: this network with one PSF (or None) fixed.

        ``psf`` is a (S, S) tensor or None; the embedding is computed once.
        """
        with torch.no_grad():
            embedding = self.embed(None if psf is None else psf[None], 1).clone()
        return _Conditioned(self, embedding)


class _Conditioned(nn.Module):
    """`DeblurUNet` with a fixed embedding: takes only the (B, C, H, W) tensor."""

    def __init__(self, net, embedding):
        super().__init__()
        self.net = net
        self.register_buffer("embedding", embedding)
        self.size_multiple = net.size_multiple

    def forward(self, x):
        return self.net.forward_embedded(x, self.embedding.to(x.dtype).expand(x.shape[0], -1))
