"""FITS reader and writer that keep the unit, the WCS and the header.

napari's built-in reader keeps only the pixel array. Here every image layer
read from FITS (and every layer this plugin creates) carries in its
``metadata``:

``unit``
    The unit as a string (``"electron"``, ``"adu"``, ``""`` for
    dimensionless).
``wcs``
    An `astropy.wcs.WCS` (celestial, 2-D, for images and RGB layers) or None.
    This, not the header, is the source of truth for the pixel -> sky mapping.
``header``
    The `astropy.io.fits.Header` (the file's header, or the output header
    with provenance). WCS keywords in it are ignored when saving: the writer
    strips them and writes ``wcs`` instead, so files never carry stale keys.
``uncertainty``, ``mask``
    Standard-deviation and boolean arrays, when the file has ``UNCERT`` /
    ``MASK`` extensions (as written by `~astropy.nddata.CCDData`).
``unit_note``
    Present when the file has no usable ``BUNIT``: the data are then
    treated as dimensionless, and this says so.

Overwriting: napari's writer API has no ``overwrite`` flag, so the writer
refuses to replace an existing file and raises `FileExistsError` with a
message saying what to do. Overwrite on purpose with the "Save as FITS"
widget (tick "overwrite"), `save_fits` (``overwrite=True``), or by setting
the environment variable ``ASTRO_NN_RESTORE_NAPARI_OVERWRITE=1``.
"""

import io
import os
from pathlib import Path

import numpy as np
from astropy import units as u
from astropy.io import fits
from astropy.nddata import CCDData, StdDevUncertainty
from astropy.wcs import WCS

from astro_nn_restore._files import READ_ENDINGS, is_colour_cube, read_image
from astro_nn_restore._nddata import unit_from_bunit, wcs_from_header

__all__ = ["FITS_SUFFIXES", "OVERWRITE_ENV", "get_reader", "read_fits", "layer_data_from_file",
           "layer_data_from_ccd", "ccd_from_layer", "write_fits", "save_fits", "display_limits",
           "is_colour_cube", "layer_placement"]

#: File endings the reader claims (also tile-compressed ``.fits.fz``; napari.yaml lists them).
FITS_SUFFIXES = READ_ENDINGS
#: Set to 1 to let napari's File > Save replace existing FITS files.
OVERWRITE_ENV = "ASTRO_NN_RESTORE_NAPARI_OVERWRITE"

def _is_fits(path):
    return isinstance(path, (str, os.PathLike)) and str(path).lower().endswith(FITS_SUFFIXES)


def get_reader(path):
    """npe2 reader hook: `read_fits` for FITS paths (or lists of them), else None."""
    paths = path if isinstance(path, (list, tuple)) else [path]
    if paths and all(_is_fits(p) for p in paths):
        return read_fits
    return None


def read_fits(path):
    """Read one FITS path (or a list) into napari layer-data tuples."""
    from ._sky_status import install_in_current_viewer

    paths = path if isinstance(path, (list, tuple)) else [path]
    layers = [_read_one(p) for p in paths]
    install_in_current_viewer()
    return layers


def _read_one(path):
    return layer_data_from_file(path, name=_stem(path), source=str(path))


def _stem(path):
    name = Path(path).name
    for suffix in sorted(FITS_SUFFIXES, key=len, reverse=True):
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return Path(path).stem


def _unit_from_header(header):
    """(unit, note or None): BUNIT read as `CCDData.read` reads it, else dimensionless."""
    bunit = str(header.get("BUNIT", "")).strip()
    if not bunit:
        return u.dimensionless_unscaled, "no BUNIT in the header: data treated as dimensionless"
    try:
        return unit_from_bunit(bunit), None
    except ValueError:
        return (u.dimensionless_unscaled,
                f"BUNIT {bunit!r} is not a unit astropy understands: data treated as dimensionless")


def layer_data_from_file(file, *, name, source=None):
    """Layer-data tuple for the first image HDU of a FITS file (a path, or its bytes).

    Read by the rules of the core's file inputs (`astro_nn_restore._files.read_image`,
    much as `CCDData.read` reads a file): the header with the primary header's keys
    an extension inherits, the ``MASK`` and ``UNCERT`` extensions when their
    shapes match (otherwise not used, with a warning), the WCS of the header.
    """
    data, header, mask, uncertainty = read_image(io.BytesIO(file) if isinstance(file, bytes)
                                                 else file)
    unit, note = _unit_from_header(header)
    wcs = wcs_from_header(header, naxis=None)  # every axis: a colour cube keeps its band axis
    ccd = CCDData(data, unit=unit, wcs=wcs, meta=header, mask=mask, uncertainty=uncertainty)
    return layer_data_from_ccd(ccd, name=name, header=header, note=note, source=source)


def _native(array):
    """``array`` in native byte order (FITS data are big-endian; torch and Qt want native)."""
    array = np.asarray(array)
    return array if array.dtype.isnative else array.astype(array.dtype.newbyteorder("="))


def display_limits(data):
    """ZScale contrast limits (as DS9's default) from the finite pixels."""
    from astropy.visualization import ZScaleInterval

    finite = np.asarray(data)[np.isfinite(data)]
    if finite.size == 0:
        return (0.0, 1.0)
    low, high = ZScaleInterval().get_limits(finite)
    if not high > low:
        low, high = float(finite.min()), float(finite.max())
    return (float(low), float(high) if high > low else float(low) + 1.0)


def layer_data_from_ccd(ccd, *, name, header=None, note=None, source=None, extra_metadata=None):
    """napari layer-data tuple (data, kwargs, "image") for a CCDData.

    2-D images and (n, ny, nx) stacks become image layers with ZScale contrast;
    a colour cube (`is_colour_cube`) becomes an RGB(A) layer of shape
    (ny, nx, 3 or 4) whose WCS is the cube's celestial part.
    """
    data = _native(ccd.data)
    wcs = ccd.wcs
    metadata = {"unit": ccd.unit.to_string() if ccd.unit is not None else "",
                "wcs": wcs, "header": fits.Header(header if header is not None else ccd.header)}
    if note:
        metadata["unit_note"] = note
    if source:
        metadata["source"] = source
    if ccd.uncertainty is not None:
        metadata["uncertainty"] = _native(ccd.uncertainty.represent_as(StdDevUncertainty).array)
    if ccd.mask is not None:
        metadata["mask"] = np.asarray(ccd.mask, dtype=bool)
    metadata.update(extra_metadata or {})
    if is_colour_cube(data, metadata["header"]):
        metadata["wcs"] = wcs.celestial if wcs is not None and wcs.has_celestial else None
        rgb = np.moveaxis(data, 0, -1)
        return rgb, {"name": name, "rgb": True, "metadata": metadata,
                     "contrast_limits": _rgb_limits(rgb)}, "image"
    return data, {"name": name, "metadata": metadata, "colormap": "gray",
                  "contrast_limits": display_limits(data)}, "image"


def _rgb_limits(rgb):
    finite = rgb[np.isfinite(rgb)]
    if finite.size == 0 or (finite.min() >= 0 and finite.max() <= 1):
        return (0.0, 1.0)
    return (float(np.percentile(finite, 0.5)), float(np.percentile(finite, 99.5)))


def ccd_from_layer(data, metadata, *, rgb=False, name="layer"):
    """CCDData for a layer's data and metadata (the inverse of `layer_data_from_ccd`).

    RGB data (ny, nx, 3) become a (3, ny, nx) cube with a band axis added to
    the WCS (`~astro_nn_restore.wcs_utils.band_cube_wcs`: a distorted WCS
    becomes its linear fit, noted in HISTORY). A mask of the cube's or the
    layer's shape is kept, and a one-plane (ny, nx) mask is applied to every
    plane; an uncertainty is left out. The header loses its WCS and file-
    layout keywords; the WCS written is ``metadata["wcs"]``. An uncertainty or
    mask whose shape no longer matches the data (the data were changed after
    loading) is an error naming the layer ``name``, never silently dropped or
    reused.
    """
    from astro_nn_restore._nddata import strip_input_only_keys
    from astro_nn_restore.wcs_utils import band_cube_wcs, strip_wcs_keywords

    array = _fits_dtype(_native(np.asarray(data)), name)
    wcs, note = metadata.get("wcs"), None
    if wcs is not None and not isinstance(wcs, WCS):
        raise TypeError(f"'{name}' has a {type(wcs).__name__} as metadata['wcs']; it must be "
                        "an astropy.wcs.WCS (or None): reload the image or set it again")
    if rgb:
        array = np.moveaxis(array, -1, 0)
        if wcs is not None and wcs.naxis == 2:
            wcs, note = band_cube_wcs(wcs, array.shape[1:], bands="RGBA"[:array.shape[0]])
    header = strip_input_only_keys(strip_wcs_keywords(fits.Header(metadata.get("header")
                                                                  or fits.Header())))
    if note:
        header.add_history(note)
    if rgb and wcs is None:
        header["CTYPE3"] = ("BAND", "colour planes (read back as one colour layer)")
    elif not rgb and array.ndim == 3 and (wcs is None or wcs.naxis < 3) and "CTYPE3" not in header:
        # an untyped (3, ny, nx) cube reads back as RGB (is_colour_cube): mark a stack
        header["CTYPE3"] = ("PLANE", "a stack of planes, not colour")
    unit = u.Unit(metadata.get("unit") or u.dimensionless_unscaled)
    if rgb:
        uncertainty, mask = None, _colour_mask(metadata.get("mask"), array.shape, name)
    else:
        uncertainty, mask = _pixel_extras(metadata, array.shape, unit, name)
    return CCDData(
        array, unit=unit, wcs=wcs, meta=header,
        uncertainty=None if uncertainty is None else StdDevUncertainty(uncertainty), mask=mask,
    )


def _in_unit(uncertainty, unit, name):
    """The uncertainty as numbers in the data's ``unit``: a Quantity is converted, others kept."""
    if not isinstance(uncertainty, u.Quantity):
        return uncertainty
    try:
        return uncertainty.to_value(unit)
    except u.UnitConversionError:
        raise u.UnitConversionError(
            f"'{name}' has data in {unit.to_string() or 'no unit'} but its "
            f"metadata['uncertainty'] is in {uncertainty.unit}: set it in the data's unit, "
            "or as plain numbers in that unit") from None


def _fits_dtype(array, name):
    """``array`` in a type FITS images hold: bool as uint8 (0/1), float16 as float32."""
    if array.dtype == bool:
        return array.astype(np.uint8)
    if array.dtype == np.float16:
        return array.astype(np.float32)
    if array.dtype.kind not in "iuf":
        raise TypeError(f"'{name}' holds {array.dtype} data, which a FITS image cannot store; "
                        "save real-valued layers (e.g. the real and imaginary parts apart)")
    return array


def _colour_mask(mask, shape, name):
    """A colour layer's mask as a (planes, ny, nx) cube; a mismatched one is an error.

    ``shape`` is the cube's. The mask may be that cube's, the layer's
    (ny, nx, planes), or one (ny, nx) plane for all planes.
    """
    if mask is None:
        return None
    mask = np.asarray(mask, dtype=bool)
    if mask.shape == (*shape[1:], shape[0]):  # (ny, nx, planes), as the layer holds its data
        mask = np.moveaxis(mask, -1, 0)
    elif mask.shape == shape[1:]:
        mask = np.broadcast_to(mask, shape)
    if mask.shape != shape:
        raise ValueError(f"'{name}' has colour planes of shape {shape[1:]} but its "
                         f"metadata['mask'] has shape {np.shape(mask)}: the data were changed "
                         "after loading; crop or delete metadata['mask'] too, or reload the image")
    return mask.copy()


def _pixel_extras(metadata, shape, unit, name):
    """``metadata``'s uncertainty (in ``unit``) and mask, checked against the data ``shape``.

    One number as the uncertainty is that sigma on every pixel; a Quantity
    is converted to the data's ``unit``.
    """
    uncertainty = _in_unit(metadata.get("uncertainty"), unit, name)
    if uncertainty is not None and np.ndim(uncertainty) == 0:
        uncertainty = np.full(shape, float(uncertainty), dtype=np.float32)
    extras = uncertainty, metadata.get("mask")
    for key, extra in zip(("uncertainty", "mask"), extras, strict=True):
        if extra is not None and np.shape(extra) != shape:
            raise ValueError(
                f"'{name}' has data of shape {shape} but its metadata['{key}'] has shape "
                f"{np.shape(extra)}: the data were changed after loading; crop or delete "
                f"metadata['{key}'] too, or reload the image")
    return extras


def _overwrite_from_env():
    return os.environ.get(OVERWRITE_ENV, "").strip().lower() in ("1", "true", "yes")


def save_fits(path, data, metadata, *, rgb=False, overwrite=False, name="layer"):
    """Write layer data and metadata to a FITS file; return ``[path]``.

    Raises
    ------
    FileExistsError
        If ``path`` exists and ``overwrite`` is False.
    """
    path = os.fspath(path)
    if os.path.exists(path) and not overwrite:
        raise FileExistsError(
            f"{path} already exists and astro-nn-restore never replaces a FITS file silently. "
            f"Choose another name, use the 'Save as FITS' widget with 'overwrite' ticked, "
            f"or set the environment variable {OVERWRITE_ENV}=1."
        )
    from astro_nn_restore._files import write_result

    write_result(ccd_from_layer(data, metadata, rgb=rgb, name=name), path, overwrite)
    return [path]


def write_fits(path, data, meta):
    """npe2 single-layer writer: an image layer to FITS with its unit, WCS and header.

    Refuses to replace an existing file unless ``ASTRO_NN_RESTORE_NAPARI_OVERWRITE=1``
    (napari's writer API has no overwrite flag).
    """
    return save_fits(path, data, meta.get("metadata") or {}, rgb=bool(meta.get("rgb")),
                     overwrite=_overwrite_from_env())


def layer_placement(source, factor=1.0):
    """``scale``, ``translate``, ``rotate``, ``shear``, ``affine`` to overlay ``source``.

    For an output with ``factor`` times finer pixels (super-resolution), the
    scale is divided by ``factor`` and the origin moved so that output pixel
    ``j`` has its centre at input pixel ``(j + 0.5) / factor - 0.5``; the
    shift goes through the source's rotation and shear.
    """
    from napari.utils.transforms import Affine

    scale = np.asarray(source.scale[-2:], dtype=float)
    translate = np.asarray(source.translate[-2:], dtype=float)
    if factor != 1:
        linear = Affine(scale=scale, rotate=source.rotate, shear=source.shear).linear_matrix
        translate = translate + linear @ np.full(2, 0.5 / factor - 0.5)
        scale = scale / factor
    return {"scale": tuple(scale), "translate": tuple(translate), "rotate": source.rotate,
            "shear": source.shear, "affine": source.affine}
