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
DOCS = Path(__file__).resolve().parents[2] / "docs" / "_static" / "napari"
OUT = DOCS


def wait(seconds=0.3):
    end = time.time() + seconds
    while time.time() < end:
        QApplication.processEvents()
        time.sleep(0.02)


def new_viewer(title):
    viewer = napari.Viewer(title=title)
    viewer.window.resize(1500, 1000)
    return viewer


def fit_view(viewer):
    """Fit the image to the canvas once the dock widgets have taken their room."""
    wait()
    viewer.reset_view()
    wait()


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
    viewer = new_viewer("astro-nn-restore: denoise")
    viewer.open_sample(PLUGIN, "simulated_sky")
    noisy = viewer.layers["simulated_sky"]
    _, widget = viewer.window.add_plugin_dock_widget(PLUGIN, "Denoise")
    widget.reset_choices()
    widget.image.value = noisy
    fit_view(viewer)
    show_sky_status(viewer, noisy, (200, 300))
    save(viewer, "denoise_widget.png")

    if not pick_model(widget, model):
        print("no denoise model (no shipped default and no --model): skipping the result shots")
        viewer.close()
        return
    run_widget(widget)
    # noisy | denoised over the noiseless truth, with the same contrast
    out = viewer.layers[f"{noisy.name}_denoised"]
    truth = viewer.layers[f"{noisy.name}_truth"]
    truth.visible = True
    for layer in (out, truth):
        layer.contrast_limits = noisy.contrast_limits
    for index, layer in enumerate([noisy, out, truth]):  # grid cells in layer-list order
        viewer.layers.move(viewer.layers.index(layer), index)
        layer.name_overlay.visible = True
    grid = viewer.canvas.grid
    grid.shape, grid.enabled = (2, 2), True
    fit_view(viewer)
    show_sky_status(viewer, out, (200, 300))
    save(viewer, "denoise_result.png")
    viewer.close()


def colour_screen(model):
    viewer = new_viewer("astro-nn-restore: colour")
    viewer.open_sample(PLUGIN, "hubble_deep_field")
    hdf = viewer.layers["hubble_deep_field"]
    hdf.data = np.ascontiguousarray(hdf.data[:400, 300:800])  # a crop keeps the shot quick
    _, widget = viewer.window.add_plugin_dock_widget(PLUGIN, "Denoise")
    widget.reset_choices()
    widget.image.value = hdf
    if not pick_model(widget, model):
        print("no denoise model: skipping the colour shot")
        viewer.close()
        return
    run_widget(widget)
    grid = viewer.canvas.grid
    grid.shape, grid.enabled = (1, 2), True
    for layer in viewer.layers:
        layer.name_overlay.visible = True
    fit_view(viewer)
    save(viewer, "denoise_rgb.png")
    viewer.close()


#: Dock-widget name -> (operation key, PNG stem) for the widgets beyond Denoise.
OTHER_WIDGETS = {"Deblur": ("deblur", "deblur"), "Super-resolve": ("superres", "superres"),
                 "Colorize": ("colorize", "colorize"), "Anomaly map": ("anomaly", "anomaly")}


def operation_screens(title, key, stem):
    """The widget docked over the simulated sky; the result too when a model is installed."""
    viewer = new_viewer(f"astro-nn-restore: {title.lower()}")
    viewer.open_sample(PLUGIN, "simulated_sky")
    sky = viewer.layers["simulated_sky"]
    if key == "superres":  # a crop, so the finer pixels can be seen
        sky.data = np.ascontiguousarray(sky.data[150:278, 250:378])
        sky.metadata["wcs"] = sky.metadata["wcs"][150:278, 250:378]  # sky positions stay true
        sky.metadata["uncertainty"] = sky.metadata["uncertainty"][150:278, 250:378]
        viewer.layers.remove("simulated_sky_truth")  # its full extent would set the view
    _, widget = viewer.window.add_plugin_dock_widget(PLUGIN, title)
    widget.reset_choices()
    widget.image.value = sky
    fit_view(viewer)
    show_sky_status(viewer, sky, (60, 60))
    save(viewer, f"{stem}_widget.png")
    if not pick_model(widget, None):
        print(f"no {widget.operation.task} model installed: skipping the {title} result shot")
        viewer.close()
        return
    run_widget(widget)
    for layer in viewer.layers:
        layer.name_overlay.visible = True
    if key in ("deblur", "superres", "colorize"):
        grid = viewer.canvas.grid
        grid.shape, grid.enabled = (1, 2), True
    fit_view(viewer)
    save(viewer, f"{stem}_result.png")
    viewer.close()


def save_screen():
    viewer = new_viewer("astro-nn-restore: save as FITS")
    viewer.open_sample(PLUGIN, "simulated_sky")
    _, widget = viewer.window.add_plugin_dock_widget(PLUGIN, "Save as FITS")
    widget.reset_choices()
    widget.layer.value = viewer.layers["simulated_sky"]
    fit_view(viewer)
    save(viewer, "save_fits_widget.png")
    viewer.close()


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="denoise model: registry name or .safetensors path")
    parser.add_argument("--out", type=Path, default=DOCS, help=f"folder (default: {DOCS})")
    args = parser.parse_args()
    global OUT
    OUT = args.out
    OUT.mkdir(parents=True, exist_ok=True)
    denoise_screens(args.model)
    colour_screen(args.model)
    for title, (key, stem) in OTHER_WIDGETS.items():
        operation_screens(title, key, stem)
    save_screen()


if __name__ == "__main__":
    main()
