"""Whole-image, exactly invertible normalisation for the networks.

Networks see ``(image - background) / noise``: the sky is near 0 and the
noise near 1 whatever the instrument, unit or exposure. Both numbers come
from the *whole* image (sigma-clipped statistics that ignore stars and bad
pixels) or from the given uncertainty, never from one tile, so tiles share
one scale and no seams or intensity steps appear.

Large images are measured on an evenly strided grid of about a million
pixels (`grid_sample`). The grid is taken by slicing, so a memory-mapped or
dask-backed image gives exactly the same numbers as the same image in memory
without ever being read whole.

`ccd_noise_map` gives the per-pixel noise of a CCD frame from its gain and
read noise, for the networks' noise channel (``uncertainty=``).
"""

from dataclasses import dataclass

import numpy as np
from astropy.stats import sigma_clipped_stats

__all__ = ["Normalization", "ccd_noise_map", "estimate_normalization", "grid_step",
           "grid_sample"]

#: About this many pixels are sampled for the statistics of large images.
_MAX_SAMPLES = 1_000_000


@dataclass(frozen=True)
class Normalization:
    """An affine map ``x -> (x - background) / scale`` and its inverse.

    Computed in float64 so the round trip through float32 data stays exact to
    float32 precision.

    Examples
    --------
    >>> import numpy as np
    >>> norm = Normalization(background=100.0, scale=5.0)
    >>> norm.forward(np.array([100.0, 110.0]))
    array([0., 2.])
    >>> norm.inverse(norm.forward(np.array([123.0])))
    array([123.])
    """

    background: float
    scale: float

    def __post_init__(self):
        if not (np.isfinite(self.background) and np.isfinite(self.scale) and self.scale > 0):
            raise ValueError(
                f"normalisation needs a finite background and a positive scale, "
                f"got background={self.background}, scale={self.scale}"
            )

    def forward(self, data):
        """Normalise: background to 0, noise to 1 (same dtype as ``data``)."""
        out = (np.asarray(data, dtype=np.float64) - self.background) / self.scale
        return out.astype(np.result_type(data, np.float32), copy=False)

    def inverse(self, data):
        """Undo `forward`: back to the input's unit."""
        out = np.asarray(data, dtype=np.float64) * self.scale + self.background
        return out.astype(np.result_type(data, np.float32), copy=False)

    def forward_sigma(self, sigma):
        """Express a noise map in normalised units."""
        return (np.asarray(sigma, dtype=np.float64) / self.scale).astype(np.float32)

    def inverse_sigma(self, sigma):
        """Express a normalised noise map in the input's unit."""
        return (np.asarray(sigma, dtype=np.float64) * self.scale).astype(np.float32)


def estimate_normalization(data, *, bad=None, uncertainty=None, sigma=3.0):
    """Estimate background and noise of a whole image.

    Parameters
    ----------
    data : ndarray, memory map or dask array
        2-D image; NaN/inf are ignored. Images of more than about two million
        pixels are measured on an evenly strided grid (`grid_step`).
    bad : ndarray of bool, optional
        Extra pixels to ignore (for example masked ones).
    uncertainty : ndarray, optional
        Per-pixel standard deviation. When given, its median over good pixels
        is the scale; otherwise the noise of the image is: the MAD-based
        standard deviation of its sigma-clipped pixels.
    sigma : float
        Clipping threshold for `~astropy.stats.sigma_clipped_stats`.

    Returns
    -------
    Normalization

    Raises
    ------
    ValueError
        If no pixel is usable.

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> image = 100 + 5 * rng.standard_normal((200, 200))
    >>> image[50, 50] = 1e5  # a star does not move the estimate
    >>> norm = estimate_normalization(image)
    >>> round(norm.background), round(norm.scale, 1)
    (100, 4.9)
    """
    step = grid_step(np.shape(data))
    sample = grid_sample(data, step)
    good = np.isfinite(sample)
    if bad is not None:
        good &= ~grid_sample(bad, step)
    values = sample[good].astype(np.float64)
    if values.size == 0:
        raise ValueError("cannot normalise: the image has no finite, unmasked pixel")
    # mad_std of the clipped values: unbiased for Gaussian noise, unlike the clipped std
    _, median, std = sigma_clipped_stats(values, sigma=sigma, maxiters=10, stdfunc="mad_std")
    if uncertainty is not None:
        scale = _scale_from_uncertainty(grid_sample(uncertainty, step), good)
    else:
        scale = std
    if not np.isfinite(scale) or scale <= 0:
        scale = _fallback_scale(values)
    return Normalization(float(median), float(scale))


def grid_step(shape, max_samples=_MAX_SAMPLES):
    """Stride of the sampling grid: 1 up to about 2 million pixels, then growing.

    Examples
    --------
    >>> grid_step((1024, 1024)), grid_step((4096, 4096)), grid_step((8192, 8192))
    (1, 4, 8)
    """
    size = int(np.prod(shape[:2]))
    return max(1, round(np.sqrt(size / max_samples)))


def grid_sample(array, step):
    """``array[::step, ::step]`` as a numpy array (computed if ``array`` is dask).

    Examples
    --------
    >>> grid_sample(np.arange(16).reshape(4, 4), 2)
    array([[ 0,  2],
           [ 8, 10]])
    """
    sample = array[::step, ::step]
    return np.asarray(sample.compute() if hasattr(sample, "compute") else sample)


def ccd_noise_map(data, *, gain=None, read_noise=None, sky=None, unit=None):
    """Per-pixel noise of a CCD frame from the CCD equation, in the data unit.

    ``sigma**2 = (signal + sky) / gain + (read_noise / gain)**2``, where
    ``signal + sky`` is the level above the bias: the data themselves for a
    bias-subtracted frame, or ``data - background + sky`` when ``sky`` (the
    sky level above the bias, in the data unit) is given, for raw frames that
    still carry a bias level (the background is the frame's sigma-clipped
    median). A warning is issued if the sky noise this predicts differs from
    the noise measured in the image by more than a factor of 2.

    Parameters
    ----------
    data : CCDData, NDData, HDU, path, (array, WCS or Header) or ndarray
        A 2-D frame in data units (adu).
    gain : float, optional
        Electrons per data unit; default: the header's ``GAIN`` (or ``EGAIN``,
        ``CCDGAIN``).
    read_noise : float, optional
        Read noise in electrons; default: the header's ``RDNOISE`` (or
        ``READNOIS``, ``RON``, ``ENOISE``).
    sky : float, optional
        Sky level above the bias (see above).
    unit : unit-like, optional
        Unit for inputs that carry none.

    Returns
    -------
    ndarray
        float32 sigma per pixel, to pass as ``uncertainty=`` to
        `~astro_nn_restore.denoise_residual`.

    Raises
    ------
    ValueError
        If the gain or the read noise is neither given nor in the header.

    Examples
    --------
    >>> import numpy as np
    >>> frame = np.full((64, 64), 400.0) + np.random.default_rng(0).normal(0, 20.2, (64, 64))
    >>> sigma = ccd_noise_map(frame, gain=1.0, read_noise=3.0)
    >>> round(float(np.median(sigma)), 1)
    20.2
    """
    from ._nddata import ccd_parameters, ccd_sigma, parse_image

    parsed = parse_image(data, unit=unit)
    gain, read_noise = ccd_parameters(parsed.meta, gain=gain, read_noise=read_noise)
    if gain is None or read_noise is None:
        raise ValueError("the CCD equation needs the gain and the read noise: give gain= and "
                         "read_noise=, or a header with GAIN and RDNOISE (or READNOIS)")
    return ccd_sigma(parsed.data, gain=gain, read_noise=read_noise, sky=sky, bad=parsed.bad)


def _sample(values):
    """A deterministic, evenly strided sample of at most ``_MAX_SAMPLES`` values."""
    step = max(1, values.size // _MAX_SAMPLES)
    return values[::step].astype(np.float64)


def _scale_from_uncertainty(uncertainty, good):
    sigma = np.asarray(uncertainty, dtype=np.float64)[good]
    sigma = sigma[np.isfinite(sigma) & (sigma > 0)]
    return float(np.median(sigma)) if sigma.size else np.nan


def _fallback_scale(values):
    """Scale for images with no measurable noise (constant or synthetic)."""
    spread = float(np.ptp(values))
    if spread > 0:
        return spread
    return max(abs(float(values[0])), 1.0)
