"""Training task: the noise-aware residual U-Net for `denoise_residual`.

Clean patches (simulated skies, the training part of the Hubble Deep Field,
or a user's FITS folder) get Gaussian or Poisson + Gaussian noise with a
level drawn log-uniformly between 0.5 % and a curriculum maximum (2 % at the
start, 30 % of the patch's 0.5-99.9 percentile range after 30 % of the
steps). Inputs are normalised as at inference: background = median, scale =
median noise; the noise map is the true per-pixel sigma in 70 % of the
samples and a constant 1 (what inference uses when no uncertainty is given)
in the rest.

Half of the patches come from real images (``REAL_SHARE``: the training part
of the Hubble Deep Field, scikit-image's bundled images but the Moon, see
`~astro_nn_restore.datasets.ImagePool.real`, and ``--data``), half from
simulated skies, each with its own PSF (`~astro_nn_restore.datasets.sky_psf`:
Moffat, elliptical Gaussian or Airy, FWHM `PSF_FWHM_RANGE`), a share
`DIFFUSE_SHARE` of them with diffuse emission
(`~astro_nn_restore.simulate.diffuse_emission`). Cards without ``psf_family``
are of models whose skies all had one Moffat of FWHM 2.5 px and no diffuse
emission. Validation: simulated skies of other seeds (drawn the same way) and
the Moon, at 5 % and 10 % noise.

Loss: L1 in units of the median noise + 0.2 (1 - SSIM on asinh-compressed
images) + 0.1 gradient L1.
"""

import numpy as np
import torch

from ..datasets import DIFFUSE_SHARE, ImagePool, describe_real_share
from ..models.denoise import ResidualUNet
from .loop import TrainTask
from .loop import initial_model as loop_initial_model
from .losses import compress, gradient_loss, ssim_index

__all__ = ["DenoiseTask", "initial_model"]

DEFAULT_ARCHITECTURE = dict(channels=(48, 96, 128), blocks=2, dilations=(2, 4), space_to_depth=2)
MIN_FRACTION, START_FRACTION, MAX_FRACTION, RAMP = 0.005, 0.02, 0.30, 0.3
#: Share of patches cut from real images. The shipped denoise-default (0.1.dev)
#: drew patches uniformly over 96 simulated skies and the HDF, i.e. ~1 % real,
#: and lost to BM3D on real images; see the model card.
REAL_SHARE = 0.5
#: Validation batches: (pool, noise fraction of the range), 8 patches each.
VALIDATION_SETS = (("simulated", 0.05), ("simulated", 0.10), ("moon", 0.05), ("moon", 0.10))
#: FWHM range (pixels) of the simulated skies' PSFs.
PSF_FWHM_RANGE = (1.2, 6.0)


def initial_model(config):
    """The ``--init`` model (fine-tuning) or a new `ResidualUNet` (see `.loop.initial_model`)."""
    architecture = config.extra.get("architecture") or {}
    return loop_initial_model(
        config, "denoise", lambda: ResidualUNet(**{**DEFAULT_ARCHITECTURE, **architecture}))


def noise_fraction_limit(progress):
    """Largest noise level (fraction of the range) at ``progress`` in [0, 1]."""
    ramp = min(1.0, progress / RAMP)
    return START_FRACTION + (MAX_FRACTION - START_FRACTION) * ramp


def make_noisy_sample(clean, rng, max_fraction):
    """Return (inputs (2, H, W), target (1, H, W)) for one clean patch."""
    lo, hi = np.percentile(clean, [0.5, 99.9])
    span = max(hi - lo, 1e-6)
    fraction = np.exp(rng.uniform(np.log(MIN_FRACTION), np.log(max_fraction)))
    sigma0 = fraction * span
    x, s, target = noisy_normalised(clean, clean, sigma0, lo, span, rng)
    return np.stack([x, s]).astype(np.float32), target[None].astype(np.float32)


def noisy_normalised(observed, clean, sigma0, lo, span, rng):
    """Add noise to ``observed`` and normalise it the way inference does.

    Gaussian noise ``sigma0``, plus in half of the samples a signal-dependent
    (Poisson-like) part growing with ``observed - lo`` over ``span``. The
    scale is the median sigma when the noise map is given (70 %), else
    ``sigma0`` with a constant map of 1 (what inference uses without an
    uncertainty); the background is the median with a small jitter.

    Returns
    -------
    x, s, target : ndarray
        Noisy input, noise map and ``clean`` in the same normalised units.
    """
    sigma = np.full(observed.shape, sigma0)
    if rng.random() < 0.5:
        ratio = np.exp(rng.uniform(np.log(0.1), np.log(10.0)))
        sigma = np.sqrt(sigma0**2 + ratio * sigma0**2 * np.clip(observed - lo, 0, None) / span)
    noisy = observed + sigma * rng.standard_normal(observed.shape)
    give_map = rng.random() < 0.7
    scale = float(np.median(sigma)) if give_map else sigma0
    background = float(np.median(noisy)) + rng.normal(0, 0.3) * scale
    x = (noisy - background) / scale
    s = sigma / scale if give_map else np.ones_like(x)
    return x, s, (clean - background) / scale


class DenoiseTask(TrainTask):
    task = "denoise"
    training_data = describe_real_share(REAL_SHARE)

    def __init__(self, config):
        super().__init__(config)
        n_simulated = config.extra.get("n_simulated", 96)
        self.simulated = ImagePool.simulated(seed=config.seed, n=n_simulated,
                                             fwhm_range=PSF_FWHM_RANGE,
                                             diffuse_share=DIFFUSE_SHARE)
        self.real = ImagePool.real(folder=config.data)
        self._validation = None

    def build_model(self):
        return initial_model(self.config)

    def _crop(self, rng):
        """A clean patch: real images `REAL_SHARE` of the time, simulated skies else."""
        pool = self.real if rng.random() < REAL_SHARE else self.simulated
        return pool.random_crop(rng, self.config.patch_size)

    def batch(self, step, rng):
        limit = noise_fraction_limit(step / max(self.config.steps, 1))
        pairs = [make_noisy_sample(self._crop(rng), rng, limit)
                 for _ in range(self.config.batch_size)]
        inputs, targets = zip(*pairs, strict=True)
        return torch.from_numpy(np.stack(inputs)), torch.from_numpy(np.stack(targets))

    def loss(self, prediction, target, step):
        # inputs carry the noise map; the loss weights errors by the target's noise units
        l1 = (prediction - target).abs().mean()
        structure = 1 - ssim_index(compress(prediction), compress(target))
        return l1 + 0.2 * structure + 0.1 * gradient_loss(prediction, target)

    def validation_batches(self):
        """Fixed pairs, one batch per entry of `VALIDATION_SETS` (same order)."""
        if self._validation is None:
            pools = {"simulated": ImagePool.simulated(seed=self.config.seed + 7919, n=16,
                                                      fwhm_range=PSF_FWHM_RANGE,
                                                      diffuse_share=DIFFUSE_SHARE),
                     "moon": ImagePool.validation()}
            rng = np.random.default_rng([self.config.seed, 424242])
            batches = []
            for kind, fraction in VALIDATION_SETS:
                pairs = [make_noisy_sample(pools[kind].random_crop(rng, 128), rng,
                                           fraction * 1.0001) for _ in range(8)]
                inputs, targets = zip(*pairs, strict=True)
                batches.append((torch.from_numpy(np.stack(inputs)),
                                torch.from_numpy(np.stack(targets))))
            self._validation = batches
        return self._validation

    def card(self, model):
        return {
            "inputs": ["(data - background) / scale", "sigma / scale"],
            "normalization": "whole image: sigma-clipped median background; scale = median "
                             "uncertainty, or sigma-clipped std when no uncertainty is given",
            "noise_range": f"{MIN_FRACTION:.3f}-{MAX_FRACTION:.2f} of the 0.5-99.9 percentile "
                           "range; Gaussian and Poisson+Gaussian",
            "loss": "L1 + 0.2 (1 - SSIM(asinh)) + 0.1 gradient L1",
            "psf_family": "datasets.sky_psf per simulated sky, FWHM "
                          f"{PSF_FWHM_RANGE[0]}-{PSF_FWHM_RANGE[1]} px",
            "diffuse_share": round(DIFFUSE_SHARE, 3),
            "real_share": REAL_SHARE,
        }

    def calibrate(self, model):
        """Residual noise / input noise on the validation sets (for output uncertainty).

        ``residual_sigma_ratio``, which `denoise_residual` multiplies the input
        noise by, comes from the simulated skies alone: their clean reference is
        noise-free. The Moon's reference carries its own noise and texture, so
        its ratio (``residual_sigma_ratio_moon``) includes them: likely an upper bound
        for real images, recorded beside it.
        """
        ratios = {kind: [] for kind, _ in VALIDATION_SETS}
        with torch.inference_mode():
            for (kind, _), (inputs, target) in zip(VALIDATION_SETS, self.validation_batches(),
                                                   strict=True):
                residual = (model(inputs) - target)[:, 0] / inputs[:, 1]
                ratios[kind].append(float(residual.std()))
        return {"calibration": {
            "residual_sigma_ratio": round(float(np.median(ratios["simulated"])), 4),
            "residual_sigma_ratio_moon": round(float(np.median(ratios["moon"])), 4),
            "method": "std of (output - clean) / sigma on the validation patches of simulated "
                      "skies (noise-free references); _moon: on the Moon's, whose reference "
                      "has noise of its own (likely an upper bound for real images)"}}
