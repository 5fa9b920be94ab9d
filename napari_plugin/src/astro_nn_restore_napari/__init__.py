"""napari plugin for astro_nn_restore: FITS reader/writer with WCS, sample data, widgets.

The contributions are declared in ``napari.yaml`` (npe2). Nothing heavy is
imported here; napari imports each module when its contribution is used.
"""

try:
    from importlib.metadata import PackageNotFoundError, version

    __version__ = version("astro-nn-restore-napari")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0"

__all__ = ["__version__"]
