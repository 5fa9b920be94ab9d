"""``import astro_nn_restore`` stays light: torch is imported only when a model is needed."""

import subprocess
import sys


def test_import_does_not_import_torch():
    code = ("import sys, astro_nn_restore, astro_nn_restore.simulate, astro_nn_restore.tiling; "
            "print('torch' in sys.modules)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            check=True)
    assert result.stdout.strip() == "False"


def test_public_names_resolve():
    import astro_nn_restore

    assert callable(astro_nn_restore.denoise_residual)
    assert "denoise_residual" in dir(astro_nn_restore)
