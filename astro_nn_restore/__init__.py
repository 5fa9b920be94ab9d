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

# The operations are imported eagerly: their modules import torch only when a
# model is loaded, and two of them (deblur, colorize) share their module's name,
# which a lazy lookup would resolve to the module once the module is imported.
from .colorize import colorize, rgb_image  # noqa: E402
from .deblur import deblur  # noqa: E402
from .denoise import denoise_residual  # noqa: E402
from .latent import anomaly_score, decode_latent, encode_latent, make_cutouts  # noqa: E402
from .superres import super_resolve  # noqa: E402

# further public names -> submodule that defines them (imported on first access)
_PUBLIC = {
    "available_models": "registry",
    "load_model": "registry",
    "save_model": "registry",
    "ModelLoadError": "registry",
    "simulate_sky": "simulate",
}

__all__ = [
    "denoise_residual", "deblur", "super_resolve", "encode_latent", "decode_latent",
    "anomaly_score", "make_cutouts", "colorize", "rgb_image",
    *_PUBLIC,
]


def __getattr__(name):
    if name in _PUBLIC:
        module = import_module(f".{_PUBLIC[name]}", __name__)
        return getattr(module, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted(list(globals()) + __all__)
