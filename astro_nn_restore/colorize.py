"""Colourise a greyscale image: predict Lab chroma from lightness.

The image (physical units) is stretched to the Lab lightness ``L`` in
[0, 100] with astropy.visualization: ``L = 100 * stretch(interval(data))``,
by default an ``AsinhStretch(a=0.1)`` over a ``PercentileInterval(99.5)``.
A U-Net (`~astro_nn_restore.models.colorize.ColorGenerator`, trained as
the generator of a WGAN-GP) predicts the chroma ``a, b``; the output is the
RGB of ``(L, a, b)`` with the input's own ``L``, so colour is added and the
structure is left untouched.

Exactness of ``L``: sRGB cannot show every ``(L, a, b)``; clipping an
out-of-gamut colour to [0, 1] (what `skimage.color.lab2rgb` does) changes
its lightness, by up to tens of L units for saturated dark or bright
pixels. `compose_rgb` therefore shrinks the chroma of each out-of-gamut pixel
(same L and hue, bisection on the chroma factor) until it fits, so that
``rgb2lab(output)[..., 0]`` equals the stretched input to float32 rounding
(measured max error about 1e-4 L units; the tests require < 1e-3).
"""


from functools import partial

import numpy as np
from astropy import units as u
from scipy.ndimage import gaussian_filter

from . import chunked
from ._inference import run_network
from ._nddata import BANDS, band_keys, non_negative_number, parse_image, repack
from .normalize import grid_sample, grid_step
from .registry import load_model
from .wcs_utils import band_cube_wcs

__all__ = ["colorize", "rgb_image", "stretched_lightness", "compose_rgb", "lupton_composite"]


# sRGB (D65, 2 degree observer) as in skimage.color: XYZ = M @ linear RGB
_XYZ_FROM_RGB = np.array([[0.412453, 0.357580, 0.180423],
                          [0.212671, 0.715160, 0.072169],
                          [0.019334, 0.119193, 0.950227]])
_RGB_FROM_XYZ = np.linalg.inv(_XYZ_FROM_RGB)
_WHITE_D65 = np.array([0.95047, 1.0, 1.08883])


def colorize(data, *, model="default", stretch=None, interval=None, chroma_smoothing=2.0,
             unit=None, tile_size=256, overlap=32, batch_size=4, progress=False,
             precision="auto", out=None, overwrite=False):
    """Add colour to a greyscale astronomical image.

    Parameters
    ----------
    data : CCDData, NDData, HDU, HDUList, path, (array, WCS or Header) or ndarray
        A 2-D image in physical units.
    model : str, PathLike or torch.nn.Module
        ``"default"``, another registry name, a weights path, or a module
        mapping ``L / 100`` (B, 1, H, W) to Lab ``a, b`` (B, 2, H, W).
    stretch : `~astropy.visualization.BaseStretch`, optional
        Default ``AsinhStretch(a=0.1)``.
    interval : `~astropy.visualization.BaseInterval`, optional
        Default ``PercentileInterval(99.5)``. Limits are computed on the
        finite, unmasked pixels of the whole image (on an evenly strided
        grid of about a million of them for larger images, see
        `~astro_nn_restore.normalize.grid_step`).
    chroma_smoothing : float
        Gaussian sigma in pixels applied to the predicted ``a, b`` (not to
        the lightness) before the RGB is composed; 0 turns it off. Colour
        changes on the scale of sources, not of pixels: the smoothing removes
        chroma that follows pixel noise and a period-4 pattern the shipped
        generator makes on noisy backgrounds.
    unit : unit-like, optional
        Unit for inputs that carry none (only recorded; the output is
        dimensionless).
    tile_size, overlap, batch_size, progress, precision
        Tiled inference settings (see `~astro_nn_restore._inference.run_network`).
    out : str or PathLike, optional
        Write the cube to this FITS file chunk by chunk and return it
        memory-mapped (see `astro_nn_restore.chunked`); dask and
        memory-mapped inputs are processed in chunks even without it.
    overwrite : bool
        Replace an existing ``out`` file.

    Returns
    -------
    `~astropy.nddata.CCDData`
        Shape (3, ny, nx): R, G, B planes in [0, 1], dimensionless; the
        input's WCS with a band axis (`~astro_nn_restore.wcs_utils.band_cube_wcs`);
        header with provenance, ``BAND1..3 = R, G, B``, the stretch
        (``ANR_STR``, ``ANR_INT``, limits ``ANR_VMIN``/``ANR_VMAX`` in the
        input's unit) and the chroma smoothing (``ANR_CSM``); the input's
        mask repeated on each plane; NaN/inf input pixels are NaN in every
        plane; no uncertainty. Use `rgb_image` for
        an (ny, nx, 3) array to display. Written to FITS, the file has no
        BUNIT (dimensionless): read it back with
        ``CCDData.read(path, unit=u.dimensionless_unscaled)``; its WCS reads
        back and slicing the cube works. A distorted input WCS (SIP, TPV, a
        DSS plate solution) becomes its best distortion-free fit (or no
        WCS, where that is more than a pixel off), with a warning
        and a HISTORY line giving the largest sky offset over the image
        (`~astro_nn_restore.wcs_utils.band_cube_wcs`: astropy 8 cannot read
        a distorted 3-axis WCS back); the input's own 2-D WCS stays the exact
        one.

    Examples
    --------
    With the shipped model (``model="default"``):

    >>> from astro_nn_restore import simulate_sky
    >>> from astro_nn_restore.colorize import colorize, rgb_image
    >>> sky = simulate_sky((128, 128), seed=1)
    >>> rgb = colorize(sky.noisy)  # doctest: +SKIP

    Any generator works, here an untrained one; the lightness is the input's:

    >>> from astropy.visualization import SqrtStretch
    >>> from astro_nn_restore.models.colorize import ColorGenerator
    >>> rgb = colorize(sky.noisy, model=ColorGenerator(channels=(8, 16)),
    ...                stretch=SqrtStretch())
    >>> rgb.shape, rgb_image(rgb).shape, rgb.header["ANR_STR"], rgb.wcs.pixel_n_dim
    ((3, 128, 128), (128, 128, 3), 'SqrtStretch', 3)
    """
    stretch, interval = _check_visualization(stretch, interval)
    smoothing = non_negative_number(chroma_smoothing, "chroma_smoothing")
    module, card = load_model(model, task="colorize")
    tiling = dict(tile_size=tile_size, overlap=overlap, batch_size=batch_size, progress=progress,
                  precision=precision)
    if chunked.is_chunked_input(data, out):
        return _colorize_chunked(data, unit, module, card, stretch, interval, smoothing, tiling,
                                 out, overwrite)
    parsed = parse_image(data, allow_color=False, unit=unit)
    limits = lightness_limits(parsed.data, interval, bad=parsed.bad)
    rgb = _colorize_block(parsed.data, parsed.bad, limits=limits, stretch=stretch, module=module,
                          smoothing=smoothing, tiling=tiling)
    return _repack_rgb(parsed, rgb, card, stretch, interval, limits, smoothing)


def _colorize_block(image, bad, *, limits, stretch, module, smoothing, tiling):
    """(3, ny, nx) float32 RGB of a block, with the whole image's stretch limits."""
    lightness = _lightness(image, bad, limits, stretch)
    chroma = run_network(module, (lightness / 100)[None].astype(np.float32), out_channels=2,
                         **tiling)
    if smoothing:
        chroma = gaussian_filter(chroma, (0, smoothing, smoothing), mode="reflect")
    rgb = np.moveaxis(compose_rgb(lightness, np.moveaxis(chroma, 0, -1)), -1, 0)
    rgb[:, ~np.isfinite(image)] = np.nan
    return rgb.astype(np.float32)


def _colorize_chunked(data, unit, module, card, stretch, interval, smoothing, tiling, out,
                      overwrite):
    """Dask/memmap input: stretch limits from the whole image, chunks coloured."""
    with chunked.open_lazy(data, unit=unit) as image:
        limits = lightness_limits(image.data, interval, bad=image.bad)
        depth = chunked.overlap_depth(module, 1, tile_size=tiling["tile_size"], image=image.data,
                                      extra=np.ceil(4 * smoothing))  # the Gaussian's reach
        block = partial(_colorize_block, limits=limits, stretch=stretch, module=module,
                        smoothing=smoothing, tiling=tiling)
        rgb = chunked.map_chunks(block, [image.data, image.bad], depth=depth, leading=3)
        mask = None if image.mask is None else chunked.broadcast_planes(image.mask, 3)
        return _repack_rgb(image, rgb, card, stretch, interval, limits, smoothing, mask=mask,
                           out=out, overwrite=overwrite)


#: Stretch names of the command line and the napari plugin -> astropy.visualization class.
STRETCH_NAMES = {"asinh": "AsinhStretch", "sqrt": "SqrtStretch", "log": "LogStretch",
                 "linear": "LinearStretch"}


def stretch_by_name(name):
    """The astropy stretch for a `STRETCH_NAMES` name (asinh with a=0.1, the default).

    Examples
    --------
    >>> stretch_by_name("asinh").a, type(stretch_by_name("sqrt")).__name__
    (0.1, 'SqrtStretch')
    """
    from astropy import visualization

    if name not in STRETCH_NAMES:
        raise ValueError(f"unknown stretch {name!r}; one of {', '.join(STRETCH_NAMES)}")
    cls = getattr(visualization, STRETCH_NAMES[name])
    return cls(a=0.1) if name == "asinh" else cls()


def _check_visualization(stretch, interval):
    from astropy.visualization import BaseInterval, BaseStretch, PercentileInterval

    stretch = stretch_by_name("asinh") if stretch is None else stretch
    interval = PercentileInterval(99.5) if interval is None else interval
    if not isinstance(stretch, BaseStretch):
        raise TypeError(f"stretch must be an astropy.visualization stretch (e.g. AsinhStretch()), "
                        f"got {type(stretch).__name__}")
    if not isinstance(interval, BaseInterval):
        raise TypeError(f"interval must be an astropy.visualization interval (e.g. "
                        f"PercentileInterval(99.5)), got {type(interval).__name__}")
    return stretch, interval


def stretched_lightness(image, *, stretch, interval, bad=None):
    """Lab lightness ``100 * stretch(interval(image))`` in [0, 100] (float64).

    Bad pixels (``bad`` or non-finite) are left out of the interval's limits
    (`lightness_limits`) and set to the lower limit. Returns
    ``(lightness, (vmin, vmax))``.

    Examples
    --------
    >>> import numpy as np
    >>> from astropy.visualization import LinearStretch, ManualInterval
    >>> L, limits = stretched_lightness(np.array([[0.0, 5.0], [10.0, np.nan]]),
    ...                                 stretch=LinearStretch(), interval=ManualInterval(0, 10))
    >>> L.tolist(), limits
    ([[0.0, 50.0], [100.0, 0.0]], (0.0, 10.0))
    """
    limits = lightness_limits(image, interval, bad=bad)
    return _lightness(image, bad, limits, stretch), limits


def lightness_limits(image, interval, *, bad=None):
    """``interval``'s limits on the good pixels (grid-sampled if large; numpy or dask).

    Examples
    --------
    >>> import numpy as np
    >>> from astropy.visualization import MinMaxInterval
    >>> lightness_limits(np.array([[1.0, np.nan], [3.0, 2.0]]), MinMaxInterval())
    (1.0, 3.0)
    """
    step = grid_step(np.shape(image))
    values = grid_sample(image, step).astype(np.float64)
    good = np.isfinite(values) if bad is None else np.isfinite(values) & ~grid_sample(bad, step)
    if not good.any():
        raise ValueError("the image has no finite, unmasked pixel to stretch")
    vmin, vmax = (float(v) for v in interval.get_limits(values[good]))
    if not (np.isfinite(vmin) and np.isfinite(vmax) and vmin <= vmax):
        raise ValueError(f"the interval gives the limits ({vmin:g}, {vmax:g}): they must be "
                         "finite, the lower one first")
    return vmin, vmax


def _lightness(image, bad, limits, stretch):
    image = np.asarray(image, dtype=np.float64)
    good = np.isfinite(image) if bad is None else np.isfinite(image) & ~bad
    vmin, vmax = limits
    filled = np.where(good, image, vmin)
    scaled = np.clip((filled - vmin) / (vmax - vmin) if vmax > vmin else 0 * filled, 0, 1)
    return 100 * np.clip(stretch(scaled, clip=True), 0, 1)


def _linear_rgb(lightness, chroma):
    """Unclipped linear sRGB of Lab values (the formulas of skimage.color)."""
    fy = (lightness + 16) / 116
    f = np.stack([fy + chroma[..., 0] / 500, fy, fy - chroma[..., 1] / 200], axis=-1)
    xyz = np.where(f > 6 / 29, f**3, (f - 16 / 116) / 7.787) * _WHITE_D65
    return xyz @ _RGB_FROM_XYZ.T


def _in_gamut(lightness, chroma, tol=1e-9):
    rgb = _linear_rgb(lightness, chroma)
    return np.all((rgb >= -tol) & (rgb <= 1 + tol), axis=-1)


def _gamut_factor(lightness, chroma, iterations=24):
    """Per-pixel chroma factor in [0, 1] that brings (L, a, b) into the sRGB gamut."""
    factor = np.ones(lightness.shape)
    outside = np.flatnonzero(~_in_gamut(lightness, chroma))
    L, ab = lightness.ravel()[outside], chroma.reshape(-1, 2)[outside]
    low, high = np.zeros(len(outside)), np.ones(len(outside))
    for _ in range(iterations):  # grey (factor 0) is always inside
        middle = (low + high) / 2
        inside = _in_gamut(L, ab * middle[:, None])
        low, high = np.where(inside, middle, low), np.where(inside, high, middle)
    factor.ravel()[outside] = low
    return factor


def compose_rgb(lightness, chroma):
    """sRGB in [0, 1] of Lab ``(lightness, chroma)`` keeping the lightness.

    Out-of-gamut pixels get their chroma shrunk (same hue) until they fit,
    instead of being clipped, so ``rgb2lab(compose_rgb(L, ab))[..., 0] == L``
    to rounding.

    Parameters
    ----------
    lightness : ndarray (ny, nx)
        Lab L in [0, 100].
    chroma : ndarray (ny, nx, 2)
        Lab a, b.

    Returns
    -------
    ndarray (ny, nx, 3)
        float64 RGB.

    Examples
    --------
    >>> import numpy as np
    >>> from skimage.color import rgb2lab
    >>> L = np.full((1, 2), 50.0)
    >>> rgb = compose_rgb(L, np.array([[[0.0, 0.0], [300.0, 0.0]]]))  # 2nd: far out of gamut
    >>> bool(np.allclose(rgb2lab(rgb)[..., 0], L))
    True
    """
    lightness = np.clip(np.asarray(lightness, dtype=np.float64), 0, 100)
    chroma = np.asarray(chroma, dtype=np.float64)
    if chroma.shape != (*lightness.shape, 2):
        raise ValueError(f"chroma shape {chroma.shape} must be lightness shape + (2,)")
    flat_l, flat_c = lightness.reshape(-1), chroma.reshape(-1, 2)  # any shape of pixels
    rgb = np.empty((flat_l.size, 3))
    for start in range(0, flat_l.size, _COMPOSE_PIXELS):  # blocks that stay in cache
        block = slice(start, start + _COMPOSE_PIXELS)
        rgb[block] = _compose_block(flat_l[block], flat_c[block])
    return rgb.reshape(*lightness.shape, 3)


#: Pixels per block of `compose_rgb`: whole-image passes of the gamut search
#: made 4096² images 1.5x slower per pixel than 1024² ones.
_COMPOSE_PIXELS = 1 << 18


def _compose_block(lightness, chroma):
    from skimage.color import lab2rgb

    chroma = np.nan_to_num(chroma) * _gamut_factor(lightness, chroma)[..., None]
    return lab2rgb(np.concatenate([lightness[..., None], chroma], axis=-1))


def _repack_rgb(parsed, rgb, card, stretch, interval, limits, smoothing, *, mask=None,
                out=None, overwrite=False):
    if mask is None and parsed.mask is not None:
        mask = np.broadcast_to(parsed.mask, rgb.shape).copy()
    history = [f"colorize: L = 100 * {type(stretch).__name__}({type(interval).__name__}(data)), "
               f"limits {limits[0]:.6g} .. {limits[1]:.6g} {parsed.unit}"]
    # pixel_shape set: a 2-D WCS without one leaves a 2-axis one, and CCDData slicing fails
    wcs, note = band_cube_wcs(parsed.wcs, rgb.shape[1:], bands=BANDS)
    history += [note] if note else []
    keys = band_keys()
    keys.update(ANR_STR=(type(stretch).__name__, "colorize stretch to Lab L"),
                ANR_INT=(type(interval).__name__, "colorize interval"),
                ANR_VMIN=(limits[0], "interval lower limit (input unit)"),
                ANR_VMAX=(limits[1], "interval upper limit (input unit)"),
                ANR_CSM=(smoothing, "colorize chroma smoothing sigma (pixels)"))
    if hasattr(rgb, "chunks"):
        return chunked.finish(parsed, rgb, operation="colorize", model_card=card, out=out,
                              overwrite=overwrite, wcs=wcs, unit=u.dimensionless_unscaled,
                              mask=mask, extra_history=history, keys=keys)
    result = repack(parsed, rgb, operation="colorize", model_card=card, wcs=wcs,
                    unit=u.dimensionless_unscaled, mask=mask, extra_history=history)
    result.meta.update(keys)
    return result


def rgb_image(ccd):
    """(ny, nx, 3) float32 array of a `colorize` result, for display.

    Parameters
    ----------
    ccd : CCDData, NDData or ndarray
        A (3, ny, nx) RGB cube.

    Examples
    --------
    >>> import numpy as np
    >>> from astropy.nddata import CCDData
    >>> cube = CCDData(np.zeros((3, 4, 5)), unit="")
    >>> rgb_image(cube).shape
    (4, 5, 3)
    """
    array = np.asarray(getattr(ccd, "data", ccd))
    if array.ndim != 3 or array.shape[0] != 3:
        raise ValueError(f"expected a (3, ny, nx) RGB cube, got shape {array.shape}")
    return np.ascontiguousarray(np.moveaxis(array, 0, -1), dtype=np.float32)


def lupton_composite(bands, *, q=8.0, stretch=None, stretch_fraction=0.5):
    """RGB in [0, 1] of 2 or 3 aligned band images with `make_lupton_rgb`.

    Parameters
    ----------
    bands : sequence of 2-D arrays
        Ordered blue to red. With two bands, green is their mean.
    q : float
        Lupton's softening ``Q``.
    stretch : float, optional
        Lupton's linear stretch; default ``stretch_fraction`` times the
        99.5th percentile of the mean band after background subtraction
        (each band's median is subtracted first).

    Returns
    -------
    ndarray (ny, nx, 3)
        float64 RGB.

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> rgb = lupton_composite([rng.random((8, 8)), rng.random((8, 8))])
    >>> rgb.shape, bool(0 <= rgb.min() and rgb.max() <= 1)
    ((8, 8, 3), True)
    """
    from astropy.visualization import make_lupton_rgb

    planes = [np.asarray(b, dtype=np.float64) for b in bands]
    if len(planes) == 2:
        planes.insert(1, (planes[0] + planes[1]) / 2)
    if len(planes) != 3 or any(p.ndim != 2 or p.shape != planes[0].shape for p in planes):
        raise ValueError("bands must be 2 or 3 aligned 2-D images of the same shape")
    planes = [np.nan_to_num(p - np.nanmedian(p)) for p in planes]
    if stretch is None:
        level = np.percentile(np.mean(planes, axis=0), 99.5)
        stretch = stretch_fraction * max(level, 1e-12)
    blue, green, red = planes
    with np.errstate(invalid="ignore", divide="ignore"):  # astropy divides 0/0 where I == 0
        rgb = make_lupton_rgb(red, green, blue, minimum=0, stretch=stretch, Q=q,
                              output_dtype=np.float64)
    return np.clip(rgb, 0, 1)
