"""Super-resolution by 2 or 4 with a rescaled WCS and conserved flux.

Policies (the *why* of each choice is in the function docstrings):

* **Models.** ``model="default"`` is `~astro_nn_restore.models.superres.SRResNet`
  (residual blocks on the low-resolution grid, PixelShuffle output, bicubic
  skip); ``model="srcnn"`` is the SRCNN baseline. Both are trained for x2 on
  `~astro_nn_restore.degrade.coarse_detector` pairs (the PSF-blurred sky
  block-averaged over 2x2 pixels, plus noise).
* **Factor 4** is two x2 passes of the x2 model: one model and one training
  serve both factors, and each pass keeps exact block consistency, so the
  x4 output bins back to the input exactly too. A model trained for 4
  (``factor`` in its card) is used in one pass.
* **Normalisation** on the whole input image (sigma-clipped background and
  noise, or the given uncertainty), shared by both passes of x4.
* **Block consistency.** The networks end with a projection that corrects
  every ``f x f`` block mean to the input pixel, and the same projection is
  applied again after tiling (the blending of tiles can move block means by
  a little). Binning the output back by ``f`` reproduces the input to float
  precision: flux can be moved inside a pixel's footprint, never created.
* **Flux units** (see `flux_policy`): per-pixel quantities are divided by
  ``f**2`` (image sum kept); surface brightness is left as is.
* **WCS**: `~astro_nn_restore.wcs_utils.rescale_wcs`; stale WCS keys are
  stripped from the header, and pixel-scale keys (``PIXSCALE``,
  ``PIXSCAL1/2``, ``SECPIX``, ``SECPIX1/2``, ``XPIXSCAL``, ``YPIXSCAL``)
  are divided by ``f``. Where the values are divided by ``f**2``, so are the
  saturation levels ``SATURATE`` and ``SATLEVEL`` (exact for the mean of each
  ``f x f`` block), and ``FLUXCONV`` (surface brightness per pixel value) is
  multiplied by ``f**2``; other keys in pixel-value units (sky levels, for
  example) are left as they are. Physical detector pixel sizes (``XPIXSZ``, ``PIXSIZE``
  in microns), ``GAIN``, ``RDNOISE`` and section keys (``DATASEC``...) are
  left alone; they describe the detector, not the resampled grid.
* **Mask** and **NaN/inf**: nearest-neighbour upsampling (a bad input pixel
  makes its whole ``f x f`` block bad).
* **Uncertainty** (see `_output_uncertainty`): nearest-upsampled input sigma,
  times ``f`` for surface brightness or divided by ``f`` for per-pixel flux.
* **Colour** (an ``(ny, nx, 3)`` array or a ``(3, ny, nx)`` cube): luminance
  by the network, chroma by bicubic.
"""

from functools import partial

import numpy as np
from astropy import units as u
from astropy.units import FunctionUnitBase

from . import chunked
from ._color import merge_luminance, split_luminance
from ._inference import run_network
from ._nddata import color_result, parse_image, repack
from .normalize import estimate_normalization
from .registry import load_model
from .wcs_utils import rescale_wcs

__all__ = ["super_resolve", "flux_policy", "PIXEL_SCALE_KEYS", "PIXEL_LEVEL_KEYS",
           "SURFACE_CONVERSION_KEYS"]

#: Header keys holding a pixel scale (angle per pixel): divided by the factor.
PIXEL_SCALE_KEYS = ("PIXSCALE", "PIXSCAL1", "PIXSCAL2", "SECPIX", "SECPIX1", "SECPIX2",
                    "XPIXSCAL", "YPIXSCAL")
#: Header keys holding a pixel-value level (saturation): scaled as the values are.
PIXEL_LEVEL_KEYS = ("SATURATE", "SATLEVEL")
#: Header keys converting a pixel value to surface brightness (Spitzer's
#: MJy/sr per DN/s): multiplied by ``f**2`` where the values are divided by it.
SURFACE_CONVERSION_KEYS = ("FLUXCONV",)

_LOG_UNITS = (u.mag, u.dex, u.dB)


def super_resolve(data, *, factor=2, model="default", flux_conserving=None, unit=None,
                  tile_size=256, overlap=32, batch_size=4, progress=False, precision="auto",
                  out=None, overwrite=False):
    """Upsample an image by 2 or 4 with a trained network.

    Parameters
    ----------
    data : CCDData, NDData, HDU, HDUList, path, (array, WCS or Header) or ndarray
        A 2-D image, or a colour image: an (ny, nx, 3) array, or a (3, ny, nx) cube whose
        third axis is ``BAND`` or untyped (see :ref:`data_model`)
        (luminance by the network, chroma by bicubic interpolation).
    factor : {2, 4}
        Upsampling factor. 4 is two passes of an x2 model.
    model : str, PathLike or torch.nn.Module
        ``"default"``, ``"srcnn"``, another registry name, a weights path, or
        a module (its ``factor`` attribute, default 2, is its own factor).
    flux_conserving : bool, optional
        True divides the values by ``factor**2`` so the image sum is kept
        (per-pixel quantities: counts, adu, Jy per pixel...); False keeps the
        values (surface brightness). Default: guessed from the unit, see
        `flux_policy`.
    unit : unit-like, optional
        Unit for inputs that carry none (bare arrays, headers without BUNIT).
    tile_size, overlap : int
        Tile edge and overlap, in input pixels.
    batch_size : int
        Tiles per network call.
    progress : bool or callable
        Show a progress bar over tiles, or call ``progress(done, total)``
        before each batch of tiles (an exception it raises cancels the run).
    precision : {'auto', 'bf16', 'fp32'}
        ``'auto'`` uses bf16 autocast where the CPU supports it natively.
    out : str or PathLike, optional
        Write the result to this FITS file chunk by chunk and return it
        memory-mapped (see `astro_nn_restore.chunked`); dask and
        memory-mapped inputs are processed in chunks even without it (each
        output chunk is ``factor`` times its input chunk).
    overwrite : bool
        Replace an existing ``out`` file.

    Returns
    -------
    `~astropy.nddata.CCDData` or ndarray
        Shape times ``factor``, same unit, rescaled WCS, mask and NaN
        upsampled by nearest neighbour, header with provenance (``ANR_FACT``
        the factor, ``ANR_FLUX`` the flux policy). A bare (ny, nx, 3) array
        gives an (f ny, f nx, 3) float32 array (masked when the input was, the
        mask upsampled by nearest neighbour); other colour input a
        (3, f ny, f nx) CCDData cube with the same header keys and the
        rescaled sky WCS plus a band axis.

    Raises
    ------
    ValueError
        For a factor other than 2 or 4, a logarithmic unit (magnitudes), or
        a model whose factor does not divide ``factor``.

    Examples
    --------
    >>> from astro_nn_restore import super_resolve, simulate_sky
    >>> sky = simulate_sky((64, 64), seed=1)
    >>> big = super_resolve(sky.noisy, factor=2)  # doctest: +SKIP
    >>> big.shape, big.header["ANR_FLUX"]  # doctest: +SKIP
    ((128, 128), 'per-pixel')

    Any module with a ``factor`` works, e.g. an untrained SRResNet (its
    output is then bicubic interpolation made block-consistent):

    >>> from astro_nn_restore.models.superres import SRResNet
    >>> big = super_resolve(sky.noisy, factor=4, model=SRResNet())
    >>> big.shape, big.unit == sky.noisy.unit
    ((256, 256), True)
    >>> bool(abs(big.data.sum() / sky.noisy.data.sum() - 1) < 1e-5)
    True
    """
    factor = _check_factor(factor)
    module, card = load_model(model, task="superres")
    passes = _passes(module, factor)
    tiling = dict(tile_size=tile_size, overlap=overlap, batch_size=batch_size, progress=progress,
                  precision=precision)
    if chunked.is_chunked_input(data, out):
        return _super_resolve_chunked(data, unit, module, card, passes, tiling, factor,
                                      flux_conserving, out, overwrite)
    parsed = parse_image(data, allow_color=True, unit=unit)
    conserve = flux_policy(parsed.unit, flux_conserving, color=parsed.is_color)
    wcs = None if parsed.wcs is None else rescale_wcs(parsed.wcs, factor)
    parsed.meta, history, keys = resampled_header(parsed.meta, factor, conserve)
    if parsed.is_color:
        rgb = _super_resolve_color(parsed, module, passes, tiling, conserve, factor)
        return color_result(parsed, rgb, operation="super_resolve", model_card=card,
                            factor=factor, wcs=wcs, history=history, keys=keys)
    norm = estimate_normalization(parsed.data, bad=parsed.bad, uncertainty=parsed.uncertainty)
    output = _upsample_block(parsed.data, parsed.bad, norm=norm, module=module, passes=passes,
                             tiling=tiling, conserve=conserve)
    result = repack(parsed, output, operation="super_resolve", model_card=card,
                    wcs=wcs,
                    mask=None if parsed.mask is None else _nearest(parsed.mask, factor),
                    uncertainty=_output_uncertainty(parsed.uncertainty, factor, conserve),
                    extra_history=history)
    result.meta.update(keys)
    return result


def resampled_header(header, factor, conserve):
    """What super-resolution changes in a header: ``(header, history, keys)``.

    ``header`` (changed in place) has its pixel-scale keywords
    (`PIXEL_SCALE_KEYS`) divided by ``factor`` and, with ``conserve``, its
    `PIXEL_LEVEL_KEYS` divided and `SURFACE_CONVERSION_KEYS` multiplied by
    ``factor**2``; ``history`` is the HISTORY line
    and ``keys`` the ``ANR_FACT``/``ANR_FLUX`` cards to add after provenance.
    Used for 2-D, chunked and colour results.
    """
    policy = ("values divided by f**2 (per-pixel flux; image sum kept)" if conserve
              else "values kept (surface brightness; image mean kept)")
    keys = {"ANR_FACT": (factor, "super_resolve upsampling factor"),
            "ANR_FLUX": ("per-pixel" if conserve else "surface",
                         "per-pixel: values / f**2; surface: values kept")}
    _scale_keys(header, PIXEL_SCALE_KEYS, 1 / factor)
    if conserve:
        _scale_keys(header, PIXEL_LEVEL_KEYS, 1 / factor**2)
        _scale_keys(header, SURFACE_CONVERSION_KEYS, factor**2)
    return header, [f"super_resolve: factor {factor}, {policy}"], keys


def _super_resolve_chunked(data, unit, module, card, passes, tiling, factor, flux_conserving,
                           out, overwrite):
    """Dask/memmap input: whole-image normalisation, chunks upsampled by ``factor``."""
    with chunked.open_lazy(data, unit=unit) as image:
        conserve = flux_policy(image.unit, flux_conserving)
        norm = estimate_normalization(image.data, bad=image.bad, uncertainty=image.uncertainty)
        own = _factor_of(module)
        radius = chunked.overlap_depth(module, 1, scale=own, tile_size=tiling["tile_size"],
                                        image=image.data)
        depth = sum(int(np.ceil(radius / own**i)) for i in range(passes))  # later passes: finer
        block = partial(_upsample_block, norm=norm, module=module, passes=passes, tiling=tiling,
                        conserve=conserve)
        result = chunked.map_chunks(block, [image.data, image.bad], depth=depth, scale=factor)
        image.meta, history, keys = resampled_header(image.meta, factor, conserve)
        sigma = image.uncertainty
        return chunked.finish(
            image, result, operation="super_resolve", model_card=card, out=out,
            overwrite=overwrite, wcs=None if image.wcs is None else rescale_wcs(image.wcs, factor),
            mask=None if image.mask is None else chunked.nearest(image.mask, factor),
            uncertainty=None if sigma is None else chunked.nearest(sigma, factor) * (
                1.0 / factor if conserve else float(factor)),
            extra_history=history, keys=keys)


def _check_factor(factor):
    if isinstance(factor, bool) or factor not in (2, 4):
        raise ValueError(f"factor must be 2 or 4, got {factor!r}")
    return int(factor)


def _passes(module, factor):
    """Number of passes of the model (its own ``factor`` attribute, default 2)."""
    own = _factor_of(module)
    passes, rest = 1, factor
    while rest > own and rest % own == 0:
        passes, rest = passes + 1, rest // own
    if rest != own:
        raise ValueError(f"a x{own} model cannot upsample by {factor}")
    return passes


def flux_policy(unit, flux_conserving=None, *, color=False):
    """Whether to divide values by ``factor**2`` (True) or keep them (False).

    ``flux_conserving`` wins when given. Otherwise:

    * units per solid angle (``sr``, ``arcsec**-2``, ``deg**-2``...), per
      beam, or temperatures (brightness temperature) are surface brightness:
      kept, so the mean is kept;
    * everything else is a per-pixel quantity (``adu``, ``electron``,
      ``count``, ``ct``, ``DN``, ``photon``, ``Jy``, ``mJy``, ``nmgy``,
      ``erg / (s cm2)``, any of them per second): divided, so the sum is kept.
      Dimensionless data count as per-pixel too, because a FITS file without
      BUNIT nearly always holds detector counts; but colour arrays
      (``color=True``) are display images and keep their values.
    * Logarithmic units (``mag``, ``mag / arcsec2``, ``dex``) are refused:
      averaging magnitudes is not linear; convert to linear units first.

    Examples
    --------
    >>> from astropy import units as u
    >>> flux_policy(u.adu), flux_policy(u.MJy / u.sr), flux_policy(u.Jy / u.beam)
    (True, False, False)
    >>> flux_policy(u.MJy / u.sr, flux_conserving=True)
    True
    """
    if flux_conserving is not None:
        if not isinstance(flux_conserving, (bool, np.bool_)):  # "no" or NaN would be True
            raise TypeError(f"flux_conserving must be True, False or None, got "
                            f"{flux_conserving!r}")
        return bool(flux_conserving)
    if _is_logarithmic(unit):
        raise ValueError(f"unit {unit} is logarithmic: super-resolution needs linear data "
                         "(convert magnitudes to fluxes first)")
    if unit == u.dimensionless_unscaled:
        return not color
    return not _is_surface_brightness(unit)


def _is_logarithmic(unit):
    if isinstance(unit, FunctionUnitBase):
        return True
    return any(isinstance(b, FunctionUnitBase) or b in _LOG_UNITS for b in unit.bases)


def _is_surface_brightness(unit):
    for base, power in zip(unit.bases, unit.powers, strict=True):
        kind = str(base.physical_type)
        if power < 0 and (kind in ("angle", "solid angle") or base == u.beam):
            return True
        if kind == "temperature":
            return True
    return False


def _upsample_plane(image, bad, sigma, module, passes, tiling):
    """Network upsampling of one plane in the input's unit (block means kept)."""
    norm = estimate_normalization(image, bad=bad, uncertainty=sigma)
    return _upsample_block(image, bad, norm=norm, module=module, passes=passes, tiling=tiling)


def _upsample_block(image, bad, *, norm, module, passes, tiling, conserve=None):
    """Upsample a block with a given (whole-image) normalisation.

    With ``conserve`` (True/False) the block is finished as an output: NaN/inf
    back (whole blocks) and the flux scaling; with None it stays in the
    input's unit, block means kept.
    """
    x = image.copy()
    x[bad] = norm.background
    x = norm.forward(x)
    own = _factor_of(module)
    for _ in range(passes):
        up = run_network(module, x[None], scale=own, out_channels=1, **tiling)[0]
        x = _block_project(up, x, own)
    x = norm.inverse(x)
    return x if conserve is None else _finish_values(image, x, own**passes, conserve)


def _block_project(fine, coarse, factor):
    """Add to each ``factor x factor`` block of ``fine`` its mean's error (float64)."""
    ny, nx = coarse.shape
    blocks = fine.astype(np.float64).reshape(ny, factor, nx, factor)
    error = coarse - blocks.mean(axis=(1, 3))
    return (blocks + error[:, None, :, None]).reshape(fine.shape).astype(np.float32)


def _nearest(array, factor):
    return np.repeat(np.repeat(array, factor, axis=0), factor, axis=1)


def _finish_values(image, upsampled, factor, conserve):
    """NaN/inf back (whole blocks), then the flux scaling."""
    nonfinite = _nearest(~np.isfinite(image), factor)
    upsampled[nonfinite] = _nearest(image, factor)[nonfinite]
    return upsampled / factor**2 if conserve else upsampled


def _output_uncertainty(sigma, factor, conserve):
    """Per-pixel sigma of the output, or None when the input has none.

    Nearest-neighbour upsampled, then scaled so that a sum (or mean) over a
    whole ``f x f`` block, propagated as if the pixels were independent,
    has the input pixel's sigma: ``sigma / f`` for per-pixel flux (values
    divided by ``f**2``), ``sigma * f`` for surface brightness. The pixels of
    one block are in fact strongly correlated (they share one measurement);
    sums over areas much larger than a block are then slightly
    overestimated, sums over less than a block are not meaningful.
    """
    if sigma is None:
        return None
    scale = 1.0 / factor if conserve else float(factor)
    return (_nearest(sigma, factor) * scale).astype(np.float32)


def _super_resolve_color(parsed, module, passes, tiling, conserve, factor):
    """Luminance through the network, chroma by bicubic; both block-consistent.

    The network was trained on single-band images; colour differences carry
    mostly low spatial frequencies, so bicubic is enough for them and avoids
    colour fringes from three independently hallucinated channels (and is 3x
    cheaper). Chroma is projected too, so every RGB channel bins back exactly.
    """
    rgb = parsed.data.copy()
    rgb[parsed.bad] = 0.0
    luminance, chroma = split_luminance(rgb)
    fine_y = _upsample_plane(luminance, parsed.bad, None, module, passes, tiling)
    fine_chroma = np.stack([_bicubic_consistent(chroma[..., i], factor) for i in range(2)],
                           axis=-1)
    out = merge_luminance(fine_y, fine_chroma)
    nonfinite = _nearest(~np.isfinite(parsed.data), factor)
    out[nonfinite] = _nearest(parsed.data, factor)[nonfinite]
    return out / factor**2 if conserve else out


def _factor_of(module):
    return int(getattr(module, "factor", 2))


def _bicubic_consistent(plane, factor):
    from skimage.transform import resize

    shape = (plane.shape[0] * factor, plane.shape[1] * factor)
    fine = resize(plane, shape, order=3, mode="reflect", anti_aliasing=False)
    return _block_project(fine, plane, factor)


def _scale_keys(header, keys, scale):
    for key in keys:
        if key in header and isinstance(header[key], (int, float)) and not isinstance(
                header[key], bool):
            header[key] = header[key] * scale
