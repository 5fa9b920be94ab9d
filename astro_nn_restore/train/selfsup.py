"""Self-supervised denoising on a user's own frames: Noise2Noise and Noise2Void.

``python -m astro_nn_restore.train denoise --self-supervised MODE --data DIR``
trains (or, with ``--init default``, fine-tunes) the residual U-Net of
`~astro_nn_restore.denoise_residual` without any clean image.

Noise2Noise (``noise2noise``)
    Pairs of exposures of the same field: every frame with the next two in
    DATE-OBS (then file-name) order. Each pair is registered
    (`~astro_nn_restore.register.register_frames`: WCS reprojection when both
    have a celestial WCS, else a source-based translation robust to fixed
    pattern noise) and used both ways: exposure A, as the network sees it at
    inference (not resampled), is the input and exposure B resampled onto A's
    grid is the target, and the other way round. Patches lie inside the
    common footprint. Loss: mean squared error between the output and the
    other exposure, which for zero-mean noise independent between exposures
    has the clean image as its minimiser (L2 is the loss for which Noise2Noise
    is unbiased). Both exposures are expressed in A's noise units, each minus
    its own background (sky changes between exposures are ignored).
Noise2Void (``noise2void``)
    Single frames, blind-spot masking in the N2V2 form: one pixel per 8x8 cell
    of every patch (1.6 %) is replaced by the median of its 5x5
    neighbourhood without the centre, and the loss is the squared error
    against the original value at those pixels only. The network outputs
    ``input - predicted noise``, so the replaced value would pass straight to
    the output; fresh Gaussian noise of the pixel's sigma is added to it, so
    that the network learns to ignore the centre pixel and stays blind to it
    at inference too. N2V2's other changes (blur-pool down-sampling, no
    top-level skip connection) are architecture changes; they are not made,
    so that the shipped model can be fine-tuned (its down-sampling is a
    learned strided convolution that can learn to low-pass).

Noise map (the network's second channel), per frame, as at inference: the
CCD equation when the gain and read noise are given (``--gain``,
``--read-noise``, ``--sky``) or in the header (GAIN, RDNOISE/READNOIS), see
`~astro_nn_restore.normalize.ccd_noise_map`; otherwise one noise level
estimated from the frame (a constant map). Pass the same
``uncertainty=ccd_noise_map(...)`` to `~astro_nn_restore.denoise_residual`
when the model was trained with the CCD equation; the card records which.

Validation: patches of the bottom ``patch_size`` rows of every frame (never
used for training); the validation loss is the training loss there, which
for both modes is the error against the clean image plus a constant. There
is no clean image to calibrate the residual noise on, so these models carry
no ``calibration`` and `~astro_nn_restore.denoise_residual` returns no
uncertainty with them.
"""

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .._nddata import noise_map
from .._warnings import warn
from ..datasets import fits_files, read_training_frame
from ..denoise import network_inputs
from ..register import RegistrationError, register_frames
from .denoise import initial_model
from .loop import TrainTask

__all__ = ["Noise2NoiseTask", "Noise2VoidTask", "SELF_SUPERVISED_TASKS", "find_pairs",
           "load_frames"]

#: Each frame is paired with this many following frames (in time order).
PAIR_NEIGHBOURS = 2
#: Noise2Void: one masked pixel per cell of this size; neighbourhood for the median.
MASK_CELL, MEDIAN_SIZE = 8, 5
VALIDATION_PATCHES = 16


@dataclass
class Frame:
    """One exposure: its file, parsed data, noise map (or None) and network inputs."""

    path: Path
    parsed: object
    sigma: np.ndarray | None
    norm: object
    inputs: np.ndarray

    @property
    def noise_policy(self):
        return "CCD equation" if self.sigma is not None else "estimated (constant)"


@dataclass
class Sample:
    """A full-frame training sample: inputs (2, H, W), target (H, W), weight (H, W)."""

    inputs: np.ndarray
    target: np.ndarray
    weight: np.ndarray
    train_corners: np.ndarray
    val_corners: np.ndarray


def _fits_paths(folder):
    """Every FITS file of ``folder``, unreadable ones included (`load_frames` skips them)."""
    if folder is None:
        raise ValueError("self-supervised training needs --data DIR, a folder of FITS frames")
    if not Path(folder).is_dir():
        raise FileNotFoundError(f"--data {folder}: no such folder")
    return [Path(p) for p in fits_files(folder, "*.fit*")]


def load_frames(folder, *, gain=None, read_noise=None, sky=None):
    """The 2-D frames of a FITS folder, in time order (DATE-OBS), with their network inputs.

    Files that cannot be read as a 2-D image are skipped with a warning each.
    """
    paths = _fits_paths(folder)
    if not paths:
        raise ValueError(f"--data {folder}: no FITS files (*.fit, *.fits, *.fits.gz) in it")
    frames = []
    for path in paths:
        parsed, problem = read_training_frame(path)
        if problem:
            warn(f"skipping {path}: {problem}", UserWarning)
            continue
        sigma = noise_map(parsed, None, gain=gain, read_noise=read_noise, sky=sky,
                          from_header=True)
        norm, inputs = network_inputs(parsed.data, parsed.bad, sigma)
        frames.append(Frame(path, parsed, sigma, norm, inputs))
    if not frames:
        raise ValueError(f"--data {folder}: none of its {len(paths)} FITS file(s) is a usable "
                         "2-D frame (see the warnings)")
    # an extension's header inherits the primary's DATE-OBS (`_files.image_header`)
    return sorted(frames, key=lambda f: (str(f.parsed.meta.get("DATE-OBS", "")), f.path.name))


def find_pairs(frames):
    """Registered pairs ``(i, j, Registration of j on i's grid)`` of overlapping frames.

    Each frame is tried with the next `PAIR_NEIGHBOURS` frames; pairs that
    cannot be registered are skipped with a warning.

    Raises
    ------
    ValueError
        Fewer than two frames, or no pair could be registered.
    """
    if len(frames) < 2:
        raise ValueError(
            f"Noise2Noise needs at least two exposures of the same field; found {len(frames)} "
            "FITS image(s). For single frames use --self-supervised noise2void")
    pairs, failures = [], []
    for i in range(len(frames)):
        for j in range(i + 1, min(i + 1 + PAIR_NEIGHBOURS, len(frames))):
            try:
                forward = register_frames(frames[i].parsed, frames[j].parsed)
            except RegistrationError as err:
                failures.append(f"{frames[i].path.name} + {frames[j].path.name}: {err}")
                continue
            known = None if forward.method == "wcs" else tuple(-s for s in forward.shift)
            backward = register_frames(frames[j].parsed, frames[i].parsed, shift=known)
            pairs += [(i, j, forward), (j, i, backward)]
    for failure in failures:
        warn(f"pair skipped: {failure}", UserWarning)
    if not pairs:
        raise ValueError("no pair of frames could be registered:\n  " + "\n  ".join(failures))
    return pairs


def _window_corners(valid, size, rows):
    """Top-left corners (y, x) of size x size windows inside ``valid`` within ``rows``."""
    integral = np.pad(np.cumsum(np.cumsum(valid, 0), 1), ((1, 0), (1, 0)))
    counts = (integral[size:, size:] - integral[:-size, size:] - integral[size:, :-size]
              + integral[:-size, :-size])
    ys, xs = np.nonzero(counts == size * size)
    keep = (ys >= rows.start) & (ys + size <= rows.stop)
    return np.column_stack([ys[keep], xs[keep]])


def _make_sample(inputs, target, weight, size):
    """A `Sample` with training windows above and validation windows in the bottom band."""
    height = inputs.shape[1]
    if height < 2 * size:
        raise ValueError(f"frames of {height} rows are too small for --patch-size {size} "
                         "(training and validation need 2 patch heights)")
    valid = weight > 0
    return Sample(inputs, target, weight,
                  _window_corners(valid, size, range(0, height - size)),
                  _window_corners(valid, size, range(height - size, height)))


def _augment(arrays, rng):
    """The same random rotation by 90 degrees and flip for every array (..., H, W)."""
    k, flip = int(rng.integers(4)), rng.random() < 0.5
    out = []
    for a in arrays:
        a = np.rot90(a, k, axes=(-2, -1))
        out.append(np.ascontiguousarray(a[..., ::-1] if flip else a))
    return out


class _SelfSupervisedTask(TrainTask):
    """Shared parts: frames, patches, weighted MSE loss, card."""

    task = "denoise"
    mode = None

    def __init__(self, config):
        super().__init__(config)
        extra = config.extra
        self.frames = load_frames(config.data, gain=extra.get("gain"),
                                  read_noise=extra.get("read_noise"), sky=extra.get("sky"))
        self.samples = self._build_samples()
        if not any(len(s.train_corners) for s in self.samples):
            raise ValueError(f"no {config.patch_size}x{config.patch_size} training patch fits "
                             "inside the frames' common footprint; use a smaller --patch-size")
        self._validation = None

    def data_description(self):
        return f"the frames in {self.config.data} alone ({self.mode}, self-supervised)"

    def _build_samples(self):
        raise NotImplementedError

    def build_model(self):
        return initial_model(self.config)

    def _patch(self, sample, corner):
        y, x = corner
        window = (slice(y, y + self.config.patch_size), slice(x, x + self.config.patch_size))
        return (sample.inputs[(slice(None), *window)], sample.target[window],
                sample.weight[window])

    def _draw(self, rng, corners_of):
        """A random patch (inputs, target, weight) from the windows ``corners_of(sample)``."""
        usable = [s for s in self.samples if len(corners_of(s))]
        sample = usable[rng.integers(len(usable))]
        corners = corners_of(sample)
        return _augment(self._patch(sample, corners[rng.integers(len(corners))]), rng)

    def _to_batch(self, items):
        inputs, targets = zip(*items, strict=True)
        return torch.from_numpy(np.stack(inputs)), torch.from_numpy(np.stack(targets))

    def _example(self, inputs, target, weight, rng):
        """(network inputs (2, h, w), target (2, h, w) = [value, weight]) of one patch."""
        raise NotImplementedError

    def batch(self, step, rng):
        items = []
        for _ in range(self.config.batch_size):
            patch = self._draw(rng, lambda s: s.train_corners)
            items.append(self._example(*patch, rng))
        return self._to_batch(items)

    def validation_batches(self):
        if self._validation is None:
            rng = np.random.default_rng([self.config.seed, 424243])
            has_val = any(len(s.val_corners) for s in self.samples)
            corners_of = (lambda s: s.val_corners) if has_val else (lambda s: s.train_corners)
            items = [self._example(*self._draw(rng, corners_of), rng)
                     for _ in range(VALIDATION_PATCHES)]
            half = VALIDATION_PATCHES // 2
            self._validation = [self._to_batch(items[:half]), self._to_batch(items[half:])]
        return self._validation

    def loss(self, prediction, target, step):
        value, weight = target[:, :1], target[:, 1:2]
        return (weight * (prediction - value) ** 2).sum() / weight.sum().clamp_min(1.0)

    def card(self, model):
        init = self.config.extra.get("init")
        return {
            "inputs": ["(data - background) / scale", "sigma / scale"],
            "normalization": "whole image: sigma-clipped median background; scale = median "
                             "uncertainty, or sigma-clipped std when no uncertainty is given",
            "loss": self.loss_text,
            "self_supervised": {
                "mode": self.mode,
                "data": str(self.config.data),
                "frames": [f.path.name for f in self.frames],
                "noise_map": {f.path.name: f.noise_policy for f in self.frames},
                "init": None if init is None else {"model": str(init),
                                                   "sha256": self.init_sha256()},
                "uncertainty": "not calibrated (no clean reference): denoise_residual returns "
                               "no uncertainty with this model",
                **self.details(),
            },
        }

    def init_sha256(self):
        from ..registry import load_model

        return load_model(self.config.extra["init"], task="denoise")[1]["sha256"]

    def details(self):
        return {}


class Noise2NoiseTask(_SelfSupervisedTask):
    """Noise2Noise on registered pairs of exposures (see the module docstring)."""

    mode = "noise2noise"
    loss_text = "MSE between the output and the other exposure (Noise2Noise, in noise units)"

    def _build_samples(self):
        self.pairs = find_pairs(self.frames)
        samples = []
        for i, j, registration in self.pairs:
            a, b = self.frames[i], self.frames[j]
            target = (registration.aligned - b.norm.background) / a.norm.scale
            weight = (registration.footprint & ~a.parsed.bad).astype(np.float32)
            target = np.where(weight > 0, target, 0.0).astype(np.float32)
            samples.append(_make_sample(a.inputs, target, weight, self.config.patch_size))
        return samples

    def _example(self, inputs, target, weight, rng):
        return inputs, np.stack([target, weight])

    def details(self):
        return {"pairs": [{"input": self.frames[i].path.name, "target": self.frames[j].path.name,
                           "method": r.method, "shift_dy_dx": [round(s, 3) for s in r.shift],
                           "overlap": round(r.overlap, 3)} for i, j, r in self.pairs]}


class Noise2VoidTask(_SelfSupervisedTask):
    """Noise2Void (N2V2 median replacement) on single frames (see the module docstring)."""

    mode = "noise2void"
    loss_text = ("MSE at blind-spot pixels (Noise2Void; N2V2 median replacement plus fresh "
                 "noise of the pixel's sigma)")

    def _build_samples(self):
        samples = []
        for frame in self.frames:
            weight = (~frame.parsed.bad).astype(np.float32)
            samples.append(_make_sample(frame.inputs, frame.inputs[0], weight,
                                        self.config.patch_size))
        return samples

    def _example(self, inputs, target, weight, rng):
        masked, blind = blind_spot_mask(inputs, rng)
        return masked, np.stack([target, weight * blind])

    def details(self):
        return {"masking": f"one pixel per {MASK_CELL}x{MASK_CELL} cell; replaced by the "
                           f"median of its {MEDIAN_SIZE}x{MEDIAN_SIZE} neighbourhood without "
                           "the centre + N(0, sigma)"}


def blind_spot_mask(inputs, rng, *, cell=MASK_CELL, size=MEDIAN_SIZE):
    """Mask one random pixel per ``cell`` x ``cell`` cell of a (2, h, w) patch.

    The image value of a masked pixel becomes the median of its ``size`` x
    ``size`` neighbourhood without the centre (N2V2) plus Gaussian noise of
    the pixel's sigma (channel 1). Returns the masked inputs and a (h, w)
    float32 map with 1 at the masked pixels.
    """
    image, sigma = inputs
    h, w = image.shape
    cells = (len(range(0, h, cell)), len(range(0, w, cell)))
    ys = np.arange(0, h, cell)[:, None] + rng.integers(cell, size=cells)
    xs = np.arange(0, w, cell)[None, :] + rng.integers(cell, size=cells)
    inside = (ys < h) & (xs < w)
    ys, xs = ys[inside], xs[inside]
    r = size // 2
    padded = np.pad(image, r, mode="reflect")
    offsets = [(dy, dx) for dy in range(size) for dx in range(size) if (dy, dx) != (r, r)]
    neighbours = np.stack([padded[ys + dy, xs + dx] for dy, dx in offsets])
    masked = inputs.copy()
    noise = sigma[ys, xs] * rng.standard_normal(len(ys))
    masked[0, ys, xs] = np.median(neighbours, axis=0) + noise
    blind = np.zeros((h, w), np.float32)
    blind[ys, xs] = 1.0
    return masked, blind


#: ``--self-supervised`` mode -> task class
SELF_SUPERVISED_TASKS = {"noise2noise": Noise2NoiseTask, "noise2void": Noise2VoidTask}
