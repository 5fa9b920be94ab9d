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
from astropy.io import fits
from astropy.nddata import CCDData, StdDevUncertainty
from magicgui import magic_factory
from magicgui.widgets import (
    ComboBox,
    Container,
    FileEdit,
    Label,
    PushButton,
    SpinBox,
    create_widget,
)
from napari.layers import Image
from napari.qt.threading import thread_worker
from napari.utils import cancelable_progress
from napari.utils.notifications import show_error, show_info
from napari.viewer import Viewer
from qtpy.QtCore import QObject, Signal

from ._io import display_limits, layer_data_from_ccd, save_fits
from ._operations import OPERATIONS
from ._sky_status import install_sky_status

__all__ = ["OperationCancelled", "OperationWidget", "DenoiseWidget", "WIDGETS", "save_fits_widget",
           "unique_layer_name"]

#: Model-picker entry that shows a file chooser for a user's weights.
WEIGHTS_FILE = "weights file..."


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


def _model_names(task):
    from astro_nn_restore.registry import available_models

    prefix = f"{task}-"
    return [n[len(prefix):] if n.startswith(prefix) else n for n in available_models(task)]


class OperationWidget(Container):
    """Layer picker, model picker, tile size, options, Run and Cancel for one `Operation`."""

    def __init__(self, viewer, operation):
        super().__init__(labels=True)
        self.viewer, self.operation = viewer, operation
        self._job = None
        self._relay = _TileRelay()
        self._relay.tiles.connect(self._on_tiles)
        self._build()
        install_sky_status(viewer)

    # ---------------------------------------------------------------- layout
    def _build(self):
        op = self.operation
        self.about = Label(value=op.description, label="")
        self.about.native.setWordWrap(True)
        self.image = ComboBox(label="Image", choices=self._image_choices,
                              tooltip="The image to restore (a 2-D image or an RGB layer)")
        names = _model_names(op.task)
        self.model = ComboBox(label="Model", choices=[*names, WEIGHTS_FILE],
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
        self.cancel_button = PushButton(text="Cancel", enabled=False)
        self.status = Label(value="Pick an image and press Run.", label="")
        self.status.native.setWordWrap(True)
        self.extend([self.about, self.image, self.model, self.weights, self.tile_size,
                     *self.option_widgets.values(), self.run_button, self.cancel_button,
                     self.status])
        self.model.changed.connect(self._show_weights)
        self.run_button.changed.connect(self.run)
        self.cancel_button.changed.connect(self.cancel)
        self._show_weights()

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
            kwargs[option.keyword] = (np.asarray(value.data) if option.kind == "layer"
                                      and value is not None else value)
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
            source = layer_source(layer)
            kwargs = self._keyword_arguments()
        except ValueError as err:
            self.status.value = f"Cannot run: {err}"
            show_info(f"{self.operation.title}: {err}")
            return None
        return self._start(layer, source, kwargs)

    def _start(self, layer, source, kwargs):
        op = self.operation
        job = _Job(layer=layer, started=time.perf_counter(),
                   pbar=cancelable_progress(total=0, desc=f"{op.title} {layer.name}"))

        def report(done, total):  # runs in the worker thread
            if done < total and job.cancel_requested(worker):
                raise OperationCancelled(f"cancelled after {done} of {total} tiles")
            self._relay.tiles.emit(done, total)

        if op.tiled:
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
            self.status.value = "Cancelling (stops before the next batch of tiles)..."

    # ------------------------------------------------------------ callbacks
    def _on_tiles(self, done, total):
        job = self._job
        if job is None:
            return
        job.tiles = (done, total)
        if not job.cancel.is_set():
            self.status.value = f"Running on '{job.layer.name}': {done}/{total} tiles"
        # last: napari's progress bar calls processEvents(), so the job may end in here
        if job.pbar.total != total:
            job.pbar.total = total
        job.pbar.n = done
        job.pbar.update(0)

    def _on_returned(self, result):
        job = self._job
        name = unique_layer_name(self.viewer, f"{job.layer.name}_{self.operation.suffix}")
        data, kwargs, _ = output_layer_data(result, job.layer, name, self.operation)
        self.viewer.add_image(data, **kwargs)
        seconds = time.perf_counter() - job.started
        self.status.value = f"Done in {seconds:.1f} s: added layer '{name}'."

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

    def cancel_requested(self, worker=None):
        worker = worker or self.worker
        return (self.cancel.is_set() or self.pbar.is_canceled
                or bool(worker is not None and worker.abort_requested))


def _call(operation, source, kwargs):
    return operation.resolve()(source, **kwargs)


# ------------------------------------------------------------- layer <-> core
def layer_source(layer):
    """What the core gets for an image layer: CCDData (2-D) or an (ny, nx, 3) array (RGB)."""
    if layer.multiscale:
        raise ValueError(f"'{layer.name}' is a multiscale (pyramid) layer; open a single image")
    data = np.asarray(layer.data)
    metadata = layer.metadata
    if layer.rgb:
        if data.ndim != 3 or data.shape[-1] != 3:
            raise ValueError(f"'{layer.name}' has RGBA or stacked colour data {data.shape}; "
                             "only RGB (ny, nx, 3) images are supported")
        return data
    if data.ndim != 2:
        raise ValueError(f"'{layer.name}' has shape {data.shape}; select a 2-D image")
    uncertainty, mask = metadata.get("uncertainty"), metadata.get("mask")
    return CCDData(
        data, unit=metadata.get("unit") or "", wcs=metadata.get("wcs"),
        meta=fits.Header(metadata.get("header") or fits.Header()),
        uncertainty=StdDevUncertainty(uncertainty) if uncertainty is not None else None,
        mask=mask,
    )


def output_layer_data(result, source_layer, name, operation):
    """Layer-data tuple for an operation's result, placed over ``source_layer``."""
    if isinstance(result, CCDData):
        data, kwargs, kind = layer_data_from_ccd(result, name=name)
    else:  # a colour (ny, nx, 3) array: metadata of the input plus provenance
        data = np.asarray(result)
        metadata = {k: v for k, v in source_layer.metadata.items()
                    if k not in ("uncertainty", "mask", "source")}
        header = fits.Header(metadata.get("header") or fits.Header())
        header["ANR_OP"] = (operation.function.rpartition(":")[2], "astro_nn_restore operation")
        header.add_history(f"astro_nn_restore: {operation.function} on the luminance (RGB input)")
        metadata["header"] = header
        kwargs = {"name": name, "rgb": data.ndim == 3 and data.shape[-1] == 3,
                  "metadata": metadata}
        if not kwargs["rgb"]:
            kwargs["contrast_limits"] = display_limits(data)
        kind = "image"
    kwargs["metadata"]["source_layer"] = source_layer.name
    _place_over(kwargs, data, source_layer)
    return data, kwargs, kind


def _place_over(kwargs, data, source):
    """Same placement as ``source``; contrast and colours kept when pixels are comparable."""
    in_shape = source.data.shape[:2] if source.rgb else source.data.shape[-2:]
    out_shape = data.shape[:2] if kwargs.get("rgb") else data.shape[-2:]
    ratio = np.asarray(out_shape) / np.asarray(in_shape)
    scale, translate = np.asarray(source.scale[-2:]), np.asarray(source.translate[-2:])
    if ratio[0] == ratio[1] and ratio[0] > 0 and ratio[0] != 1:
        # output pixel j has its centre at input pixel (j + 0.5) / f - 0.5
        f = ratio[0]
        kwargs["scale"] = tuple(scale / f)
        kwargs["translate"] = tuple(translate + scale * (0.5 / f - 0.5))
    else:
        kwargs["scale"], kwargs["translate"] = tuple(scale), tuple(translate)
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


#: Operation name -> its widget class (what napari.yaml points to).
WIDGETS = {"denoise": DenoiseWidget}


@magic_factory(
    call_button="Save FITS",
    path={"label": "File", "mode": "w", "filter": "FITS (*.fits *.fit *.fts *.fits.gz)"},
    overwrite={"tooltip": "Replace the file if it exists (File > Save never does)"},
    layer={"label": "Image"},
)
def save_fits_widget(layer: Image, path: Path = Path("restored.fits"),
                     overwrite: bool = False) -> None:
    """Save an image layer as FITS with its unit, WCS, header, uncertainty and mask."""
    if layer is None:
        raise ValueError("there is no image layer to save")
    written = save_fits(path, layer.data, layer.metadata, rgb=layer.rgb, overwrite=overwrite)
    show_info(f"Saved '{layer.name}' to {written[0]}")
