"""Parse the many forms an image arrives in, and repack results as CCDData.

Policy (documented in ``docs/data_model.rst``):

* The input is never modified: every array is copied.
* Data become native-endian ``float32``; FITS big-endian data are converted.
* Pixels that are NaN/inf or masked are *bad*. They are filled with the
  background level before the network sees them and restored afterwards:
  NaN/inf come back as they were, masked pixels keep their mask bit and the
  network's value.
* The output header is the input header with every WCS keyword removed, the
  output WCS written by `~astropy.nddata.CCDData` itself, and provenance added:
  a ``HISTORY`` line and the keywords ``ANR_OP`` (operation), ``ANR_MOD``
  (model name), ``ANR_VER`` (package version) and ``ANR_SHA`` (first 16 hex
  digits of the weights' sha256).
"""

import copy
import os
import warnings
from dataclasses import dataclass

import numpy as np
from astropy import units as u
from astropy.io import fits
from astropy.io.fits.verify import VerifyWarning
from astropy.nddata import CCDData, NDData, StdDevUncertainty
from astropy.wcs import WCS

from ._files import read_image, read_image_hdu
from ._warnings import error_text, one_line, warn
from .wcs_utils import strip_wcs_keywords

__all__ = []

#: Unit given to inputs that carry none (a bare array, a header without BUNIT).
DEFAULT_UNIT = u.dimensionless_unscaled


@dataclass
class ParsedImage:
    """An input image reduced to plain, owned, native-endian arrays.

    Attributes
    ----------
    data : ndarray
        ``float32`` copy, shape (ny, nx) or (ny, nx, 3) for colour.
    unit : `~astropy.units.UnitBase`
    wcs : `~astropy.wcs.WCS` or None
    meta : `~astropy.io.fits.Header`
        Copy of the input header (empty when there was none).
    mask : ndarray of bool or None
        The input's mask, copied.
    uncertainty : ndarray or None
        Standard deviation per pixel (converted from variance or inverse
        variance), in ``unit``.
    bad : ndarray of bool
        Pixels the network must not see: non-finite or masked.
    cube_result : bool
        A colour image that came as a CCDData, in a FITS file or HDU, or with
        a header or WCS: the result goes back as a (3, ny, nx) CCDData cube
        (`color_result`). A (3, ny, nx) cube input (`band_cube_planes`) has
        its planes last in ``data`` and the WCS of its first two axes.
    planes_first : bool
        The input was such a (3, ny, nx) cube: an ``uncertainty`` argument may
        be given in its layout too (`noise_map`).
    """

    data: np.ndarray
    unit: u.UnitBase
    wcs: WCS | None
    meta: fits.Header
    mask: np.ndarray | None
    uncertainty: np.ndarray | None
    bad: np.ndarray
    cube_result: bool = False
    planes_first: bool = False

    @property
    def is_color(self):
        return self.data.ndim == 3

    @property
    def nonfinite(self):
        """Pixels that were NaN or inf in the input (restored in the output)."""
        return ~np.isfinite(self.data)


def parse_image(data, *, allow_color=False, unit=None):
    """Turn any supported input into a `ParsedImage`.

    Parameters
    ----------
    data : CCDData, NDData, HDU, HDUList, str or PathLike, tuple or ndarray
        ``(array, WCS)`` and ``(array, Header)`` tuples are accepted.
    allow_color : bool
        Accept (ny, nx, 3) arrays as colour images.
    unit : unit-like, optional
        Unit for inputs that carry none; an input's own unit wins.

    Raises
    ------
    TypeError
        For an unsupported type or non-numeric data.
    ValueError
        For empty arrays or the wrong number of dimensions.
    """
    array, wcs, header, mask, uncertainty, own_unit = _unpack(data)
    header = fits.Header() if header is None else header.copy()
    bare = _is_bare(data, header, wcs)
    planes_first = allow_color and not bare and _is_band_cube(array, header, wcs)
    if planes_first:
        array, wcs, mask, uncertainty = band_cube_planes(array, header, wcs, mask, uncertainty)
    array = _as_float_array(array, allow_color=allow_color)
    wcs = _image_wcs(wcs, header, array.shape)
    unit = _choose_unit(own_unit, header, unit)
    mask = None if mask is None else _checked_mask(mask, array.shape)
    bad = ~np.isfinite(array)
    if bad.ndim == 3:
        bad = bad.any(axis=-1)
    if mask is not None:
        bad |= mask if mask.ndim == 2 else mask.any(axis=-1)
    sigma = None if uncertainty is None else as_std_array(uncertainty, array.shape, unit, bad)
    return ParsedImage(array, unit, wcs, header, mask, sigma, bad,
                       cube_result=array.ndim == 3 and not bare, planes_first=planes_first)


def _is_bare(data, header, wcs):
    """An input with nothing of FITS about it: its colour result stays an (ny, nx, 3) array.

    Arrays and Quantities are bare, and so is an NDData with neither meta nor
    WCS; a CCDData, a FITS file or HDU and an ``(array, WCS or Header)``
    tuple are not.
    """
    if isinstance(data, CCDData):
        return False
    if isinstance(data, NDData):
        return not header and wcs is None
    return not isinstance(data, (fits.HDUList, fits.PrimaryHDU, fits.ImageHDU,
                                 fits.CompImageHDU, str, os.PathLike, tuple))


def _image_wcs(wcs, header, shape):
    """The 2-D WCS of a (ny, nx) or (ny, nx, 3) image: a copy of the input's, or the header's."""
    if wcs is None:
        wcs = wcs_from_header(header) if header else None
    else:
        wcs = copy.deepcopy(wcs)  # the output must not share the input's WCS object
    if wcs is None:
        return None
    if wcs.pixel_n_dim != 2:
        hint = (" (give a colour image as its (3, ny, nx) cube, or pass wcs.celestial)"
                if len(shape) == 3 else " (pass wcs.celestial)")
        raise ValueError(f"an image of shape {shape} needs a 2-D WCS, got one with "
                         f"{wcs.pixel_n_dim} pixel axes{hint}")
    wcs.pixel_shape = (shape[1], shape[0])  # a header's NAXISn may describe a cube it came from
    return wcs


def _is_band_cube(array, header, wcs):
    """Whether the input is a (3 or 4, ny, nx) colour cube from FITS or CCDData.

    The rule is `~astro_nn_restore._files.is_colour_cube`'s.
    """
    from ._files import is_colour_cube

    if np.ndim(array) != 3:
        return False
    axis_header = header
    if wcs is not None and wcs.naxis == 3:  # CCDData.read moves the WCS keys out of the header
        axis_header = fits.Header({"CTYPE3": wcs.wcs.ctype[2]})
    return is_colour_cube(np.asarray(array), axis_header)


def band_cube_planes(cube, header, wcs, mask, uncertainty):
    """A (3, ny, nx) colour cube as ``(rgb, wcs, mask, uncertainty)`` with its planes last.

    A 3-axis WCS is cut to its first two axes (`_image_wcs` then copies it, or
    reads those two from the header); RGBA cubes are refused.
    """
    if np.shape(cube)[0] != 3:
        raise ValueError(f"the input is an RGBA ({np.shape(cube)[0]}, ny, nx) cube: restoration "
                         "takes the R, G, B planes; drop the alpha plane")
    ny, nx = np.shape(cube)[1:]
    if wcs is not None and wcs.naxis == 3:
        wcs = wcs.sub([1, 2])
    return (_planes_last(cube), wcs, planes_last_if_cube(mask, ny, nx),
            planes_last_if_cube(uncertainty, ny, nx))


def planes_last_if_cube(value, ny, nx):
    """``value`` (array or NDUncertainty) with a leading (3, ny, nx) plane axis moved last.

    Anything else (None, a number, a 2-D map for all planes) is returned as it is.
    """
    if hasattr(value, "represent_as"):
        if np.shape(value.array) != (3, ny, nx):
            return value
        return type(value)(_planes_last(value.array), unit=value.unit)
    return _planes_last(value) if np.shape(value) == (3, ny, nx) else value


def _planes_last(array):
    return np.moveaxis(np.asarray(array), 0, -1)


def _unpack(data):
    """Return (array, wcs, header, mask, uncertainty, unit) without copying."""
    if isinstance(data, NDData):  # CCDData is an NDData
        if getattr(data, "flags", None) is not None:
            warn("the input's flags are not carried to the result (its data, unit, WCS, "
                 "header, mask and uncertainty are); turn the flags you need into the mask")
        if getattr(data, "psf", None) is not None:
            warn("the input's psf is not carried to the result (deblur uses it as its PSF "
                 "when psf= is not given)")
        if data.wcs is not None and not isinstance(data.wcs, WCS):
            raise TypeError(f"the input's WCS is a {type(data.wcs).__name__} (an APE 14 view, "
                            "such as slicing an NDData gives); these operations need an "
                            "astropy.wcs.WCS: slice the FITS WCS itself (wcs.celestial, "
                            "wcs.sub(2)) and pass it with the image")
        header = _header_from_meta(data.meta)
        return data.data, data.wcs, header, data.mask, data.uncertainty, data.unit
    if isinstance(data, (str, os.PathLike)):
        return _unpack_hdulist_file(data)
    if isinstance(data, fits.HDUList):
        array, header, mask, uncertainty = read_image_hdu(data)
        return array, None, header, mask, uncertainty, None
    if isinstance(data, (fits.PrimaryHDU, fits.ImageHDU, fits.CompImageHDU)):
        return _unpack_hdu(data)
    if isinstance(data, tuple):
        return _unpack_tuple(data)
    if isinstance(data, u.Quantity):  # a Quantity carries its unit
        return data.value, None, None, None, None, data.unit
    if isinstance(data, np.ndarray) or (hasattr(data, "__array__") and not isinstance(data, str)):
        return data, None, None, _mask_of(data), None, None
    raise TypeError(
        f"unsupported input type {type(data).__name__!r}: pass a CCDData, NDData, FITS HDU, "
        "HDUList, path to a FITS file, (array, WCS or Header) tuple, or a 2-D array"
    )


def _unpack_tuple(data):
    if len(data) != 2:
        raise TypeError(f"a tuple input must be (array, WCS or Header), got {len(data)} items")
    array, second = data
    unit = array.unit if isinstance(array, u.Quantity) else None
    array = array.value if unit is not None else array
    if isinstance(second, WCS):
        return array, second, None, _mask_of(array), None, unit
    if isinstance(second, fits.Header):
        return array, None, second, _mask_of(array), None, unit
    raise TypeError(
        f"the second item of an (array, ...) tuple must be a WCS or a Header, "
        f"got {type(second).__name__!r}"
    )


def _unpack_hdulist_file(path):
    array, header, mask, uncertainty = read_image(path)
    return array, None, header, mask, uncertainty, None


def _unpack_hdu(hdu):
    return hdu.data, None, hdu.header, None, None, None


def _mask_of(array):
    return np.ma.getmaskarray(array) if np.ma.isMaskedArray(array) else None


def _header_from_meta(meta):
    """A FITS header of an NDData's meta: every entry a card can hold, the others warned about.

    Keys longer than eight characters become HIERARCH cards and ``(value,
    comment)`` tuples a value with its comment, as `~astropy.nddata.CCDData.write`
    writes them.
    """
    if isinstance(meta, fits.Header):
        return meta
    header, dropped = fits.Header(), []
    for key, value in (meta or {}).items():
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", VerifyWarning)  # "a HIERARCH card will be created"
                header[str(key)] = value
        except (ValueError, TypeError):
            dropped.append(str(key))
    if dropped:
        warn(f"meta entries a FITS header card cannot hold are not carried to the result: "
             f"{', '.join(dropped)}")
    return header


def _as_float_array(array, *, allow_color):
    if np.ma.isMaskedArray(array):
        array = np.ma.getdata(array)
    array = np.asarray(array)
    if array.dtype.kind not in "biuf":
        raise TypeError(
            f"image data must be numeric (bool, integer or float), got dtype {array.dtype}"
        )
    if array.size == 0:
        raise ValueError("image data are empty (an array of size 0)")
    is_color = array.ndim == 3 and array.shape[-1] == 3
    if array.ndim != 2 and not (allow_color and is_color):
        expected = "a 2-D image or an (ny, nx, 3) colour image" if allow_color else "a 2-D image"
        raise ValueError(f"expected {expected}, got an array of shape {array.shape}")
    return float32_checked(array)  # float32 in native byte order is what torch takes


def float32_checked(array):
    """A float32 copy of ``array``, or a ValueError if finite values overflow float32."""
    with np.errstate(over="ignore"):
        converted = array.astype(np.float32)  # astype always copies
    overflow = np.isinf(converted) & np.isfinite(array)
    if overflow.any():  # they would silently become inf, and then bad pixels
        raise ValueError(f"{int(overflow.sum())} finite value(s) exceed the float32 range "
                         f"(|x| > {float(np.finfo(np.float32).max):.3g}); rescale the data "
                         "(for example change its unit) first")
    return converted


def non_negative_number(value, name, *, positive=False, meaning=""):
    """``value`` as a float, or a ValueError naming ``name`` unless it is finite and >= 0.

    With ``positive=True`` it must be > 0. ``meaning`` is added to the message.
    Booleans are refused: ``float(True)`` is 1, which nobody means by it.

    Examples
    --------
    >>> non_negative_number(2, "chroma_smoothing")
    2.0
    """
    try:
        number = np.nan if isinstance(value, (bool, np.bool_)) else float(value)
    except (TypeError, ValueError):
        number = np.nan
    if not (np.isfinite(number) and (number > 0 if positive else number >= 0)):
        bound = "> 0" if positive else ">= 0"
        raise ValueError(f"{name} must be a finite number {bound}{meaning}, got {value!r}")
    return number


def integer_at_least(value, name, minimum):
    """``value`` as an int, or a ValueError naming ``name`` unless it is an integer >= ``minimum``.

    Booleans, strings and NaN are refused (``True`` would count as 1).

    Examples
    --------
    >>> integer_at_least(4.0, "size", 4)
    4
    """
    try:
        whole = not isinstance(value, (bool, np.bool_, str)) and int(value) == value
    except (TypeError, ValueError, OverflowError):
        whole = False
    if not whole or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def _checked_mask(mask, shape):
    mask = np.array(mask, dtype=bool)
    if mask.shape == shape or (mask.shape == shape[:2] and len(shape) == 3):
        return mask
    raise ValueError(f"mask shape {mask.shape} does not match data shape {shape}")


def wcs_from_header(header, *, naxis=2):
    """The header's WCS, or None (with a warning) when wcslib rejects it, as CCDData.read does.

    ``naxis=2``: the image's two axes; ``None``: every axis (a cube's).
    """
    try:
        wcs = WCS(header, naxis=naxis, fix=False)
        wcs.wcs.set()
    except Exception as err:  # wcslib raises many classes (SingularMatrixError, ...)
        warn(f"the header's WCS is not valid ({error_text(err, 160)}); the data are "
             "taken without a WCS (an output gets no WCS keywords)")
        return None
    return wcs if wcs.wcs.ctype[0] or wcs.has_celestial else None


def unit_from_bunit(text):
    """The unit of a ``BUNIT`` value, read as `~astropy.nddata.CCDData.read` reads it.

    ``'ADU'`` and the spellings CCDData knows are not FITS units
    (``'ELECTRONS/S'``, HST's) are accepted; anything else astropy cannot parse
    raises `ValueError`.

    Examples
    --------
    >>> unit_from_bunit("ELECTRONS/S"), unit_from_bunit("ADU"), unit_from_bunit("MJy/sr")
    (Unit("electron / s"), Unit("adu"), Unit("MJy / sr"))
    """
    text = str(text).strip()
    if text.lower() == "adu":
        return u.adu
    known = CCDData.known_invalid_fits_unit_strings
    return known[text] if text in known else u.Unit(text, parse_strict="raise")


def _choose_unit(own_unit, header, unit):
    if own_unit is not None:
        return u.Unit(own_unit)
    if "BUNIT" in header and str(header["BUNIT"]).strip():
        try:
            return unit_from_bunit(header["BUNIT"])
        except ValueError as err:
            if unit is None:
                raise ValueError(
                    f"cannot parse BUNIT {header['BUNIT']!r} in the header; pass unit= explicitly "
                    "(--unit on the command line)"
                ) from err
    return DEFAULT_UNIT if unit is None else u.Unit(unit)


def as_std_array(uncertainty, shape, unit, bad=None):
    """Standard deviation in ``unit`` from a number array or any NDUncertainty.

    Negative values on good pixels are refused: they mean nothing for any kind
    of uncertainty, and the conversion to a standard deviation would hide their
    sign.
    """
    if not hasattr(uncertainty, "represent_as"):
        uncertainty = StdDevUncertainty(uncertainty)
    refuse_negative_sigma(np.asarray(uncertainty.array), bad)
    std = uncertainty.represent_as(StdDevUncertainty)
    sigma = np.array(std.array, dtype=np.float32)
    if std.unit is not None and std.unit != unit:
        sigma = (sigma * std.unit).to_value(unit).astype(np.float32)
    if sigma.shape not in (shape, shape[:2]):
        raise ValueError(f"uncertainty shape {sigma.shape} does not match data shape {shape}"
                         + (f" or {shape[:2]}" if len(shape) == 3 else ""))
    return sigma


#: Header keywords read for the CCD equation, first found wins.
GAIN_KEYWORDS = ("GAIN", "EGAIN", "CCDGAIN")
READ_NOISE_KEYWORDS = ("RDNOISE", "READNOIS", "RON", "ENOISE")


def noise_map(parsed, uncertainty, *, gain=None, read_noise=None, sky=None, from_header=False):
    """Per-pixel sigma (data unit) for the network's noise channel, or None.

    In order: the ``uncertainty`` argument (scalar, array or NDUncertainty);
    the input's own uncertainty; the CCD equation (`ccd_sigma`) when ``gain``
    and ``read_noise`` are given, or found in the header with
    ``from_header=True``; else None, and the caller estimates one noise level
    from the image (sigma-clipped MAD standard deviation).
    """
    if uncertainty is not None:
        if parsed.planes_first:  # given in the layout of the input cube
            uncertainty = planes_last_if_cube(uncertainty, *parsed.data.shape[:2])
        if is_one_value(uncertainty):
            return np.full(parsed.data.shape[:2], scalar_sigma(uncertainty, parsed.unit),
                           dtype=np.float32)
        return warn_unknown_sigma(as_std_array(uncertainty, parsed.data.shape, parsed.unit,
                                          parsed.bad), parsed.bad)
    if parsed.uncertainty is not None:
        return warn_unknown_sigma(parsed.uncertainty, parsed.bad)
    if from_header:
        gain, read_noise = ccd_parameters(parsed.meta, gain=gain, read_noise=read_noise)
    if gain is None or read_noise is None:
        return None
    return ccd_sigma(parsed.data, gain=gain, read_noise=read_noise, sky=sky, bad=parsed.bad)


def noise_note(operation, uncertainty, own_uncertainty):
    """The HISTORY line saying where the network's noise map came from (`noise_map`)."""
    if uncertainty is not None:
        source = "the uncertainty argument" + (" (one value)" if is_one_value(uncertainty)
                                               else "")
    elif own_uncertainty is not None:
        source = "the input's uncertainty"
    else:
        source = "an estimate from the image (one white-noise level)"
    return f"{operation}: noise sigma from {source}"


def refuse_negative_sigma(values, bad=None):
    """``values``, or a ValueError if some are negative on good pixels (any uncertainty kind)."""
    negative = values < 0
    if negative.ndim == 3:  # a colour image's channels; ``bad`` is per pixel
        negative = negative.any(axis=-1)
    if bad is not None and negative.shape == bad.shape:
        negative &= ~bad
    if negative.any():
        raise ValueError(f"the uncertainty has {int(negative.sum())} negative value(s) on good "
                         "pixels; it must be a standard deviation, variance or inverse "
                         "variance (>= 0)")
    return values


def is_one_value(uncertainty):
    """Whether ``uncertainty=`` is one value for every pixel (a number, 0-d array or Quantity)."""
    return not hasattr(uncertainty, "represent_as") and np.ndim(uncertainty) == 0


def scalar_sigma(uncertainty, unit):
    """One value given as ``uncertainty=``, in ``unit``; a ValueError unless finite and > 0.

    A `~astropy.units.Quantity` is converted to the data's unit.
    """
    if isinstance(uncertainty, u.Quantity):
        try:
            uncertainty = uncertainty.to_value(unit)
        except u.UnitConversionError:
            raise ValueError(f"uncertainty={uncertainty} is not in the data's unit "
                             f"({unit.to_string() or 'dimensionless'}) or one convertible to "
                             "it") from None
    elif isinstance(uncertainty, np.ndarray):
        uncertainty = uncertainty.item()
    return non_negative_number(uncertainty, "uncertainty", positive=True,
                               meaning=" (a standard deviation in the data's unit)")


def warn_unknown_sigma(sigma, bad):
    """``sigma``, with a warning if it is zero or not finite on some good pixel.

    Such pixels (an inverse variance of 0 is a common "no data" mark) get the
    median noise in the network's noise channel; mask them if they hold no
    data. Negative values are refused earlier, by `as_std_array`. ``sigma``
    may be a dask array (counted here in one pass, which reads the image too,
    for ``bad``) or hold a colour image's three channels (then a pixel counts
    when its luminance sigma is zero or not finite: all channels zero, or one
    not finite).
    """
    if sigma.ndim == 3:  # a colour image's channels: the luminance's sigma is then unknown
        unknown = (~np.isfinite(sigma)).any(axis=-1) | (sigma == 0).all(axis=-1)
    else:
        unknown = ~np.isfinite(sigma) | (sigma == 0)
    if bad is not None:
        unknown = unknown & ~bad
    count = int(unknown.sum())
    if count:
        warn(f"the uncertainty is zero or not finite on {count} good pixel(s): the network "
             "is given the median noise there (mask them if they hold no data)")
    return sigma


def ccd_parameters(header, *, gain=None, read_noise=None):
    """``(gain, read_noise)``: the arguments, else the header (`GAIN_KEYWORDS`,
    `READ_NOISE_KEYWORDS`), else None."""

    def first(keys):
        return next((float(header[k]) for k in keys if _is_positive_number(header.get(k))), None)

    gain = first(GAIN_KEYWORDS) if gain is None else float(gain)
    read_noise = first(READ_NOISE_KEYWORDS) if read_noise is None else float(read_noise)
    return gain, read_noise


def _is_positive_number(value):
    return isinstance(value, (int, float, np.number)) and not isinstance(value, bool) and value > 0


def ccd_sigma(data, *, gain, read_noise, sky=None, bad=None):
    """Noise from the CCD equation, in the data unit (e.g. adu).

    ``sigma**2 = max(level, 0) / gain + (read_noise / gain)**2`` with ``gain``
    in electrons per data unit, ``read_noise`` in electrons and ``level`` the
    signal plus sky above the bias: the data themselves (bias-subtracted
    frames), or, when ``sky`` (the sky level above the bias) is given,
    ``data - background + sky`` with the background the sigma-clipped median
    of the frame (for raw frames that still carry a bias level).

    A warning is issued when the resulting sky noise differs from the noise
    measured in the image by more than a factor of 2 (wrong GAIN/RDNOISE, or a
    bias level left in the data without ``sky``).
    """
    from .normalize import estimate_normalization

    if gain <= 0 or read_noise < 0:
        raise ValueError(f"gain must be > 0 and read_noise >= 0, got {gain} and {read_noise}")
    data = np.asarray(data, dtype=np.float64)
    measured = estimate_normalization(data, bad=bad)
    level = data if sky is None else data - measured.background + float(sky)
    level = np.where(np.isfinite(level), level, 0.0)
    sigma = np.sqrt(np.clip(level, 0.0, None) / gain + (read_noise / gain) ** 2)
    _check_against_measured(sigma, data, measured, bad)
    return sigma.astype(np.float32)


def _check_against_measured(sigma, data, measured, bad):
    sky = np.abs(data - measured.background) < 3 * measured.scale
    if bad is not None:
        sky &= ~bad
    predicted = float(np.median(sigma[sky])) if sky.any() else float(np.median(sigma))
    ratio = predicted / measured.scale
    if not 0.5 <= ratio <= 2.0:
        warn(
            f"the CCD equation gives a sky noise of {predicted:.3g}, but the image's measured "
            f"noise is {measured.scale:.3g} (ratio {ratio:.2f}): check GAIN and RDNOISE, and "
            "give sky= (the sky level above the bias) if the frame is not bias-subtracted",
            UserWarning)


def filled_for_network(parsed, fill_value):
    """Return a copy of the data with bad pixels replaced by ``fill_value``."""
    filled = parsed.data.copy()
    filled[parsed.bad] = fill_value
    return filled


def restore_bad_pixels(parsed, output):
    """Put NaN/inf of the input back into ``output`` (same shape as the input)."""
    nonfinite = parsed.nonfinite
    output[nonfinite] = parsed.data[nonfinite]
    return output


def color_output(parsed, rgb, factor=1):
    """A colour result: ``rgb``, with the input's mask (``factor`` x larger) if it had one."""
    if parsed.mask is None:
        return rgb
    mask = parsed.mask if parsed.mask.ndim == 3 else np.repeat(parsed.mask[..., None], 3, -1)
    return np.ma.masked_array(rgb, mask=mask.repeat(factor, 0).repeat(factor, 1))


#: Plane names of colour cubes.
BANDS = ("R", "G", "B")


def band_keys(bands=BANDS):
    """``BAND1..n`` header cards naming the planes of a colour cube."""
    return {f"BAND{i}": (band, f"plane {i} of the RGB cube") for i, band in enumerate(bands, 1)}


def color_result(parsed, rgb, *, operation, model_card, factor=1, wcs=None, history=(),
                 keys=None):
    """A colour result as the input came: an (ny, nx, 3) array, or a CCDData cube.

    A bare array input gets `color_output`. A CCDData, a FITS file or HDU, or
    an input with a header or WCS (``parsed.cube_result``) gets a (3, ny, nx)
    `~astropy.nddata.CCDData`: the input's unit, header with
    provenance (``parsed.meta``, already resampled by the caller when
    ``factor`` > 1), ``history`` and ``keys``, ``BAND1..3``, the mask, and
    ``wcs`` (default the input's) with a band axis
    (`~astro_nn_restore.wcs_utils.band_cube_wcs`; without a WCS the header
    still says ``CTYPE3 = 'BAND'``). Colour results carry no uncertainty.
    """
    from .wcs_utils import band_cube_wcs

    rgb = color_output(parsed, rgb, factor)
    if not parsed.cube_result:
        return rgb
    planes = np.moveaxis(np.ma.getdata(rgb), -1, 0)
    mask = np.moveaxis(np.ma.getmaskarray(rgb), -1, 0) if np.ma.isMaskedArray(rgb) else None
    cube_wcs, note = band_cube_wcs(parsed.wcs if wcs is None else wcs, planes.shape[1:])
    result = repack(parsed, planes, operation=operation, model_card=model_card, wcs=cube_wcs,
                    mask=mask, extra_history=[*history, *([note] if note else [])])
    result.meta.update(keys or {})
    result.meta.update(band_keys())
    if cube_wcs is None:
        result.meta["CTYPE3"] = ("BAND", "colour planes R, G, B")
    return result


def restore_color(parsed, restore_plane, uncertainty=None, *, operation, model_card,
                  history=()):
    """A colour image restored in its luminance, chroma kept, NaN and mask restored.

    ``restore_plane(luminance, sigma)`` restores the 2-D luminance; ``sigma``
    is its noise (``_color.luminance_sigma``) from
    ``uncertainty`` or the input's own uncertainty (per channel, or one value
    or map for all three), or None: then it is measured from the image.
    Returned as the input came (`color_result`); a cube's HISTORY gets
    ``history``, where the noise came from and that only the luminance was
    restored.
    """
    from ._color import luminance_sigma, merge_luminance, split_luminance

    sigma = noise_map(parsed, uncertainty)
    luminance, chroma = split_luminance(filled_for_network(parsed, 0.0))
    restored = restore_plane(luminance, None if sigma is None else luminance_sigma(sigma))
    rgb = merge_luminance(restored, chroma)
    notes = [*history, noise_note(operation, uncertainty, parsed.uncertainty),
             f"{operation}: the luminance Y = 0.299 R + 0.587 G + 0.114 B restored, chroma kept"]
    return color_result(parsed, restore_bad_pixels(parsed, rgb), operation=operation,
                        model_card=model_card, history=notes)


#: Keys an output header must not inherit from its input: the file layout,
#: which astropy writes anew for the output array (a copied NAXIS1 or BITPIX
#: describes the input; BZERO/BSCALE/BLANK are for integer data, and outputs
#: are float), the unit (CCDData writes BUNIT itself), checksums of the input's
#: bytes (a written output would fail verification), the input's value range, and
#: ``INHERIT`` (an extension's key; the output is a primary HDU).
INPUT_ONLY_KEYS = ("SIMPLE", "XTENSION", "BITPIX", "NAXIS", "EXTEND", "PCOUNT", "GCOUNT",
                   "INHERIT", "BZERO", "BSCALE", "BLANK", "BUNIT", "CHECKSUM", "DATASUM",
                   "DATAMIN", "DATAMAX")


def strip_input_only_keys(header):
    """Remove `INPUT_ONLY_KEYS` and ``NAXISn`` from ``header`` (in place); return it."""
    for key in [*INPUT_ONLY_KEYS, *(k for k in header if k[:5] == "NAXIS" and k[5:].isdigit())]:
        header.remove(key, ignore_missing=True, remove_all=True)
    return header


def provenance_header(meta, *, operation, model_card, extra_history=()):
    """Copy of ``meta`` with provenance added, without WCS keys or `INPUT_ONLY_KEYS`."""
    from . import __version__

    header = strip_input_only_keys(strip_wcs_keywords(meta))
    name = str(model_card.get("name", "unknown"))
    sha = str(model_card.get("sha256", ""))[:16]
    header["ANR_OP"] = (operation, "astro_nn_restore operation")
    header["ANR_MOD"] = (name[:68], "astro_nn_restore model name")
    header["ANR_VER"] = (__version__, "astro_nn_restore version")
    header["ANR_SHA"] = (sha, "sha256 of model weights (first 16 hex)")
    header.add_history(
        f"astro_nn_restore {__version__}: {operation} with model {name} (sha256 {sha})"
    )
    for line in extra_history:
        header.add_history(card_text(line))
    return header


def card_text(text):
    """``text`` as one line of printable ASCII, which a FITS card can hold.

    Examples
    --------
    >>> card_text("wcslib/C/wcs.c:\\nIll-conditioned  matrix, Ångström")
    'wcslib/C/wcs.c: Ill-conditioned matrix, ?ngstr?m'
    >>> card_text("a \x1b[31m b")  # a control character is no card text either
    'a [31m b'
    """
    printable = "".join(c if c.isprintable() else " " for c in str(text))
    return one_line(printable).encode("ascii", "replace").decode("ascii")


def repack(parsed, output, *, operation, model_card, wcs=None, unit=None, mask=None,
           uncertainty=None, extra_history=()):
    """Build the output `~astropy.nddata.CCDData`.

    ``wcs``, ``unit`` and ``mask`` default to the input's; ``uncertainty`` is
    a standard-deviation array or None.
    """
    header = provenance_header(parsed.meta, operation=operation, model_card=model_card,
                               extra_history=extra_history)
    unit = parsed.unit if unit is None else unit
    return CCDData(
        output,
        unit=unit,
        wcs=parsed.wcs if wcs is None else wcs,
        meta=header,
        mask=parsed.mask.copy() if mask is None and parsed.mask is not None else mask,
        uncertainty=None if uncertainty is None else StdDevUncertainty(uncertainty, unit=unit),
    )
