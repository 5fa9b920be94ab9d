"""The npe2 manifest, the core's progress hook, and the core staying free of Qt."""

import subprocess
import sys

import numpy as np
import pytest

from astro_nn_restore_napari._operations import OPERATIONS


def test_npe2_validate_passes():
    from npe2.cli import app
    from typer.testing import CliRunner

    result = CliRunner().invoke(app, ["validate", "--imports", "astro_nn_restore_napari"])
    assert result.exit_code == 0, result.output
    assert "valid" in result.output


def test_manifest_contributions():
    from npe2 import PluginManifest

    manifest = PluginManifest.from_distribution("astro-nn-restore-napari")
    contributions = manifest.contributions
    assert [r.command for r in contributions.readers] == ["astro-nn-restore-napari.get_reader"]
    assert "*.fits.gz" in contributions.readers[0].filename_patterns
    [writer] = contributions.writers
    assert ".fits" in writer.filename_extensions
    assert {s.key for s in contributions.sample_data} == {"simulated_sky", "hubble_deep_field"}
    widgets = {w.command for w in contributions.widgets}
    for name in OPERATIONS:  # every declared operation is offered as a widget
        assert f"astro-nn-restore-napari.{name}_widget" in widgets
    commands = {c.id: c.python_name for c in contributions.commands}
    assert commands["astro-nn-restore-napari.denoise_widget"].endswith(":DenoiseWidget")


def test_tiled_apply_progress_callback_counts_and_cancels():
    from astro_nn_restore.tiling import tiled_apply

    image = np.arange(40 * 40, dtype=np.float32).reshape(40, 40)
    calls = []
    out = tiled_apply(lambda b: b, image, tile_size=16, overlap=4, batch_size=2,
                      progress=lambda done, total: calls.append((done, total)))
    assert np.allclose(out, image)
    total = calls[0][1]
    assert calls[0] == (0, total) and calls[-1] == (total, total)
    assert [d for d, _ in calls] == sorted(d for d, _ in calls)

    class Stop(Exception):
        pass

    seen = []

    def stop_after_two(done, total):
        seen.append(done)
        if done >= 4:
            raise Stop

    with pytest.raises(Stop):
        tiled_apply(lambda b: seen.append("batch") or b, image, tile_size=16, overlap=4,
                    batch_size=2, progress=stop_after_two)
    assert seen.count("batch") == 2


def test_core_never_imports_qt_or_napari():
    code = ("import sys, astro_nn_restore, astro_nn_restore.denoise, astro_nn_restore.registry;"
            "bad = [m for m in sys.modules if m.split('.')[0] in "
            "('napari', 'qtpy', 'PyQt5', 'PyQt6', 'PySide2', 'PySide6', 'magicgui')];"
            "print(bad); sys.exit(1 if bad else 0)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
