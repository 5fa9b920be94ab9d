"""Colour images: restore the luminance, keep the chroma.

A linear, exactly invertible split (no clipping, works for any unit):
``Y = 0.299 R + 0.587 G + 0.114 B`` (the Y of Rec. 601 YCbCr), and the
chroma differences ``R - Y`` and ``B - Y``.
"""

import numpy as np

__all__ = ["split_luminance", "merge_luminance", "luminance_sigma"]

_WEIGHTS = np.array([0.299, 0.587, 0.114], dtype=np.float64)


def split_luminance(rgb):
    """(ny, nx, 3) -> (luminance (ny, nx), chroma (ny, nx, 2)).

    Examples
    --------
    >>> import numpy as np
    >>> rgb = np.random.default_rng(0).random((4, 5, 3))
    >>> y, chroma = split_luminance(rgb)
    >>> np.allclose(merge_luminance(y, chroma), rgb)
    True
    """
    rgb = np.asarray(rgb, dtype=np.float64)
    y = rgb @ _WEIGHTS
    chroma = np.stack([rgb[..., 0] - y, rgb[..., 2] - y], axis=-1)
    return y.astype(np.float32), chroma


def merge_luminance(y, chroma):
    """Inverse of `split_luminance` with a (possibly restored) luminance."""
    y = np.asarray(y, dtype=np.float64)
    r = y + chroma[..., 0]
    b = y + chroma[..., 1]
    g = (y - _WEIGHTS[0] * r - _WEIGHTS[2] * b) / _WEIGHTS[1]
    return np.stack([r, g, b], axis=-1).astype(np.float32)


def luminance_sigma(sigma):
    """Noise of the luminance from the channels' noise (independent channels).

    ``sigma`` is (ny, nx, 3), one standard deviation per channel, or (ny, nx),
    the same for all three.

    Examples
    --------
    >>> import numpy as np
    >>> round(float(luminance_sigma(np.ones((1, 1)))[0, 0]), 4)  # sqrt(sum of weights**2)
    0.6686
    """
    sigma = np.asarray(sigma, dtype=np.float64)
    if sigma.ndim == 3:
        return np.sqrt(sigma**2 @ _WEIGHTS**2).astype(np.float32)
    return (sigma * np.sqrt(np.sum(_WEIGHTS**2))).astype(np.float32)
