"""WCS helpers for resampled images and for the headers written with them.

Pixel convention: 0-based pixel coordinates (as in `astropy.wcs.WCS.pixel_to_world`)
with pixel centres on integers, so pixel ``x`` covers ``[x - 0.5, x + 0.5]``.
Upsampling by ``f`` maps the old pixel ``x`` onto the new pixel
``f * (x + 0.5) - 0.5`` (see `pixel_correspondence`), which in FITS 1-based
terms is ``CRPIX' = f * (CRPIX - 0.5) + 0.5``.
"""

import copy
import re
import warnings

import numpy as np
from astropy.io import fits
from astropy.wcs import WCS, Sip

__all__ = ["rescale_wcs", "strip_wcs_keywords", "add_band_axis", "band_cube_wcs",
           "pixel_correspondence"]


def _check_factor(factor):
    """Return ``factor`` as a float, or raise ValueError if not a finite scalar > 0."""
    if isinstance(factor, bool) or np.ndim(factor) != 0:
        raise ValueError(f"factor must be one positive scalar, got {factor!r}")
    try:
        f = float(factor)
    except (TypeError, ValueError):
        raise ValueError(f"factor must be one positive scalar, got {factor!r}") from None
    if not np.isfinite(f) or f <= 0:
        raise ValueError(f"factor must be finite and > 0, got {factor!r}")
    return f


def pixel_correspondence(x, factor):
    """Map 0-based pixel coordinates of an image to those of its resampled copy.

    Parameters
    ----------
    x : float or array-like
        0-based pixel coordinate(s) along one axis of the original image.
    factor : float
        Resampling factor ``f`` (> 1 upsamples, < 1 bins).

    Returns
    -------
    float or `~numpy.ndarray`
        ``f * (x + 0.5) - 0.5``: the same point in the resampled image.

    Raises
    ------
    ValueError
        If ``factor`` is not a finite scalar > 0.

    Examples
    --------
    >>> from astro_nn_restore.wcs_utils import pixel_correspondence
    >>> pixel_correspondence([-0.5, 0.0, 1.0], 2)
    array([-0.5,  0.5,  2.5])
    >>> float(pixel_correspondence(1.5, 0.5))  # binning 2x2: pixels 1 and 2 -> 0.5
    0.5
    """
    return _check_factor(factor) * (np.asarray(x, dtype=float) + 0.5) - 0.5


def _reject_lookup_tables(wcs):
    """Raise NotImplementedError if ``wcs`` has Paper IV lookup-table distortions."""
    names = ("cpdis1", "cpdis2", "det2im1", "det2im2")
    present = [name for name in names if getattr(wcs, name, None) is not None]
    if present:
        raise NotImplementedError(
            f"rescale_wcs cannot rescale lookup-table distortions ({', '.join(present)}: "
            "CPDIS/D2IMDIS); resample the distortion tables or drop them "
            "(e.g. keep only the SIP/TPV part) before rescaling."
        )


def _rescale_sip(sip, factor, crpix):
    """Return a new `~astropy.wcs.Sip` with ``X_pq * factor**(1 - p - q)``."""

    def scale(coeffs):
        if coeffs is None:
            return None
        p, q = np.indices(coeffs.shape)
        return coeffs * factor ** (1.0 - p - q)

    return Sip(scale(sip.a), scale(sip.b), scale(sip.ap), scale(sip.bp), crpix)


_DISTORTION_KEY_RE = re.compile(r"^(PV\d+_\d+[A-Z]?|D[PQ]\d+[A-Z]?(\..*)?)$")


def _has_polynomial_distortion(wcsprm):
    """True if wcslib holds a TPV-like distortion (its PV keys are not in get_pv())."""
    written = fits.Header.fromstring(wcsprm.to_header())
    projection = {f"PV{i}_{m}{wcsprm.alt.strip()}" for i, m, _ in wcsprm.get_pv()}
    return any(_DISTORTION_KEY_RE.match(key) and key not in projection for key in written)


def _rescale_shape(shape, factor):
    """Scale a pixel shape; binning drops incomplete edge pixels."""
    return tuple(int(np.floor(n * factor + 1e-9)) for n in shape)


def rescale_wcs(wcs, factor):
    """Return the WCS of an image resampled by ``factor`` along every pixel axis.

    ``CRPIX' = f * (CRPIX - 0.5) + 0.5``; ``CD' = CD / f`` if a CD matrix is
    present, else ``CDELT' = CDELT / f`` (PC untouched); SIP coefficients
    become ``A'_pq = A_pq * f**(1 - p - q)`` (same for B, AP and BP).
    TPV/PV terms act on intermediate world coordinates and are kept as they
    are (wcslib applies a TPV polynomial between PC and CDELT, so for such a
    WCS written with PC + CDELT, PC is divided by ``f`` instead of CDELT).
    A known ``pixel_shape`` is scaled too (rounded down when binning).
    The invariant is: the new WCS at ``pixel_correspondence(x, f)`` gives the
    same world coordinates as the old WCS at ``x``.

    Parameters
    ----------
    wcs : `~astropy.wcs.WCS`
        WCS of the original image (celestial or not). Not modified. For a
        cube, rescale the 2-D image WCS first, then use `add_band_axis`.
    factor : float
        Resampling factor ``f > 0``: 2 upsamples 2x, 0.5 bins 2x2.

    Returns
    -------
    `~astropy.wcs.WCS`
        A new, ``set()`` WCS.

    Raises
    ------
    ValueError
        If ``factor`` is not a finite scalar > 0.
    NotImplementedError
        If ``wcs`` has lookup-table distortions (``cpdis1/2``, ``det2im1/2``).

    Examples
    --------
    >>> from astropy.wcs import WCS
    >>> from astro_nn_restore.wcs_utils import rescale_wcs
    >>> wcs = WCS(naxis=2)
    >>> wcs.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    >>> wcs.wcs.crpix = [50.5, 50.5]
    >>> wcs.wcs.cdelt = [-1e-4, 1e-4]
    >>> wcs.wcs.crval = [150.0, 2.0]
    >>> new = rescale_wcs(wcs, 2)
    >>> new.wcs.crpix.tolist(), new.wcs.cdelt.tolist()
    ([100.5, 100.5], [-5e-05, 5e-05])
    """
    f = _check_factor(factor)
    _reject_lookup_tables(wcs)
    new = copy.deepcopy(wcs)
    new.wcs.crpix = f * (new.wcs.crpix - 0.5) + 0.5
    if new.wcs.has_cd():
        new.wcs.cd = new.wcs.cd / f
    elif _has_polynomial_distortion(new.wcs):
        # wcslib applies TPV between PC and CDELT: scale the part before it
        new.wcs.pc = new.wcs.get_pc() / f
    else:
        new.wcs.cdelt = new.wcs.cdelt / f
    if new.sip is not None:
        new.sip = _rescale_sip(new.sip, f, new.wcs.crpix[:2])
    if new.pixel_shape is not None:
        new.pixel_shape = _rescale_shape(new.pixel_shape, f)
    new.pixel_bounds = None
    new.wcs.set()
    return new


# DSS plate solution: tied to the original pixel grid. wcslib also turns these
# keys into a TPD distortion and can crash on them (astropy issue 7828), so
# they are removed before a WCS is ever built from the header.
_DSS_RE = re.compile(
    r"^(PLTRA[HMS]|PLTDEC(SN|[DMS])|PLTSCALE|PPO\d+|[XY]PIXELSZ|AMD[XY]\d+|CNPIX\d+)$"
)

# Keywords of the FITS WCS standard (papers I-IV), SIP, TPV and IRAF.
# ``[A-Z]?`` allows alternate-WCS letters (CRPIX1A ...).
_WCS_KEY_PATTERNS = [
    r"WCSAXES[A-Z]?",
    r"WCSNAME[A-Z]?",
    r"(CRPIX|CRVAL|CDELT|CTYPE|CUNIT|CRDER|CSYER|CNAME|CROTA)\d+[A-Z]?",
    r"(CD|PC|PV|PS)\d+_\d+[A-Z]?",
    r"(CD|PC)\d{6}",  # old AIPS-style PC001002
    r"(LONPOLE|LATPOLE|RADESYS|EQUINOX)[A-Z]?",
    r"RADECSYS",
    r"(A|B|AP|BP)_(ORDER|DMAX|\d+_\d+)",  # SIP
    r"(CPDIS|CQDIS|D2IMDIS|CPERR|CQERR|D2IMERR)\d+",  # paper IV lookup tables
    r"(DP|DQ|D2IM)\d+(\..*)?",
    r"D2IMEXT|AXISCORR",
    r"WAT\d+_\d+|LTV\d+|LTM\d+_\d+|WCSDIM",  # IRAF (TNX/ZPX, physical coordinates)
]
_WCS_KEY_RE = re.compile("^(?:" + "|".join(_WCS_KEY_PATTERNS) + ")$")
_ALT_RE = re.compile(r"^(?:CTYPE|CRPIX|CRVAL)\d+([A-Z]?)$")

# Keys that WCS.to_header() may write but that describe the observation
# (time and observatory location), not the pixel->world mapping: kept.
_KEEP_RE = re.compile(
    r"^(DATE.*|MJD.*|[BJ]?EPOCH|TIME.*|TSTART|TSTOP|TELAPSE|TREF.*|XPOSURE|"
    r"PLEPHEM|OBSGEO-[XYZBLH]|OBSORBIT|SPECSYS|SSYSOBS|VELOSYS|RESTFRQ|RESTWAV|ZSOURCE)$"
)


def _keys_written_by_wcs(header):
    """Keys that ``to_header(relax=True)`` writes for each WCS (primary, alternates)."""
    letters = {m.group(1) for m in map(_ALT_RE.match, header) if m}
    keys = set()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for letter in sorted(letters):
            try:
                wcs = WCS(header, key=letter or " ", fix=False)
                keys.update(wcs.to_header(relax=True, key=letter or None))
            except Exception:  # an unparsable WCS: the regexes do the work
                pass
    return {key for key in keys if not _KEEP_RE.match(key)}


def strip_wcs_keywords(header):
    """Return a copy of ``header`` without any WCS keyword.

    Removes the core FITS WCS keys (``WCSAXES``, ``CRPIXi``, ``CRVALi``,
    ``CDELTi``, ``CTYPEi``, ``CUNITi``, ``CROTAi``, ``CDi_j``, ``PCi_j``,
    ``PVi_m``, ``PSi_m``, ``LONPOLE``, ``LATPOLE``, ``RADESYS``,
    ``EQUINOX``, ...) including alternate WCS letters (``CRPIX1A``), SIP keys
    (``A_ORDER``, ``A_p_q``, ``AP_p_q``, ``A_DMAX``, ...), lookup-table
    distortion keys, IRAF ``WATi_n``/``LTVi``/``LTMi_j``, and every other key
    that ``WCS(header).to_header(relax=True)`` would write. The DSS plate
    solution (``PLTRAH`` ... ``PLTDECS``, ``PPO1-6``, ``XPIXELSZ``,
    ``YPIXELSZ``, ``AMDXn``, ``AMDYn``, ``CNPIX1/2``, ``PLTSCALE``) is removed
    too: it is tied to the original pixel grid and would contradict a
    rescaled WCS in software that prefers it.

    Time and observation keys (``DATE-OBS``, ``MJD-OBS``, ``MJDREF``,
    ``EPOCH``, ``OBSGEO-*``, ...) and everything else (``HISTORY``,
    ``COMMENT``, ``OBJECT``, ``BUNIT``, ...) are kept.

    Parameters
    ----------
    header : `~astropy.io.fits.Header`
        Input header; not modified.

    Returns
    -------
    `~astropy.io.fits.Header`
        A stripped copy.

    Examples
    --------
    >>> from astropy.io import fits
    >>> from astro_nn_restore.wcs_utils import strip_wcs_keywords
    >>> header = fits.Header({"OBJECT": "M31", "CRPIX1": 10.0, "CD1_1": 1e-4,
    ...                       "CRVAL1A": 3.0, "A_2_0": 1e-6, "PLTRAH": 0})
    >>> list(strip_wcs_keywords(header))
    ['OBJECT']
    """
    out = header.copy()
    for key in {key for key in out if _DSS_RE.match(key)}:
        del out[key]  # deletes every card with this keyword
    doomed = {key for key in out if _WCS_KEY_RE.match(key)}
    doomed |= _keys_written_by_wcs(out)
    for key in doomed:
        if key in out:
            del out[key]  # deletes every card with this keyword
    return out


#: Grid points per axis on which `band_cube_wcs` fits and checks a linear WCS.
_FIT_GRID, _CHECK_GRID = 25, 60


def band_cube_wcs(wcs, shape, bands=("R", "G", "B")):
    """The WCS of a ``(nband, ny, nx)`` cube made from a 2-D image, readable back from FITS.

    `add_band_axis` of ``wcs``, when that cube WCS works (a deep copy, its
    ``.celestial``) and its FITS header reads back with the same sky positions.
    astropy 8 cannot do that for a distorted WCS (SIP, TPV, a DSS plate
    solution read as TPD): such a file loses its WCS on reading, or cannot be
    read at all. Then the cube gets the best distortion-free fit to ``wcs``
    (same projection, CD matrix) on a grid over the image
    (`astropy.wcs.utils.fit_wcs_from_points`), the largest sky offset between
    the two on a finer grid is reported, and an `AstropyUserWarning` says so.
    Where no fit is possible, or the fit is more than a pixel off somewhere,
    the cube gets no sky axes, only the band axis (so the file still reads
    back as a colour cube), with the warning. For measurements keep the 2-D
    image's own WCS.

    Parameters
    ----------
    wcs : `~astropy.wcs.WCS` or None
        2-D celestial WCS of one band. Not modified.
    shape : tuple of int
        ``(ny, nx)`` of the image.
    bands : sequence of str
        As for `add_band_axis`.

    Returns
    -------
    cube : `~astropy.wcs.WCS` or None
        3-axis WCS with ``pixel_shape`` ``(nx, ny, nband)`` (without sky axes
        when no linear fit is good to a pixel); None if ``wcs`` is None.
    note : str or None
        A HISTORY line when the distortion was replaced by a linear fit, or
        the WCS dropped.

    Examples
    --------
    >>> from astropy.wcs import WCS
    >>> wcs = WCS(naxis=2)
    >>> wcs.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    >>> cube, note = band_cube_wcs(wcs, (64, 48))
    >>> cube.pixel_shape, note
    ((48, 64, 3), None)
    """
    if wcs is None:
        return None, None
    cube = _shaped(add_band_axis(wcs, bands), shape, len(bands))
    if not wcs.has_celestial or _cube_round_trips(cube, wcs, shape):
        return cube, None
    from ._warnings import error_text, warn

    try:
        linear, error, pixel = _linear_fit(wcs, shape)
    except Exception as err:  # noqa: BLE001 - no fit (no frame, no finite point...): no WCS
        linear, reason = None, f"no linear fit could be made ({error_text(err, 160)})"
    else:
        reason = (f"its best linear fit is {error:.3g} arcsec off somewhere, more than a "
                  f"pixel ({pixel:.3g} arcsec)")
    if linear is None or error > pixel:
        note = (f"WCS: no sky WCS written (only the band axis): astropy cannot read the "
                f"input's distorted WCS in a 3-axis cube, and {reason}")
        warn(f"colour cube {note}; keep the 2-D image's WCS")
        return _shaped(add_band_axis(WCS(naxis=2), bands), shape, len(bands)), note
    note = (f"WCS: the input's distorted WCS is written as its best linear fit (largest "
            f"sky offset {error:.3g} arcsec over the image): astropy cannot read a distorted "
            "3-axis WCS")
    warn(f"colour cube {note}; keep the 2-D image's WCS for measurements")
    return _shaped(add_band_axis(linear, bands), shape, len(bands)), note


def _shaped(cube, shape, n_bands):
    cube.pixel_shape = (int(shape[1]), int(shape[0]), int(n_bands))
    return cube


def _grid(shape, n):
    y, x = np.mgrid[0:shape[0] - 1:n * 1j, 0:shape[1] - 1:n * 1j]
    return x.ravel(), y.ravel()


def _cube_round_trips(cube, wcs, shape):
    """Whether ``cube`` works (3-axis transform, deep copy, ``.celestial``) and its FITS
    header reads back with the same sky positions as ``wcs``."""
    x, y = _grid(shape, 5)
    expected = np.column_stack(wcs.all_pix2world(x, y, 0))
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # wcslib's notes on the headers it fixes
            in_memory = np.column_stack(cube.all_pix2world(x, y, 0 * x, 0)[:2])
            copied = np.column_stack(copy.deepcopy(cube).celestial.all_pix2world(x, y, 0))
            back = WCS(cube.to_header(relax=True))
            read = np.column_stack(back.celestial.all_pix2world(x, y, 0))
    except Exception:  # noqa: BLE001 - any failure means the cube WCS does not work
        return False
    return all(np.allclose(found, expected, rtol=0, atol=1e-9, equal_nan=True)
               for found in (in_memory, copied, read))


def _linear_fit(wcs, shape):
    """(WCS of the input's projection without distortion fitted to ``wcs`` over the image,
    largest sky offset and mean pixel size, both in arcsec)."""
    from astropy.wcs.utils import fit_wcs_from_points, proj_plane_pixel_scales

    x, y = _grid(shape, _FIT_GRID)
    points = wcs.pixel_to_world(x, y)  # SkyCoord in the WCS's frame, whatever its axis order
    finite = np.isfinite(points.spherical.lon.deg) & np.isfinite(points.spherical.lat.deg)
    linear = fit_wcs_from_points((x[finite], y[finite]), points[finite],
                                 projection=_undistorted(wcs))
    x, y = _grid(shape, _CHECK_GRID)
    offsets = wcs.pixel_to_world(x, y).separation(linear.pixel_to_world(x, y)).arcsec
    pixel = float(np.mean(proj_plane_pixel_scales(wcs.celestial)) * 3600)
    return linear, float(np.nanmax(offsets)), pixel


def _undistorted(wcs):
    """A new 2-D WCS with the core keywords of ``wcs`` only: same projection, no distortion.

    Built from scratch rather than copied, so that no distortion held inside
    wcslib (TPV, a DSS plate's TPD) comes along; the starting point of the fit.
    """
    core = WCS(naxis=2)
    core.wcs.ctype = [c.replace("-SIP", "") for c in wcs.wcs.ctype]  # TPV reads as TAN
    core.wcs.crpix, core.wcs.crval = wcs.wcs.crpix, wcs.wcs.crval
    # as PC with CDELT 1: fit_wcs_from_points sets CDELT, which a CD matrix would ignore
    core.wcs.pc = wcs.wcs.cd if wcs.wcs.has_cd() else wcs.wcs.get_pc() * wcs.wcs.cdelt[:, None]
    core.wcs.cdelt = [1.0, 1.0]
    core.wcs.cunit = wcs.wcs.cunit
    core.wcs.lonpole, core.wcs.latpole = wcs.wcs.lonpole, wcs.wcs.latpole
    if wcs.wcs.radesys:
        core.wcs.radesys, core.wcs.equinox = wcs.wcs.radesys, wcs.wcs.equinox
    core.wcs.set()
    return core


def add_band_axis(wcs, bands=("R", "G", "B")):
    """Add a third, band axis to a 2-D WCS, for a ``(nband, ny, nx)`` array.

    Pixel axes 1 and 2 stay the input's axes; axis 3 is a linear index axis
    (``CTYPE3 = 'BAND'``, ``CNAME3 = 'band'``, ``CRPIX3 = 1``,
    ``CRVAL3 = 0``, ``CDELT3 = 1``), so band ``k`` (0-based plane
    ``k`` of the array) has world value ``k``. The band names are not stored
    in the WCS; put them in the header (e.g. ``BAND1 = 'R'``) if needed.

    Distortions are kept, with astropy (8.0) limitations (`band_cube_wcs`
    gives a cube WCS that always reads back from FITS):

    * SIP (``wcs.sip``) is evaluated by astropy only in 2-D: the 3-axis
      ``pixel_to_world`` raises, ``.celestial`` works;
      ``to_header(relax=True)`` writes ``CTYPE3 = 'BAND-SIP'`` and such a
      header is read back only with ``WCS(header, naxis=2)``.
    * TPV: transforms and ``to_header`` work, but a 3-axis TPV WCS cannot be
      deep-copied ("NULL error object in wcslib"), so neither can
      ``.sub``/``.celestial``/``.deepcopy()`` be used on it.

    Parameters
    ----------
    wcs : `~astropy.wcs.WCS` or None
        2-D WCS of one band. Not modified.
    bands : sequence of str
        Band names, one per plane; only their number is used.

    Returns
    -------
    `~astropy.wcs.WCS` or None
        A new 3-axis WCS, or None if ``wcs`` is None.

    Raises
    ------
    ValueError
        If ``wcs`` is not 2-D or ``bands`` is empty.

    Examples
    --------
    >>> from astropy.wcs import WCS
    >>> from astro_nn_restore.wcs_utils import add_band_axis
    >>> wcs = WCS(naxis=2)
    >>> wcs.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    >>> cube = add_band_axis(wcs, bands=("g", "r", "i"))
    >>> list(cube.wcs.ctype), cube.pixel_n_dim
    (['RA---TAN', 'DEC--TAN', 'BAND'], 3)
    >>> add_band_axis(None) is None
    True
    """
    if wcs is None:
        return None
    if wcs.naxis != 2:
        raise ValueError(f"add_band_axis needs a 2-D WCS, got naxis={wcs.naxis}")
    if len(bands) == 0:
        raise ValueError("bands must name at least one band")
    new = wcs.sub([1, 2, 0])  # a copy; 0 appends a new linear axis
    new.wcs.ctype = [*wcs.wcs.ctype, "BAND"]
    new.wcs.cname = [*wcs.wcs.cname, "band"]
    new.wcs.crpix = [*wcs.wcs.crpix, 1.0]
    new.wcs.crval = [*wcs.wcs.crval, 0.0]
    if new.wcs.has_cd():
        cd = new.wcs.cd.copy()
        cd[2, 2] = 1.0
        new.wcs.cd = cd
    else:
        new.wcs.cdelt = [*wcs.wcs.cdelt, 1.0]
    if wcs.pixel_shape is not None:
        new.pixel_shape = (*wcs.pixel_shape, len(bands))
    new.wcs.set()
    return new
