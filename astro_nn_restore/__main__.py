"""``python -m astro_nn_restore``: the ``astro-nn-restore`` command line."""

import sys

from .cli import main

sys.exit(main())
