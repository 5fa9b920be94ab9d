"""pytest settings for the doctests in ``docs/*.rst``.

A page whose ``.. weights-example:: MODEL`` blocks need shipped weights that
are not in ``astro_nn_restore/weights/`` yet is skipped as a whole (pytest
collects one doctest item per page), with the missing models as the reason.
The Sphinx build (``docs/_ext/anr_docs.py``) does the same per block.
"""

import re

import pytest

_WEIGHTS_EXAMPLE = re.compile(r"^\.\. weights-example::\s+(\S+)", re.MULTILINE)


def _missing_models(path):
    from astro_nn_restore.registry import weights_dir

    folder = weights_dir()
    names = _WEIGHTS_EXAMPLE.findall(path.read_text())
    return sorted({n for n in names if not ((folder / f"{n}.json").exists()
                                            and (folder / f"{n}.safetensors").exists())})


def pytest_collection_modifyitems(config, items):
    for item in items:
        path = item.path
        if path.suffix != ".rst":
            continue
        missing = _missing_models(path)
        if missing:
            item.add_marker(pytest.mark.skip(
                reason=f"weights not shipped yet: {', '.join(missing)}"))
