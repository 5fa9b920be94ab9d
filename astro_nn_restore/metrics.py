"""Image-quality and photometry metrics used by validation, tests and benchmarks.

PSNR and SSIM come from scikit-image; aperture photometry and source
detection from photutils.
"""

import numpy as np

__all__ = ["psnr", "ssim", "aperture_flux_ratio", "count_detections", "data_range"]


def data_range(reference):
    """Peak-to-peak range of the finite reference values (PSNR/SSIM scale)."""
    finite = np.asarray(reference)[np.isfinite(reference)]
    return float(finite.max() - finite.min()) or 1.0


def psnr(reference, image, *, data_range_value=None):
    """Peak signal-to-noise ratio in dB (scale: the reference's range).

    Examples
    --------
    >>> import numpy as np
    >>> ref = np.linspace(0, 1, 100).reshape(10, 10)
    >>> round(psnr(ref, ref + 0.01), 1)
    40.0
    """
    from skimage.metrics import peak_signal_noise_ratio

    rng = data_range(reference) if data_range_value is None else data_range_value
    return float(peak_signal_noise_ratio(np.asarray(reference, np.float64),
                                         np.asarray(image, np.float64), data_range=rng))


def ssim(reference, image, *, data_range_value=None):
    """Structural similarity (scikit-image, 7x7 window)."""
    from skimage.metrics import structural_similarity

    rng = data_range(reference) if data_range_value is None else data_range_value
    return float(structural_similarity(np.asarray(reference, np.float64),
                                       np.asarray(image, np.float64), data_range=rng))


def aperture_flux_ratio(reference, image, positions, *, radius=4.0, annulus=(8.0, 12.0)):
    """Background-subtracted aperture flux of ``image`` over ``reference``.

    Parameters
    ----------
    positions : (N, 2) array of (x, y)
    radius : float
        Aperture radius in pixels.
    annulus : (float, float)
        Inner and outer radii of the local-background annulus.

    Returns
    -------
    ndarray
        One ratio per position.
    """
    return _aperture_flux(image, positions, radius, annulus) / _aperture_flux(
        reference, positions, radius, annulus)


def _aperture_flux(image, positions, radius, annulus):
    from photutils.aperture import ApertureStats, CircularAnnulus, CircularAperture

    aperture = CircularAperture(positions, r=radius)
    background = ApertureStats(image, CircularAnnulus(positions, *annulus)).median
    return ApertureStats(image, aperture).sum - background * aperture.area


def count_detections(image, *, nsigma=5.0, fwhm=2.5, sigma=None):
    """Number of point sources above ``nsigma`` times the noise (DAOStarFinder).

    The noise is the sigma-clipped standard deviation of ``image`` unless
    ``sigma`` is given; give the same ``sigma`` when comparing two images so
    that a smoother output cannot lower its own threshold.
    """
    from astropy.stats import sigma_clipped_stats
    from photutils.detection import DAOStarFinder

    _, median, std = sigma_clipped_stats(image, sigma=3.0)
    finder = DAOStarFinder(threshold=nsigma * (std if sigma is None else sigma), fwhm=fwhm)
    sources = finder(np.asarray(image, np.float64) - median)
    return 0 if sources is None else len(sources)
