"""Synthetic astronomical skies for training and tests.

`simulate_sky` draws a field of stars (power-law fluxes, Moffat PSF) and
Sérsic galaxies on a sky with a gradient, then adds Poisson and read noise
and, optionally, cosmic rays and hot pixels. It returns the clean and noisy
images as `~astropy.nddata.CCDData` with a TAN WCS, the source list, the
PSF and the artefact mask. `simulate_multiband` renders the same kind of
field in several bands with colours from simple spectral energy
distributions (`sed_colors`).

PSF kernels: `psf_moffat`, `psf_gaussian`, `psf_airy` and `random_psf`. All
are integrated over pixels (Gauss-Legendre quadrature in each pixel),
normalised to sum 1, odd-sized and peaked on the central pixel.

Conventions: pixel coordinates are 0-based with ``x`` the column and ``y``
the row (as in photutils); fluxes are totals in the image unit; a source's
flux is the sum of its rendered stamp.
"""

import functools
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import NamedTuple

import numpy as np
from astropy import constants as const
from astropy import units as u
from astropy.io import fits
from astropy.modeling.functional_models import AiryDisk2D, Gaussian2D, Moffat2D, Sersic2D
from astropy.nddata import CCDData, StdDevUncertainty
from astropy.table import Table
from astropy.wcs import WCS
from scipy.ndimage import map_coordinates
from scipy.signal import fftconvolve

from .degrade import add_cosmic_rays, add_hot_pixels, add_poisson_gaussian_noise

__all__ = [
    "BAND_WAVELENGTHS",
    "SimulatedMultiband",
    "SimulatedSky",
    "add_diffuse_emission",
    "diffuse_emission",
    "psf_airy",
    "psf_gaussian",
    "psf_moffat",
    "random_psf",
    "sed_colors",
    "simulate_multiband",
    "simulate_sky",
]

#: Effective wavelengths in nm of the SDSS-like bands known to `sed_colors`.
BAND_WAVELENGTHS = {"u": 355.1, "g": 468.6, "r": 616.5, "i": 748.1, "z": 893.1}

_FWHM_PER_SIGMA = 2.0 * np.sqrt(2.0 * np.log(2.0))
_AIRY_FWHM_PER_RADIUS = 0.8436  # FWHM / first-zero radius = 1.0290 / 1.2197
_SATURATION = 60000.0  # brightest star peak stays below this (image units)
_STARS_PER_PIXEL = 60 / 256**2
_GALAXIES_PER_PIXEL = 10 / 256**2
_EXPTIME = 60.0


# ----------------------------------------------------------------------- PSF


class _Profile(NamedTuple):
    """A 2-D surface-brightness function of offsets from its centre."""

    func: object  # callable (dx, dy) -> values, broadcasting
    fwhm_min: float  # smallest FWHM, sets the quadrature order
    radius: float  # default kernel half-size in pixels


def _elliptical(x, y, ellipticity, theta):
    """Coordinates in which an elliptical profile is circular.

    Rotates by ``theta`` (major axis, counter-clockwise from +x) and
    stretches the minor axis by ``1 / (1 - ellipticity)``.
    """
    if ellipticity == 0:
        return x, y  # keeps broadcastable shapes small
    c, s = np.cos(theta), np.sin(theta)
    return x * c + y * s, (y * c - x * s) / (1.0 - ellipticity)


def _moffat_profile(fwhm, beta, ellipticity=0.0, theta=0.0):
    width = fwhm / (2.0 * np.sqrt(2.0 ** (1.0 / beta) - 1.0))  # astropy's "gamma"

    def func(x, y):
        return Moffat2D.evaluate(*_elliptical(x, y, ellipticity, theta), 1.0, 0.0, 0.0,
                                 width, beta)

    # radius enclosing 99.5% of the flux, at most 5 FWHM (the wings of beta~2 are long)
    r995 = width * np.sqrt(0.005 ** (-1.0 / (beta - 1.0)) - 1.0)
    return _Profile(func, fwhm * (1.0 - ellipticity), min(r995, 5.0 * fwhm))


def _gaussian_profile(fwhm, ellipticity=0.0, theta=0.0):
    sigma = fwhm / _FWHM_PER_SIGMA

    def func(x, y):
        return Gaussian2D.evaluate(*_elliptical(x, y, ellipticity, theta), 1.0, 0.0, 0.0,
                                   sigma, sigma, 0.0)

    return _Profile(func, fwhm * (1.0 - ellipticity), 2.0 * fwhm)


def _airy_profile(radius):
    def func(x, y):
        return AiryDisk2D.evaluate(x, y, 1.0, 0.0, 0.0, radius)

    return _Profile(func, _AIRY_FWHM_PER_RADIUS * radius, 4.0 * radius)


def _quadrature_order(fwhm_min):
    """Gauss-Legendre nodes per pixel axis to integrate a profile this sharp to ~0.1%."""
    return int(np.clip(np.ceil(4.5 / fwhm_min), 2, 6))


@functools.cache
def _pixel_quadrature(order, subdivide):
    """Offsets from a pixel centre and weights (sum 1) of a composite Gauss-Legendre rule."""
    nodes, weights = np.polynomial.legendre.leggauss(order)
    cells = (np.arange(subdivide) + 0.5) / subdivide - 0.5
    offsets = (cells[:, None] + 0.5 * nodes / subdivide).ravel()
    return offsets, np.tile(weights / (2 * subdivide), subdivide)


def _integrate(func, size, dx=0.0, dy=0.0, order=1, subdivide=1):
    """Pixel-averaged values of ``func`` on ``size x size`` stamps.

    Gauss-Legendre quadrature with ``order`` nodes per axis in each of
    ``subdivide x subdivide`` cells per pixel (``order=1`` samples pixel
    centres). The profile centre sits at ``(dx, dy)`` from the central
    pixel's centre; ``dx`` and ``dy`` may be arrays, giving a stack of stamps.
    """
    offsets, weights = _pixel_quadrature(order, subdivide)
    points = (np.arange(size)[:, None] - size // 2 + offsets).ravel()
    dx = np.asarray(dx, dtype=float)[..., None, None]
    dy = np.asarray(dy, dtype=float)[..., None, None]
    values = func(points[None, :] - dx, points[:, None] - dy)
    if len(weights) == 1:
        return values
    values = values.reshape(values.shape[:-2] + (size, len(weights), size, len(weights)))
    return np.einsum("...anbm,n,m->...ab", values, weights, weights)


def _normalised(stamps):
    return stamps / stamps.sum(axis=(-2, -1), keepdims=True)


def _kernel_size(profile, size):
    if size is None:
        return 2 * max(int(np.ceil(profile.radius)), 1) + 1
    if int(size) != size or size < 1 or size % 2 == 0:
        raise ValueError(f"size must be a positive odd integer, got {size}")
    return int(size)


def _profile_stamps(profile, size=None, dx=0.0, dy=0.0):
    """Normalised, pixel-integrated stamp(s) of ``profile``."""
    size = _kernel_size(profile, size)
    return _normalised(_integrate(profile.func, size, dx, dy, _quadrature_order(profile.fwhm_min)))


def psf_moffat(fwhm, beta=3.0, *, ellipticity=0.0, theta=0.0, size=None):
    """Moffat PSF kernel, the usual model of a seeing-limited star.

    ``I(r) ∝ (1 + (r / w)**2) ** -beta`` with ``w`` set by ``fwhm``
    (`astropy.modeling.functional_models.Moffat2D`).

    Parameters
    ----------
    fwhm : float
        FWHM in pixels along the major axis.
    beta : float, optional
        Power index; smaller values give stronger wings.
    ellipticity : float, optional
        ``1 - minor / major`` axis ratio.
    theta : float, optional
        Angle of the major axis in radians, counter-clockwise from +x.
    size : int, optional
        Odd kernel side; by default large enough to hold 99.5% of the flux
        (at most 5 FWHM in radius).

    Returns
    -------
    kernel : `numpy.ndarray`
        Pixel-integrated, normalised (sum 1), odd-sized, peaked at the centre.

    Examples
    --------
    >>> from astro_nn_restore.simulate import psf_moffat
    >>> kernel = psf_moffat(2.5)
    >>> kernel.shape, round(float(kernel.sum()), 12)
    ((19, 19), 1.0)
    """
    return _profile_stamps(_moffat_profile(fwhm, beta, ellipticity, theta), size)


def psf_gaussian(fwhm, *, ellipticity=0.0, theta=0.0, size=None):
    """Gaussian PSF kernel (`astropy.modeling.functional_models.Gaussian2D`).

    Parameters
    ----------
    fwhm : float
        FWHM in pixels along the major axis.
    ellipticity : float, optional
        ``1 - minor / major`` axis ratio.
    theta : float, optional
        Angle of the major axis in radians, counter-clockwise from +x.
    size : int, optional
        Odd kernel side; default ``2 * ceil(2 * fwhm) + 1`` (4.7 sigma radius).

    Returns
    -------
    kernel : `numpy.ndarray`
        Pixel-integrated, normalised (sum 1), odd-sized, peaked at the centre.

    Examples
    --------
    >>> from astro_nn_restore.simulate import psf_gaussian
    >>> kernel = psf_gaussian(3.0, ellipticity=0.2, theta=0.5)
    >>> kernel.shape, round(float(kernel.sum()), 12), round(float(kernel[6, 6]), 4)
    ((13, 13), 1.0, 0.1148)
    """
    return _profile_stamps(_gaussian_profile(fwhm, ellipticity, theta), size)


def psf_airy(radius, *, size=None):
    """Airy pattern of a diffraction-limited circular pupil.

    Uses `astropy.modeling.functional_models.AiryDisk2D`; the FWHM is
    about ``0.844 * radius``.

    Parameters
    ----------
    radius : float
        Radius of the first dark ring in pixels.
    size : int, optional
        Odd kernel side; default ``2 * ceil(4 * radius) + 1`` (about three
        bright rings).

    Returns
    -------
    kernel : `numpy.ndarray`
        Pixel-integrated, normalised (sum 1), odd-sized, peaked at the centre.

    Examples
    --------
    >>> from astro_nn_restore.simulate import psf_airy
    >>> kernel = psf_airy(3.0)
    >>> kernel.shape, round(float(kernel.sum()), 12)
    ((25, 25), 1.0)
    """
    return _profile_stamps(_airy_profile(radius), size)


def diffuse_emission(rng, shape, amplitude):
    """Log-normal diffuse emission (nebulosity) with a power-law spectrum (index -3).

    Parameters
    ----------
    rng : `numpy.random.Generator`
        Source of random numbers.
    shape : (int, int)
        Image shape.
    amplitude : float
        Median level of the emission (image units).

    Returns
    -------
    emission : `numpy.ndarray`
        Positive everywhere.

    Examples
    --------
    >>> import numpy as np
    >>> from astro_nn_restore.simulate import diffuse_emission
    >>> field = diffuse_emission(np.random.default_rng(0), (64, 64), 10.0)
    >>> field.shape, bool((field > 0).all())
    ((64, 64), True)
    """
    ky = np.fft.fftfreq(shape[0])[:, None]
    kx = np.fft.rfftfreq(shape[1])[None, :]
    k = np.hypot(ky, kx)
    k[0, 0] = 1.0
    spectrum = k**-1.5 * (rng.standard_normal(k.shape) + 1j * rng.standard_normal(k.shape))
    spectrum[0, 0] = 0
    field = np.fft.irfft2(spectrum, shape)
    field = (field - field.mean()) / field.std()
    return amplitude * np.exp(rng.uniform(0.7, 1.5) * field)


def add_diffuse_emission(image, background, rng, *, share):
    """``image`` plus `diffuse_emission` with probability ``share``, else ``image``.

    The emission's median is 5-50 % of the 99th percentile of ``image -
    background`` (at least 1). One draw of ``rng`` decides; the level and the
    field take more draws only when it is added.

    Examples
    --------
    >>> import numpy as np
    >>> from astro_nn_restore.simulate import add_diffuse_emission
    >>> image = np.full((32, 32), 100.0)
    >>> out = add_diffuse_emission(image, 100.0, np.random.default_rng(0), share=1.0)
    >>> bool((out > image).all()), add_diffuse_emission(image, 100.0, np.random.default_rng(0),
    ...                                                 share=0.0) is image
    (True, True)
    """
    if rng.random() >= share:
        return image
    level = np.percentile(image - background, 99) * rng.uniform(0.05, 0.5)
    return image + diffuse_emission(rng, image.shape, max(level, 1.0))


def random_psf(rng, *, fwhm_range=(1.5, 5.0), size=None):
    """Draw a PSF kernel from a family of plausible shapes (for deblurring).

    With probabilities 0.45 / 0.35 / 0.2: a Moffat (beta 2-5) or a Gaussian,
    each with ellipticity 0-0.3 at a random angle, or an Airy pattern. The
    FWHM (major axis) is uniform in ``fwhm_range``.

    Parameters
    ----------
    rng : `numpy.random.Generator`
        Source of random numbers.
    fwhm_range : (float, float), optional
        Range of FWHM in pixels.
    size : int, optional
        Odd kernel side (e.g. to stack kernels); default depends on the shape.

    Returns
    -------
    kernel : `numpy.ndarray`
        Normalised (sum 1), odd-sized, peaked at the centre.

    Examples
    --------
    >>> import numpy as np
    >>> from astro_nn_restore.simulate import random_psf
    >>> kernel = random_psf(np.random.default_rng(0), size=21)
    >>> kernel.shape, round(float(kernel.sum()), 12), bool(kernel[10, 10] == kernel.max())
    ((21, 21), 1.0, True)
    """
    fwhm = rng.uniform(*fwhm_range)
    family = rng.choice(["moffat", "gaussian", "airy"], p=[0.45, 0.35, 0.2])
    if family == "airy":
        return psf_airy(fwhm / _AIRY_FWHM_PER_RADIUS, size=size)
    shape = {"ellipticity": rng.uniform(0.0, 0.3), "theta": rng.uniform(0.0, np.pi), "size": size}
    if family == "moffat":
        return psf_moffat(fwhm, rng.uniform(2.0, 5.0), **shape)
    return psf_gaussian(fwhm, **shape)


class _Psf(NamedTuple):
    """The PSF of a simulation: centred kernel, FWHM and sub-pixel stamps."""

    kernel: np.ndarray
    fwhm: float
    stamps: object  # callable (dx, dy) -> normalised stamps shaped like kernel


def _make_psf(psf, fwhm, beta):
    if psf is None:
        profile = _moffat_profile(fwhm, beta)
        kernel = _profile_stamps(profile)
        return _Psf(kernel, fwhm, lambda dx, dy: _profile_stamps(profile, len(kernel), dx, dy))
    kernel = np.asarray(psf, dtype=float)
    if kernel.ndim != 2 or kernel.shape[0] != kernel.shape[1] or kernel.shape[0] % 2 == 0:
        raise ValueError(f"psf must be a square 2-D kernel of odd size, got {kernel.shape}")
    kernel = kernel / kernel.sum()
    return _Psf(kernel, _kernel_fwhm(kernel), lambda dx, dy: _shifted_kernel(kernel, dx, dy))


def _shifted_kernel(kernel, dx, dy):
    """Stamps of a sampled kernel moved by sub-pixel offsets (cubic spline)."""
    grid = np.arange(kernel.shape[0], dtype=float)
    rows = grid[None, :, None] - np.asarray(dy, dtype=float)[:, None, None]
    cols = grid[None, None, :] - np.asarray(dx, dtype=float)[:, None, None]
    rows, cols = np.broadcast_arrays(rows, cols)
    stamps = map_coordinates(kernel, [rows, cols], order=3, mode="grid-constant")
    return _normalised(np.clip(stamps, 0.0, None))


def _kernel_fwhm(kernel):
    """FWHM of a roughly round kernel from the area above half maximum."""
    return float(2.0 * np.sqrt(np.count_nonzero(kernel >= kernel.max() / 2) / np.pi))


# ------------------------------------------------------------------- sources


def _power_law(rng, n, low, high, index=2.5):
    """Draw ``n`` values from dN/dF ∝ F**-index between ``low`` and ``high``."""
    a = 1.0 - index
    return (low**a + rng.uniform(size=n) * (high**a - low**a)) ** (1.0 / a)


def _flux_limits(kernel, sky, sky_gradient, gain, read_noise):
    """Faintest stars near the detection limit, brightest below saturation."""
    sigma_sky = np.sqrt(sky / gain + (read_noise / gain) ** 2)
    faint = 3.0 * sigma_sky * np.sqrt(1.0 / np.sum(kernel**2))  # S/N 3 with optimal weights
    bright = (_SATURATION - sky * (1.0 + sky_gradient)) / kernel.max()
    return faint, max(bright, 100.0 * faint)


def _default_count(count, rng, density, shape):
    return rng.poisson(density * shape[0] * shape[1]) if count is None else int(count)


def _draw_sources(rng, shape, n_stars, n_galaxies, faint, bright, fwhm):
    """Random star and galaxy parameters as a Table."""
    ny, nx = shape
    n = n_stars + n_galaxies
    is_galaxy = np.arange(n) >= n_stars
    flux = np.where(is_galaxy, _power_law(rng, n, 10.0 * faint, 0.5 * bright),
                    _power_law(rng, n, faint, bright))
    nan = np.full(n, np.nan)
    return Table({
        "x": rng.uniform(-0.5, nx - 0.5, n),
        "y": rng.uniform(-0.5, ny - 0.5, n),
        "flux": flux,
        "kind": np.where(is_galaxy, "galaxy", "star"),
        "fwhm": np.where(is_galaxy, nan, fwhm),
        "r_eff": np.where(is_galaxy, np.exp(rng.uniform(np.log(1.0), np.log(6.0), n)), nan),
        "sersic_n": np.where(is_galaxy, rng.uniform(0.5, 4.0, n), nan),
        "ellipticity": np.where(is_galaxy, rng.uniform(0.0, 0.7, n), 0.0),
        "theta": np.where(is_galaxy, rng.uniform(0.0, np.pi, n), 0.0),
    })


def _galaxy_stamp(r_eff, n, ellipticity, theta, dx, dy, kernel):
    """PSF-convolved, normalised Sérsic stamp, pixel-integrated in the cusp."""
    half = int(min(np.ceil(5.0 * r_eff) + 2, 40))

    def func(x, y):
        return Sersic2D.evaluate(x, y, 1.0, r_eff, n, 0.0, 0.0, ellipticity, theta)

    stamp = _integrate(func, 2 * half + 1, dx, dy, order=2)
    stamp[half - 1:half + 2, half - 1:half + 2] = _integrate(func, 3, dx, dy, 3, subdivide=5)
    y, x = np.ogrid[-half:half + 1, -half:half + 1]
    stamp *= np.clip((half - np.hypot(x, y)) / (0.2 * half), 0.0, 1.0)  # soft circular edge
    return np.clip(fftconvolve(_normalised(stamp), kernel), 0.0, None)  # drop FFT round-off


def _render(shape, sources, psf, fluxes):
    """Noiseless source images, one per row of ``fluxes`` (n_images, n_sources)."""
    fluxes = np.atleast_2d(np.asarray(fluxes, dtype=float))
    stars = np.asarray(sources["kind"] == "star")
    x, y = np.asarray(sources["x"]), np.asarray(sources["y"])
    ix, iy = np.round(x).astype(int), np.round(y).astype(int)
    dx, dy = x - ix, y - iy
    shapes = np.array([sources[name] for name in ("r_eff", "sersic_n", "ellipticity", "theta")]).T
    stamps = {i: _galaxy_stamp(*shapes[i], dx[i], dy[i], psf.kernel)
              for i in np.flatnonzero(~stars)}
    pad = max([len(psf.kernel) // 2] + [len(stamp) // 2 for stamp in stamps.values()])
    ny, nx = shape
    canvas = np.zeros((len(fluxes), ny + 2 * pad, nx + 2 * pad))
    for i, stamp in stamps.items():
        h = len(stamp) // 2
        canvas[:, iy[i] + pad - h:iy[i] + pad + h + 1, ix[i] + pad - h:ix[i] + pad + h + 1] += (
            fluxes[:, i, None, None] * stamp)
    if stars.any():
        canvas += _splat(canvas.shape[1:], psf.stamps(dx[stars], dy[stars]),
                         iy[stars] + pad, ix[stars] + pad, fluxes[:, stars])
    return canvas[:, pad:pad + ny, pad:pad + nx]


def _splat(shape, stamps, rows, cols, fluxes):
    """Sum of ``stamps`` centred at (rows, cols) scaled by ``fluxes`` per image."""
    h = stamps.shape[-1] // 2
    offsets = np.arange(-h, h + 1)
    index = ((rows[:, None, None] + offsets[None, :, None]) * shape[1]
             + cols[:, None, None] + offsets[None, None, :]).ravel()
    size = shape[0] * shape[1]
    return np.stack([np.bincount(index, (stamps * f[:, None, None]).ravel(), size)
                     for f in fluxes]).reshape((len(fluxes),) + shape)


def _background(rng, shape, sky, gradient):
    """Sky level with a linear gradient of relative size ``gradient`` across the frame."""
    ny, nx = shape
    angle = rng.uniform(0.0, 2.0 * np.pi)
    y, x = np.ogrid[:ny, :nx]
    ramp = np.cos(angle) * (x / max(nx - 1, 1) - 0.5) + np.sin(angle) * (y / max(ny - 1, 1) - 0.5)
    return sky * (1.0 + gradient * ramp)


# ----------------------------------------------------------- WCS and header


def _sky_wcs(rng, shape, pixel_scale):
    """A TAN WCS at a random position, north up to within 5 degrees."""
    wcs = WCS(naxis=2)
    wcs.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    wcs.wcs.cunit = ["deg", "deg"]
    wcs.wcs.radesys = "ICRS"
    wcs.wcs.crpix = [(shape[1] + 1) / 2, (shape[0] + 1) / 2]
    wcs.wcs.crval = [rng.uniform(0.0, 360.0), np.degrees(np.arcsin(rng.uniform(-0.95, 0.95)))]
    rho = np.radians(rng.uniform(-5.0, 5.0))
    scale = pixel_scale / 3600.0
    wcs.wcs.cd = scale * np.array([[-np.cos(rho), -np.sin(rho)], [-np.sin(rho), np.cos(rho)]])
    wcs.wcs.set()
    return wcs


def _header(rng, unit, gain, read_noise, seed):
    date = datetime(2015, 1, 1) + timedelta(days=float(rng.uniform(0.0, 3650.0)))
    header = fits.Header()
    header["TELESCOP"] = ("SIMULATED", "astro_nn_restore.simulate")
    header["BUNIT"] = (unit.to_string(), "physical unit of the data")
    header["GAIN"] = (gain, "electrons per data unit")
    header["RDNOISE"] = (read_noise, "read noise in electrons")
    header["EXPTIME"] = (_EXPTIME, "[s] exposure time")
    header["DATE-OBS"] = (date.isoformat(timespec="seconds"), "start of exposure (UTC)")
    if isinstance(seed, (int, np.integer)):
        header["SIMSEED"] = (int(seed), "seed of the simulation")
    return header


def _add_sky_coordinates(sources, wcs):
    ra, dec = wcs.pixel_to_world_values(sources["x"], sources["y"])
    sources["ra"], sources["dec"] = ra, dec
    sources["ra"].unit = sources["dec"].unit = u.deg


# ------------------------------------------------------------------ drivers


@dataclass
class SimulatedSky:
    """Result of `simulate_sky`.

    Attributes
    ----------
    clean : `~astropy.nddata.CCDData`
        Noiseless image: background plus PSF-convolved sources.
    noisy : `~astropy.nddata.CCDData`
        Poisson and read noise (plus artefacts if asked), with a
        `~astropy.nddata.StdDevUncertainty` computed from ``clean``.
    sources : `~astropy.table.Table`
        One row per source: ``x``, ``y`` (0-based pixels), ``flux`` (total,
        image unit), ``kind`` ('star' or 'galaxy'), ``fwhm`` (stars),
        ``r_eff``, ``sersic_n``, ``ellipticity``, ``theta`` (galaxies),
        ``ra``, ``dec``.
    psf : `numpy.ndarray`
        The normalised PSF kernel (odd size).
    artefact_mask : `numpy.ndarray` of bool
        True on cosmic-ray and hot pixels.
    background : `numpy.ndarray`
        The noiseless sky (included in ``clean``).
    """

    clean: CCDData
    noisy: CCDData
    sources: Table
    psf: np.ndarray
    artefact_mask: np.ndarray
    background: np.ndarray


def simulate_sky(shape=(256, 256), *, seed=None, n_stars=None, n_galaxies=None, fwhm=2.5,
                 moffat_beta=3.0, psf=None, sky=100.0, sky_gradient=0.1, gain=1.0,
                 read_noise=5.0, cosmic_rays=0, hot_pixels=0, unit="electron",
                 pixel_scale=0.4):
    """Simulate a CCD image of a field of stars and galaxies.

    Stars have a power-law flux distribution (dN/dF ∝ F^-2.5) from S/N ~ 3
    up to a peak just below saturation (60000 units) and are drawn with a
    pixel-integrated Moffat PSF at sub-pixel positions. Galaxies are Sérsic
    profiles (n 0.5-4, r_eff 1-6 pixels, ellipticity 0-0.7) convolved with
    the PSF. The sky has a linear gradient. Noise is Poisson in electrons
    plus Gaussian read noise; cosmic rays and hot pixels are optional.

    Parameters
    ----------
    shape : (int, int), optional
        Image shape (ny, nx).
    seed : int or `numpy.random.Generator`, optional
        Seed; the same seed gives the same image.
    n_stars, n_galaxies : int, optional
        Numbers of sources; by default Poisson draws with means 60 and 10
        per 256x256 pixels.
    fwhm : float, optional
        FWHM of the Moffat PSF in pixels.
    moffat_beta : float, optional
        Moffat power index.
    psf : array-like, optional
        A user kernel (square, odd size) replacing the Moffat PSF; it is
        normalised, and moved to sub-pixel star positions by cubic spline
        interpolation.
    sky : float, optional
        Mean sky level per pixel, image units.
    sky_gradient : float, optional
        Relative change of the sky across the frame.
    gain : float, optional
        Electrons per image unit.
    read_noise : float, optional
        Read noise in electrons.
    cosmic_rays, hot_pixels : int, optional
        Numbers of cosmic-ray hits and hot pixels added to ``noisy``.
    unit : str or `~astropy.units.Unit`, optional
        Unit of the images.
    pixel_scale : float, optional
        Arcsec per pixel of the WCS.

    Returns
    -------
    result : `SimulatedSky`

    Examples
    --------
    >>> from astro_nn_restore.simulate import simulate_sky
    >>> sim = simulate_sky((64, 96), seed=0, n_stars=5, n_galaxies=2)
    >>> sim.clean.shape, sim.clean.unit, len(sim.sources)
    ((64, 96), Unit("electron"), 7)
    >>> list(sim.clean.wcs.wcs.ctype), sim.clean.header["TELESCOP"]
    (['RA---TAN', 'DEC--TAN'], 'SIMULATED')
    >>> bool((sim.clean.data >= sim.background).all())
    True
    """
    shape = tuple(int(n) for n in shape)
    rng = np.random.default_rng(seed)
    unit = u.Unit(unit)
    model_psf = _make_psf(psf, fwhm, moffat_beta)
    faint, bright = _flux_limits(model_psf.kernel, sky, sky_gradient, gain, read_noise)
    sources = _draw_sources(rng, shape, _default_count(n_stars, rng, _STARS_PER_PIXEL, shape),
                            _default_count(n_galaxies, rng, _GALAXIES_PER_PIXEL, shape),
                            faint, bright, model_psf.fwhm)
    background = _background(rng, shape, sky, sky_gradient)
    wcs = _sky_wcs(rng, shape, pixel_scale)
    header = _header(rng, unit, gain, read_noise, seed)
    clean = background + _render(shape, sources, model_psf, sources["flux"])[0]
    noisy, sigma = add_poisson_gaussian_noise(clean, gain=gain, read_noise=read_noise, rng=rng)
    noisy, artefact_mask = _add_artefacts(noisy, rng, cosmic_rays, hot_pixels,
                                          np.sqrt(sky / gain + (read_noise / gain) ** 2))
    _add_sky_coordinates(sources, wcs)
    sources["flux"].unit = unit
    return SimulatedSky(
        clean=CCDData(clean, unit=unit, wcs=wcs, meta=header.copy()),
        noisy=CCDData(noisy, unit=unit, wcs=wcs.deepcopy(), meta=header.copy(),
                      uncertainty=StdDevUncertainty(sigma)),
        sources=sources, psf=model_psf.kernel, artefact_mask=artefact_mask,
        background=background)


def _add_artefacts(image, rng, cosmic_rays, hot_pixels, sigma_sky):
    """Cosmic rays (~100 sigma of the sky) and hot pixels (up to ~50 sigma)."""
    mask = np.zeros(image.shape, dtype=bool)
    if cosmic_rays:
        image, hit = add_cosmic_rays(image, rng, cosmic_rays, amplitude=100.0 * sigma_sky)
        mask |= hit
    if hot_pixels:
        image, hot = add_hot_pixels(image, rng, hot_pixels, amplitude=50.0 * sigma_sky)
        mask |= hot
    return image, mask


# ---------------------------------------------------------------- multiband


_SED_TEMPERATURES = {  # effective blackbody temperature ranges, K
    "star": (3000.0, 20000.0),  # drawn log-uniformly
    "elliptical": (4300.0, 5000.0),  # red: g-r ~ 0.8
    "starforming": (6000.0, 9000.0),  # blue: g-r ~ 0.0-0.35
}


def sed_colors(kind, rng, bands=("g", "r", "i")):
    """Relative fluxes of a source in several bands from a simple SED.

    Every SED is a blackbody in F_nu (what AB-calibrated images measure):
    stars have temperatures 3000-20000 K (log-uniform), red elliptical
    galaxies 4300-5000 K and blue star-forming galaxies 6000-9000 K, which
    give typical g-r colours. ``kind="galaxy"`` picks elliptical (40%) or
    star-forming (60%).

    Parameters
    ----------
    kind : {"star", "galaxy", "elliptical", "starforming"}
        Source type.
    rng : `numpy.random.Generator`
        Source of random numbers.
    bands : sequence of str, optional
        Band names, keys of `BAND_WAVELENGTHS`.

    Returns
    -------
    ratios : `numpy.ndarray`
        One positive factor per band, with mean 1.

    Examples
    --------
    >>> import numpy as np
    >>> from astro_nn_restore.simulate import sed_colors
    >>> ratios = sed_colors("elliptical", np.random.default_rng(0))
    >>> ratios.shape, round(float(ratios.mean()), 12), bool(ratios[0] < ratios[1] < ratios[2])
    ((3,), 1.0, True)
    """
    if kind == "galaxy":
        kind = "elliptical" if rng.uniform() < 0.4 else "starforming"
    if kind not in _SED_TEMPERATURES:
        raise ValueError(f"unknown kind {kind!r}; use one of {sorted(_SED_TEMPERATURES)}")
    low, high = np.log(_SED_TEMPERATURES[kind])
    temperature = np.exp(rng.uniform(low, high))
    nu = const.c.value / (np.array([BAND_WAVELENGTHS[b] for b in bands]) * 1e-9)
    f_nu = nu**3 / np.expm1(const.h.value * nu / (const.k_B.value * temperature))
    return f_nu / f_nu.mean()


@dataclass
class SimulatedMultiband:
    """Result of `simulate_multiband`.

    Attributes
    ----------
    images : dict of str to `~astropy.nddata.CCDData`
        Noiseless image per band (background included, same WCS).
    sources : `~astropy.table.Table`
        As in `SimulatedSky`, plus ``sed`` (template) and ``flux_<band>``.
    psf : `numpy.ndarray`
        The PSF kernel shared by all bands.
    background : `numpy.ndarray`
        The noiseless sky, the same in every band (included in ``images``).
    """

    images: dict
    sources: Table
    psf: np.ndarray
    background: np.ndarray


def simulate_multiband(shape=(256, 256), *, seed=None, bands=("g", "r", "i"), n_stars=None,
                       n_galaxies=None, fwhm=2.5, moffat_beta=3.0, psf=None, sky=100.0,
                       sky_gradient=0.1, unit="electron", pixel_scale=0.4):
    """Simulate noiseless images of one field in several bands.

    Sources are drawn as in `simulate_sky`; ``flux`` is the mean over bands
    and each band gets ``flux * sed_colors(...)``. Galaxies with Sérsic
    n >= 2.5 get elliptical (red) SEDs, the others star-forming (blue)
    ones. All bands share the PSF, the WCS and a grey sky. Render to colour
    with `astropy.visualization.make_lupton_rgb`.

    Parameters
    ----------
    shape : (int, int), optional
        Image shape (ny, nx).
    seed : int or `numpy.random.Generator`, optional
        Seed; the same seed gives the same images.
    bands : sequence of str, optional
        Band names, keys of `BAND_WAVELENGTHS`, e.g. ("g", "r", "i") for
        (blue, green, red).
    n_stars, n_galaxies, fwhm, moffat_beta, psf, sky, sky_gradient, unit, pixel_scale
        As in `simulate_sky` (gain 1, read noise 5 set the faint limit).

    Returns
    -------
    result : `SimulatedMultiband`

    Examples
    --------
    >>> from astro_nn_restore.simulate import simulate_multiband
    >>> sim = simulate_multiband((64, 64), seed=3)
    >>> list(sim.images), sim.images["g"].shape, sim.images["i"].header["FILTER"]
    (['g', 'r', 'i'], (64, 64), 'i')
    """
    shape = tuple(int(n) for n in shape)
    rng = np.random.default_rng(seed)
    unit = u.Unit(unit)
    model_psf = _make_psf(psf, fwhm, moffat_beta)
    faint, bright = _flux_limits(model_psf.kernel, sky, sky_gradient, 1.0, 5.0)
    sources = _draw_sources(rng, shape, _default_count(n_stars, rng, _STARS_PER_PIXEL, shape),
                            _default_count(n_galaxies, rng, _GALAXIES_PER_PIXEL, shape),
                            faint, bright, model_psf.fwhm)
    sources["sed"] = np.where(sources["kind"] == "star", "star",
                              np.where(sources["sersic_n"] >= 2.5, "elliptical", "starforming"))
    ratios = np.array([sed_colors(kind, rng, bands) for kind in sources["sed"]])
    ratios = ratios.reshape(-1, len(bands))
    fluxes = (sources["flux"][:, None] * ratios).T
    for band, flux in zip(bands, fluxes, strict=True):
        sources[f"flux_{band}"] = flux
    background = _background(rng, shape, sky, sky_gradient)
    images = background + _render(shape, sources, model_psf, fluxes)
    wcs = _sky_wcs(rng, shape, pixel_scale)
    header = _header(rng, unit, 1.0, 5.0, seed)
    _add_sky_coordinates(sources, wcs)
    result = {}
    for band, image in zip(bands, images, strict=True):
        meta = header.copy()
        meta["FILTER"] = (band, "band")
        result[band] = CCDData(image, unit=unit, wcs=wcs.deepcopy(), meta=meta)
    return SimulatedMultiband(images=result, sources=sources, psf=model_psf.kernel,
                              background=background)
