"""FITS file names and safe writes, shared by the command line, batch, chunked path and plugin.

Every output is written under a temporary name beside its final one
(`replacing`) and renamed only when complete: a failed write (a full disk, a
killed run) leaves an existing file as it was and nothing half-written.
"""

import os
import re
import uuid
from contextlib import contextmanager
from pathlib import Path

import numpy as np
from astropy.io import fits

from ._warnings import warn

__all__ = ["FITS_ENDINGS", "READ_ENDINGS", "image_header", "image_hdu_index", "is_colour_cube",
           "hdu_spec", "read_image", "read_image_hdu", "replacing", "split_hdu_suffix",
           "write_result"]

#: File name endings of FITS outputs (astropy compresses ``.gz`` ones).
FITS_ENDINGS = (".fits", ".fit", ".fts", ".fits.gz", ".fit.gz", ".fts.gz")
#: Endings of FITS inputs: also tile-compressed ``.fits.fz`` files.
READ_ENDINGS = (*FITS_ENDINGS, ".fits.fz")


def is_colour_cube(data, header):
    """Whether a FITS cube holds the planes of a colour image.

    (3, ny, nx) data whose third axis is a band axis (``CTYPE3 = 'BAND'``, as
    `~astro_nn_restore.wcs_utils.band_cube_wcs` writes it: colorize, the
    command line and the napari plugin) or has no type at all (RGB files of
    image-processing programs); (4, ny, nx) (RGBA) data only with a band axis,
    so that an untyped stack of four frames stays a stack. A typed third axis
    (``FREQ``, ``WAVE``, ``VRAD``, ``STOKES``...) makes a stack of planes.

    Examples
    --------
    >>> import numpy as np
    >>> from astropy.io import fits
    >>> cube = np.zeros((3, 4, 5))
    >>> is_colour_cube(cube, fits.Header()), is_colour_cube(cube, fits.Header({"CTYPE3": "FREQ"}))
    (True, False)
    """
    if not (data.ndim == 3 and data.shape[0] in (3, 4)):
        return False
    axis_type = str(header.get("CTYPE3", "")).strip().upper()
    band = axis_type == "BAND" or axis_type.startswith("BAND-")
    return band or (axis_type == "" and data.shape[0] == 3)


@contextmanager
def replacing(path, overwrite=False):
    """Yield a temporary path beside ``path``; rename it to ``path`` when the block succeeds.

    The temporary name keeps ``path``'s ending (``.fits.gz`` stays compressed)
    and starts with a dot: ``.1a2b3c4d.part.NAME``. `FileExistsError` if
    ``path`` exists (before or by the end) and ``overwrite`` is False.

    Examples
    --------
    >>> import tempfile
    >>> from pathlib import Path
    >>> target = Path(tempfile.mkdtemp()) / "out.txt"
    >>> with replacing(target) as temp:
    ...     _ = temp.write_text("done")
    >>> target.read_text(), sorted(p.name for p in target.parent.iterdir())
    ('done', ['out.txt'])
    """
    path = Path(path)
    if path.exists() and not overwrite:
        raise FileExistsError(f"{path} already exists; pass overwrite=True to replace it")
    temp = path.with_name(f".{uuid.uuid4().hex[:8]}.part.{path.name}")
    try:
        yield temp
        if path.exists() and not overwrite:
            raise FileExistsError(f"{path} appeared meanwhile; not replaced")
        os.replace(temp, path)
    finally:
        temp.unlink(missing_ok=True)


def write_result(result, path, overwrite=False):
    """Write a `~astropy.nddata.CCDData` safely (`replacing`): header, WCS, unit,
    mask and uncertainty (extra HDUs), each HDU with fresh ``CHECKSUM`` and
    ``DATASUM`` keys. ``path`` must have one of the `FITS_ENDINGS` (astropy
    writes no tile-compressed ``.fits.fz``)."""
    if not os.fspath(path).lower().endswith(FITS_ENDINGS):
        raise ValueError(f"{os.fspath(path)} is not a FITS file name this package writes: "
                         f"use one of {', '.join(FITS_ENDINGS)}")
    with replacing(path, overwrite) as temp:
        result.write(temp, checksum=True)


def split_hdu_suffix(text):
    """``(path, hdu or None)`` of ``"file.fits"``, ``"file.fits[1]"`` or ``"file.fits[SCI]"``.

    The bracket names an HDU (an index, or an ``EXTNAME``, as astropy and
    cfitsio spell it) only when ``text`` is not itself a file and the part
    before it is.

    Examples
    --------
    >>> split_hdu_suffix("no-such-file.fits[2]")
    ('no-such-file.fits[2]', None)
    """
    text = os.fspath(text)
    match = re.fullmatch(r"(.+)\[([^\[\]]+)\]", text)
    if match is None or os.path.exists(text) or not os.path.isfile(match[1]):
        return text, None
    return match[1], hdu_spec(match[2])


def hdu_spec(text):
    """An HDU as the user wrote it: an index (``"1"``, ``"-1"``) or an ``EXTNAME`` (``"SCI"``).

    Examples
    --------
    >>> hdu_spec(" 2"), hdu_spec("-1"), hdu_spec("SCI")
    (2, -1, 'SCI')
    """
    text = text.strip()
    return int(text) if re.fullmatch(r"[+-]?\d+", text) else text


def image_hdu_index(hdulist, index=None):
    """Index of the image HDU to read: ``index`` (a number or an ``EXTNAME``), or
    the first image HDU with data.

    `ValueError` when there is none, or when ``index`` does not exist or holds
    no image data.
    """
    if index is None:
        for i, hdu in enumerate(hdulist):
            if _holds_image(hdu):
                return i
        raise ValueError("the FITS file has no image HDU with data")
    if isinstance(index, str):
        try:
            index = hdulist.index_of(index)
        except KeyError:
            names = [hdu.name or str(i) for i, hdu in enumerate(hdulist)]  # unnamed: index
            raise ValueError(f"the FITS file has no HDU named {index!r} (its HDUs: "
                             f"{', '.join(names)})") from None
    if not -len(hdulist) <= index < len(hdulist):
        raise ValueError(f"the FITS file has {len(hdulist)} HDUs; HDU {index} does not exist")
    if not _holds_image(hdulist[index]):
        raise ValueError(f"HDU {index} of the FITS file holds no image data")
    return index % len(hdulist)


def _holds_image(hdu):
    return hdu.is_image and hdu.data is not None and hdu.data.size > 0


def image_header(hdulist, index):
    """The header of image HDU ``index``, with the primary header's keys it inherits.

    An extension inherits the primary header's keys it lacks (``TELESCOP``,
    ``DATE-OBS``, ``EXPTIME``...) when it says ``INHERIT = T`` (the FITS
    inheritance convention) or when the primary HDU holds no data (as
    `~astropy.nddata.CCDData.read` merges them when it moves on from an empty
    primary; here also when the extension is asked for by number or name).
    The primary's WCS keys are not inherited: the extension's own WCS, or
    none, describes its pixels.

    Examples
    --------
    >>> import numpy as np
    >>> from astropy.io import fits
    >>> hdulist = fits.HDUList([fits.PrimaryHDU(header=fits.Header({"TELESCOP": "HST"})),
    ...                         fits.ImageHDU(np.zeros((2, 2)), name="SCI")])
    >>> image_header(hdulist, 1)["TELESCOP"]
    'HST'
    """
    from .wcs_utils import strip_wcs_keywords

    header = hdulist[index].header.copy()
    if index == 0:
        return header
    primary = hdulist[0]
    if primary.data is None or header.get("INHERIT") is True:
        header.extend(strip_wcs_keywords(primary.header.copy()), unique=True)
    return header


def read_image_hdu(hdulist, index=None):
    """``(data, header, mask, uncertainty)`` of one image HDU of an open HDUList.

    ``data`` is the HDU's array as it is (not copied: a memory map stays one),
    and so is the mask (CCDData's uint8, nonzero = masked; the operations read
    it as bool). The header is `image_header`'s. Mask and uncertainty come from the
    ``MASK`` and ``UNCERT`` extensions `~astropy.nddata.CCDData.write`
    writes, when present; one whose shape or uncertainty type does not fit is
    not used, with a warning.
    """
    index = image_hdu_index(hdulist, index)
    data = hdulist[index].data
    mask, uncertainty = _ccddata_extensions(hdulist, data.shape)
    return data, image_header(hdulist, index), mask, uncertainty


def read_image(file, index=None):
    """`read_image_hdu` of a FITS file (a path, or an open file object), read into memory."""
    if isinstance(file, (str, os.PathLike)) and not os.path.exists(file):
        raise FileNotFoundError(f"no such FITS file: {os.fspath(file)}")
    with fits.open(file, memmap=False) as hdulist:
        data, header, mask, uncertainty = read_image_hdu(hdulist, index)
        return np.array(data), header, mask, uncertainty


def _ccddata_extensions(hdulist, shape):
    """Mask and uncertainty of ``CCDData.write``'s ``MASK`` and ``UNCERT`` HDUs, if any."""
    from astropy import nddata

    mask = uncertainty = None
    if _usable_extension(hdulist, "MASK", shape):
        mask = hdulist["MASK"].data  # as stored (nonzero: masked), so a memory map stays one
    if _usable_extension(hdulist, "UNCERT", shape):
        kind = hdulist["UNCERT"].header.get("UTYPE", "StdDevUncertainty")
        classes = {c.__name__: c for c in (nddata.StdDevUncertainty, nddata.VarianceUncertainty,
                                           nddata.InverseVariance)}
        if kind not in classes:
            warn(f"the UNCERT extension's UTYPE {kind!r} is not one of {', '.join(classes)}: "
                 "taken as a standard deviation, as CCDData.read does")
        uncertainty = classes.get(kind, nddata.StdDevUncertainty)(hdulist["UNCERT"].data,
                                                                   copy=False)
    return mask, uncertainty


def _usable_extension(hdulist, name, shape):
    if name not in hdulist or hdulist[name].data is None:
        return False
    if hdulist[name].data.shape != shape:
        warn(f"the {name} extension has shape {hdulist[name].data.shape}, the image "
              f"{shape}: it is not used")
        return False
    return True
