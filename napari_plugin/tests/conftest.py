"""Fixtures for the plugin tests: a tiny denoise model and a FITS file with WCS.

The viewer tests need a display: pytest-xvfb starts Xvfb
(``QT_QPA_PLATFORM=offscreen`` breaks napari's OpenGL canvas).
"""

import json
import os

import numpy as np
import pytest
from astropy.io import fits
from astropy.wcs import WCS

TORCH_THREADS = int(os.environ.get("ASTRO_NN_RESTORE_TEST_THREADS", min(2, os.cpu_count() or 1)))


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory):
    """Path of a tiny, untrained ResidualUNet saved with its model card (shipped weights
    may not exist yet, and tests must not depend on them)."""
    import torch

    from astro_nn_restore.models import ResidualUNet
    from astro_nn_restore.registry import save_model

    torch.set_num_threads(TORCH_THREADS)
    torch.manual_seed(0)
    net = ResidualUNet(channels=(8, 16), blocks=1, dilations=(2,), space_to_depth=2)
    path = tmp_path_factory.mktemp("models") / "tiny.safetensors"
    arguments = json.loads(json.dumps(net.config))  # tuples -> lists, as a card stores them
    save_model(net, path, {"task": "denoise", "architecture": "ResidualUNet",
                           "arguments": arguments})
    return path


def sky_wcs(shape):
    wcs = WCS(naxis=2)
    wcs.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    wcs.wcs.crval = [150.1, 2.2]
    wcs.wcs.crpix = [shape[1] / 2 + 0.5, shape[0] / 2 + 0.5]
    wcs.wcs.cd = [[-1e-4, 1e-5], [1e-5, 1e-4]]
    wcs.wcs.radesys = "ICRS"
    wcs.wcs.set()
    return wcs


def make_fits(path, shape=(96, 80), *, bunit="electron", seed=0, n_stars=5):
    """A big-endian float32 FITS image with a TAN WCS (CD matrix) and a few stars."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[: shape[0], : shape[1]]
    image = 100 + rng.normal(0, 5, shape)
    for _ in range(n_stars):
        cy, cx = rng.uniform(5, shape[0] - 5), rng.uniform(5, shape[1] - 5)
        image += 500 * np.exp(-((y - cy) ** 2 + (x - cx) ** 2) / 4.0)
    header = sky_wcs(shape).to_header()
    header["OBJECT"] = "test field"
    if bunit:
        header["BUNIT"] = bunit
    fits.PrimaryHDU(image.astype(">f4"), header=header).writeto(path)
    return path


@pytest.fixture
def fits_file(tmp_path):
    return make_fits(tmp_path / "field.fits")


@pytest.fixture
def crowded_fits_file(tmp_path):
    """``field.fits`` with enough stars for sources to be compared with each other."""
    return make_fits(tmp_path / "field.fits", shape=(160, 160), n_stars=24)


@pytest.fixture
def fits_factory():
    """``make_fits(path, shape=..., bunit=..., seed=..., n_stars=...)``."""
    return make_fits


@pytest.fixture
def wcs_factory():
    """``sky_wcs(shape)``: the TAN WCS the test files carry."""
    return sky_wcs


def _save_tiny(net, path, task, architecture):
    from astro_nn_restore.registry import save_model

    arguments = json.loads(json.dumps(net.config))  # tuples -> lists, as a card stores them
    save_model(net, path, {"task": task, "architecture": architecture, "arguments": arguments})
    return path


def _perturbed(net, seed=0, amount=0.05):
    """An untrained net whose zero-initialised layers are filled (a non-trivial output)."""
    import torch

    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in net.parameters():
            p.add_(amount * torch.randn(p.shape, generator=gen))
    return net.eval()


@pytest.fixture(scope="session")
def tiny_deblur_model(tmp_path_factory):
    """A tiny untrained DeblurUNet with its card (as in the core's tests/test_deblur.py)."""
    import torch

    from astro_nn_restore.models.deblur import DeblurUNet

    torch.set_num_threads(TORCH_THREADS)
    torch.manual_seed(0)
    net = DeblurUNet(channels=(8, 16), blocks=1, dilations=(2,), space_to_depth=2, features=8,
                     embed_dim=8).eval()
    with torch.no_grad():
        for p in net.film.parameters():
            p.normal_(0, 0.05)
    return _save_tiny(net, tmp_path_factory.mktemp("deblur") / "tiny.safetensors",
                      "deblur", "DeblurUNet")


@pytest.fixture(scope="session")
def tiny_superres_model(tmp_path_factory):
    """A tiny untrained x2 SRResNet with its card."""
    import torch

    from astro_nn_restore.models.superres import SRResNet

    torch.set_num_threads(TORCH_THREADS)
    net = _perturbed(SRResNet(channels=4, blocks=1))
    return _save_tiny(net, tmp_path_factory.mktemp("superres") / "tiny.safetensors",
                      "superres", "SRResNet")


@pytest.fixture(scope="session")
def tiny_colorize_model(tmp_path_factory):
    """A tiny untrained ColorGenerator (head bias shifted, so the colours are not grey)."""
    import torch

    from astro_nn_restore.models.colorize import ColorGenerator

    torch.set_num_threads(TORCH_THREADS)
    torch.manual_seed(0)
    net = ColorGenerator(channels=(8, 16), dilations=(2,))
    with torch.no_grad():
        net.unet.head.bias.add_(0.5)
    return _save_tiny(net.eval(), tmp_path_factory.mktemp("colorize") / "tiny.safetensors",
                      "colorize", "ColorGenerator")


@pytest.fixture(scope="session")
def tiny_autoencoder_model(tmp_path_factory):
    """A tiny untrained 32-pixel CutoutAutoencoder with its card."""
    import torch

    from astro_nn_restore.models.autoencoder import CutoutAutoencoder

    torch.set_num_threads(TORCH_THREADS)
    torch.manual_seed(0)
    net = CutoutAutoencoder(size=32, latent_dim=4, channels=(4, 8)).eval()
    return _save_tiny(net, tmp_path_factory.mktemp("autoencoder") / "tiny.safetensors",
                      "autoencoder", "CutoutAutoencoder")
