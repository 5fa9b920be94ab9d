# Sphinx configuration for astro-nn-restore, built on the shared Astropy settings.
#
# Build (offline, warnings are errors):
#   sphinx-build -W -b html -D disable_intersphinx=1 docs docs/_build/html

import datetime
import sys
import tomllib
from importlib.metadata import PackageNotFoundError
from importlib.metadata import version as _dist_version
from pathlib import Path

from sphinx_astropy.conf.v2 import *  # noqa: F403
from sphinx_astropy.conf.v2 import extensions, intersphinx_mapping

# -- Project information ------------------------------------------------------

_pyproject = tomllib.loads((Path(__file__).parent.parent / "pyproject.toml").read_text())
project = "astro-nn-restore"
author = _pyproject["project"]["authors"][0]["name"]
copyright = f"{datetime.date.today().year}, {author}"

# The version from the installed distribution: the package itself is not imported
# (it imports torch lazily, but the docs should build even mid-refactor).
try:
    release = _dist_version(project)
except PackageNotFoundError:
    release = "0.1.dev0"
version = release.split("+")[0]

# -- General configuration ----------------------------------------------------

# sphinx-astropy already loads autodoc, numpydoc, sphinx_automodapi.automodapi,
# sphinx_automodapi.smart_resolver, pytest-doctestplus' directives, the
# intersphinx toggle (-D disable_intersphinx=1) and matplotlib's plot directive.
# sphinx.ext.doctest goes before doctestplus so that doctestplus' ``doctest`` and
# ``testsetup`` directives (render only, pytest runs the examples) stay in force.
for _ext in ["sphinx_automodapi.automodapi", "matplotlib.sphinxext.plot_directive"]:
    if _ext not in extensions:
        extensions.append(_ext)
extensions.insert(extensions.index("pytest_doctestplus.sphinx.doctestplus"), "sphinx.ext.doctest")

# Local helpers (docs/_ext/anr_docs.py): examples that need shipped weights, model cards
# and benchmark pages generated from the JSON cards and benchmarks/results/*.md, README
# commands quoted verbatim, and build-time execution of every page's examples (doctest
# blocks and plots; a failing example stops the build).
sys.path.insert(0, str(Path(__file__).parent / "_ext"))
extensions.append("anr_docs")

exclude_patterns = ["_build", "**.ipynb_checkpoints", "_ext"]

# Off: with intersphinx disabled (offline builds) every numpy/astropy/torch type in
# a docstring would be an unresolved reference, and -W would fail the build.
nitpicky = False
nitpick_ignore = [
    ("py:class", "optional"),
    ("py:class", "array-like"),
    ("py:class", "torch.nn.Module"),
    ("py:class", "torch.Tensor"),
]

# Kept for online builds; `-D disable_intersphinx=1` clears the whole mapping.
intersphinx_mapping.update(
    {
        "numpy": ("https://numpy.org/doc/stable/", None),
        "scipy": ("https://docs.scipy.org/doc/scipy/", None),
        "astropy": ("https://docs.astropy.org/en/stable/", None),
        "photutils": ("https://photutils.readthedocs.io/en/stable/", None),
        "ccdproc": ("https://ccdproc.readthedocs.io/en/latest/", None),
        "reproject": ("https://reproject.readthedocs.io/en/stable/", None),
        "skimage": ("https://scikit-image.org/docs/stable/", None),
        "torch": ("https://docs.pytorch.org/docs/stable/", None),
        "dask": ("https://docs.dask.org/en/stable/", None),
        "napari": ("https://napari.org/stable/", None),
    }
)

# automodapi / numpydoc
automodapi_toctreedirnm = "api"
automodsumm_inherited_members = False
numpydoc_show_class_members = False

# matplotlib plot directive: show the code, one PNG per figure, no extra links
plot_include_source = True
plot_html_show_source_link = False
plot_html_show_formats = False
plot_formats = [("png", 100)]
plot_rcparams = {"figure.figsize": (6.4, 4.0), "savefig.bbox": "tight"}
plot_pre_code = "import numpy as np\nimport matplotlib.pyplot as plt\n"
# an exception in a plot is a Sphinx warning, so `-W` makes a broken example fail the build
plot_working_directory = None

# -- Options for HTML output --------------------------------------------------

html_title = f"{project} v{release}"
htmlhelp_basename = project + "doc"
html_static_path = []

# -- Options for LaTeX / man output -------------------------------------------

latex_documents = [("index", project + ".tex", project + " Documentation", author, "manual")]
man_pages = [("index", project.lower(), project + " Documentation", [author], 1)]
