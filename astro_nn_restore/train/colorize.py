"""Training task: the Lab colouriser for `colorize` (L1 pretraining, then WGAN-GP).

Data: RGB images converted to Lab with `skimage.color.rgb2lab`; the input is
``L / 100``, the target ``a, b``. The RGB images are

* the training part of the Hubble Deep Field (left 75 % of the columns;
  drawn for a share ``--hdf-share`` (default `HDF_SHARE`) of the patches;
  benchmarks use the rest),
* simulated g, r, i skies (`~astro_nn_restore.simulate.simulate_multiband`,
  stellar and galaxy SEDs), half of them with Poisson + read noise, rendered
  with `make_lupton_rgb` at a random ``Q`` and stretch
  (`~astro_nn_restore.colorize.lupton_composite`),
* with ``--data FOLDER``: a user's multi-band sets, one sub-folder per field
  holding 2 or 3 aligned 2-D FITS images of the same shape, blue to red in
  file-name order (e.g. ``field1/1_g.fits, 2_r.fits, 3_i.fits``; with two
  bands green is their mean), rendered the same way.

Schedule: ``pretrain_steps`` steps of L1 alone (default 80 % of ``--steps``;
``TrainConfig.extra["pretrain_steps"]`` from Python; Adam, betas (0.9, 0.999),
gradient clipping), then WGAN-GP at 0.2 x the learning rate reached so far
(keep ``--steps`` unchanged when resuming: it sets the phase boundary): per
step ``n_critic`` = 5 critic updates
(gradient penalty lambda = 10, on random interpolates of real and generated
chroma, both conditioned on L) and one generator update with loss
``-critic + l1_weight (100) * L1``; Adam betas (0, 0.9), no clipping. One
Adam optimiser holds two parameter groups (generator, critic): Adam skips
parameters without gradients, so each update moves only the network whose
gradients were computed, and the shared loop's checkpoint (model + optimiser
+ scheduler) stores both networks and both sets of moments; resume is exact.
The exported model is the generator alone (``ColorGenerator``).

Validation (the loop's ``val_loss``, which drives the learning-rate plateau
schedule and early stopping) is the L1 error of a, b / 100 on fixed patches.
The GAN phase rarely lowers it below the pretrained best, so give a large
``--patience`` when the GAN phase should run to the end. A GAN step costs about
7 L1 steps (5 critic updates with the gradient penalty).
"""

from pathlib import Path

import numpy as np
import torch

from ..datasets import ImagePool, hubble_deep_field
from ..models.colorize import ColorizeGAN, critic_inputs
from .loop import TrainTask, training_autocast

__all__ = ["ColorizeTask", "ColorPool"]

DEFAULT_GENERATOR = dict(channels=(32, 64, 128), blocks=1, dilations=(2, 4, 8), space_to_depth=2)
DEFAULT_CRITIC = dict(channels=(32, 64, 128))
GP_WEIGHT, L1_WEIGHT, N_CRITIC = 10.0, 100.0, 5
GAN_LR_FACTOR = 0.2  # the GAN phase starts at 0.2 x the learning rate reached in pretraining
PRETRAIN_FRACTION = 0.8  # default share of --steps spent on L1 pretraining
AB_UNIT = 100.0  # L1 losses are in units of 100 Lab a/b units
#: Share of training patches drawn from the HDF (the rest from simulated skies).
#: At 0.25 (0.1.dev) and 0.6 the model learnt the warm tint of the simulated
#: Lupton skies and lost to grey on the held-out HDF; 0.9 beats grey there.
HDF_SHARE = 0.9


def _render_lupton(bands, rng):
    from ..colorize import lupton_composite

    fraction = float(np.exp(rng.uniform(np.log(0.1), np.log(1.0))))
    return lupton_composite(bands, q=float(rng.uniform(3, 10)), stretch_fraction=fraction)


def simulated_rgb(seed, *, shape=(256, 256)):
    """One simulated g, r, i sky rendered with make_lupton_rgb (float32 RGB)."""
    from ..simulate import simulate_multiband

    rng = np.random.default_rng([seed, 271828])
    sim = simulate_multiband(shape, seed=seed)
    bands = [np.asarray(sim.images[b].data, dtype=np.float64) for b in ("g", "r", "i")]
    if rng.random() < 0.5:  # Poisson + read noise (gain 1, 5 e-)
        bands = [b + np.sqrt(np.clip(b, 0, None) + 25) * rng.standard_normal(b.shape)
                 for b in bands]
    return _render_lupton(bands, rng).astype(np.float32)


def folder_rgb(folder, seed):
    """RGB renderings of a user's multi-band sets (one sub-folder per field)."""
    from astropy.io import fits

    rng = np.random.default_rng([seed, 314159])
    images = []
    for field in sorted(p for p in Path(folder).iterdir() if p.is_dir()):
        paths = sorted(p for p in field.iterdir() if ".fits" in p.name.lower())
        if len(paths) not in (2, 3):
            raise ValueError(f"{field} must hold 2 or 3 FITS band images, found {len(paths)}")
        bands = []
        for path in paths:
            with fits.open(path, memmap=False) as hdul:
                hdu = next(h for h in hdul if h.is_image and h.data is not None)
                bands.append(np.asarray(hdu.data, dtype=np.float64))
        images.append(_render_lupton(bands, rng).astype(np.float32))
    if not images:
        raise ValueError(f"no field sub-folders with FITS band images in {folder}")
    return images


class ColorPool(ImagePool):
    """RGB images (float32, (ny, nx, 3) in [0, 1]) to draw Lab patches from."""

    @classmethod
    def build(cls, *, seed, n_simulated=48, use_hdf=True, hdf_share=HDF_SHARE, folder=None):
        """Simulated skies, the HDF training part and a user's multi-band sets.

        The HDF is drawn with probability ``hdf_share``; the other images share
        the rest equally.
        """
        if not 0 <= hdf_share < 1:
            raise ValueError(f"hdf_share must be in [0, 1), got {hdf_share!r}")
        images = [simulated_rgb(seed * 100_003 + i) for i in range(n_simulated)]
        if folder is not None:
            images += folder_rgb(folder, seed)
        weights = [1.0] * len(images)
        if use_hdf:
            images.append(hubble_deep_field("train", color=True))
            weights.append(len(weights) * hdf_share / (1 - hdf_share) if weights else 1.0)
        return cls(images, weights)

    def sample(self, rng, size):
        """``(L / 100 (1, size, size), ab (2, size, size))`` of a random flipped crop."""
        from skimage.color import rgb2lab

        lab = rgb2lab(self.random_crop(rng, size).astype(np.float64))
        return (lab[None, ..., 0] / 100).astype(np.float32), \
            np.moveaxis(lab[..., 1:], -1, 0).astype(np.float32)


def _stack(pairs):
    inputs, targets = zip(*pairs, strict=True)
    return torch.from_numpy(np.stack(inputs)), torch.from_numpy(np.stack(targets))


def gradient_penalty(critic, real, fake, rng):
    """WGAN-GP term ``mean((|grad critic(x_hat)| - 1)^2)``, one norm per sample."""
    alpha = torch.from_numpy(rng.random((real.shape[0], 1, 1, 1)).astype(np.float32))
    mixed = (alpha * real + (1 - alpha) * fake).requires_grad_(True)
    scores = critic(mixed)
    (grad,) = torch.autograd.grad(scores.sum(), mixed, create_graph=True)
    return ((grad.flatten(1).norm(dim=1) - 1) ** 2).mean()


class ColorizeTask(TrainTask):
    task = "colorize"
    export_best = False  # validation is the L1 error, which the GAN phase does not lower

    def __init__(self, config):
        super().__init__(config)
        extra = config.extra
        self.generator_arguments = {**DEFAULT_GENERATOR, **extra.get("architecture", {})}
        self.critic_arguments = {**DEFAULT_CRITIC, **extra.get("critic", {})}
        self.pretrain_steps = int(extra.get("pretrain_steps", PRETRAIN_FRACTION * config.steps))
        self.hdf_share = float(extra.get("hdf_share", HDF_SHARE))
        self.pool = ColorPool.build(seed=config.seed, folder=config.data,
                                    n_simulated=extra.get("n_simulated", 48),
                                    hdf_share=self.hdf_share)
        self._validation = None

    def build_model(self):
        return ColorizeGAN(self.generator_arguments, self.critic_arguments)

    def optimizer(self, model):
        groups = [{"params": model.generator.parameters()},
                  {"params": model.critic.parameters()}]
        return torch.optim.Adam(groups, lr=self.config.lr, betas=(0.9, 0.999))

    def batch(self, step, rng):
        size = self.config.patch_size
        return _stack([self.pool.sample(rng, size) for _ in range(self.config.batch_size)])

    def loss(self, prediction, target, step):
        return (prediction - target).abs().mean() / AB_UNIT

    def train_step(self, model, optimizer, step, rng):
        gan = step >= self.pretrain_steps
        for group in optimizer.param_groups:
            group["betas"] = (0.0, 0.9) if gan else (0.9, 0.999)
            if step == self.pretrain_steps:  # once, so plateau reductions (and resume) hold
                group["lr"] *= GAN_LR_FACTOR
        if not gan:
            return super().train_step(model, optimizer, step, rng)
        for _ in range(N_CRITIC):
            self._critic_step(model, optimizer, *self.batch(step, rng), rng)
        return self._generator_step(model, optimizer, *self.batch(step, rng))

    def _critic_step(self, model, optimizer, lightness, chroma, rng):
        scale = model.generator.chroma_scale
        with torch.no_grad(), training_autocast(self.config.precision):
            fake = model.generator(lightness).float()
        real_in = critic_inputs(lightness, chroma, scale)
        fake_in = critic_inputs(lightness, fake, scale)
        wasserstein = model.critic(real_in).mean() - model.critic(fake_in).mean()
        loss = -wasserstein + GP_WEIGHT * gradient_penalty(model.critic, real_in, fake_in, rng)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()  # the generator has no gradients: Adam leaves it alone
        return float(wasserstein.detach())

    def _generator_step(self, model, optimizer, lightness, chroma):
        with training_autocast(self.config.precision):
            fake = model.generator(lightness).float()
        l1 = self.loss(fake, chroma, None)
        adversarial = -model.critic(critic_inputs(lightness, fake,
                                                  model.generator.chroma_scale)).mean()
        optimizer.zero_grad(set_to_none=True)
        (adversarial + L1_WEIGHT * l1).backward()
        for parameter in model.critic.parameters():
            parameter.grad = None  # only the generator moves in this update
        optimizer.step()
        return float(l1.detach())

    def validation_batches(self):
        if self._validation is None:
            sims = ColorPool.build(seed=self.config.seed + 7919, n_simulated=8, use_hdf=False)
            hdf = ColorPool.build(seed=0, n_simulated=0, use_hdf=True)
            rng = np.random.default_rng([self.config.seed, 424242])
            self._validation = [_stack([pool.sample(rng, 128) for _ in range(8)])
                                for pool in (sims, hdf)]
        return self._validation

    def export_module(self, model):
        return model.generator

    def card(self, model):
        return {
            "inputs": ["Lab L / 100 of the stretched image"],
            "outputs": ["Lab a", "Lab b"],
            "normalization": "L = 100 * stretch(interval(data)); default AsinhStretch(a=0.1) "
                             "over PercentileInterval(99.5)",
            "loss": f"L1 pretraining ({self.pretrain_steps} steps), then WGAN-GP "
                    f"(lambda {GP_WEIGHT:g}, n_critic {N_CRITIC}, Adam betas (0, 0.9), "
                    f"lr x {GAN_LR_FACTOR:g}) + {L1_WEIGHT:g} L1",
            "critic": {"architecture": "PatchCritic", "arguments": {
                k: list(v) if isinstance(v, tuple) else v
                for k, v in model.critic.config.items()}} if hasattr(model, "critic") else {},
            "hdf_share": self.hdf_share,
            "n_simulated": int(self.config.extra.get("n_simulated", 48)),
            "training_data": f"HDF training part (RGB, {self.hdf_share:.0%} of the patches), "
                             "simulate_multiband g,r,i rendered with make_lupton_rgb"
                             + (", --data multi-band sets" if self.config.data else ""),
        }

