"""FITS file names and safe writes, shared by the command line, batch, chunked path and plugin.

Every output is written under a temporary name beside its final one
(`replacing`) and renamed only when complete: a failed write (a full disk, a
killed run) leaves an existing file as it was and nothing half-written.
"""

import os
import uuid
from contextlib import contextmanager
from pathlib import Path

__all__ = ["FITS_ENDINGS", "READ_ENDINGS", "replacing", "write_result"]

#: File name endings of FITS outputs (astropy compresses ``.gz`` ones).
FITS_ENDINGS = (".fits", ".fit", ".fts", ".fits.gz", ".fit.gz", ".fts.gz")
#: Endings of FITS inputs: also tile-compressed ``.fits.fz`` files.
READ_ENDINGS = (*FITS_ENDINGS, ".fits.fz")


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
    """Write an operation's result safely (`replacing`).

    A `~astropy.nddata.CCDData` with its header, WCS and unit (mask and
    uncertainty as extra HDUs); a colour (ny, nx, 3) array as it is, with a
    MASK extension when it is masked.
    """
    import numpy as np
    from astropy.io import fits
    from astropy.nddata import CCDData

    with replacing(path, overwrite) as temp:
        if isinstance(result, CCDData):
            result.write(temp)
        else:
            hdus = [fits.PrimaryHDU(np.ma.getdata(result))]
            if np.ma.isMaskedArray(result):
                hdus.append(fits.ImageHDU(np.ma.getmaskarray(result).astype(np.uint8),
                                          name="MASK"))
            fits.HDUList(hdus).writeto(temp)
