"""Denoising with a noise-aware residual U-Net.

The network sees the whole-image-normalised data and a per-pixel noise map
and predicts the noise, which is subtracted. The noise map is the given
uncertainty, the input's ``CCDData.uncertainty``, or else a constant equal to
the image's sigma-clipped standard deviation.
"""

from functools import partial

import numpy as np

from . import chunked
from ._inference import run_network
from ._nddata import noise_map, noise_note, parse_image, repack, restore_bad_pixels, restore_color
from .normalize import estimate_normalization
from .registry import load_model

__all__ = ["denoise_residual"]


def denoise_residual(data, *, uncertainty=None, model="default", unit=None, tile_size=256,
                     overlap=32, batch_size=4, progress=False, precision="auto", out=None,
                     overwrite=False):
    """Remove noise from an image while keeping its photometry.

    Parameters
    ----------
    data : CCDData, NDData, HDU, HDUList, path, (array, WCS or Header) or ndarray
        A 2-D image, or a colour image: an (ny, nx, 3) array, or a (3, ny, nx) cube whose
        third axis is ``BAND`` or untyped (see :ref:`data_model`); its
        luminance is denoised and its chroma kept.
    uncertainty : ndarray, NDUncertainty or float, optional
        Noise per pixel (standard deviation, in the data's unit). Default: the
        input's uncertainty, or else estimated from the image. A number must be
        finite and > 0; negative values on good pixels are refused, zero or
        non-finite ones get a warning (see :ref:`data_model`). For colour
        input: per channel ((ny, nx, 3), or (3, ny, nx) for a cube), or one
        number or (ny, nx) map for all
        three channels; the luminance's noise is propagated from it.
    model : str, PathLike or torch.nn.Module
        ``"default"``, another registry name, a weights path, or a module.
    unit : unit-like, optional
        Unit for inputs that carry none (bare arrays, headers without BUNIT).
    tile_size, overlap, batch_size : int
        Tiled inference settings (see `~astro_nn_restore.tiling.tiled_apply`).
    progress : bool or callable
        Show a progress bar over tiles, or call ``progress(done, total)``
        before each batch of tiles (an exception it raises cancels the run).
    precision : {'auto', 'bf16', 'fp32'}
        ``'auto'`` uses bf16 autocast where the CPU supports it natively.
    out : str or PathLike, optional
        Write the result to this FITS file chunk by chunk (the image is never
        whole in memory) and return it memory-mapped; see
        `astro_nn_restore.chunked`. A dask array or memory-mapped FITS input
        is processed in chunks even without ``out`` (result in memory).
    overwrite : bool
        Replace an existing ``out`` file.

    Returns
    -------
    `~astropy.nddata.CCDData` or ndarray
        Same shape, unit, WCS and mask; header with provenance; NaN stays NaN.
        The uncertainty is the input noise scaled by the residual-noise ratio
        measured on validation data (model card ``calibration``). A bare
        (ny, nx, 3) array gives an (ny, nx, 3) float32 array (masked when the
        input was); other colour input a (3, ny, nx) CCDData cube (header,
        mask, sky WCS with a band axis). Colour results carry no uncertainty.

    Examples
    --------
    >>> from astro_nn_restore import denoise_residual, simulate_sky
    >>> sky = simulate_sky((128, 128), seed=1)
    >>> clean = denoise_residual(sky.noisy)
    >>> clean.shape, clean.unit == sky.noisy.unit, clean.header["ANR_OP"]
    ((128, 128), True, 'denoise_residual')
    """
    module, card = load_model(model, task="denoise")
    tiling = dict(tile_size=tile_size, overlap=overlap, batch_size=batch_size, progress=progress,
                  precision=precision)
    if chunked.is_chunked_input(data, out):
        return _denoise_chunked(data, uncertainty, unit, module, card, tiling, out, overwrite)
    parsed = parse_image(data, allow_color=True, unit=unit)
    if parsed.is_color:
        return restore_color(parsed, partial(_denoise_plane, bad=parsed.bad, module=module,
                                             tiling=tiling), uncertainty,
                             operation="denoise_residual", model_card=card)
    sigma = noise_map(parsed, uncertainty)
    norm = estimate_normalization(parsed.data, bad=parsed.bad, uncertainty=sigma)
    denoised = _denoise_block(parsed.data, parsed.bad, sigma, norm=norm, module=module,
                              tiling=tiling)
    restore_bad_pixels(parsed, denoised)
    return repack(parsed, denoised, operation="denoise_residual", model_card=card,
                  uncertainty=_output_uncertainty(sigma, norm, card, parsed.data),
                  extra_history=[noise_note("denoise_residual", uncertainty,
                                            parsed.uncertainty)])


def _denoise_block(image, bad, sigma=None, *, norm, module, tiling):
    """Denoise a 2-D block in physical units with a given (whole-image) normalisation."""
    _, inputs = network_inputs(image, bad, sigma, norm=norm)
    out = norm.inverse(run_network(module, inputs, **tiling)[0])
    out[~np.isfinite(image)] = image[~np.isfinite(image)]  # NaN/inf stay
    return out


def network_inputs(image, bad, sigma, *, norm=None):
    """``(Normalization, (2, H, W) float32 [image, noise map])`` as the network sees them.

    Whole-image normalisation (estimated here unless ``norm`` is given); bad
    pixels filled with the background; the noise map is ``sigma`` normalised,
    or 1 everywhere when ``sigma`` is None. Training on a user's frames
    (`astro_nn_restore.train.selfsup`) uses it too.
    """
    if norm is None:
        norm = estimate_normalization(image, bad=bad, uncertainty=sigma)
    filled = image.copy()
    filled[bad] = norm.background
    x = norm.forward(filled)
    if sigma is None:
        s = np.ones_like(x)
    else:
        s = norm.forward_sigma(sigma)
        s[~np.isfinite(s) | (s <= 0) | bad] = 1.0
    return norm, np.stack([x, s])


def _denoise_chunked(data, uncertainty, unit, module, card, tiling, out, overwrite):
    """Dask/memmap input: whole-image normalisation once, then `chunked.map_chunks`."""
    with chunked.open_lazy(data, unit=unit) as image:
        sigma = chunked.noise_map(image, uncertainty)
        norm = estimate_normalization(image.data, bad=image.bad, uncertainty=sigma)
        depth = chunked.overlap_depth(module, 2, tile_size=tiling["tile_size"], image=image.data)
        arrays = [image.data, image.bad] + ([] if sigma is None else [sigma])
        block = partial(_denoise_block, norm=norm, module=module, tiling=tiling)
        result = chunked.map_chunks(block, arrays, depth=depth)
        return chunked.finish(image, result, operation="denoise_residual", model_card=card,
                              out=out, overwrite=overwrite,
                              uncertainty=_output_uncertainty(sigma, norm, card, like=image.data),
                              extra_history=[noise_note("denoise_residual", uncertainty,
                                                        image.uncertainty)])


def _denoise_plane(image, sigma=None, *, bad, module, tiling):
    """A 2-D plane (a colour image's luminance) denoised with its own normalisation."""
    norm = estimate_normalization(image, bad=bad, uncertainty=sigma)
    return _denoise_block(image, bad, sigma, norm=norm, module=module, tiling=tiling)


def _output_uncertainty(sigma, norm, card, like):
    """Residual noise: input sigma (or the normalisation's noise) times the validated
    ratio; None without a ratio. ``like``: the image (numpy or dask) for its shape."""
    ratio = card.get("calibration", {}).get("residual_sigma_ratio")
    if ratio is None:
        return None
    if sigma is not None:
        return (ratio * sigma).astype(np.float32)
    value = np.float32(ratio * norm.scale)
    if hasattr(like, "chunks"):
        import dask.array as da

        return da.full(like.shape, value, dtype=np.float32, chunks=like.chunks)
    return np.full(like.shape, value, dtype=np.float32)
