"""pytest settings for the doctests collected from the package's modules."""

import os
import sys
from importlib.metadata import PackageNotFoundError, version

# Doctests that plot draw off screen; set before anything imports pyplot.
os.environ.setdefault("MPLBACKEND", "Agg")

try:
    import matplotlib
except ImportError:
    pass
else:
    matplotlib.use("Agg")

try:
    from pytest_astropy_header.display import PYTEST_HEADER_MODULES, TESTED_VERSIONS
except ImportError:
    PYTEST_HEADER_MODULES = {}
    TESTED_VERSIONS = {}

TORCH_THREADS = int(os.environ.get("ASTRO_NN_RESTORE_TEST_THREADS", min(2, os.cpu_count() or 1)))


def pytest_configure(config):
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
    except PackageNotFoundError:
        TESTED_VERSIONS["astro-nn-restore"] = "unknown (not installed)"


def pytest_runtest_setup(item):
    # torch is never imported here; only limit its threads once a doctest has.
    torch = sys.modules.get("torch")
    if torch is not None and torch.get_num_threads() != TORCH_THREADS:
        torch.set_num_threads(TORCH_THREADS)
