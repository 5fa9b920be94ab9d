"""Warnings attributed to the user's line, wherever inside the package they are raised.

A fixed ``stacklevel`` is right for one call path only: the same check runs
from ``denoise_residual``, ``deblur``, the chunked path and the napari
plugin, at different depths. `warn` walks up to the first frame outside this
package (Python 3.12's ``skip_file_prefixes`` does the same).

`one_line` and `error_text` put another library's message (wcslib's and
torch's run over several lines) into a one-line warning or error.
"""

import os
import sys
import warnings

from astropy.utils.exceptions import AstropyUserWarning

__all__ = ["warn", "one_line", "error_text"]

_PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__)) + os.sep


def warn(message, category=AstropyUserWarning):
    """`warnings.warn` pointing at the first caller outside ``astro_nn_restore``.

    Examples
    --------
    >>> import warnings
    >>> with warnings.catch_warnings(record=True) as caught:
    ...     warnings.simplefilter("always")
    ...     warn("check this")
    >>> str(caught[0].message), caught[0].category.__name__
    ('check this', 'AstropyUserWarning')
    """
    frame, level = sys._getframe(1), 2
    while frame is not None and os.path.abspath(frame.f_code.co_filename).startswith(_PACKAGE_DIR):
        frame, level = frame.f_back, level + 1
    warnings.warn(message, category, stacklevel=level)


def one_line(text, limit=None):
    """``text`` (or an exception's message) on one line, cut after ``limit`` characters.

    Examples
    --------
    >>> one_line("wcslib/C/wcs.c:\\n  Ill-conditioned matrix", limit=20)
    'wcslib/C/wcs.c: Ill-...'
    """
    line = " ".join(str(text).split())
    return line if limit is None or len(line) <= limit else line[:limit] + "..."


def error_text(err, limit=200):
    """An exception as one line: ``"TypeName: its message"`` (`one_line`, cut at ``limit``).

    Examples
    --------
    >>> error_text(ValueError("no\\nfit"))
    'ValueError: no fit'
    """
    return f"{type(err).__name__}: {one_line(err, limit)}"
