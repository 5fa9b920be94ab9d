"""Training task: the PSF-aware U-Net for `deblur`.

Clean images: simulated skies (`astro_nn_restore.simulate.simulate_sky`)
whose own PSF FWHM (1.3-4 px), star and galaxy counts vary, a third of them
with diffuse log-normal nebulosity added; and, in a share `REAL_SHARE` of the
samples, real images (`~astro_nn_restore.datasets.ImagePool.real`: the
training part of the Hubble Deep Field, scikit-image's bundled images but the
Moon, and a user's FITS folder, ``--data``). None of the benchmark images is
used; the Moon is part of the validation set.

Each sample: a clean patch is blurred (`astro_nn_restore.degrade.blur`) with
a PSF from `astro_nn_restore.simulate.random_psf` (Moffat beta 2-5 and
Gaussian with ellipticity up to 0.3, Airy; FWHM `FWHM_RANGE`), then gets
Gaussian or Poisson + Gaussian noise with a level drawn log-uniformly in
`NOISE_RANGE` of the patch's 0.5-99.9 percentile range. Inputs are
normalised as at inference (background = median, scale = noise); the noise
map is the true sigma in 70 % of the samples and a constant 1 otherwise. The
PSF is hidden (blind mode) with probability `HIDE_PSF`.

Second stage (from `STAGE2_START` of the steps on): in
`OWN_NOISE_PROBABILITY` of the samples the clean image first gets white noise
of its own (sigma `OWN_NOISE_RATIO` times the added noise, log-uniform), which
the blur then smooths. Real references carry their own noise, blurred in the
input; without this stage the network treats such texture as noise to remove,
with it it learns to tell blurred texture (restore it) from the white noise
added after the blur (suppress it). The training loss also gets a
total-flux term, 0.3 |mean(output - truth)| per patch (noise units), so the
raw network conserves flux better. Validation keeps noise-free targets and
the first-stage loss throughout, so its loss stays comparable across the run.

Third stage (from `STAGE3_START` of the steps on): the loss also gets the
root-mean-square error per patch (noise units, weight 0.5). PSNR, like
photometry, is decided in bright cores; the first two stages' losses weight
them little (the compressed Charbonnier sees a 10 % error on a 2000-sigma
peak like a 1-sigma error on the sky) and the network was measured to beat
Richardson-Lucy everywhere but in the brightest 1-10 % of the pixels. The
RMSE's gradient points where the squared error is, with a magnitude that
does not depend on the image's scale.

Fine-tuning (``--init MODEL``) starts from a trained model, which has been
through the curriculum: all three stages apply from the first step.

Loss: Charbonnier on the asinh-compressed images (the network's output
domain) plus 0.02 times the Charbonnier in linear noise units, so bright star
cores, which dominate PSNR and photometry, also count. Start with
``--lr 1e-4`` (Adam) as the issue suggests; the shipped model card records
what was used.
"""

import numpy as np
import torch

from ..datasets import DIFFUSE_SHARE, ImagePool, describe_real_share, hubble_deep_field
from ..deblur import psf_stamp, wiener_prefilters
from ..degrade import blur
from ..models.deblur import PSF_SIZE, DeblurUNet
from ..models.deblur import compress as compress_output
from ..simulate import add_diffuse_emission, random_psf, simulate_sky
from .denoise import noisy_normalised
from .loop import TrainTask, initial_model, model_arguments
from .losses import charbonnier

__all__ = ["DeblurTask", "make_blurred_sample", "NOISE_RANGE", "FWHM_RANGE", "HIDE_PSF",
           "STAGE2_START", "STAGE3_START", "REAL_SHARE"]

DEFAULT_ARCHITECTURE = dict(channels=(32, 64, 128), blocks=2, dilations=(2, 4), space_to_depth=2,
                            features=24, embed_dim=32, wiener_lambdas=(0.02, 0.002))
#: Noise sigma as a fraction of the patch's 0.5-99.9 percentile range.
NOISE_RANGE = (0.0015, 0.04)
#: FWHM (pixels) of the training PSFs: the blind range.
FWHM_RANGE = (1.2, 5.5)
#: Probability of hiding the PSF from the network (blind training).
HIDE_PSF = 0.3
#: Fraction of the steps after which the second stage (own noise, flux term) starts
#: (0 when fine-tuning with ``--init``).
STAGE2_START = 0.5
#: Fraction of the steps after which the third stage (RMSE term) starts (0 when
#: fine-tuning).
STAGE3_START = 0.55
#: Share of samples with own noise in the second stage.
OWN_NOISE_PROBABILITY = 0.5
#: Own-noise sigma over the added noise sigma (log-uniform range).
OWN_NOISE_RATIO = (0.2, 5.0)
#: Extra pixels around a patch blurred with it, cropped afterwards.
_MARGIN = 24
#: Share of samples drawn from real images. deblur-default 0.1.dev drew 25 % from
#: the HDF alone and lost to Richardson-Lucy on real images (its card, in the
#: git history of astro_nn_restore/weights/deblur-default.json).
REAL_SHARE = 0.5


def simulated_pool(seed, n):
    """Varied noiseless skies (own PSF, density, nebulosity) as float32 arrays."""
    images = []
    for i in range(n):
        rng = np.random.default_rng([seed, i, 1913])
        density = np.exp(rng.uniform(np.log(0.3), np.log(5.0)))
        sky = simulate_sky((256, 256), seed=rng, fwhm=rng.uniform(1.3, 4.0),
                           moffat_beta=rng.uniform(2.0, 5.0),
                           n_stars=int(rng.poisson(60 * density)),
                           n_galaxies=int(rng.poisson(10 * np.exp(rng.uniform(0, 1.5)))),
                           sky_gradient=rng.uniform(0.0, 0.3))
        image = np.asarray(sky.clean.data, dtype=np.float64)
        image = add_diffuse_emission(image, sky.background, rng, share=DIFFUSE_SHARE)
        images.append(image.astype(np.float32))
    return images


def make_blurred_sample(clean, rng, *, hide=False, noise_fraction=None,
                        wiener_lambdas=(0.02, 0.002), kernel=None, own_noise=False):
    """One training pair from a clean patch with a margin of `_MARGIN` pixels.

    Returns ``(inputs (2 + L, H, W), stamp (S, S), target (1, H, W))`` in noise
    units; ``stamp`` is NaN when the PSF is hidden. ``own_noise`` adds white
    noise to the clean patch before the blur (see the module docstring).
    """
    kernel = random_psf(rng, fwhm_range=FWHM_RANGE) if kernel is None else kernel
    crop = (slice(_MARGIN, -_MARGIN),) * 2
    lo, hi = np.percentile(clean[crop], [0.5, 99.9])
    span = max(hi - lo, 1e-6)
    if noise_fraction is None:
        noise_fraction = np.exp(rng.uniform(*np.log(NOISE_RANGE)))
    sigma0 = noise_fraction * span
    if own_noise:
        ratio = np.exp(rng.uniform(*np.log(OWN_NOISE_RATIO)))
        clean = clean + ratio * sigma0 * rng.standard_normal(clean.shape)
    blurred = blur(clean, kernel)[crop]
    clean = clean[crop]
    x, s, target = noisy_normalised(blurred, clean, sigma0, lo, span, rng)
    if hide:
        prefiltered = [x] * len(wiener_lambdas)
        stamp = np.full((PSF_SIZE, PSF_SIZE), np.nan, np.float32)
    else:
        prefiltered = wiener_prefilters(x, kernel, wiener_lambdas)
        stamp = psf_stamp(kernel, PSF_SIZE)
    inputs = np.stack([x, s, *prefiltered]).astype(np.float32)
    return inputs, stamp, target[None].astype(np.float32)


def _stack(samples):
    inputs, stamps, targets = zip(*samples, strict=True)
    return ((torch.from_numpy(np.stack(inputs)), torch.from_numpy(np.stack(stamps))),
            torch.from_numpy(np.stack(targets)))


class DeblurTask(TrainTask):
    task = "deblur"
    training_data = describe_real_share(REAL_SHARE)

    def __init__(self, config):
        super().__init__(config)
        self.arguments = model_arguments(config, self.task, DEFAULT_ARCHITECTURE)
        self.lambdas = tuple(self.arguments["wiener_lambdas"])
        self.fine_tuning = config.extra.get("init") is not None
        self.stage_starts = (0.0, 0.0) if self.fine_tuning else (STAGE2_START, STAGE3_START)
        n = config.extra.get("n_simulated", 96)
        self.simulated = ImagePool(simulated_pool(config.seed, n))
        self.real = ImagePool.real(folder=config.data)
        self._validation = None

    def build_model(self):
        return initial_model(self.config, self.task, lambda: DeblurUNet(**self.arguments))

    def _stage(self, step):
        """1, 2 or 3: the curriculum stage of ``step``."""
        return 1 + sum(step >= start * self.config.steps for start in self.stage_starts)

    def _crop(self, rng, size):
        pool = self.real if rng.random() < REAL_SHARE else self.simulated
        return pool.random_crop(rng, size + 2 * _MARGIN).astype(np.float64)

    def batch(self, step, rng):
        late = self._stage(step) >= 2
        samples = [make_blurred_sample(
            self._crop(rng, self.config.patch_size), rng, hide=rng.random() < HIDE_PSF,
            own_noise=late and rng.random() < OWN_NOISE_PROBABILITY, wiener_lambdas=self.lambdas)
            for _ in range(self.config.batch_size)]
        return _stack(samples)

    def loss(self, prediction, target, step):
        compressed = charbonnier(compress_output(prediction), compress_output(target))
        loss = compressed + 0.02 * charbonnier(prediction, target)
        stage = 1 if step is None else self._stage(step)
        if stage >= 2:
            loss = loss + 0.3 * (prediction - target).mean(dim=(1, 2, 3)).abs().mean()
        if stage >= 3:
            loss = loss + 0.5 * (prediction - target).pow(2).mean(dim=(1, 2, 3)).sqrt().mean()
        return loss

    def validation_batches(self):
        """Fixed pairs: with the PSF at two noise levels, and blind.

        From skies of other seeds, the HDF held-out part and the Moon.
        """
        if self._validation is None:
            seed = self.config.seed + 7919
            pool = ImagePool(simulated_pool(seed, 12) + [hubble_deep_field("heldout")]
                             + ImagePool.validation().images)
            rng = np.random.default_rng([seed, 424242])
            self._validation = [
                _stack([make_blurred_sample(pool.random_crop(rng, 128 + 2 * _MARGIN)
                                            .astype(np.float64), rng, hide=hide,
                                            noise_fraction=fraction,
                                            wiener_lambdas=self.lambdas)
                        for _ in range(8)])
                for fraction, hide in ((0.005, False), (0.02, False), (0.005, True))]
        return self._validation

    def card(self, model):
        return {
            "inputs": ["(data - background) / scale", "sigma / scale",
                       "Wiener pre-deconvolutions of channel 0, one per wiener_lambdas "
                       "(channel 0 when blind)",
                       f"PSF stamp {PSF_SIZE}x{PSF_SIZE}, normalised, centred (or blind)"],
            "normalization": "whole image: sigma-clipped median background; scale = median "
                             "uncertainty, or else the white noise measured from second "
                             "differences (deblur.estimate_white_noise); training uses the "
                             "true noise",
            "psf_family": f"simulate.random_psf, FWHM {FWHM_RANGE[0]}-{FWHM_RANGE[1]} px: "
                          "Moffat (beta 2-5) and Gaussian with ellipticity 0-0.3, Airy",
            "blind_range": f"the psf_family (PSF hidden in {HIDE_PSF:.0%} of training samples)",
            "noise_range": f"{NOISE_RANGE[0]:.4f}-{NOISE_RANGE[1]:.2f} of the 0.5-99.9 "
                           "percentile range; Gaussian and Poisson+Gaussian",
            "own_noise": f"{self._second_stage_text()}, {OWN_NOISE_PROBABILITY:.0%} of the "
                         "clean images carry white noise of their own "
                         f"({OWN_NOISE_RATIO[0]}-{OWN_NOISE_RATIO[1]} x the added sigma) "
                         "before the blur",
            "loss": "Charbonnier(asinh-compressed) + 0.02 Charbonnier(noise units); second "
                    "stage + 0.3 |mean(output - truth)| per patch; third stage + 0.5 RMSE "
                    "per patch",
            "stages": {"2": self.stage_starts[0], "3": self.stage_starts[1],
                       **({"note": "fine-tuning (training.init): every stage from step 0"}
                          if self.fine_tuning else {})},
            "real_share": REAL_SHARE,
            "flux": "made exact after the network by deblur.conserve_flux",
        }

    def _second_stage_text(self):
        if self.fine_tuning:
            return ("fine-tuning run: from the first step (the init model had it from "
                    f"{STAGE2_START:.0%} of its steps)")
        return f"second stage (from {STAGE2_START:.0%} of the steps)"

    def calibrate(self, model):
        """Median |total flux error| of the raw network (before `conserve_flux`).

        Relative to the summed absolute target, on the validation pairs.
        """
        errors = []
        with torch.inference_mode():
            for inputs, target in self.validation_batches():
                difference = (model(inputs) - target).sum(dim=(1, 2, 3))
                errors += (difference.abs() / target.abs().sum(dim=(1, 2, 3))).tolist()
        return {"calibration": {"raw_flux_error_median": round(float(np.median(errors)), 5),
                                "method": "|sum(output - truth)| / sum|truth| on validation "
                                          "patches (noise units), before flux correction"}}
