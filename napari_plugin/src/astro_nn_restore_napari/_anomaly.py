"""Anomaly map: detect sources, score each cutout with an autoencoder.

`anomaly_map` chains `astro_nn_restore.latent.make_cutouts` and the parts of
`astro_nn_restore.latent.anomaly_score`, scoring the cutouts in chunks so the
widget can show progress and stop between two chunks (Cancel); by default the
scores are relative to the image's own sources (``reference=`` of
`~astro_nn_restore.latent.anomaly_score`). The plugin
turns its `SourceScores` into a Points layer (`points_layer_data`).
"""

from dataclasses import dataclass

import numpy as np

__all__ = ["SourceScores", "anomaly_map", "points_layer_data"]

#: Cutouts scored per progress step.
CHUNK = 64


@dataclass
class SourceScores:
    """Scores of the sources of an image.

    Attributes
    ----------
    positions : ndarray, shape (N, 2)
        Cutout centres ``(x, y)``, 0-based pixels of the image.
    scores : ndarray, shape (N,)
        Reconstruction error in units of the noise (about 1: ordinary).
    ra, dec : ndarray or None
        Sky position in degrees when the image has a celestial WCS.
    header : astropy.io.fits.Header
        Provenance (``ANR_OP``, ``ANR_MOD``, ``ANR_SHA``, ``ANR_VER``, size, threshold).
    unit : str
    """

    positions: np.ndarray
    scores: np.ndarray
    ra: np.ndarray
    dec: np.ndarray
    header: object
    unit: str


def anomaly_map(data, *, model="default", size=32, threshold=5.0, max_sources=None,
                relative=True, progress=None):
    """Detect the sources of ``data`` and score each one's cutout.

    Parameters
    ----------
    data : CCDData or anything `make_cutouts` takes
    model : str or PathLike
        Autoencoder: registry name or weights path.
    size : int
        Cutout side in pixels; must be the model's.
    threshold : float
        Detection threshold (noise units of the smoothed image).
    max_sources : int, optional
    relative : bool
        Score against the image's own sources (``anomaly_score(stack,
        reference=stack)``: about 1 for a typical source of this image), else
        against pure noise (``anomaly_score(stack)``). With fewer than
        `~astro_nn_restore.latent.MIN_REFERENCE` scorable sources there is no
        population to compare with, and they are scored against pure noise
        (``ANR_REL = False`` in the header).
    progress : callable, optional
        ``progress(done, total)`` before each chunk of cutouts and at the end.

    Returns
    -------
    SourceScores
    """
    from astropy.io import fits

    from astro_nn_restore._nddata import provenance_header
    from astro_nn_restore.latent import (
        MIN_REFERENCE,
        MODEL_ERROR,
        _combined_scores,
        _statistics,
        make_cutouts,
    )
    from astro_nn_restore.registry import load_model

    module, card = load_model(model, task="autoencoder")
    if int(size) != module.size:
        raise ValueError(f"this model takes {module.size}-pixel cutouts; set the cutout "
                         f"size to {module.size}")
    stack = make_cutouts(data, size=int(size), threshold=float(threshold),
                         max_sources=int(max_sources) if max_sources else None)
    n = len(stack)
    statistics = np.empty((n, 3))
    for start in range(0, n, CHUNK):
        if progress is not None:
            progress(start, n)
        statistics[start:start + CHUNK] = _statistics(module, stack[start:start + CHUNK],
                                                      MODEL_ERROR, CHUNK)
    if progress is not None:
        progress(n, n)
    usable = int(np.isfinite(statistics).all(axis=1).sum())
    relative = bool(relative) and usable >= MIN_REFERENCE
    scores = _combined_scores(statistics, statistics if relative else None)

    wcs = getattr(data, "wcs", None)
    ra = dec = None
    if n and wcs is not None and wcs.has_celestial:
        ra, dec = wcs.celestial.pixel_to_world_values(stack.positions[:, 0],
                                                      stack.positions[:, 1])
    meta = getattr(data, "meta", None)
    header = provenance_header(fits.Header(meta or {}), operation="anomaly_score",
                               model_card=card)
    header["ANR_SIZE"] = (int(size), "cutout size (pixels)")
    header["ANR_THR"] = (float(threshold), "detection threshold (sigma)")
    header["ANR_NSRC"] = (n, "sources scored")
    header["ANR_REL"] = (relative, "scores relative to the image's own sources")
    unit = getattr(data, "unit", None)
    return SourceScores(stack.positions.astype(float), scores, ra, dec, header,
                        unit.to_string() if unit is not None else "")


def points_layer_data(result, source_layer, name):
    """(data, kwargs) of a Points layer at the sources, over ``source_layer``."""
    from ._io import layer_placement

    n = len(result.scores)
    data = result.positions[:, ::-1].copy() if n else np.zeros((0, 2))  # (x, y) -> (y, x)
    features = {"score": result.scores, "x": result.positions[:, 0],
                "y": result.positions[:, 1]}
    if result.ra is not None:
        features["ra"], features["dec"] = np.asarray(result.ra), np.asarray(result.dec)
    size = int(result.header.get("ANR_SIZE", 32))
    metadata = {"header": result.header, "unit": result.unit,
                "wcs": source_layer.metadata.get("wcs"), "source_layer": source_layer.name}
    kwargs = {
        "name": name, "features": features, "metadata": metadata,
        "size": max(4.0, size / 3), "border_width": 0.1, "border_color": "white",
        **layer_placement(source_layer),
    }
    if n:
        high = max(float(np.percentile(result.scores, 99)), float(result.scores.min()) + 1e-6)
        kwargs.update(face_color="score", face_colormap="plasma",
                      face_contrast_limits=(float(result.scores.min()), high))
    return data, kwargs
