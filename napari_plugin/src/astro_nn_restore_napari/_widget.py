"""Dock widgets: one per operation (built from `_operations.OPERATIONS`) and Save as FITS.

Run starts the core function in a napari ``thread_worker``. The function
gets ``progress=callback``; `astro_nn_restore.tiling.tiled_apply` calls it
before each batch of tiles with (tiles done, tiles in total). The callback
(in the worker thread) raises `OperationCancelled` once Cancel was pressed
(the widget's button, the progress bar's in napari's activity panel, or the
task's in the status bar), which stops the run between two batches, and
otherwise forwards the count to the GUI thread through a Qt signal, which
moves a napari progress bar.
"""

import threading
import time
from pathlib import Path

import numpy as np
from magicgui import magic_factory
from magicgui.widgets import (
    ComboBox,
    Container,
    FileEdit,
    Label,
    PushButton,
    SpinBox,
    Table,
    create_widget,
)
from napari.layers import Image
from napari.qt.threading import thread_worker
from napari.utils import cancelable_progress
from napari.utils.notifications import show_error, show_info
from napari.viewer import Viewer
from qtpy.QtCore import QObject, Signal

from ._io import ccd_from_layer, layer_data_from_ccd, layer_placement, save_fits
from ._operations import OPERATIONS
from ._sky_status import install_sky_status

__all__ = ["OperationCancelled", "OperationWidget", "DenoiseWidget", "DeblurWidget",
           "SuperResolveWidget", "ColorizeWidget", "AnomalyMapWidget", "WIDGETS",
           "save_fits_widget", "unique_layer_name"]

#: Model-picker entry that shows a file chooser for a user's weights.
WEIGHTS_FILE = "weights file..."

#: Rows of the anomaly table (highest scores first).
TOP_N = 20


class OperationCancelled(Exception):
    """Raised in the worker thread, between two batches of tiles, after Cancel."""


class _TileRelay(QObject):
    """Carries tile counts from the worker thread to the GUI thread (a queued signal)."""

    tiles = Signal(int, int)


def unique_layer_name(viewer, base):
    """``base``, or ``base-2``, ``base-3``... whichever is not a layer name yet."""
    names = {layer.name for layer in viewer.layers}
    if base not in names:
        return base
    k = 2
    while f"{base}-{k}" in names:
        k += 1
    return f"{base}-{k}"


def _wrapped_label(text):
    label = Label(value=text)
    label.native.setWordWrap(True)
    return label


def _model_names(task):
    from astro_nn_restore.registry import available_models

    prefix = f"{task}-"
    return [n[len(prefix):] if n.startswith(prefix) else n for n in available_models(task)]


class OperationWidget(Container):
    """Layer picker, model picker, tile size, options, Run and Cancel for one `Operation`."""

    def __init__(self, viewer, operation):
        super().__init__(labels=False)
        self.viewer, self.operation = viewer, operation
        self._job = None
        self._relay = _TileRelay()
        self._relay.tiles.connect(self._on_tiles)
        self._build()
        install_sky_status(viewer)

    # ---------------------------------------------------------------- layout
    def _build(self):
        op = self.operation
        self.about = _wrapped_label(op.description)
        self.image = ComboBox(label="Image", choices=self._image_choices,
                              tooltip="The image to process (a 2-D image"
                                      + (" or an RGB layer)" if op.rgb_input else ")"))
        names = _model_names(op.task)
        weights_entry = (WEIGHTS_FILE if names else
                         ("none installed: use a weights file", WEIGHTS_FILE))
        self.model = ComboBox(label="Model", choices=[*names, weights_entry],
                              value=names[0] if names else WEIGHTS_FILE,
                              tooltip=f"A shipped {op.task} model, or your own weights file "
                                      "(.safetensors with its .json card beside it)")
        self.weights = FileEdit(label="Weights file", mode="r", filter="*.safetensors",
                                tooltip="A .safetensors file trained with astro_nn_restore.train")
        self.tile_size = SpinBox(label="Tile size (px)", value=256, min=64, max=4096, step=32,
                                 visible=op.tiled,
                                 tooltip="Tiles overlap and are blended, so the result does not "
                                         "depend on this; smaller tiles use less memory")
        self.option_widgets = {opt.keyword: self._option_widget(opt) for opt in op.options}
        self.run_button = PushButton(text=f"Run {op.title.lower()}")
        self.cancel_button = PushButton(text="Cancel", enabled=False,
                                        tooltip=f"Stop after the {op.steps} being computed now")
        self.status = _wrapped_label(self._ready_text(names))
        form = Container(widgets=[self.image, self.model, self.weights, self.tile_size,
                                  *self.option_widgets.values()], labels=True)
        buttons = Container(widgets=[self.run_button, self.cancel_button], layout="horizontal",
                            labels=False)
        form.margins = buttons.margins = (0, 0, 0, 0)
        self.extend([self.about, form, buttons, self.status])
        self.results = None  # the anomaly table, created with the first result
        self.model.changed.connect(self._show_weights)
        self.run_button.changed.connect(self.run)
        self.cancel_button.changed.connect(self.cancel)
        self._show_weights()

    def _ready_text(self, model_names):
        if model_names:
            return "Pick an image and a model, then press Run. The result is a new layer."
        return (f"No {self.operation.task} model is installed with the package yet: choose a "
                "weights file (.safetensors with its .json card beside it, as written by "
                f"python -m astro_nn_restore.train {self.operation.task}), then press Run.")

    def _image_choices(self, widget=None):
        return [(layer.name, layer) for layer in self.viewer.layers if isinstance(layer, Image)]

    def _option_widget(self, option):
        if option.kind == "layer":
            choices = lambda widget=None: [("none", None), *self._image_choices()]  # noqa: E731
            return ComboBox(label=option.label, choices=choices, value=None,
                            tooltip=option.tooltip)
        if option.kind == "choice":
            return ComboBox(label=option.label, value=option.default, tooltip=option.tooltip,
                            **option.widget_options)
        if isinstance(option.default, int) and not isinstance(option.default, bool):
            return SpinBox(label=option.label, value=option.default, tooltip=option.tooltip,
                           **option.widget_options)
        return create_widget(value=option.default, label=option.label,
                             options={"tooltip": option.tooltip, **option.widget_options})

    def _show_weights(self, *_):
        self.weights.visible = self.model.value == WEIGHTS_FILE

    # ------------------------------------------------------------------ run
    def _model_argument(self):
        if self.model.value != WEIGHTS_FILE:
            return self.model.value
        path = Path(self.weights.value)
        if not path.is_file():
            raise ValueError("choose a weights file (.safetensors) for the model")
        return str(path)

    def _keyword_arguments(self):
        kwargs = {"model": self._model_argument()}
        for option in self.operation.options:
            value = self.option_widgets[option.keyword].value
            if option.kind == "layer" and value is not None:
                if value.rgb or np.ndim(value.data) != 2:
                    raise ValueError(f"{option.label}: '{value.name}' is not a 2-D image")
                value = np.asarray(value.data)
            if option.convert is not None:
                value = option.convert(value)
            kwargs[option.keyword] = value
        if self.operation.tiled:
            kwargs["tile_size"] = int(self.tile_size.value)
        return kwargs

    def run(self, *_):
        """Start the operation on the chosen layer; return the worker (None if not started)."""
        if self._job is not None:
            return None
        layer = self.image.value
        try:
            if layer is None:
                raise ValueError("there is no image layer: open a FITS file or a sample first")
            if layer.rgb and not self.operation.rgb_input:
                raise ValueError(f"{self.operation.title} needs a greyscale image; "
                                 f"'{layer.name}' is an RGB layer")
            source = layer_source(layer)
            kwargs = self._keyword_arguments()
        except (ValueError, TypeError) as err:  # TypeError: an edited metadata['wcs'], say
            self.status.value = f"Cannot run: {err}"
            show_info(f"{self.operation.title}: {err}")
            return None
        return self._start(layer, source, kwargs)

    def _start(self, layer, source, kwargs):
        op = self.operation
        job = _Job(layer=layer, started=time.perf_counter(),
                   pbar=cancelable_progress(total=0, desc=f"{op.title} {layer.name}"))

        def report(done, total):  # runs in the worker thread
            if done < total and job.cancel_requested():
                raise OperationCancelled(f"cancelled after {done} of {total} {op.steps}")
            self._relay.tiles.emit(done, total)

        if op.progress:
            kwargs = {**kwargs, "progress": report}
        worker = thread_worker(_call, ignore_errors=True, start_thread=False)(op, source, kwargs)
        job.worker = worker
        worker.returned.connect(self._on_returned)
        worker.errored.connect(self._on_errored)
        worker.finished.connect(self._on_finished)
        self._job = job
        self.run_button.enabled, self.cancel_button.enabled = False, True
        self.status.value = f"Running on '{layer.name}'..."
        worker.start()
        return worker

    def cancel(self, *_):
        """Ask the running job to stop before its next batch of tiles."""
        if self._job is not None:
            self._job.cancel.set()
            self.cancel_button.enabled = False
            self.status.value = (f"Cancelling (stops before the next batch of "
                                 f"{self.operation.steps})...")

    # ------------------------------------------------------------ callbacks
    def _on_tiles(self, done, total):
        job = self._job
        if job is None:
            return
        job.tiles = (done, total)
        if not job.cancel.is_set():
            self.status.value = (f"Running on '{job.layer.name}': {done}/{total} "
                                 f"{self.operation.steps}")
        # last: napari's progress bar calls processEvents(), so the job may end in here
        if job.pbar.total != total:
            job.pbar.total = total
        job.pbar.n = done
        job.pbar.update(0)

    def _on_returned(self, result):
        job = self._job
        name = unique_layer_name(self.viewer, f"{job.layer.name}_{self.operation.suffix}")
        seconds = time.perf_counter() - job.started
        if self.operation.output == "points":
            self._add_points(result, job.layer, name, seconds)
            return
        data, kwargs, _ = output_layer_data(result, job.layer, name)
        self.viewer.add_image(data, **kwargs)
        self.status.value = f"Done in {seconds:.1f} s: added layer '{name}'."

    def _add_points(self, result, layer, name, seconds):
        from ._anomaly import points_layer_data

        n = len(result.scores)
        if n == 0:
            if self.results is not None:
                self.results.visible = False
            self.status.value = (f"No source found above the detection threshold in "
                                 f"'{layer.name}' (lower it?); no layer was added.")
            return
        data, kwargs = points_layer_data(result, layer, name)
        self._points = self.viewer.add_points(data, **kwargs)
        order = np.argsort(result.scores)[::-1][:TOP_N]
        sky = result.ra is not None
        columns = ["score", "x", "y", *(["RA (deg)", "Dec (deg)"] if sky else [])]
        rows = []
        for i in order:
            row = [f"{result.scores[i]:.2f}", f"{result.positions[i, 0]:.1f}",
                   f"{result.positions[i, 1]:.1f}"]
            if sky:
                row += [f"{result.ra[i]:.5f}", f"{result.dec[i]:.5f}"]
            rows.append(row)
        self._rows = [tuple(result.positions[i, ::-1]) for i in order]  # (y, x)
        value = {"data": rows, "columns": columns,
                 "index": [str(k + 1) for k in range(len(rows))]}
        if self.results is None:
            self.results = Table(value=value)
            self.results.read_only = True
            self.results.native.setMinimumHeight(220)
            self.results.native.cellClicked.connect(self._go_to_row)
            self.append(self.results)
        else:
            self.results.value = value
        self.results.visible = True
        fallback = ("" if result.header.get("ANR_REL") or not self.option_widgets["relative"].value
                    else " Too few sources to compare with each other: scored against pure "
                         "noise.")
        self.status.value = (f"Done in {seconds:.1f} s: scored {n} sources, added layer "
                             f"'{name}' (colour = score). Highest {len(rows)} below; "
                             f"about 1 is ordinary.{fallback}")

    def _go_to_row(self, row, _column=None):
        """Centre the view on the source of a row of the anomaly table."""
        points = getattr(self, "_points", None)
        if points is None or row >= len(self._rows):
            return
        scene = getattr(self.viewer, "scene", None)  # napari >= 0.9; .camera before
        camera = scene.camera if scene is not None else self.viewer.camera
        camera.center = tuple(points.data_to_world(self._rows[row]))

    def _on_errored(self, error):
        if isinstance(error, OperationCancelled):
            self.status.value = f"Cancelled ({error}); no layer was added."
            return
        self.status.value = f"Failed: {error}"
        show_error(f"{self.operation.title} failed: {error}")

    def _on_finished(self):
        job, self._job = self._job, None
        if job is not None:
            job.pbar.close()
        self.run_button.enabled, self.cancel_button.enabled = True, False


class _Job:
    """State of one run: its layer, worker, progress bar and cancel flag."""

    def __init__(self, *, layer, started, pbar):
        self.layer, self.started, self.pbar = layer, started, pbar
        self.cancel = threading.Event()
        self.worker = None
        self.tiles = (0, 0)

    def cancel_requested(self):
        """Cancel pressed in the widget, on the progress bar, or on the status-bar task."""
        return (self.cancel.is_set() or self.pbar.is_canceled
                or bool(self.worker is not None and self.worker.abort_requested))


def _call(operation, source, kwargs):
    return operation.resolve()(source, **kwargs)


# ------------------------------------------------------------- layer <-> core
def layer_source(layer):
    """What the core gets for an image layer: a 2-D CCDData, or a (3, ny, nx) cube (RGB).

    An RGB layer becomes the colour cube the plugin's writer would save (unit,
    band-axis WCS, header, mask), so the core treats it as it treats that
    file: super-resolution rescales its WCS and keeps the flux of a per-pixel
    unit, and the mask and full provenance reach the result.
    """
    if layer.multiscale:
        raise ValueError(f"'{layer.name}' is a multiscale (pyramid) layer; open a single image")
    data = np.asarray(layer.data)
    if layer.rgb:
        if data.ndim != 3 or data.shape[-1] != 3:
            raise ValueError(f"'{layer.name}' has RGBA or stacked colour data {data.shape}; "
                             "only RGB (ny, nx, 3) images are supported")
        return ccd_from_layer(data, layer.metadata, rgb=True, name=layer.name)
    if data.ndim != 2:
        raise ValueError(f"'{layer.name}' has shape {data.shape}; select a 2-D image")
    return ccd_from_layer(data, layer.metadata, name=layer.name)


def output_layer_data(result, source_layer, name):
    """Layer-data tuple for an operation's result (a CCDData), placed over ``source_layer``.

    A (3, ny, nx) colour cube (colorize's, or a restored RGB layer) becomes an
    RGB layer.
    """
    data, kwargs, kind = layer_data_from_ccd(result, name=name)
    kwargs["metadata"]["source_layer"] = source_layer.name
    _place_over(kwargs, data, source_layer)
    return data, kwargs, kind


def _place_over(kwargs, data, source):
    """Same placement as ``source``; contrast and colours kept when pixels are comparable."""
    in_shape = source.data.shape[:2] if source.rgb else source.data.shape[-2:]
    out_shape = data.shape[:2] if kwargs.get("rgb") else data.shape[-2:]
    ratio = np.asarray(out_shape) / np.asarray(in_shape)
    factor = ratio[0] if ratio[0] == ratio[1] and ratio[0] > 0 else 1.0
    kwargs.update(layer_placement(source, factor))
    same_pixels = (ratio == 1).all() and bool(kwargs.get("rgb")) == bool(source.rgb)
    same_unit = kwargs["metadata"].get("unit") == source.metadata.get("unit")
    if same_pixels and same_unit:
        kwargs["contrast_limits"] = tuple(source.contrast_limits)
        if not source.rgb:
            kwargs["colormap"] = source.colormap.name


# -------------------------------------------------------------- factories
# One class per operation: napari instantiates widget contributions that are
# classes, passing the viewer to the ``__init__`` parameter named napari_viewer.
class DenoiseWidget(OperationWidget):
    """The Denoise dock widget (npe2 widget contribution)."""

    def __init__(self, napari_viewer: Viewer):
        super().__init__(napari_viewer, OPERATIONS["denoise"])


class DeblurWidget(OperationWidget):
    """The Deblur dock widget (npe2 widget contribution)."""

    def __init__(self, napari_viewer: Viewer):
        super().__init__(napari_viewer, OPERATIONS["deblur"])


class SuperResolveWidget(OperationWidget):
    """The Super-resolve dock widget (npe2 widget contribution)."""

    def __init__(self, napari_viewer: Viewer):
        super().__init__(napari_viewer, OPERATIONS["superres"])


class ColorizeWidget(OperationWidget):
    """The Colorize dock widget (npe2 widget contribution)."""

    def __init__(self, napari_viewer: Viewer):
        super().__init__(napari_viewer, OPERATIONS["colorize"])


class AnomalyMapWidget(OperationWidget):
    """The Anomaly map dock widget (npe2 widget contribution)."""

    def __init__(self, napari_viewer: Viewer):
        super().__init__(napari_viewer, OPERATIONS["anomaly"])


#: Operation name -> its widget class (what napari.yaml points to).
WIDGETS = {"denoise": DenoiseWidget, "deblur": DeblurWidget, "superres": SuperResolveWidget,
           "colorize": ColorizeWidget, "anomaly": AnomalyMapWidget}


def _suggest_path(widget, layer):
    """``<folder of the layer's file, or the working folder>/<layer name>.fits``."""
    if layer is None:
        return
    source = layer.metadata.get("source")
    folder = Path(source).parent if source else Path.cwd()
    widget.path.value = folder / f"{layer.name}.fits"


def _init_save_widget(widget):
    widget.insert(0, _wrapped_label(
        "Writes the image with its unit, WCS, header (with provenance), uncertainty and "
        "mask. File > Save never replaces an existing file; tick 'overwrite' here to."))
    widget.layer.changed.connect(lambda layer: _suggest_path(widget, layer))
    _suggest_path(widget, widget.layer.value)


@magic_factory(
    widget_init=_init_save_widget,
    call_button="Save FITS",
    path={"label": "File", "mode": "w", "filter": "FITS (*.fits *.fit *.fts *.fits.gz)"},
    overwrite={"tooltip": "Replace the file if it exists"},
    layer={"label": "Image"},
)
def save_fits_widget(layer: Image, path: Path = Path("restored.fits"),
                     overwrite: bool = False) -> None:
    """Save an image layer as FITS with its unit, WCS, header, uncertainty and mask."""
    if layer is None:
        raise ValueError("there is no image layer to save")
    written = save_fits(path, layer.data, layer.metadata, rgb=layer.rgb, overwrite=overwrite,
                        name=layer.name)
    show_info(f"Saved '{layer.name}' to {written[0]}")
