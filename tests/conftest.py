"""Shared pytest fixtures and settings for the test suite in ``tests/``."""

import os
import pathlib
import sys
from importlib.metadata import PackageNotFoundError, version

import numpy as np
import pytest

# Plots from tests go to files, never to a window.
os.environ.setdefault("MPLBACKEND", "Agg")

try:
    from pytest_astropy_header.display import PYTEST_HEADER_MODULES, TESTED_VERSIONS
except ImportError:  # pytest-astropy-header absent: no header, nothing else changes
    PYTEST_HEADER_MODULES = {}
    TESTED_VERSIONS = {}

REPO_ROOT = pathlib.Path(__file__).resolve().parent.parent
# Real observations live beside the checkout, never in it (see DESIGN.md).
SHARED_DATA = REPO_ROOT.parent / "shared" / "data"

# Torch threads for the tests; the CI machine has 2 cores.
TORCH_THREADS = int(os.environ.get("ASTRO_NN_RESTORE_TEST_THREADS", min(2, os.cpu_count() or 1)))


def configure_header():
    """Fill the pytest-astropy-header tables (shared with the package's conftest)."""
    PYTEST_HEADER_MODULES.pop("Pandas", None)
    PYTEST_HEADER_MODULES.pop("h5py", None)
    PYTEST_HEADER_MODULES.update(
        {
            "torch": "torch",
            "photutils": "photutils",
            "ccdproc": "ccdproc",
            "scikit-image": "skimage",
            "reproject": "reproject",
        }
    )
    try:
        TESTED_VERSIONS["astro-nn-restore"] = version("astro-nn-restore")
    except PackageNotFoundError:  # running from a tree that was never installed
        TESTED_VERSIONS["astro-nn-restore"] = "unknown (not installed)"


def _set_torch_threads():
    """Limit torch's threads, but only once torch has been imported by a test."""
    torch = sys.modules.get("torch")
    if torch is not None and torch.get_num_threads() != TORCH_THREADS:
        torch.set_num_threads(TORCH_THREADS)


def pytest_configure(config):
    configure_header()
    _set_torch_threads()


def pytest_runtest_setup(item):
    _set_torch_threads()


@pytest.fixture
def rng():
    """A seeded NumPy random generator, the same in every test."""
    return np.random.default_rng(12345)


@pytest.fixture(scope="session")
def shared_data():
    """Path of ``../shared/data`` beside the checkout; skips the test when absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip("shared data folder absent")
    return SHARED_DATA
