"""Paired degradations: turn a clean image into what an instrument would record.

Every function takes a clean 2-D array (and a `numpy.random.Generator` when it
draws random numbers) and returns new arrays; the input is never modified.
They are used to build (degraded, clean) training pairs and test cases:

* noise: `add_gaussian_noise`, `add_poisson_gaussian_noise`,
  `correlated_noise`, `noise_sigma_from_range`;
* optics and detector: `blur`, `block_bin`, `block_sum`, `coarse_detector`,
  `to_greyscale`;
* artefacts, each returning ``(image, mask)`` with ``mask`` True on every
  pixel that was changed: `add_cosmic_rays`, `add_hot_pixels`,
  `add_satellite_trail`, `add_bad_column`, `add_saturation_bleed`,
  `add_ghost`.

Artefact amplitudes default to a fraction of the image's dynamic range,
``percentile(99.9) - percentile(0.5)``, so they are visible on any image.
"""

import numpy as np
from astropy.nddata import block_reduce
from scipy.ndimage import gaussian_filter
from scipy.signal import oaconvolve

__all__ = [
    "REC601_WEIGHTS",
    "add_bad_column",
    "add_cosmic_rays",
    "add_gaussian_noise",
    "add_ghost",
    "add_hot_pixels",
    "add_poisson_gaussian_noise",
    "add_satellite_trail",
    "add_saturation_bleed",
    "block_bin",
    "block_sum",
    "blur",
    "coarse_detector",
    "correlated_noise",
    "noise_sigma_from_range",
    "to_greyscale",
]

#: Luma weights of ITU-R BT.601 for (R, G, B), used by `to_greyscale`.
REC601_WEIGHTS = np.array([0.299, 0.587, 0.114])

_FWHM_PER_SIGMA = 2.0 * np.sqrt(2.0 * np.log(2.0))
_REDUCERS = {"mean": np.mean, "sum": np.sum}


def _image(array):
    """Return ``array`` as a native-endian float 2-D array (no copy if possible)."""
    image = np.asarray(array, dtype=float)
    if image.ndim != 2:
        raise ValueError(f"expected a 2-D image, got shape {image.shape}")
    return image


def _dynamic_range(image):
    """Percentile 99.9 minus percentile 0.5 (1.0 for a flat image)."""
    low, high = np.nanpercentile(image, [0.5, 99.9])
    return float(high - low) if high > low else 1.0


# --------------------------------------------------------------------- noise


def noise_sigma_from_range(clean, fraction):
    """Noise level as a fraction of the 0.5-99.9 percentile range of an image.

    This is the benchmark convention "Gaussian noise at 5% of the range":
    ``sigma = fraction * (percentile(clean, 99.9) - percentile(clean, 0.5))``.
    NaN pixels are ignored.

    Parameters
    ----------
    clean : array-like
        The clean image.
    fraction : float
        Fraction of the range, e.g. ``0.05``.

    Returns
    -------
    sigma : float

    Examples
    --------
    >>> import numpy as np
    >>> from astro_nn_restore.degrade import noise_sigma_from_range
    >>> image = np.linspace(0.0, 1000.0, 100_001)
    >>> round(noise_sigma_from_range(image, 0.05), 3)
    49.7
    """
    low, high = np.nanpercentile(np.asarray(clean, dtype=float), [0.5, 99.9])
    return float(fraction * (high - low))


def add_gaussian_noise(clean, sigma, rng):
    """Add white Gaussian noise.

    Parameters
    ----------
    clean : array-like
        The clean image.
    sigma : float or array-like
        Standard deviation of the noise, a scalar or a map broadcastable to
        the image.
    rng : `numpy.random.Generator`
        Source of random numbers.

    Returns
    -------
    noisy : `numpy.ndarray`

    Examples
    --------
    >>> import numpy as np
    >>> from astro_nn_restore.degrade import add_gaussian_noise
    >>> noisy = add_gaussian_noise(np.zeros((200, 200)), 2.0, np.random.default_rng(0))
    >>> round(float(noisy.std()), 1)
    2.0
    """
    clean = np.asarray(clean, dtype=float)
    return clean + rng.normal(0.0, 1.0, clean.shape) * sigma


def add_poisson_gaussian_noise(clean, *, gain, read_noise, rng):
    """Add photon (Poisson) noise and Gaussian read noise, as a CCD would.

    ``noisy = Poisson(clean * gain) / gain + Normal(0, read_noise / gain)``.
    Negative values of ``clean`` are treated as zero for the Poisson part.

    Parameters
    ----------
    clean : array-like
        Expected counts in data units (e.g. adu), including the sky.
    gain : float
        Electrons per data unit (FITS ``GAIN``).
    read_noise : float
        Read noise in electrons (FITS ``RDNOISE``); it is ``read_noise / gain``
        in data units.
    rng : `numpy.random.Generator`
        Source of random numbers.

    Returns
    -------
    noisy : `numpy.ndarray`
        The noisy image, in data units.
    sigma : `numpy.ndarray`
        The expected standard deviation of each pixel,
        ``sqrt(clean / gain + (read_noise / gain)**2)``.

    Examples
    --------
    >>> import numpy as np
    >>> from astro_nn_restore.degrade import add_poisson_gaussian_noise
    >>> clean = np.full((300, 300), 400.0)
    >>> noisy, sigma = add_poisson_gaussian_noise(
    ...     clean, gain=1.0, read_noise=3.0, rng=np.random.default_rng(1))
    >>> float(sigma[0, 0])
    20.223748416156685
    >>> round(float(noisy.std() / sigma[0, 0]), 2)
    1.0
    """
    expected = np.clip(np.asarray(clean, dtype=float), 0.0, None)
    electrons = rng.poisson(expected * gain).astype(float)
    noisy = (electrons + rng.normal(0.0, read_noise, expected.shape)) / gain
    sigma = np.sqrt(expected / gain + (read_noise / gain) ** 2)
    return noisy, sigma


def correlated_noise(shape, sigma, rng, *, kernel_fwhm=1.5):
    """Spatially correlated Gaussian noise with a given standard deviation.

    White noise is smoothed by a Gaussian kernel of FWHM ``kernel_fwhm``
    pixels (periodic boundaries, so the noise is stationary) and rescaled
    by the kernel's exact noise gain so that its expected std is ``sigma``.
    Such noise mimics resampled (drizzled, reprojected) images.

    Parameters
    ----------
    shape : tuple of int
        Shape of the output.
    sigma : float
        Standard deviation of the output.
    rng : `numpy.random.Generator`
        Source of random numbers.
    kernel_fwhm : float, optional
        FWHM of the smoothing kernel in pixels; 0 gives white noise.

    Returns
    -------
    noise : `numpy.ndarray`

    Examples
    --------
    >>> import numpy as np
    >>> from astro_nn_restore.degrade import correlated_noise
    >>> noise = correlated_noise((256, 256), 3.0, np.random.default_rng(2))
    >>> noise.shape, round(float(noise.std()), 1)
    ((256, 256), 3.0)
    """
    white = rng.standard_normal(shape)
    if kernel_fwhm <= 0:
        return white * sigma
    width = kernel_fwhm / _FWHM_PER_SIGMA
    smooth = gaussian_filter(white, width, mode="wrap")
    radius = int(np.ceil(4.0 * width))  # gaussian_filter truncates at 4 sigma
    delta = np.zeros((2 * radius + 1,) * len(shape))
    delta[(radius,) * len(shape)] = 1.0
    kernel = gaussian_filter(delta, width, mode="constant")
    return smooth * (sigma / np.sqrt(np.sum(kernel**2)))


# --------------------------------------------------------- optics / detector


def blur(clean, psf):
    """Convolve an image with a PSF, keeping its shape.

    The image is reflect-padded by half the kernel size before an FFT
    convolution, so edges show no dark border. With a normalised ``psf``
    (sum 1) the total flux of any source away from the edges is conserved.

    Parameters
    ----------
    clean : array-like
        The 2-D image.
    psf : array-like
        The 2-D convolution kernel, normally of odd size and sum 1.

    Returns
    -------
    blurred : `numpy.ndarray`
        Same shape as ``clean``; float32 for a float32 image (half the
        work), float64 otherwise.

    Examples
    --------
    >>> import numpy as np
    >>> from astro_nn_restore.degrade import blur
    >>> from astro_nn_restore.simulate import psf_gaussian
    >>> image = np.zeros((64, 64))
    >>> image[32, 32] = 100.0
    >>> blurred = blur(image, psf_gaussian(3.0))
    >>> blurred.shape, round(float(blurred.sum()), 6), bool(blurred.max() < 100)
    ((64, 64), 100.0, True)
    """
    image = np.asarray(clean)
    if image.dtype != np.float32 or image.ndim != 2:
        image = _image(clean)
    kernel = np.asarray(psf, dtype=image.dtype)
    if kernel.ndim != 2:
        raise ValueError(f"psf must be 2-D, got shape {kernel.shape}")
    pad = [(k // 2, (k - 1) // 2) for k in kernel.shape]
    return oaconvolve(np.pad(image, pad, mode="reflect"), kernel, mode="valid")


def block_bin(image, factor, *, func=np.mean):
    """Bin an image by an integer factor in both axes.

    The image is cropped (at the end of each axis) to a multiple of
    ``factor`` first; uses `astropy.nddata.block_reduce`.

    Parameters
    ----------
    image : array-like
        The 2-D image.
    factor : int
        Block size.
    func : callable or {"mean", "sum"}, optional
        Reduction applied to each block: ``"mean"`` (default) keeps surface
        brightness, ``"sum"`` conserves total flux.

    Returns
    -------
    binned : `numpy.ndarray`
        Shape ``(ny // factor, nx // factor)``.

    Examples
    --------
    >>> import numpy as np
    >>> from astro_nn_restore.degrade import block_bin
    >>> block_bin(np.arange(16.0).reshape(4, 4), 2)
    array([[ 2.5,  4.5],
           [10.5, 12.5]])
    >>> block_bin(np.ones((5, 7)), 2, func="sum")
    array([[4., 4., 4.],
           [4., 4., 4.]])
    """
    factor = int(factor)
    if factor < 1:
        raise ValueError(f"factor must be a positive integer, got {factor}")
    reducer = _REDUCERS[func] if isinstance(func, str) else func
    return block_reduce(_image(image), factor, func=reducer)


def block_sum(image, factor):
    """Bin an image by summing ``factor x factor`` blocks (flux conserving).

    Same as ``block_bin(image, factor, func="sum")``.

    Examples
    --------
    >>> import numpy as np
    >>> from astro_nn_restore.degrade import block_sum
    >>> float(block_sum(np.ones((6, 6)), 3).sum())
    36.0
    """
    return block_bin(image, factor, func=np.sum)


def coarse_detector(clean, factor, *, psf=None, noise_sigma=0.0, rng=None, func=np.mean):
    """What a detector with ``factor`` times larger pixels would record.

    Optional PSF blur (`blur`), then integration over ``factor x factor``
    blocks (`block_bin`, mean by default so the values stay in the same
    surface-brightness scale), then optional white Gaussian noise.

    Parameters
    ----------
    clean : array-like
        The fine-pixel 2-D image.
    factor : int
        Binning factor.
    psf : array-like, optional
        Kernel applied on the fine grid before binning.
    noise_sigma : float, optional
        Std of the Gaussian noise added on the coarse grid.
    rng : `numpy.random.Generator`, optional
        Required when ``noise_sigma > 0``.
    func : callable or {"mean", "sum"}, optional
        Block reduction, as in `block_bin`.

    Returns
    -------
    coarse : `numpy.ndarray`
        Shape ``(ny // factor, nx // factor)``.

    Examples
    --------
    >>> import numpy as np
    >>> from astro_nn_restore.degrade import coarse_detector
    >>> coarse = coarse_detector(np.ones((64, 66)), 4, noise_sigma=0.1,
    ...                          rng=np.random.default_rng(0))
    >>> coarse.shape
    (16, 16)
    """
    image = _image(clean) if psf is None else blur(clean, psf)
    coarse = block_bin(image, factor, func=func)
    if noise_sigma > 0:
        if rng is None:
            raise ValueError("rng is required when noise_sigma > 0")
        coarse = add_gaussian_noise(coarse, noise_sigma, rng)
    return coarse


def to_greyscale(rgb):
    """Luminance of an RGB image with Rec.601 weights.

    ``grey = 0.299 R + 0.587 G + 0.114 B`` (ITU-R BT.601 luma, the weights
    of `REC601_WEIGHTS`); they sum to 1, so a grey pixel keeps its value.

    Parameters
    ----------
    rgb : array-like
        Float array of shape ``(ny, nx, 3)``.

    Returns
    -------
    grey : `numpy.ndarray`
        Shape ``(ny, nx)``.

    Examples
    --------
    >>> import numpy as np
    >>> from astro_nn_restore.degrade import to_greyscale
    >>> rgb = np.zeros((2, 2, 3))
    >>> rgb[..., 0] = 1.0
    >>> to_greyscale(rgb)
    array([[0.299, 0.299],
           [0.299, 0.299]])
    """
    rgb = np.asarray(rgb, dtype=float)
    if rgb.ndim != 3 or rgb.shape[-1] != 3:
        raise ValueError(f"expected an (ny, nx, 3) array, got shape {rgb.shape}")
    return rgb @ REC601_WEIGHTS


# ----------------------------------------------------------------- artefacts


def _add_at(image, rows, cols, values):
    """Copy of ``image`` with ``values`` added at (rows, cols), and the mask."""
    out = image.copy()
    np.add.at(out, (rows, cols), values)
    mask = np.zeros(image.shape, dtype=bool)
    mask[rows, cols] = True
    return out, mask


def _add_profile(image, profile):
    """Copy of ``image`` plus ``profile``; mask where the profile is non-zero."""
    mask = profile != 0
    return np.where(mask, image + profile, image), mask


def add_cosmic_rays(image, rng, n=10, *, amplitude=None):
    """Add cosmic-ray hits: short, sharp, unblurred tracks of a few pixels.

    Each hit starts at a random pixel and runs over ``1 + Exponential(2)``
    pixels in a random direction; its pixels get ``amplitude`` times a
    per-hit factor drawn uniformly in [0.5, 1.5].

    Parameters
    ----------
    image : array-like
        The 2-D image.
    rng : `numpy.random.Generator`
        Source of random numbers.
    n : int, optional
        Number of hits.
    amplitude : float, optional
        Typical value added per pixel; default the image's
        0.5-99.9 percentile range.

    Returns
    -------
    image : `numpy.ndarray`
        A new image with the hits added.
    mask : `numpy.ndarray` of bool
        True on the pixels that were hit.

    Examples
    --------
    >>> import numpy as np
    >>> from astro_nn_restore.degrade import add_cosmic_rays
    >>> image = np.zeros((64, 64))
    >>> hit, mask = add_cosmic_rays(image, np.random.default_rng(0), 5, amplitude=1000.0)
    >>> bool(mask.any()), bool((hit[~mask] == 0).all()), bool((hit[mask] >= 500).all())
    (True, True, True)
    """
    image = _image(image)
    amplitude = _dynamic_range(image) if amplitude is None else amplitude
    ny, nx = image.shape
    rows, cols, values = [], [], []
    for _ in range(int(n)):
        length = 1.0 + rng.exponential(2.0)
        angle = rng.uniform(0.0, np.pi)
        y0, x0 = rng.uniform(0, ny), rng.uniform(0, nx)
        t = np.linspace(0.0, length, int(np.ceil(2 * length)) + 1)
        track = np.unique(np.stack([y0 + t * np.sin(angle), x0 + t * np.cos(angle)]).astype(int),
                          axis=1)
        track = track[:, (track[0] < ny) & (track[1] < nx)]
        rows.append(track[0])
        cols.append(track[1])
        values.append(np.full(track.shape[1], amplitude * rng.uniform(0.5, 1.5)))
    if not rows:
        return image.copy(), np.zeros(image.shape, dtype=bool)
    return _add_at(image, np.concatenate(rows), np.concatenate(cols), np.concatenate(values))


def add_hot_pixels(image, rng, n=10, *, amplitude=None):
    """Add hot pixels: single pixels with an excess (dark current) signal.

    Parameters
    ----------
    image : array-like
        The 2-D image.
    rng : `numpy.random.Generator`
        Source of random numbers.
    n : int, optional
        Number of hot pixels (distinct positions).
    amplitude : float, optional
        Largest excess; each pixel gets ``amplitude`` times a factor drawn
        uniformly in [0.2, 1]. Default the image's 0.5-99.9 percentile range.

    Returns
    -------
    image : `numpy.ndarray`
    mask : `numpy.ndarray` of bool
        True on the hot pixels.

    Examples
    --------
    >>> import numpy as np
    >>> from astro_nn_restore.degrade import add_hot_pixels
    >>> hot, mask = add_hot_pixels(np.zeros((32, 32)), np.random.default_rng(0), 7, amplitude=50)
    >>> int(mask.sum()), bool((hot[~mask] == 0).all())
    (7, True)
    """
    image = _image(image)
    amplitude = _dynamic_range(image) if amplitude is None else amplitude
    flat = rng.choice(image.size, size=int(n), replace=False)
    rows, cols = np.unravel_index(flat, image.shape)
    return _add_at(image, rows, cols, amplitude * rng.uniform(0.2, 1.0, len(flat)))


def add_satellite_trail(image, rng, *, amplitude=None, width=2.0):
    """Add a satellite trail: a straight line across the frame.

    The line passes through a random point at a random angle; its cross
    section is Gaussian with FWHM ``width`` pixels, cut at 3 FWHM from the
    axis so that the mask covers every changed pixel.

    Parameters
    ----------
    image : array-like
        The 2-D image.
    rng : `numpy.random.Generator`
        Source of random numbers.
    amplitude : float, optional
        Peak value added on the trail's axis; default 0.2 times the image's
        0.5-99.9 percentile range.
    width : float, optional
        FWHM of the trail in pixels.

    Returns
    -------
    image : `numpy.ndarray`
    mask : `numpy.ndarray` of bool
        True within 3 FWHM of the trail's axis.

    Examples
    --------
    >>> import numpy as np
    >>> from astro_nn_restore.degrade import add_satellite_trail
    >>> trail, mask = add_satellite_trail(np.zeros((64, 64)), np.random.default_rng(3),
    ...                                   amplitude=10.0)
    >>> bool(mask.any()), bool((trail[~mask] == 0).all()), float(trail.max()) <= 10.0
    (True, True, True)
    """
    image = _image(image)
    amplitude = 0.2 * _dynamic_range(image) if amplitude is None else amplitude
    ny, nx = image.shape
    y0, x0 = rng.uniform(0, ny - 1), rng.uniform(0, nx - 1)
    angle = rng.uniform(0.0, np.pi)
    y, x = np.ogrid[:ny, :nx]
    distance = np.abs((x - x0) * np.sin(angle) - (y - y0) * np.cos(angle))
    sigma = width / _FWHM_PER_SIGMA
    profile = np.where(distance <= 3 * width, amplitude * np.exp(-0.5 * (distance / sigma) ** 2), 0)
    return _add_profile(image, profile)


def add_bad_column(image, rng, *, value=0.0):
    """Replace part of one column by a constant, like a CCD column defect.

    A random column is set to ``value`` from a random row in its lower half
    to the top of the image (a charge trap blocks the readout of everything
    above it).

    Parameters
    ----------
    image : array-like
        The 2-D image.
    rng : `numpy.random.Generator`
        Source of random numbers.
    value : float, optional
        Value of the bad pixels: 0 (default) for a dead column, a large
        value for a hot one.

    Returns
    -------
    image : `numpy.ndarray`
    mask : `numpy.ndarray` of bool
        True on the bad pixels.

    Examples
    --------
    >>> import numpy as np
    >>> from astro_nn_restore.degrade import add_bad_column
    >>> bad, mask = add_bad_column(np.ones((64, 64)), np.random.default_rng(0))
    >>> int(mask.any(axis=0).sum()), float(bad[mask].max()), float(bad[~mask].min())
    (1, 0.0, 1.0)
    """
    image = _image(image)
    ny, nx = image.shape
    mask = np.zeros(image.shape, dtype=bool)
    mask[rng.integers(0, max(ny // 2, 1)):, rng.integers(0, nx)] = True
    return np.where(mask, value, image), mask


def add_saturation_bleed(image, rng, *, level=None, length=None):
    """Add a saturation bleed trail through the brightest pixel.

    Charge from a saturated star spills along its column: the pixels of
    that column from ``down`` rows below to ``up`` rows above the brightest
    pixel are set to ``level``; ``down + up = length`` is split at random.

    Parameters
    ----------
    image : array-like
        The 2-D image.
    rng : `numpy.random.Generator`
        Source of random numbers.
    level : float, optional
        Saturation value; default the image maximum.
    length : int, optional
        Total length of the bleed in pixels; default drawn between 5 and a
        quarter of the image height.

    Returns
    -------
    image : `numpy.ndarray`
    mask : `numpy.ndarray` of bool
        True on the bleed trail.

    Examples
    --------
    >>> import numpy as np
    >>> from astro_nn_restore.degrade import add_saturation_bleed
    >>> image = np.zeros((64, 64))
    >>> image[30, 20] = 5.0
    >>> bled, mask = add_saturation_bleed(image, np.random.default_rng(0), length=10)
    >>> int(mask.sum()), np.unique(np.nonzero(mask)[1]).tolist(), float(bled[mask].min())
    (11, [20], 5.0)
    """
    image = _image(image)
    ny = image.shape[0]
    y0, x0 = np.unravel_index(np.nanargmax(image), image.shape)
    level = float(np.nanmax(image)) if level is None else level
    if length is None:
        length = rng.integers(5, max(ny // 4, 6))
    down = rng.integers(0, length + 1)
    mask = np.zeros(image.shape, dtype=bool)
    mask[max(y0 - down, 0):min(y0 + length - down, ny - 1) + 1, x0] = True
    return np.where(mask, level, image), mask


def add_ghost(image, rng, *, amplitude=None, radius=None):
    """Add an optical ghost: a faint, out-of-focus image of the pupil.

    The ghost is a uniform annulus (outer radius ``radius``, central
    obstruction of 0.4 ``radius``) with edges softened over one pixel,
    centred at a random position.

    Parameters
    ----------
    image : array-like
        The 2-D image.
    rng : `numpy.random.Generator`
        Source of random numbers.
    amplitude : float, optional
        Surface brightness added inside the annulus; default 0.05 times the
        image's 0.5-99.9 percentile range.
    radius : float, optional
        Outer radius in pixels; default drawn between 6 and a sixth of the
        smaller image side (at least 8).

    Returns
    -------
    image : `numpy.ndarray`
    mask : `numpy.ndarray` of bool
        True where the ghost adds light.

    Examples
    --------
    >>> import numpy as np
    >>> from astro_nn_restore.degrade import add_ghost
    >>> ghost, mask = add_ghost(np.zeros((64, 64)), np.random.default_rng(0),
    ...                         amplitude=2.0, radius=10.0)
    >>> bool((ghost[~mask] == 0).all()), float(ghost.max())
    (True, 2.0)
    """
    image = _image(image)
    amplitude = 0.05 * _dynamic_range(image) if amplitude is None else amplitude
    ny, nx = image.shape
    if radius is None:
        radius = rng.uniform(6.0, max(min(ny, nx) / 6.0, 8.0))
    y0, x0 = rng.uniform(0, ny - 1), rng.uniform(0, nx - 1)
    y, x = np.ogrid[:ny, :nx]
    r = np.hypot(x - x0, y - y0)
    ring = np.clip(radius + 0.5 - r, 0, 1) * np.clip(r - 0.4 * radius + 0.5, 0, 1)
    return _add_profile(image, amplitude * ring)
