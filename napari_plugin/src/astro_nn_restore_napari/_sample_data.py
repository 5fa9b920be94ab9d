"""Sample data: a simulated sky and the Hubble Deep Field.

Both go through the same FITS code path as a file opened from disk (they are
written to an in-memory FITS file and read back), so their layers carry the
unit, WCS and header exactly as a real observation would.
"""

import io

import numpy as np
from astropy.io import fits
from astropy.nddata import CCDData

from ._io import layer_data_from_file
from ._sky_status import install_in_current_viewer

__all__ = ["simulated_sky", "hubble_deep_field"]


def _through_fits(ccd, name):
    buffer = io.BytesIO()
    ccd.to_hdu().writeto(buffer)
    return layer_data_from_file(buffer.getvalue(), name=name)


def simulated_sky(shape=(512, 512), seed=2024):
    """A noisy simulated CCD frame (electrons, TAN WCS, per-pixel uncertainty).

    The noiseless truth is added too (hidden) for comparing with a restoration.
    """
    from astro_nn_restore.simulate import simulate_sky

    sim = simulate_sky(shape, seed=seed)
    for ccd in (sim.noisy, sim.clean):
        ccd.header["OBJECT"] = ("simulated field", "astro_nn_restore.simulate")
    noisy = _through_fits(sim.noisy, "simulated_sky")
    clean = _through_fits(sim.clean, "simulated_sky_truth")
    clean[1]["visible"] = False
    clean[1]["contrast_limits"] = noisy[1]["contrast_limits"]
    install_in_current_viewer()
    return [clean, noisy]


def hubble_deep_field():
    """The scikit-image Hubble Deep Field, an RGB (ny, nx, 3) image in [0, 1].

    It is a colour rendering without a WCS or physical unit (the header
    says so), useful to try the colour path of the operations.
    """
    from astro_nn_restore.datasets import hubble_deep_field as hdf

    rgb = hdf("all", color=True)
    header = fits.Header()
    header["OBJECT"] = ("Hubble Deep Field", "scikit-image data.hubble_deep_field")
    header["TELESCOP"] = ("HST", "Hubble Space Telescope")
    header["ORIGIN"] = ("scikit-image", "colour rendering, values in [0, 1]")
    header["COMMENT"] = "A colour press image: no WCS and no physical unit are known."
    cube = CCDData(np.moveaxis(rgb, -1, 0), unit="", meta=header)
    install_in_current_viewer()
    return [_through_fits(cube, "hubble_deep_field")]
