"""Restore astronomical images with small PyTorch networks.

Every operation takes a 2-D image (``CCDData``, ``NDData``, a FITS HDU,
``HDUList`` or path, ``(array, WCS or Header)`` or a bare array) and returns a
new `~astropy.nddata.CCDData` with the unit, WCS and header kept (or correctly
rescaled) and provenance added. The input is never modified.

PyTorch is imported only when a model is first needed, so
``import astro_nn_restore`` stays fast.
"""

from importlib import import_module

try:
    from ._version import version as __version__
except ImportError:  # running from a source tree without setuptools_scm
    __version__ = "0.0.0"

# public name -> submodule that defines it (imported on first access)
_PUBLIC = {
    "denoise_residual": "denoise",
    "deblur": "deblur",
    "super_resolve": "superres",
    "encode_latent": "latent",
    "decode_latent": "latent",
    "anomaly_score": "latent",
    "make_cutouts": "latent",
    "colorize": "colorize",
    "rgb_image": "colorize",
    "available_models": "registry",
    "load_model": "registry",
    "save_model": "registry",
    "ModelLoadError": "registry",
    "simulate_sky": "simulate",
    "process_files": "scale",
}

__all__ = sorted(_PUBLIC)


def __getattr__(name):
    if name in _PUBLIC:
        module = import_module(f".{_PUBLIC[name]}", __name__)
        return getattr(module, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted(list(globals()) + __all__)
