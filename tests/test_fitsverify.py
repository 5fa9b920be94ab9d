"""Written outputs pass HEASARC's fitsverify (the FITS standard checker).

Skipped where the ``fitsverify`` program is absent (Debian package
``fitsverify``; ``.ci/run`` installs it).
"""

import re
import shutil
import subprocess

import numpy as np
import pytest
from astropy.io import fits
from astropy.utils.exceptions import AstropyUserWarning

from .test_wcs_utils import HEADERS

torch = pytest.importorskip("torch")

from astro_nn_restore import deblur, denoise_residual, super_resolve  # noqa: E402
from astro_nn_restore.colorize import colorize  # noqa: E402
from astro_nn_restore.models import ResidualUNet  # noqa: E402
from astro_nn_restore.models.colorize import ColorGenerator  # noqa: E402
from astro_nn_restore.models.deblur import DeblurUNet  # noqa: E402
from astro_nn_restore.models.superres import SRResNet  # noqa: E402
from astro_nn_restore.simulate import psf_gaussian  # noqa: E402

FITSVERIFY = shutil.which("fitsverify")
pytestmark = pytest.mark.skipif(FITSVERIFY is None, reason="fitsverify is not installed")
FAST = dict(tile_size=64, overlap=16, precision="fp32")
DISTORTED = ("tan_sip", "tpv")


def _operations():
    torch.manual_seed(0)
    return {
        "denoise": lambda path: denoise_residual(
            path, model=ResidualUNet(channels=(8, 16), blocks=1, dilations=(2,)), **FAST),
        "deblur": lambda path: deblur(
            path, psf=psf_gaussian(2.0), model=DeblurUNet(channels=(8, 16), blocks=1,
                                                          dilations=(2,), features=8,
                                                          embed_dim=8), **FAST),
        "super_resolve": lambda path: super_resolve(
            path, factor=4, model=SRResNet(channels=4, blocks=1), **FAST),
        "colorize": lambda path: colorize(path, model=ColorGenerator(channels=(8, 16)), **FAST),
    }


def _verify(path):
    """``(warnings, errors)`` counted by fitsverify."""
    line = subprocess.run([FITSVERIFY, "-q", str(path)], capture_output=True, text=True,
                          check=False).stdout
    if "verification OK" in line:
        return 0, 0
    found = re.search(r"(\d+) warnings and (\d+) errors", line)
    assert found, line
    return int(found[1]), int(found[2])


@pytest.fixture(scope="module")
def operations():
    return _operations()


@pytest.mark.parametrize("header_name", ["tan_cd", "tan_sip", "tpv", "car_galactic",
                                         "helioprojective"])
@pytest.mark.parametrize("operation", ["denoise", "deblur", "super_resolve", "colorize"])
def test_written_output_passes_fitsverify(operations, operation, header_name, tmp_path):
    header = HEADERS[header_name]()
    header.update(BUNIT="electron", OBJECT="field", SATURATE=60000.0, DATAMIN=0.0)
    data = np.random.default_rng(1).normal(200.0, 8.0, (64, 64)).astype(">f4")
    data[20:23, 30:33] += 400.0
    source, written = tmp_path / "in.fits", tmp_path / "out.fits"
    fits.PrimaryHDU(data, header).writeto(source, checksum=True)
    assert _verify(source) == (0, 0)
    if operation == "colorize" and header_name in DISTORTED:  # a cube gets a linear fit
        with pytest.warns(AstropyUserWarning, match="colour cube WCS"):
            result = operations[operation](str(source))
    else:
        result = operations[operation](str(source))
    result.write(written)
    assert _verify(written) == (0, 0), subprocess.run(
        [FITSVERIFY, str(written)], capture_output=True, text=True, check=False).stdout
