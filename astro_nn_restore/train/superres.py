"""Training task: x2 super-resolution (``SRResNet`` default, or ``SRCNN``).

Pairs are what a detector with 2x larger pixels records
(`~astro_nn_restore.degrade.coarse_detector`): the fine image (the
PSF-blurred sky) block-averaged over 2x2 pixels, plus white Gaussian noise of
0.03-10 % of the coarse patch's 0.5-99.9 percentile range (log-uniform). The fine
images are simulated skies, each with its own PSF from
`~astro_nn_restore.simulate.random_psf` (Moffat, elliptical Gaussian or Airy,
FWHM 1.2-5 fine pixels, so the coarse PSF goes from undersampled to well
sampled; models and stages trained before 2026-12-01 saw round Moffats only), a
share `DIFFUSE_SHARE` of them with diffuse emission
(`~astro_nn_restore.simulate.diffuse_emission`; the stages recorded in the
cards of 2026-12-01 before 17:00 UTC had none, and drew their skies' PSFs from
another random stream) and,
for a share `REAL_SHARE` of the patches, real images: the training part of
the Hubble Deep Field, the other images bundled with scikit-image
(`~astro_nn_restore.datasets.packaged_images`: cells, a retina, textures;
the Moon is kept for validation) and an optional FITS folder; 30 % of
patches get an extra Gaussian blur (sigma 0.3-1.2 px) applied to input and
target alike, for more PSF shapes. With ``--saturated-share S``, a share S
of the patches first has its brightest stars clipped flat (`saturate`), like
the cores of a saturated detector. The network's output is compared with the
clean fine patch.

Normalisation is the one used at inference, on the coarse patch:
`~astro_nn_restore.normalize.estimate_normalization` (sigma-clipped median
and std). Loss: L1 on asinh-compressed images (faint structure) + 100 x L1
relative to each patch's peak (bright cores, which dominate PSNR).

Pick the architecture with ``--arch``: ``'{"name": "srcnn"}'`` trains SRCNN;
other keys are the architecture's arguments (``'{"channels": 48}'``).
``--init MODEL`` fine-tunes a trained model instead; ``--add-blocks N`` with it
appends N residual blocks to its SRResNet, starting as the identity
(`~astro_nn_restore.models.superres.SRResNet.deepened`), so the deeper net
starts from the trained one's output.
"""

import numpy as np
import torch
from scipy.ndimage import gaussian_filter

from ..datasets import DIFFUSE_SHARE, ImagePool, describe_real_share
from ..degrade import coarse_detector
from ..models.superres import SRCNN, SRResNet
from ..normalize import estimate_normalization
from .loop import TrainTask, initial_model, model_arguments
from .losses import compress

__all__ = ["SuperResTask", "make_pair"]

ARCHITECTURES = {"default": SRResNet, "srcnn": SRCNN}
FACTOR = 2
NOISE_RANGE = (3e-4, 0.1)
FWHM_RANGE = (1.2, 5.0)
#: Share of patches from real images (HDF, scikit-image's images, --data).
#: superres-default 0.1.dev drew ~1 % and gained +3 dB over SRCNN on simulated
#: skies but only 0-0.4 dB on real images.
REAL_SHARE = 0.3
#: Default share of patches with saturated stars (``--saturated-share``).
SATURATED_SHARE = 0.0


def saturate(fine, rng):
    """``fine`` clipped at a level between its 99th percentile and its peak.

    The brightest stars then have the flat cores of a saturated detector, in the
    target and (binned) in the input alike, so the network learns to keep such a
    plateau flat instead of drawing a peak on it. The level is drawn uniformly
    between 10 % and 70 % of the way from the 99th percentile to the peak.
    """
    peak, base = float(fine.max()), float(np.percentile(fine, 99))
    if peak <= base:
        return fine
    return np.minimum(fine, base + (peak - base) * rng.uniform(0.1, 0.7))


def make_pair(fine, rng, *, factor=FACTOR, noise_fraction=None, saturated_share=0.0):
    """(input (1, h, w), target (1, f h, f w)) normalised, from one clean fine patch.

    A share ``saturated_share`` of the patches is clipped by `saturate` first.
    """
    if rng.random() < 0.3:
        fine = gaussian_filter(fine, rng.uniform(0.3, 1.2), mode="reflect")
    # after the blur, which is part of the PSF; no draw at share 0, so that runs
    # without saturation keep their random stream
    if saturated_share and rng.random() < saturated_share:
        fine = saturate(fine, rng)
    if noise_fraction is None:
        noise_fraction = np.exp(rng.uniform(*np.log(NOISE_RANGE)))
    lo, hi = np.percentile(fine, [0.5, 99.9])
    coarse = coarse_detector(fine, factor, noise_sigma=noise_fraction * max(hi - lo, 1e-6),
                             rng=rng)
    norm = estimate_normalization(coarse)
    return (norm.forward(coarse.astype(np.float32))[None],
            norm.forward(fine.astype(np.float32))[None])


def _stack(pairs):
    inputs, targets = zip(*pairs, strict=True)
    return torch.from_numpy(np.stack(inputs)), torch.from_numpy(np.stack(targets))


def _skies(seed, n):
    """Simulated clean skies, each with its own PSF, a share with diffuse emission."""
    return ImagePool.simulated(seed=seed, n=n, fwhm_range=FWHM_RANGE, diffuse_share=DIFFUSE_SHARE)


def _check_add_blocks(config):
    """``--add-blocks`` (0 when absent): at least 1, and only to grow an ``--init`` SRResNet."""
    from ..registry import find_card

    add = config.extra.get("add_blocks")
    if add is None:
        return 0
    if add < 1:
        raise ValueError(f"--add-blocks must be >= 1, got {add}")
    init = config.extra.get("init")
    if init is None or find_card(init, task="superres")["architecture"] != "SRResNet":
        raise ValueError("--add-blocks grows the residual net of an --init model: give "
                         "--init with a default-architecture (SRResNet) model")
    return add


class SuperResTask(TrainTask):
    task = "superres"
    training_data = describe_real_share(REAL_SHARE)

    def __init__(self, config):
        super().__init__(config)
        # an --init model brings its own arguments (factor included), without a name
        self.arguments = dict(model_arguments(config, self.task, {"factor": FACTOR}))
        name = self.arguments.pop("name", "default")
        if name not in ARCHITECTURES:
            raise ValueError(f"unknown superres architecture {name!r}: use 'default' or 'srcnn'")
        # a fine-tuned model keeps the class of its card (see `initial_model`)
        self.cls = None if config.extra.get("init") is not None else ARCHITECTURES[name]
        self.add_blocks = _check_add_blocks(config)
        self.saturated_share = float(config.extra.get("saturated_share", SATURATED_SHARE))
        if not 0 <= self.saturated_share <= 1:
            raise ValueError(f"--saturated-share must be in [0, 1], got {self.saturated_share}")
        if self.add_blocks:
            self.arguments["blocks"] += self.add_blocks
        self.real = ImagePool.real(folder=config.data)
        self.simulated = _skies(config.seed, config.extra.get("n_simulated", 96))
        self._validation = None

    def build_model(self):
        model = initial_model(self.config, self.task, lambda: self.cls(**self.arguments))
        return model.deepened(self.add_blocks) if self.add_blocks else model

    def _crop(self, rng, size):
        pool = self.real if rng.random() < REAL_SHARE else self.simulated
        return pool.random_crop(rng, size)

    def batch(self, step, rng):
        factor = self.arguments["factor"]
        size = self.config.patch_size // factor * factor
        return _stack([make_pair(self._crop(rng, size), rng, factor=factor,
                                 saturated_share=self.saturated_share)
                       for _ in range(self.config.batch_size)])

    def loss(self, prediction, target, step):
        peak = target.abs().amax(dim=(1, 2, 3), keepdim=True) + 1.0
        relative = ((prediction - target).abs() / peak).mean()
        return (compress(prediction) - compress(target)).abs().mean() + 100 * relative

    def validation_batches(self):
        if self._validation is None:
            simulated = _skies(self.config.seed + 7919, 16)
            real = ImagePool.validation()
            rng = np.random.default_rng([self.config.seed, 424242])
            factor = self.arguments["factor"]
            self._validation = [
                _stack([make_pair(pool.random_crop(rng, 128), rng, factor=factor,
                                  noise_fraction=fraction) for _ in range(8)])
                for pool, fraction in ((simulated, 0.001), (simulated, 0.01), (real, 0.01),
                                       (real, 0.05))
            ]
        return self._validation

    def card(self, model):
        return {
            "factor": model.factor,
            "inputs": ["(low-res data - background) / scale"],
            "normalization": "whole image: sigma-clipped median background and sigma-clipped "
                             "std (or median uncertainty)",
            "degradation": f"coarse_detector: block mean {model.factor}x{model.factor} + "
                           f"Gaussian noise {NOISE_RANGE[0]:g}-{NOISE_RANGE[1]:g} of range; "
                           f"skies with random_psf PSFs, FWHM {FWHM_RANGE[0]}-{FWHM_RANGE[1]} px, "
                           f"{DIFFUSE_SHARE:.0%} with diffuse emission; 30% extra blur"
                           + (f"; {self.saturated_share:.0%} saturated (clipped) first"
                              if self.saturated_share else ""),
            "loss": "L1(asinh) + 100 L1 / patch peak",
            "block_consistent": bool(model.project),
            "real_share": REAL_SHARE,
            "saturated_share": self.saturated_share,
        }

    def calibrate(self, model):
        """Validation PSNR of the model and of block-consistent bicubic (same pairs)."""
        from ..metrics import psnr

        # a new network of the same kind starts with a zero residual: bicubic + projection
        baseline = type(model)(**model.config).eval()
        scores = {"model": [], "bicubic": []}
        with torch.inference_mode():
            for inputs, target in self.validation_batches():
                for key, net in (("model", model.eval()), ("bicubic", baseline)):
                    out = net(inputs)[:, 0].numpy()
                    scores[key] += [psnr(t, o) for t, o in
                                    zip(target[:, 0].numpy(), out, strict=True)]
        return {"calibration": {f"val_psnr_{k}": round(float(np.mean(v)), 3)
                                for k, v in scores.items()}}
