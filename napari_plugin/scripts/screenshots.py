"""Screenshots of the napari plugin for the docs (docs/_static/napari/*.png).

Run from the repository root on a display (or a virtual one)::

    xvfb-run -a python napari_plugin/scripts/screenshots.py [--model NAME_OR_PATH]

It opens the viewer with the plugin's sample data, docks each widget through
the plugin manifest (as a user would from the Plugins menu), runs the
operation to completion when a model is available (the shipped default, or
``--model``), and saves ``viewer.screenshot(canvas_only=False)`` PNGs.
"""

import argparse
import time
from pathlib import Path

import napari
import numpy as np
from qtpy.QtWidgets import QApplication

PLUGIN = "astro-nn-restore-napari"
OUT = Path(__file__).resolve().parents[2] / "docs" / "_static" / "napari"


def wait(seconds=0.3):
    end = time.time() + seconds
    while time.time() < end:
        QApplication.processEvents()
        time.sleep(0.02)


def show_sky_status(viewer, layer, yx):
    """Put the cursor over pixel (y, x) of ``layer`` so the status bar shows its sky position."""
    viewer.layers.selection.active = layer
    viewer.mouse_over_canvas = True
    viewer.cursor.position = tuple(layer.data_to_world(yx))
    viewer.update_status_from_cursor()
    wait()


def save(viewer, name):
    wait(0.5)
    path = OUT / name
    viewer.screenshot(str(path), canvas_only=False, flash=False)
    print("wrote", path)


def run_widget(widget, timeout=600):
    worker = widget.run()
    if worker is None:
        raise RuntimeError(widget.status.value)
    end = time.time() + timeout
    while widget._job is not None and time.time() < end:
        wait(0.1)


def pick_model(widget, model):
    """Select ``model`` (registry name or weights path); False if there is none."""
    from astro_nn_restore_napari._widget import WEIGHTS_FILE

    if model is None:
        return widget.model.value != WEIGHTS_FILE
    if model in widget.model.choices:
        widget.model.value = model
    else:
        widget.model.value = WEIGHTS_FILE
        widget.weights.value = Path(model)
    return True


def denoise_screens(model):
    viewer = napari.Viewer(title="astro-nn-restore: denoise")
    viewer.window.resize(1400, 900)
    viewer.open_sample(PLUGIN, "simulated_sky")
    noisy = viewer.layers["simulated_sky"]
    _, widget = viewer.window.add_plugin_dock_widget(PLUGIN, "Denoise")
    widget.reset_choices()
    widget.image.value = noisy
    show_sky_status(viewer, noisy, (200, 300))
    save(viewer, "denoise_widget.png")

    if not pick_model(widget, model):
        print("no denoise model (no shipped default and no --model): skipping the result shots")
        viewer.close()
        return
    run_widget(widget)
    out = viewer.layers[f"{noisy.name}_denoised"]
    viewer.layers.selection.active = out
    viewer.grid.enabled = True
    viewer.grid.shape = (1, 2)
    for layer in viewer.layers:
        layer.visible = layer in (noisy, out)
    viewer.layers.move(viewer.layers.index(noisy), len(viewer.layers) - 1)
    wait()
    viewer.camera.zoom = viewer.camera.zoom * 2.5
    viewer.camera.center = (0, 200, 300)
    show_sky_status(viewer, out, (200, 300))
    save(viewer, "denoise_result.png")
    viewer.close()


def colour_screen(model):
    viewer = napari.Viewer(title="astro-nn-restore: colour")
    viewer.window.resize(1400, 900)
    viewer.open_sample(PLUGIN, "hubble_deep_field")
    hdf = viewer.layers["hubble_deep_field"]
    hdf.data = np.ascontiguousarray(hdf.data[:400, 300:800])  # a crop keeps the shot quick
    viewer.reset_view()
    _, widget = viewer.window.add_plugin_dock_widget(PLUGIN, "Denoise")
    widget.reset_choices()
    widget.image.value = hdf
    if pick_model(widget, model):
        run_widget(widget)
        viewer.grid.enabled = True
        viewer.grid.shape = (1, 2)
        viewer.layers.move(0, len(viewer.layers) - 1)
    save(viewer, "denoise_rgb.png")
    viewer.close()


def save_screen():
    viewer = napari.Viewer(title="astro-nn-restore: save as FITS")
    viewer.window.resize(1400, 900)
    viewer.open_sample(PLUGIN, "simulated_sky")
    _, widget = viewer.window.add_plugin_dock_widget(PLUGIN, "Save as FITS")
    widget.reset_choices()
    widget.layer.value = viewer.layers["simulated_sky"]
    widget.path.value = Path("simulated_sky_restored.fits")
    save(viewer, "save_fits_widget.png")
    viewer.close()


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="denoise model: registry name or .safetensors path")
    args = parser.parse_args()
    OUT.mkdir(parents=True, exist_ok=True)
    denoise_screens(args.model)
    colour_screen(args.model)
    save_screen()


if __name__ == "__main__":
    main()
