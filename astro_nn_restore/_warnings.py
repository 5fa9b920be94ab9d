"""Warnings attributed to the user's line, wherever inside the package they are raised.

A fixed ``stacklevel`` is right for one call path only: the same check runs
from ``denoise_residual``, ``deblur``, the chunked path and the napari
plugin, at different depths. `warn` walks up to the first frame outside this
package (Python 3.12's ``skip_file_prefixes`` does the same).
"""

import os
import sys
import warnings

from astropy.utils.exceptions import AstropyUserWarning

__all__ = ["warn"]

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
