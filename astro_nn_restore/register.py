"""Register two exposures of the same field onto one pixel grid.

Two ways, chosen automatically:

* ``"wcs"`` (both images have a celestial WCS): the image is resampled onto
  the reference's grid with `reproject.reproject_interp` (bicubic), so
  rotation and scale differences are handled too.
* ``"sources"`` (otherwise): a translation is measured by cross-correlating
  *source-only* images and applied with a cubic-spline sub-pixel shift
  (`scipy.ndimage.shift`). A source-only image is the frame with its fixed
  pattern removed (sigma-clipped column and row offsets), isolated hot pixels
  and cosmic rays removed (3x3 median filter), smoothed (Gaussian, 1 px), and
  kept only inside sources detected at 3 sigma over at least 5 pixels
  (`photutils.segmentation.detect_sources`), minus that threshold. Whole-frame
  phase correlation of raw CCD frames locks onto the fixed-pattern noise,
  which does not move between exposures, and returns a zero shift; the
  source-only images carry the sky alone.

Shifts follow `scipy.ndimage.shift` and `skimage.registration`: ``(dy, dx)``
such that ``scipy.ndimage.shift(image, (dy, dx))`` lies on the reference.
"""

from dataclasses import dataclass

import numpy as np

from ._nddata import ParsedImage, parse_image

__all__ = ["Registration", "RegistrationError", "estimate_shift", "register_frames"]

#: Normalised cross-correlation of the source-only images below which two
#: frames are taken to show different fields.
MIN_SOURCE_CORRELATION = 0.3
#: Pixels at the footprint's edge dropped after a spline shift (edge effects).
_EDGE = 2


class RegistrationError(ValueError):
    """Two frames cannot be registered (no WCS and different shapes, no overlap...)."""


@dataclass
class Registration:
    """An image resampled onto a reference's pixel grid.

    Attributes
    ----------
    aligned : ndarray
        float32 image on the reference grid; NaN outside ``footprint``.
    footprint : ndarray of bool
        Reference pixels the image covers (with valid data).
    shift : tuple of float
        ``(dy, dx)`` in reference pixels at the reference's centre.
    method : str
        ``"wcs"`` or ``"sources"``.
    """

    aligned: np.ndarray
    footprint: np.ndarray
    shift: tuple
    method: str

    @property
    def overlap(self):
        """Fraction of the reference grid covered by the image."""
        return float(self.footprint.mean())


def estimate_shift(reference, image, *, method="auto"):
    """Measure the translation that aligns ``image`` with ``reference``.

    Parameters
    ----------
    reference, image : CCDData, NDData, HDU, path, (array, WCS or Header) or ndarray
        Two 2-D exposures of the same field.
    method : {'auto', 'wcs', 'sources'}
        ``'auto'`` uses the WCS when both images have a celestial one, else
        cross-correlation of source-only images (see the module docstring).

    Returns
    -------
    tuple of float
        ``(dy, dx)`` such that ``scipy.ndimage.shift(image, (dy, dx))`` lies on
        ``reference`` (for ``'wcs'``: the offset at the reference's centre).

    Raises
    ------
    RegistrationError
        Different shapes without WCS, no sources, or no common sources.

    Examples
    --------
    >>> import numpy as np
    >>> from scipy import ndimage
    >>> from astro_nn_restore import simulate_sky
    >>> from astro_nn_restore.register import estimate_shift
    >>> sky = simulate_sky((128, 128), seed=3, n_stars=40).clean.data
    >>> moved = ndimage.shift(sky, (2.3, -4.6), order=3, mode="nearest")
    >>> dy, dx = estimate_shift(sky, moved, method="sources")
    >>> round(dy, 1), round(dx, 1)
    (-2.3, 4.6)
    """
    ref, img = _parse_pair(reference, image)
    chosen = _choose_method(ref, img, method)
    if chosen == "wcs":
        return _wcs_shift(ref, img)
    return _source_shift(ref, img)


def register_frames(reference, image, *, method="auto", shift=None, min_overlap=0.1):
    """Resample ``image`` onto the pixel grid of ``reference``.

    Parameters
    ----------
    reference, image : CCDData, NDData, HDU, path, (array, WCS or Header) or ndarray
        Two 2-D exposures of the same field; neither is modified.
    method : {'auto', 'wcs', 'sources'}
        ``'wcs'``: `reproject.reproject_interp` (bicubic) onto the reference
        WCS. ``'sources'``: the translation from `estimate_shift`, applied by
        a cubic-spline shift. ``'auto'``: ``'wcs'`` when both have a celestial
        WCS.
    shift : (float, float), optional
        A known ``(dy, dx)`` to apply instead of measuring one (``'sources'``
        only; e.g. the negated shift of the opposite registration).
    min_overlap : float
        Smallest accepted fraction of the reference covered by the image.

    Returns
    -------
    Registration

    Raises
    ------
    RegistrationError
        The frames cannot be registered or overlap less than ``min_overlap``.

    Examples
    --------
    >>> from astro_nn_restore import simulate_sky
    >>> from astro_nn_restore.register import register_frames
    >>> sky = simulate_sky((96, 96), seed=1).noisy
    >>> crop = sky[5:, 3:]  # a CCDData slice keeps a matching WCS
    >>> result = register_frames(sky, crop)
    >>> result.method, [round(s, 3) for s in result.shift], result.aligned.shape
    ('wcs', [5.0, 3.0], (96, 96))
    >>> round(float(result.overlap), 2)
    0.92
    """
    ref, img = _parse_pair(reference, image)
    chosen = _choose_method(ref, img, method)
    if chosen == "wcs":
        aligned, footprint = _reproject(ref, img)
        shift = _wcs_shift(ref, img)
    else:
        shift = _source_shift(ref, img) if shift is None else shift
        aligned, footprint = _apply_shift(img, shift)
    result = Registration(aligned, footprint, tuple(float(s) for s in shift), chosen)
    if result.overlap < min_overlap:
        raise RegistrationError(
            f"the frames overlap on {100 * result.overlap:.1f} % of the reference "
            f"(minimum {100 * min_overlap:.0f} %): they do not show the same field")
    return result


# ---------------------------------------------------------------- helpers


def _parse_pair(reference, image):
    # already parsed frames (training reads each file once) are used as they are
    return tuple(x if isinstance(x, ParsedImage) else parse_image(x) for x in (reference, image))


def _has_celestial(parsed):
    return parsed.wcs is not None and parsed.wcs.has_celestial


def _choose_method(ref, img, method):
    if method not in ("auto", "wcs", "sources"):
        raise ValueError(f"method must be 'auto', 'wcs' or 'sources', got {method!r}")
    both_wcs = _has_celestial(ref) and _has_celestial(img)
    if method == "wcs" and not both_wcs:
        raise RegistrationError("method='wcs' needs a celestial WCS on both frames")
    chosen = "wcs" if method == "wcs" or (method == "auto" and both_wcs) else "sources"
    if chosen == "sources" and ref.data.shape != img.data.shape:
        raise RegistrationError(
            f"the frames have different shapes {ref.data.shape} and {img.data.shape} and no "
            "celestial WCS on both: without WCS only same-shape frames are registered (by a "
            "translation); add WCS or crop them to one shape")
    return chosen


def _wcs_shift(ref, img):
    """Offset (dy, dx) at the reference's centre implied by the two WCS."""
    cy, cx = (np.asarray(ref.data.shape, float) - 1) / 2
    world = ref.wcs.celestial.pixel_to_world_values(cx, cy)
    x, y = img.wcs.celestial.world_to_pixel_values(*world)
    return float(cy - y), float(cx - x)


def _reproject(ref, img):
    from reproject import reproject_interp

    data = img.data.copy()
    data[img.bad] = np.nan
    aligned, coverage = reproject_interp((data, img.wcs.celestial), ref.wcs.celestial,
                                         shape_out=ref.data.shape, order="bicubic")
    footprint = (coverage > 0) & np.isfinite(aligned)
    aligned = aligned.astype(np.float32)
    aligned[~footprint] = np.nan
    return aligned, footprint


def _apply_shift(img, shift):
    """Cubic-spline shift of ``img``; footprint without edges and shifted bad pixels."""
    from scipy import ndimage

    filled = img.data.copy()
    filled[img.bad] = np.median(img.data[~img.bad]) if (~img.bad).any() else 0.0
    aligned = ndimage.shift(filled, shift, order=3, mode="constant", cval=np.nan)
    inside = ndimage.shift(np.ones(img.data.shape, np.float32), shift, order=0, cval=0.0) > 0
    inside = ndimage.binary_erosion(inside, iterations=_EDGE, border_value=0)
    bad = ndimage.shift(img.bad.astype(np.float32), shift, order=1, cval=0.0) > 0
    footprint = inside & ~ndimage.binary_dilation(bad, iterations=_EDGE) & np.isfinite(aligned)
    aligned = aligned.astype(np.float32)
    aligned[~footprint] = np.nan
    return aligned, footprint


def _source_shift(ref, img):
    """Coarse shift from source-only images, refined by least squares on the sources."""
    from scipy import ndimage
    from skimage.registration import phase_cross_correlation

    clean_a, glitch_a, sources_a = _prepare(ref.data, ref.bad)
    clean_b, glitch_b, sources_b = _prepare(img.data, img.bad)
    shift = phase_cross_correlation(sources_a, sources_b, upsample_factor=10,
                                    normalization=None)[0]
    moved = ndimage.shift(sources_b, shift, order=1, cval=0.0)
    score = float(np.sum(sources_a * moved)
                  / np.sqrt(np.sum(sources_a**2) * np.sum(moved**2) + 1e-30))
    if score < MIN_SOURCE_CORRELATION:
        raise RegistrationError(
            f"the frames share too few sources to be registered (correlation of their "
            f"source-only images {score:.2f} < {MIN_SOURCE_CORRELATION}): different fields, "
            "no overlap, or too few stars")
    mask = ndimage.binary_dilation(sources_a > 0, iterations=3)
    mask &= ~glitch_a
    dy, dx = _refine_shift(clean_a, clean_b, shift, mask, glitch_b)
    return float(dy), float(dx)


def _refine_shift(a, b, shift, mask, holes, iterations=10):
    """Gauss-Newton fit of ``a ~ gain * shift(b) + offset`` on ``mask`` (Lucas-Kanade).

    Pixels that ``holes`` of ``b`` (glitches) reach after the shift are left out.
    """
    from scipy import ndimage

    shift = np.asarray(shift, dtype=np.float64)
    for _ in range(iterations):
        moved = ndimage.shift(b, shift, order=3, mode="constant", cval=np.nan)
        near_hole = ndimage.shift(holes.astype(np.float64), shift, order=1, cval=1.0) > 0
        gy, gx = np.gradient(moved)
        use = mask & ~near_hole & np.isfinite(gy + gx)
        if use.sum() < 10:
            break
        design = np.column_stack([-gy[use], -gx[use], moved[use], np.ones(use.sum())])
        coef = np.linalg.lstsq(design, a[use], rcond=None)[0]
        step = coef[:2] / coef[2]
        shift += np.clip(step, -0.5, 0.5)
        if np.all(np.abs(step) < 1e-3):
            break
    return shift


def _prepare(data, bad):
    """(smoothed deglitched image, glitch mask, source-only image) of one frame.

    Glitches are replaced by a local median and then smoothed (1 px Gaussian)
    for the least-squares refinement; the mask says where they were.
    """
    from scipy import ndimage

    image, bad = _without_pattern(data, bad)
    glitch = _glitches(image) | bad
    cleaned = np.where(glitch, ndimage.median_filter(image, size=5), image)
    return ndimage.gaussian_filter(cleaned, 1.0), glitch, _source_only(image, bad)


def _without_pattern(data, bad):
    """Data minus sigma-clipped column, then row offsets; bad pixels set to 0."""
    from astropy.stats import sigma_clipped_stats

    image = np.array(data, dtype=np.float64)
    bad = ~np.isfinite(image) if bad is None else bad | ~np.isfinite(image)
    image[bad] = np.nan
    for axis in (0, 1):  # column pattern, then row pattern
        _, offsets, _ = sigma_clipped_stats(image, axis=axis, sigma=3.0, maxiters=5)
        image -= np.expand_dims(np.nan_to_num(offsets), axis)
    image[bad] = 0.0
    return image, bad


def _glitches(image, nsigma=5.0):
    """Hot pixels and cosmic-ray hits (much sharper than a star), dilated by 1 px.

    A pixel is a glitch when it is ``nsigma`` above the sky and its 8
    neighbours average less than 30 % of it; a star sampled with a FWHM of
    2 px or more has neighbours at about half its peak.
    """
    from astropy.stats import mad_std
    from scipy import ndimage

    kernel = np.ones((3, 3)) / 8.0
    kernel[1, 1] = 0.0
    neighbours = ndimage.convolve(image, kernel, mode="nearest")
    glitch = (image > nsigma * mad_std(image)) & (neighbours < 0.3 * image)
    return ndimage.binary_dilation(glitch)


def _source_only(image, bad, *, threshold=3.0, n_pixels=5):
    """The sources of a pattern-free frame on a zero background.

    A 3x3 median filter removes isolated hot pixels and cosmic rays, a 1 px
    Gaussian smooths the noise, and only sources detected above ``threshold``
    sigma over ``n_pixels`` connected pixels are kept, minus the threshold (so
    the image is continuous at the source edges); the square root makes many
    faint stars weigh as much as a few bright ones.

    Raises
    ------
    RegistrationError
        If no source is detected.
    """
    from astropy.stats import mad_std
    from photutils.segmentation import detect_sources
    from scipy import ndimage

    smooth = ndimage.gaussian_filter(ndimage.median_filter(image, size=3), 1.0)
    level = threshold * mad_std(smooth[~bad])
    segments = detect_sources(smooth, level, n_pixels=n_pixels, mask=bad)
    if segments is None:
        raise RegistrationError("no source detected in a frame: cannot register it by sources")
    # square root: many faint stars count, not only the brightest (which may leave the frame)
    return np.sqrt(np.where(segments.data > 0, smooth - level, 0.0))
