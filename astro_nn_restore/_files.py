"""FITS file names and safe writes, shared by the command line, batch, chunked path and plugin.

Every output is written under a temporary name beside its final one
(`replacing`) and renamed only when complete: a failed write (a full disk, a
killed run) leaves an existing file as it was and nothing half-written.
"""

import os
import uuid
from contextlib import contextmanager
from pathlib import Path

__all__ = ["FITS_ENDINGS", "READ_ENDINGS", "is_colour_cube", "replacing", "write_result"]

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
    mask and uncertainty (extra HDUs). ``path`` must have one of
    the `FITS_ENDINGS` (astropy writes no tile-compressed ``.fits.fz``)."""
    if not os.fspath(path).lower().endswith(FITS_ENDINGS):
        raise ValueError(f"{os.fspath(path)} is not a FITS file name this package writes: "
                         f"use one of {', '.join(FITS_ENDINGS)}")
    with replacing(path, overwrite) as temp:
        result.write(temp)
