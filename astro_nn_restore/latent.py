"""Latent vectors of source cutouts, their decoding, and anomaly scores.

A convolutional autoencoder (`~astro_nn_restore.models.autoencoder.CutoutAutoencoder`)
squeezes each fixed-size cutout (32 x 32 pixels by default) through a latent
vector of ``latent_dim`` numbers (8 by default; 16 and 32 are supported by the
architecture). Its decoder sees only that vector, so the latent alone
describes the source.

Normalisation, per cutout, stored in `CutoutNormalization` so decoding gives
images back in physical units:

* ``background``: sigma-clipped median of the cutout's border (the outer
  ``size // 8`` pixels), so local sky gradients do not leak into the latent;
* ``noise``: the whole image's noise when the cutouts come from one image
  (its uncertainty, or its sigma-clipped standard deviation), else the
  sigma-clipped standard deviation of each cutout's border;
* ``scale``: the cutout's peak above the background (at least ``noise``), so
  the network sees ``(cutout - background) / scale`` with sources peaking at 1
  and the latent describes shape rather than brightness.

Bad pixels (NaN, masked, or outside the parent image) are filled with the
background for the network and ignored by the scores.

The workflow::

    stack = make_cutouts(image)                  # detection with photutils
    z = encode_latent(stack)                     # (N, latent_dim)
    images = decode_latent(z, normalization=stack.normalization)  # physical units
    scores = anomaly_score(stack)                # reconstruction error / noise
"""

import functools
import warnings
from dataclasses import dataclass, field

import numpy as np
from astropy import units as u
from astropy.coordinates import SkyCoord
from astropy.nddata import Cutout2D
from astropy.stats import sigma_clipped_stats
from astropy.table import Table
from astropy.utils.exceptions import AstropyUserWarning
from scipy.ndimage import gaussian_filter

from ._nddata import integer_at_least, non_negative_number, parse_image
from .normalize import estimate_normalization
from .registry import load_model

__all__ = ["CutoutNormalization", "CutoutStack", "anomaly_score", "cutout_normalization",
           "decode_latent", "encode_latent", "make_cutouts"]

#: Gaussian sigma (pixels) of the smoothing applied before detection.
_DETECTION_SMOOTHING = 1.0
#: Default relative reconstruction error of ordinary sources (`anomaly_score`).
MODEL_ERROR = 0.05
#: Fewest usable cutouts in an `anomaly_score` reference: with fewer, the
#: medians are the scored cutouts themselves (one cutout scored against itself
#: always scores 1, whatever it holds).
MIN_REFERENCE = 10
_TABLE_COLUMNS = (("x", "y"), ("x_centroid", "y_centroid"), ("xcentroid", "ycentroid"))


@dataclass
class CutoutNormalization:
    """Per-cutout affine map ``x -> (x - background) / scale`` and the noise.

    Attributes
    ----------
    background, scale, noise : ndarray, shape (N,)
        In the data's unit; ``scale`` is the peak above the background.

    Examples
    --------
    >>> import numpy as np
    >>> norm = CutoutNormalization(np.array([10.0]), np.array([5.0]), np.array([1.0]))
    >>> norm.inverse(norm.forward(np.full((1, 2, 2), 20.0)))[0, 0, 0]
    np.float32(20.0)
    """

    background: np.ndarray
    scale: np.ndarray
    noise: np.ndarray

    def __len__(self):
        return len(self.background)

    def __getitem__(self, index):
        return CutoutNormalization(*(np.atleast_1d(a[index]) for a in self._arrays()))

    def _arrays(self):
        return self.background, self.scale, self.noise

    def forward(self, stack):
        """(N, ny, nx) physical -> normalised (background 0, peak 1), float32."""
        return ((stack - self.background[:, None, None]) / self.scale[:, None, None]).astype(
            np.float32)

    def inverse(self, stack):
        """Undo `forward`: normalised (N, ny, nx) -> the data's unit, float32."""
        return (stack * self.scale[:, None, None] + self.background[:, None, None]).astype(
            np.float32)


@dataclass
class CutoutStack:
    """Fixed-size cutouts around sources, with what is needed to undo normalisation.

    Attributes
    ----------
    data : ndarray, shape (N, size, size)
        Cutouts in physical units (float32); NaN where the parent image had
        NaN or where the cutout extends past its edge.
    positions : ndarray, shape (N, 2)
        Centres ``(x, y)`` in 0-based pixels of the parent image.
    wcs : list
        One `~astropy.wcs.WCS` per cutout (from `~astropy.nddata.Cutout2D`),
        or None entries when the image had no WCS.
    unit : `~astropy.units.UnitBase`
    normalization : CutoutNormalization
    mask : ndarray of bool, shape (N, size, size)
        Bad pixels: NaN/inf, masked in the parent, or outside it.
    """

    data: np.ndarray
    positions: np.ndarray
    wcs: list
    unit: u.UnitBase
    normalization: CutoutNormalization
    mask: np.ndarray = field(default=None)

    def __post_init__(self):
        if self.mask is None:
            self.mask = ~np.isfinite(self.data)

    def __len__(self):
        return len(self.data)

    def __getitem__(self, index):
        index = np.atleast_1d(np.arange(len(self))[index])
        return CutoutStack(self.data[index], self.positions[index],
                           [self.wcs[i] for i in index], self.unit, self.normalization[index],
                           self.mask[index])

    @property
    def size(self):
        return self.data.shape[-1]

    def normalized(self):
        """Normalised cutouts with bad pixels set to 0 (the background), float32."""
        x = self.normalization.forward(self.data)
        x[self.mask] = 0.0
        return x


# ------------------------------------------------------------------ cutouts


def make_cutouts(data, *, size=32, positions=None, threshold=5.0, max_sources=None, n_pixels=5,
                 unit=None):
    """Cut fixed-size stamps around sources, each with its WCS and normalisation.

    Parameters
    ----------
    data : CCDData, NDData, HDU, HDUList, path, (array, WCS or Header) or ndarray
        A 2-D image.
    size : int
        Side of the square cutouts in pixels (the model's, 32 by default).
    positions : (N, 2) array, `~astropy.table.Table` or `~astropy.coordinates.SkyCoord`, optional
        Cutout centres: 0-based pixel ``(x, y)``; a table with columns
        ``x``/``y``, ``x_centroid``/``y_centroid`` or ``xcentroid``/``ycentroid``
        (photutils catalogues); or sky coordinates (the image needs a WCS).
        Default: sources detected with `photutils.segmentation.SourceFinder`
        on the image smoothed by a Gaussian of sigma 1 pixel (no deblending).
    threshold : float
        Detection threshold in units of the noise of the smoothed image.
    max_sources : int, optional
        Keep at most this many detections, brightest first.
    n_pixels : int
        Connected pixels above the threshold that make a detection.
    unit : unit-like, optional
        Unit for inputs that carry none.

    Returns
    -------
    CutoutStack

    Raises
    ------
    ValueError
        Positions of the wrong shape, not finite or not on the image; sky
        coordinates without a WCS; a negative ``max_sources`` or a threshold
        that is not > 0. No source found gives an empty stack (N = 0).

    Examples
    --------
    >>> from astro_nn_restore import make_cutouts, simulate_sky
    >>> sky = simulate_sky((128, 128), seed=9)
    >>> stack = make_cutouts(sky.noisy, max_sources=4)
    >>> stack.data.shape, stack.unit, len(stack.wcs), stack.normalization.scale.shape
    ((4, 32, 32), Unit("electron"), 4, (4,))
    >>> stack = make_cutouts(sky.noisy, positions=sky.sources[:3])
    >>> bool(abs(stack.positions[0, 0] - sky.sources["x"][0]) < 1e-9)
    True
    """
    return _cutouts(parse_image(data, unit=unit), size=size, positions=positions,
                    threshold=threshold, max_sources=max_sources, n_pixels=n_pixels)


def _cutouts(parsed, *, size, positions=None, threshold=5.0, max_sources=None, n_pixels=5):
    """`make_cutouts` of an image already parsed (it is parsed once per call)."""
    size = integer_at_least(size, "size", 4)
    if max_sources is not None:
        max_sources = integer_at_least(max_sources, "max_sources", 0)
    norm = estimate_normalization(parsed.data, bad=parsed.bad, uncertainty=parsed.uncertainty)
    if positions is None:
        threshold = non_negative_number(threshold, "threshold", positive=True, meaning=" (sigma)")
        xy = _detect(parsed, norm, threshold, n_pixels)
    else:
        xy = _inside(_pixel_positions(positions, parsed.wcs), parsed.data.shape)
    if max_sources is not None:
        xy = xy[:max_sources]
    return _cut(parsed, xy, size, norm.scale)


def _inside(xy, shape):
    """``xy``, or a ValueError naming the first position that is not on the image."""
    ny, nx = shape[:2]
    with np.errstate(invalid="ignore"):
        off = ~(np.isfinite(xy).all(axis=1) & (xy[:, 0] >= -0.5) & (xy[:, 0] < nx - 0.5)
                & (xy[:, 1] >= -0.5) & (xy[:, 1] < ny - 0.5))
    if off.any():
        k = int(np.flatnonzero(off)[0])
        raise ValueError(f"{int(off.sum())} position(s) are not on the {ny}x{nx} image, the "
                         f"first: positions[{k}] = (x, y) = ({xy[k, 0]:g}, {xy[k, 1]:g}); "
                         "select the positions on the image first (for sky coordinates, "
                         "WCS.footprint_contains)")
    return xy


def _detect(parsed, norm, threshold, n_pixels):
    """(x, y) of sources above ``threshold`` sigma, brightest first."""
    from photutils.segmentation import SourceCatalog, SourceFinder

    image = norm.forward(parsed.data)
    image[parsed.bad] = 0.0
    # matched filter for faint sources; the threshold is in units of the smoothed noise
    smoothed = gaussian_filter(image, _DETECTION_SMOOTHING)
    noise = estimate_normalization(smoothed, bad=parsed.bad).scale
    segments = SourceFinder(n_pixels=n_pixels, deblend=False, progress_bar=False)(
        smoothed, float(threshold) * noise)
    if segments is None:
        return np.empty((0, 2))
    catalog = SourceCatalog(image, segments)
    order = np.argsort(-np.asarray(catalog.segment_flux), kind="stable")
    return np.column_stack([catalog.x_centroid, catalog.y_centroid])[order]


def _pixel_positions(positions, wcs):
    """(N, 2) float array of (x, y) from an array, Table or SkyCoord."""
    if isinstance(positions, SkyCoord):
        if wcs is None or not wcs.has_celestial:
            raise ValueError("SkyCoord positions need an image with a celestial WCS")
        x, y = wcs.world_to_pixel(positions)
        return np.column_stack([np.atleast_1d(x), np.atleast_1d(y)]).astype(float)
    if isinstance(positions, Table):
        for cx, cy in _TABLE_COLUMNS:
            if cx in positions.colnames and cy in positions.colnames:
                _refuse_masked(np.ma.getmaskarray(positions[cx]) | np.ma.getmaskarray(
                    positions[cy]))
                return np.column_stack([np.asarray(positions[cx], float),
                                        np.asarray(positions[cy], float)])
        raise ValueError(f"a positions table needs one of the column pairs {_TABLE_COLUMNS}, "
                         f"got {positions.colnames}")
    if np.ma.isMaskedArray(positions):
        _refuse_masked(np.ma.getmaskarray(positions).reshape(-1, 2).any(axis=1))
    xy = np.asarray(positions, dtype=float)
    xy = xy.reshape(0, 2) if xy.size == 0 else np.atleast_2d(xy)
    if xy.ndim != 2 or xy.shape[1] != 2:
        raise ValueError(f"positions must be an (N, 2) array of (x, y), got shape {xy.shape}")
    return xy


def _refuse_masked(masked):
    """A ValueError naming the first masked position: its value is no position."""
    if masked.any():
        k = int(np.flatnonzero(masked)[0])
        raise ValueError(f"{int(masked.sum())} position(s) are masked, the first: positions[{k}]; "
                         "drop the masked rows first")


def _cut(parsed, xy, size, noise):
    """Cutout2D stamps (partial at edges, NaN-filled) and their normalisation."""
    stamps, masks, wcs = [], [], []
    for x, y in xy:
        cutout = Cutout2D(parsed.data, (x, y), size, wcs=parsed.wcs, mode="partial",
                          fill_value=np.nan, copy=True)
        stamps.append(cutout.data)
        masks.append(Cutout2D(parsed.bad, (x, y), size, mode="partial", fill_value=True).data)
        wcs.append(cutout.wcs)
    data = np.array(stamps, dtype=np.float32).reshape(-1, size, size)
    mask = np.array(masks, dtype=bool).reshape(-1, size, size) | ~np.isfinite(data)
    normalization = cutout_normalization(data, mask, noise=noise)
    return CutoutStack(data, np.asarray(xy, float).reshape(-1, 2), wcs, parsed.unit,
                       normalization, mask)


def cutout_normalization(data, mask=None, *, noise=None):
    """Per-cutout background (border), noise and peak scale of an (N, ny, nx) stack.

    Parameters
    ----------
    data : ndarray, shape (N, ny, nx)
    mask : ndarray of bool, optional
        Pixels to ignore (NaN/inf are always ignored).
    noise : float or ndarray, optional
        Known noise (e.g. the parent image's); default: the sigma-clipped
        standard deviation of each cutout's border.

    Returns
    -------
    CutoutNormalization

    Examples
    --------
    >>> import numpy as np
    >>> stack = 100 + np.random.default_rng(0).normal(0, 2, (1, 32, 32))
    >>> stack[0, 16, 16] += 50
    >>> norm = cutout_normalization(stack)
    >>> round(float(norm.background[0])), round(float(norm.noise[0])), norm.scale[0] > 45
    (100, 2, np.True_)
    """
    data = np.asarray(data, dtype=np.float64)
    if not len(data):  # no source: an empty normalisation, like the stack
        return CutoutNormalization(*(np.empty(0) for _ in range(3)))
    bad = ~np.isfinite(data) if mask is None else (mask | ~np.isfinite(data))
    values = np.where(bad, np.nan, data)
    width = max(2, data.shape[-1] // 8)
    border = np.ones(data.shape[1:], dtype=bool)
    border[width:-width, width:-width] = False
    flat = values.reshape(len(data), -1)
    with warnings.catch_warnings():  # all-bad borders or cutouts: handled by the fallbacks
        warnings.simplefilter("ignore", RuntimeWarning)
        warnings.simplefilter("ignore", AstropyUserWarning)
        _, background, std = sigma_clipped_stats(values[:, border], axis=1, sigma=3.0,
                                                 maxiters=5)
        background = _finite_or(background, np.nanmedian(flat, axis=1), 0.0)
        fallback_noise = np.nanstd(flat, axis=1)
    noise = np.broadcast_to(std if noise is None else noise, background.shape).astype(float)
    noise = _finite_or(noise, fallback_noise, 1.0)
    noise = np.where(noise > 0, noise, 1.0)
    peak = np.nanmax(np.where(bad, -np.inf, data).reshape(len(data), -1), axis=1) - background
    scale = np.maximum(_finite_or(peak, noise, 1.0), noise)
    return CutoutNormalization(background, scale, noise)


def _finite_or(values, fallback, last):
    """``values`` with non-finite entries replaced by ``fallback``, then ``last``."""
    with np.errstate(invalid="ignore"):
        values = np.where(np.isfinite(values), values, fallback)
    return np.where(np.isfinite(values), values, last).astype(float)


# ---------------------------------------------------------------- dispatch


def _as_stack(data, size, unit):
    """(CutoutStack, single) from a stack, one cutout, an array stack or an image."""
    if isinstance(data, CutoutStack):
        if data.size != size:
            raise ValueError(f"cutouts are {data.size} pixels wide, the model takes {size}")
        return data, False
    if isinstance(data, u.Quantity) and data.ndim == 3:  # its own unit wins, as elsewhere
        return _stack_from_array(data.value, size, data.unit), False
    if isinstance(data, np.ndarray) and data.ndim == 3:
        return _stack_from_array(data, size, unit), False
    parsed = parse_image(data, unit=unit)
    if parsed.data.shape == (size, size):
        array = np.where(parsed.bad, np.nan, parsed.data)[None]
        return _stack_from_array(array, size, parsed.unit, wcs=[parsed.wcs]), True
    return _cutouts(parsed, size=size), False


def _stack_from_array(array, size, unit, wcs=None):
    if array.dtype.kind not in "biuf":
        raise TypeError(f"cutouts must be numeric, got dtype {array.dtype}")
    if array.shape[1:] != (size, size):
        raise ValueError(f"a stack of cutouts must have shape (N, {size}, {size}) for this "
                         f"model, got {array.shape}")
    data = np.ma.getdata(array).astype(np.float32)  # a copy: the input is never modified
    mask = ~np.isfinite(data) | np.ma.getmaskarray(array)  # numpy masked stacks too
    centre = (size - 1) / 2
    return CutoutStack(data, np.full((len(data), 2), centre), wcs or [None] * len(data),
                       u.Unit(unit) if unit is not None else u.dimensionless_unscaled,
                       cutout_normalization(data, mask), mask)


def _load(model):
    module, card = load_model(model, task="autoencoder")
    if not hasattr(module, "encode") or not hasattr(module, "decode"):
        raise TypeError(f"an autoencoder model needs encode() and decode() methods; "
                        f"{type(module).__name__} has not")
    return module, card


def _run(method, array, batch_size):
    """Apply ``method`` (encode or decode) in float32 batches; numpy in and out."""
    import torch

    batch_size = integer_at_least(batch_size, "batch_size", 1)
    outputs = []
    with torch.inference_mode():
        for start in range(0, len(array), batch_size):
            batch = torch.from_numpy(np.ascontiguousarray(array[start:start + batch_size]))
            outputs.append(method(batch).float().numpy())
    return np.concatenate(outputs) if outputs else None


def _encode(module, stack, batch_size):
    z = _run(module.encode, stack.normalized()[:, None], batch_size)
    return np.empty((0, module.latent_dim), np.float32) if z is None else z


def _decode(module, z, batch_size):
    images = _run(module.decode, np.asarray(z, np.float32), batch_size)
    return np.empty((0, module.size, module.size), np.float32) if images is None else images[:, 0]


# -------------------------------------------------------------------- public


def encode_latent(data, *, model="default", unit=None, batch_size=256):
    """Latent vectors of one cutout, a stack of cutouts, or the sources of an image.

    Parameters
    ----------
    data : CutoutStack, ndarray, CCDData, NDData, HDU, HDUList, path or (array, WCS or Header)
        A `CutoutStack` (from `make_cutouts`); an (N, size, size) array of
        cutouts; one 2-D cutout of exactly the model's size; or any larger
        2-D image, whose sources are detected and cut out with `make_cutouts`
        (call it yourself to keep the normalisation for `decode_latent`).
    model : str, PathLike or torch.nn.Module
        ``"default"``, another registry name, a weights path, or a module.
    unit : unit-like, optional
        Unit for inputs that carry none.
    batch_size : int
        Cutouts per forward pass.

    Returns
    -------
    ndarray
        ``(latent_dim,)`` for one cutout, ``(N, latent_dim)`` otherwise (float32).

    Examples
    --------
    >>> from astro_nn_restore import encode_latent, make_cutouts, simulate_sky
    >>> stack = make_cutouts(simulate_sky((128, 128), seed=9).noisy)
    >>> len(stack)
    9
    >>> z = encode_latent(stack)  # doctest: +SKIP
    >>> z.shape  # doctest: +SKIP
    (9, 8)
    """
    module, _ = _load(model)
    stack, single = _as_stack(data, module.size, unit)
    z = _encode(module, stack, batch_size)
    return z[0] if single else z


def decode_latent(z, *, model="default", normalization=None, batch_size=256):
    """Cutouts decoded from latent vectors.

    Parameters
    ----------
    z : array-like, shape (latent_dim,) or (N, latent_dim)
    model : str, PathLike or torch.nn.Module
        The model that encoded ``z``.
    normalization : CutoutNormalization or CutoutStack, optional
        The stored per-cutout normalisation (``stack.normalization``). With
        it the cutouts come back in physical units; without it, normalised
        (background 0, peak 1).
    batch_size : int

    Returns
    -------
    ndarray
        ``(size, size)`` for one vector, ``(N, size, size)`` otherwise (float32).

    Examples
    --------
    >>> from astro_nn_restore import decode_latent, encode_latent, make_cutouts, simulate_sky
    >>> stack = make_cutouts(simulate_sky((128, 128), seed=3).noisy)
    >>> images = decode_latent(encode_latent(stack), normalization=stack)  # doctest: +SKIP
    >>> images.shape == stack.data.shape  # doctest: +SKIP
    True
    """
    module, _ = _load(model)
    if np.asarray(z).dtype.kind not in "biuf":
        raise TypeError(f"latent vectors must be real numbers, got dtype {np.asarray(z).dtype}")
    z = np.asarray(z, dtype=np.float32)
    single = z.ndim == 1
    z = np.atleast_2d(z)
    if z.ndim != 2 or z.shape[1] != module.latent_dim:
        raise ValueError(f"z must have shape (latent_dim,) or (N, latent_dim) with latent_dim "
                         f"{module.latent_dim}, got {np.shape(z)}")
    images = _decode(module, z, batch_size)
    if normalization is not None:
        images = _denormalize(images, normalization)
    return images[0] if single else images


def _denormalize(images, normalization):
    if isinstance(normalization, CutoutStack):
        normalization = normalization.normalization
    if not isinstance(normalization, CutoutNormalization):
        raise TypeError(f"normalization must be a CutoutNormalization or CutoutStack, got "
                        f"{type(normalization).__name__}")
    if len(normalization) != len(images):
        raise ValueError(f"{len(images)} latent vectors but {len(normalization)} normalisations")
    return normalization.inverse(images)


def anomaly_score(data, *, model="default", model_error=MODEL_ERROR, reference=None, unit=None,
                  batch_size=256):
    """Reconstruction error of cutouts in units of the noise: high means unusual.

    The residual of a cutout, in units of the noise, is
    ``chi = (data - reconstruction) / sqrt(noise**2 + (model_error * reconstruction)**2)``
    (background subtracted). The ``model_error`` term is a floor on the
    relative error the autoencoder makes on ordinary sources, so that bright
    stars are not flagged merely for being bright. ``chi`` is centred on its
    median and divided by its robust spread (1.4826 MAD) where that exceeds 1,
    so a stored noise that is too small does not flag a whole image. The score
    is the largest of three statistics of ``chi`` over the good pixels, each
    about 1 on pure noise:

    * the RMS (a misfit spread over the cutout: unusual objects, ghosts);
    * the largest ``|chi|`` (cosmic rays, hot pixels), divided by its median
      on pure noise of the same cutout size;
    * the largest straight-line sum ``|sum chi| / sqrt(n)`` of the Radon
      transform (satellite trails, bad columns, saturation bleeds), taken
      inside the circle inscribed in the cutout, divided likewise.

    Pure noise scores about 1.1 (the largest of three statistics whose
    medians are 1).

    With ``reference``, each statistic is divided instead by its median over
    the reference cutouts (where that exceeds pure noise's), so a score of
    about 1 means "as usual as a typical reference source". Give it the
    cutouts of ordinary sources of the same image (or simply all of them:
    anomalies are rare and the median ignores them). On real images the
    autoencoder reconstructs ordinary sources less well than the simulated
    ones it was trained on (crowding, faint neighbours, other PSFs), so they
    score several times pure noise's value and unusual cutouts stand out less;
    the reference takes out that offset, not the spread between sources
    (`benchmarks/results/latent.md` gives the ROC AUC with and without it).

    Parameters
    ----------
    data
        As for `encode_latent`.
    model : str, PathLike or torch.nn.Module
    model_error : float
        Relative reconstruction error expected on normal sources.
    reference : optional
        Cutouts of ordinary sources, in any form ``data`` takes; at least
        `MIN_REFERENCE` (10) of them with a good pixel. ``data`` itself is
        fine (``reference=stack``) and is not computed twice.
    unit : unit-like, optional
    batch_size : int

    Returns
    -------
    float or ndarray
        One score per cutout (a float for one cutout); NaN for a cutout
        with no good pixel.

    Raises
    ------
    ValueError
        A ``reference`` with fewer than `MIN_REFERENCE` cutouts that have a
        good pixel.

    Examples
    --------
    >>> from astro_nn_restore import anomaly_score, make_cutouts, simulate_sky
    >>> stack = make_cutouts(simulate_sky((128, 128), seed=3).noisy)
    >>> scores = anomaly_score(stack)  # doctest: +SKIP
    >>> stack[scores.argsort()[::-1]]  # most unusual first  # doctest: +SKIP
    >>> scores = anomaly_score(stack, reference=stack)  # doctest: +SKIP
    """
    model_error = non_negative_number(model_error, "model_error")
    module, _ = _load(model)
    stack, single = _as_stack(data, module.size, unit)
    statistics = _statistics(module, stack, model_error, batch_size)
    if reference is data:  # the usual call, reference=stack: no second pass
        reference = statistics
    elif reference is not None:
        reference = _statistics(module, _reference_stack(reference, module.size, unit),
                                model_error, batch_size)
    scores = _combined_scores(statistics, reference)
    return float(scores[0]) if single else scores


def _reference_stack(reference, size, unit):
    try:
        return _as_stack(reference, size, unit)[0]
    except (TypeError, ValueError) as error:
        raise type(error)(f"reference: {error}") from error


def _combined_scores(statistics, reference=None):
    """Scores from the (N, 3) statistics of `_statistics`: the largest of each row.

    Shared by `anomaly_score` and the napari plugin, which scores in chunks.

    With ``reference`` (the statistics of ordinary cutouts), each column is
    first divided by its median over the reference rows that have a good
    pixel, where that median exceeds 1 (pure noise's). A reference needs at
    least `MIN_REFERENCE` such rows.
    """
    if reference is not None:
        usable = np.isfinite(reference).all(axis=1)
        if usable.sum() < MIN_REFERENCE:
            raise ValueError(f"reference has {int(usable.sum())} cutout(s) with a good pixel; "
                             f"it needs at least {MIN_REFERENCE} (score fewer sources without "
                             "reference=)")
        # never below pure noise's: a reference can make the score more tolerant, not less
        statistics = statistics / np.maximum(np.median(reference[usable], axis=0), 1.0)
    return statistics.max(axis=1)  # NaN rows (no good pixel) stay NaN


def _statistics(module, stack, model_error, batch_size):
    """(N, 3) RMS, peak and line statistics of the residuals, each over pure noise's."""
    x = stack.normalized()
    recon = _decode(module, _encode(module, stack, batch_size), batch_size)
    sigma = (stack.normalization.noise / stack.normalization.scale)[:, None, None]
    chi = (x - recon) / np.sqrt(sigma**2 + (model_error * np.clip(recon, 0, None)) ** 2)
    rows = [_residual_statistics(c, ~m) for c, m in zip(chi, stack.mask, strict=True)]
    return np.array(rows, dtype=float).reshape(-1, 3)


def _residual_statistics(chi, good):
    """RMS, peak and line statistics of one residual, each over pure noise's median."""
    if not good.any():
        return (np.nan, np.nan, np.nan)
    values = chi[good]
    centre = np.median(values)
    spread = max(1.4826 * float(np.median(np.abs(values - centre))), 1.0)
    residual = np.where(good, (chi - centre) / spread, 0.0)
    peak_null, line_null = _pure_noise_medians(chi.shape)
    return (float(np.sqrt(np.mean(residual[good] ** 2))),
            float(np.abs(residual[good]).max()) / peak_null,
            _line_statistic(residual) / line_null)


_LINE_ANGLES = np.arange(0.0, 180.0, 4.0)
#: Shortest line (pixels) of the line statistic; shorter chords are too noisy.
_MIN_LINE = 10


def _line_statistic(residual):
    """Largest ``|sum|/sqrt(n)`` along straight lines inside the inscribed circle."""
    from skimage.transform import radon

    disk, lengths = _radon_disk(residual.shape)
    sums = radon(np.clip(residual, -10, 10) * disk, _LINE_ANGLES, circle=True)
    long = lengths >= _MIN_LINE
    return float((np.abs(sums[long]) / np.sqrt(lengths[long])).max())


@functools.lru_cache(maxsize=8)
def _radon_disk(shape):
    """The inscribed disk of ``shape`` and the length of every Radon line through it."""
    from skimage.transform import radon

    ny, nx = shape  # square: cutouts are size x size
    y, x = np.mgrid[:ny, :nx]
    radius = min(ny, nx) // 2  # skimage.transform.radon's circle
    disk = ((y - ny // 2) ** 2 + (x - nx // 2) ** 2 <= radius**2).astype(float)
    return disk, radon(disk, _LINE_ANGLES, circle=True)


@functools.lru_cache(maxsize=8)
def _pure_noise_medians(shape, n=200):
    """Median peak and line statistics of unit white noise in a cutout of ``shape``."""
    noise = np.random.default_rng(12345).standard_normal((n, *shape))
    return (float(np.median(np.abs(noise).max(axis=(1, 2)))),
            float(np.median([_line_statistic(z) for z in noise])))
