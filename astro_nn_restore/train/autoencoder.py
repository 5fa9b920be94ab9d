"""Training task: the cutout autoencoder for `encode_latent` / `anomaly_score`.

Cutouts (``size`` pixels, 32 by default) are centred, within +-1.5 pixels, on
the sources of clean simulated skies (stars and Sérsic galaxies, positions
known; each sky has its own PSF from `~astro_nn_restore.simulate.random_psf`:
Moffat, elliptical Gaussian or Airy, FWHM `PSF_FWHM_RANGE`) and on sources
detected in the training part of the Hubble Deep Field;
10 % are centred on random pixels (empty sky, edges of sources). Each is
randomly rotated by a multiple of 90 degrees and flipped, then gets Gaussian
noise with a peak signal-to-noise ratio drawn log-uniformly between 5 and 2000.

Inputs are normalised exactly as at inference
(`astro_nn_restore.latent.cutout_normalization` of the *noisy* cutout:
border background, peak scale); the target is the *clean* cutout in the same
units, so the autoencoder also learns to ignore the noise (a denoising
autoencoder), which keeps latents stable between noise draws.

Loss: MSE + ``ssim_weight`` (default 0.1, ``config.extra["ssim_weight"]``)
times (1 - SSIM). With ``consistency_weight`` > 0 (``--consistency-weight``),
each batch holds half as many clean cutouts, each with two noise draws, and
the loss adds that weight times `latent_consistency` of the two draws' latents:
the latent then depends on the source, not on its noise.
"""

from dataclasses import dataclass, field

import numpy as np
import torch

from .._nddata import non_negative_number
from ..datasets import ImagePool, hubble_deep_field, sky_psf, training_sky
from ..latent import cutout_normalization
from ..models.autoencoder import CutoutAutoencoder
from .loop import TrainTask, initial_model, model_arguments, training_autocast
from .losses import ssim_index

__all__ = ["AutoencoderTask", "SourcePool", "latent_consistency", "training_psf"]

DEFAULT_ARCHITECTURE = dict(size=32, latent_dim=8, channels=(32, 64, 96, 128))
SNR_RANGE = (5.0, 2000.0)
RANDOM_FRACTION = 0.1
JITTER = 1.5
#: FWHM range (pixels) of the simulated skies' PSFs. autoencoder-default 0.1.dev
#: saw a single PSF (Moffat FWHM 2.5 px, beta 3) and reconstructed real stars
#: 15-40 sigma off.
PSF_FWHM_RANGE = (1.2, 6.0)


def training_psf(seed, index):
    """The PSF kernel of simulated training sky ``index`` (`sky_psf`, `PSF_FWHM_RANGE`)."""
    return sky_psf(seed, index, PSF_FWHM_RANGE)


@dataclass(eq=False)
class SourcePool(ImagePool):
    """Clean images and the (x, y) positions of their sources."""

    positions: list = field(default_factory=list, kw_only=True)

    @classmethod
    def build(cls, *, seed, n_simulated=96, shape=(256, 256), use_hdf=True):
        images, positions, weights = [], [], []
        for i in range(n_simulated):
            image, sky = training_sky(seed, i, shape=shape, fwhm_range=PSF_FWHM_RANGE)
            images.append(image)
            positions.append(np.column_stack([sky.sources["x"], sky.sources["y"]]))
            weights.append(1.0)
        if use_hdf:  # real galaxies: a quarter of the samples
            hdf = hubble_deep_field("train")
            images.append(hdf)
            positions.append(_detected_positions(hdf))
            weights.append(max(n_simulated, 1) / 3)
        return cls(images, weights, positions=positions)

    def cutout(self, rng, size):
        """A (size, size) clean cutout around a random source, randomly oriented."""
        index = self.random_index(rng)
        image, xy = self.images[index], self.positions[index]
        if rng.random() < RANDOM_FRACTION or len(xy) == 0:
            x, y = rng.uniform(0, image.shape[1]), rng.uniform(0, image.shape[0])
        else:
            x, y = xy[rng.integers(len(xy))] + rng.uniform(-JITTER, JITTER, 2)
        crop = _crop(image, x, y, size)
        crop = np.rot90(crop, k=rng.integers(4))
        if rng.random() < 0.5:
            crop = crop[:, ::-1]
        return np.ascontiguousarray(crop, dtype=np.float32)


def _detected_positions(image):
    from ..latent import make_cutouts

    return make_cutouts(image, size=8, threshold=5.0).positions


def _crop(image, x, y, size):
    """Crop centred on (x, y) as Cutout2D does, reflect-padded past the edges."""
    x0, y0 = int(np.round(x)) - size // 2, int(np.round(y)) - size // 2
    padded = np.pad(image, size, mode="reflect")
    return padded[y0 + size:y0 + 2 * size, x0 + size:x0 + 2 * size]


def make_sample(clean, rng):
    """(input (1, size, size), target (1, size, size)) for one clean cutout."""
    norm = cutout_normalization(clean[None], noise=1.0)
    peak = max(float(norm.scale[0]), 1e-6)
    snr = np.exp(rng.uniform(*np.log(SNR_RANGE)))
    noisy = clean + (peak / snr) * rng.standard_normal(clean.shape).astype(np.float32)
    norm = cutout_normalization(noisy[None])
    return norm.forward(noisy[None]), norm.forward(clean[None])


def latent_consistency(first, second):
    """Squared latent distance between two noise draws over that of different sources.

    Mean ``|z1 - z2|**2`` of the pairs, divided by twice the summed batch
    variance of the latents (the mean squared distance between two different
    cutouts), so shrinking or stretching the latent space cannot lower it.

    Examples
    --------
    >>> import torch
    >>> z = torch.randn(16, 8)
    >>> float(latent_consistency(z, z))
    0.0
    """
    spread = 2 * torch.cat([first, second]).var(dim=0).sum()
    return ((first - second) ** 2).sum(dim=1).mean() / spread.clamp_min(1e-12)


class AutoencoderTask(TrainTask):
    task = "autoencoder"

    def __init__(self, config):
        super().__init__(config)
        self.arguments = model_arguments(config, self.task, DEFAULT_ARCHITECTURE)
        self.size = int(self.arguments["size"])  # an --init model brings its own cutout size
        self.ssim_weight = float(config.extra.get("ssim_weight", 0.1))
        self.consistency_weight = non_negative_number(config.extra.get("consistency_weight", 0.0),
                                                      "consistency_weight")
        if self.consistency_weight and config.batch_size < 4:
            raise ValueError("--consistency-weight needs --batch-size >= 4 (pairs of draws)")
        self.pool = SourcePool.build(seed=config.seed,
                                     n_simulated=config.extra.get("n_simulated", 96))
        self._validation = None

    def build_model(self):
        return initial_model(self.config, self.task, lambda: CutoutAutoencoder(**self.arguments))

    def _batch(self, pool, rng, n):
        pairs = [make_sample(pool.cutout(rng, self.size), rng) for _ in range(n)]
        inputs, targets = zip(*pairs, strict=True)
        return torch.from_numpy(np.stack(inputs)), torch.from_numpy(np.stack(targets))

    def batch(self, step, rng):
        return self._batch(self.pool, rng, self.config.batch_size)

    def _paired_batch(self, rng):
        """(first draws, second draws): two noisy versions of the same clean cutouts."""
        clean = [self.pool.cutout(rng, self.size) for _ in range(self.config.batch_size // 2)]
        first = [make_sample(c, rng) for c in clean]
        second = [make_sample(c, rng) for c in clean]
        return [tuple(torch.from_numpy(np.stack(part)) for part in zip(*draws, strict=True))
                for draws in (first, second)]

    def train_step(self, model, optimizer, step, rng):
        if not self.consistency_weight:
            return super().train_step(model, optimizer, step, rng)
        (in1, target1), (in2, target2) = self._paired_batch(rng)
        with training_autocast(self.config.precision):
            latents = model.encode(torch.cat([in1, in2]))
            prediction = model.decode(latents)
        loss = self.loss(prediction.float(), torch.cat([target1, target2]), step)
        loss = loss + self.consistency_weight * latent_consistency(*latents.float().chunk(2))
        return self.optimise(model, optimizer, loss)

    def loss(self, prediction, target, step):
        mse = ((prediction - target) ** 2).mean()
        if not self.ssim_weight:
            return mse
        return mse + self.ssim_weight * (1 - ssim_index(prediction, target))

    def validation_batches(self):
        if self._validation is None:
            pool = SourcePool.build(seed=self.config.seed + 7919, n_simulated=8, use_hdf=False)
            rng = np.random.default_rng([self.config.seed, 424242])
            self._validation = [self._batch(pool, rng, 32) for _ in range(2)]
        return self._validation

    def card(self, model):
        return {
            "inputs": ["(cutout - background) / scale"],
            "normalization": "per cutout: background = sigma-clipped median of the border; "
                             "scale = peak above the background (at least the noise)",
            "augmentation": "90-degree rotations, flips, +-1.5 px centring jitter; Gaussian "
                            f"noise at peak S/N {SNR_RANGE[0]:g}-{SNR_RANGE[1]:g}",
            "psf_family": "simulate.random_psf per simulated sky, FWHM "
                          f"{PSF_FWHM_RANGE[0]}-{PSF_FWHM_RANGE[1]} px",
            "loss": f"MSE + {self.ssim_weight:g} (1 - SSIM); clean targets (denoising AE)"
                    + (f"; + {self.consistency_weight:g} latent_consistency of two noise "
                       "draws per cutout" if self.consistency_weight else ""),
        }
