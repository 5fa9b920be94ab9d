"""Overlapping-tile inference with smooth blending, for images of any size.

The image is cut into ``tile_size`` squares that overlap by ``overlap``
pixels, the tiles go to the network in batches, and the outputs are blended
back with weights that are zero within ``overlap / 4`` of a tile's inner edge
and rise smoothly (a raised cosine) over the middle half of the overlap.
Each output pixel is a weighted mean whose weights sum to one. Hence a
network whose receptive-field radius is at most ``overlap / 4`` gives exactly
the whole-image result, and a larger one gives seam-free output.

Memory: the output accumulator and one weight plane (both the size of the
output image) plus one batch of tiles. It does not grow with the number of
channels inside the network.
"""

import math
import numbers

import numpy as np
from tqdm.auto import tqdm

__all__ = ["tile_positions", "blend_window", "tiled_apply"]


def tile_positions(length, tile, overlap):
    """Start offsets of tiles covering ``range(length)``.

    Tiles step by ``tile - overlap``; the last one is moved back to end at
    ``length`` (so it may overlap its neighbour by more).

    Examples
    --------
    >>> tile_positions(10, 4, 2)
    [0, 2, 4, 6]
    >>> tile_positions(3, 4, 2)
    [0]
    """
    if length <= tile:
        return [0]
    step = tile - overlap
    starts = list(range(0, length - tile, step))
    starts.append(length - tile)
    return starts


def _ramp(n, overlap):
    """Weights rising from 0 to 1 over the middle half of ``overlap`` pixels."""
    d = np.arange(n) + 0.5  # distance of each pixel centre from the edge
    lo, hi = overlap / 4, 3 * overlap / 4
    t = np.clip((d - lo) / max(hi - lo, 1e-12), 0, 1)
    return np.sin(0.5 * np.pi * t) ** 2


def blend_window(tile, overlap, *, at_start=False, at_end=False):
    """1-D blending weights of a tile of length ``tile``.

    Edges that touch the image border (``at_start``/``at_end``) keep weight 1.

    Examples
    --------
    >>> w = blend_window(8, 4)
    >>> w.round(2).tolist()
    [0.0, 0.15, 0.85, 1.0, 1.0, 0.85, 0.15, 0.0]
    """
    window = np.ones(tile)
    if overlap > 0:
        ramp = _ramp(tile, overlap)
        if not at_start:
            window = np.minimum(window, ramp)
        if not at_end:
            window = np.minimum(window, ramp[::-1])
    return window


def _pad_to(image, height, width):
    """Pad (C, H, W) at the bottom/right to at least (height, width) by reflection."""
    pad_y, pad_x = max(0, height - image.shape[1]), max(0, width - image.shape[2])
    if pad_y == 0 and pad_x == 0:
        return image
    mode = "reflect" if min(image.shape[1:]) > 1 else "edge"
    return np.pad(image, ((0, 0), (0, pad_y), (0, pad_x)), mode=mode)


def _round_up(value, multiple):
    return int(math.ceil(value / multiple) * multiple)


def _tile_shape(image_shape, tile_size, multiple):
    """Tile edge per axis: ``tile_size``, or less for small images."""
    return tuple(min(tile_size, _round_up(n, multiple)) for n in image_shape)


def _tiles(starts_y, starts_x):
    return [(y, x) for y in starts_y for x in starts_x]


def tiled_apply(fn, image, *, tile_size=256, overlap=32, batch_size=4, scale=1,
                out_channels=None, size_multiple=1, progress=False, dtype=np.float32):
    """Apply ``fn`` to overlapping tiles of ``image`` and blend the results.

    Parameters
    ----------
    fn : callable
        Takes a float32 array (B, C, h, w) and returns (B, C_out, h*scale,
        w*scale). It is called with at most ``batch_size`` tiles at a time.
    image : ndarray
        (C, H, W) or (H, W) array.
    tile_size : int
        Tile edge in input pixels (rounded up to ``size_multiple``).
    overlap : int
        Pixels shared by neighbouring tiles; choose at least 4 times the
        network's receptive-field radius for exact agreement with
        whole-image inference.
    batch_size : int
        Tiles per call of ``fn``.
    scale : int
        Output pixels per input pixel (2 for x2 super-resolution).
    out_channels : int, optional
        Channels returned by ``fn``; default: as many as the input.
    size_multiple : int
        Tiles are padded to multiples of this (for example ``2**depth`` for
        a U-Net).
    progress : bool or callable
        Show a tqdm progress bar; or a callable ``progress(done, total)``,
        called with the number of tiles done before the first batch and after
        each one (a GUI's progress bar; an exception it raises stops the run
        between batches and propagates, which is how a GUI cancels).

    Returns
    -------
    ndarray
        (C_out, H*scale, W*scale), or (H*scale, W*scale) for 2-D input.

    Examples
    --------
    >>> import numpy as np
    >>> image = np.arange(30.0).reshape(5, 6)
    >>> out = tiled_apply(lambda batch: 2 * batch, image, tile_size=4, overlap=2)
    >>> np.allclose(out, 2 * image)
    True
    """
    squeeze = image.ndim == 2
    image = np.asarray(image, dtype=np.float32)
    if squeeze:
        image = image[None]
    _check_tiling(image, tile_size, overlap, batch_size, scale)
    _, height, width = image.shape
    tile = _tile_shape((height, width), _round_up(tile_size, size_multiple), size_multiple)
    overlap = min(overlap, min(tile) - 1)
    padded = _pad_to(image, max(height, tile[0]), max(width, tile[1]))
    out = _blend_tiles(fn, padded, tile, overlap, batch_size, scale, out_channels, progress, dtype)
    out = out[:, : height * scale, : width * scale]
    return out[0] if squeeze else out


def _check_tiling(image, tile_size, overlap, batch_size, scale):
    if image.ndim != 3:
        raise ValueError(f"tiled_apply needs a (C, H, W) or (H, W) array, got shape {image.shape}")
    settings = dict(tile_size=tile_size, overlap=overlap, batch_size=batch_size, scale=scale)
    for name, value in settings.items():  # a float tile_size is rounded up, as it always was
        if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
            raise TypeError(f"{name} must be a number, got {value!r}")
    if tile_size < 1 or batch_size < 1 or scale < 1:
        raise ValueError("tile_size, batch_size and scale must be positive integers")
    if not 0 <= overlap < tile_size:
        raise ValueError(f"overlap must be in [0, tile_size), got {overlap} for tile {tile_size}")


def _blend_tiles(fn, image, tile, overlap, batch_size, scale, out_channels, progress, dtype):
    _, height, width = image.shape
    starts_y = tile_positions(height, tile[0], overlap)
    starts_x = tile_positions(width, tile[1], overlap)
    windows = _Windows(tile, overlap, scale, height, width)
    n_out = image.shape[0] if out_channels is None else out_channels
    out = np.zeros((n_out, height * scale, width * scale), dtype=dtype)
    weight = np.zeros((height * scale, width * scale), dtype=np.float32)
    positions = _tiles(starts_y, starts_x)
    report = progress if callable(progress) else None
    show_bar = bool(progress) and report is None
    with tqdm(total=len(positions), disable=not show_bar, desc="tiles", unit="tile") as bar:
        for first in range(0, len(positions), batch_size):
            if report is not None:
                report(first, len(positions))
            batch_pos = positions[first : first + batch_size]
            batch = np.stack([image[:, y : y + tile[0], x : x + tile[1]] for y, x in batch_pos])
            result = np.asarray(fn(batch), dtype=np.float32)
            _accumulate(out, weight, result, batch_pos, windows, scale)
            bar.update(len(batch_pos))
        if report is not None:
            report(len(positions), len(positions))
    out /= weight  # every pixel has a positive weight: each is covered by a tile core
    return out


class _Windows:
    """2-D blending weights, cached per combination of border flags."""

    def __init__(self, tile, overlap, scale, height, width):
        self.tile, self.overlap, self.scale = tile, overlap, scale
        self.height, self.width = height, width
        self._cache = {}

    def at(self, y, x):
        flags = (y == 0, y + self.tile[0] == self.height, x == 0, x + self.tile[1] == self.width)
        if flags not in self._cache:
            s, o = self.scale, self.overlap * self.scale
            wy = blend_window(self.tile[0] * s, o, at_start=flags[0], at_end=flags[1])
            wx = blend_window(self.tile[1] * s, o, at_start=flags[2], at_end=flags[3])
            self._cache[flags] = np.outer(wy, wx).astype(np.float32)
        return self._cache[flags]


def _accumulate(out, weight, result, positions, windows, scale):
    expected = (out.shape[0], windows.tile[0] * scale, windows.tile[1] * scale)
    if result.shape[1:] != expected:
        raise ValueError(
            f"the network returned tiles of shape {result.shape[1:]}, expected {expected}"
        )
    for tile_out, (y, x) in zip(result, positions, strict=True):
        w = windows.at(y, x)
        ys, xs = slice(y * scale, y * scale + w.shape[0]), slice(x * scale, x * scale + w.shape[1])
        out[:, ys, xs] += tile_out * w
        weight[ys, xs] += w
