"""The operations the plugin offers, one declarative entry each.

A widget (`astro_nn_restore_napari._widget.OperationWidget`) is built from an
`Operation`: an image-layer picker, a model picker for the operation's
registry task, the tile size when the operation is tiled, one widget per
`Option`, and Run / Cancel. The function is imported only when Run is
pressed, so the core is not loaded when napari starts.

Adding an operation once its core function exists takes three small steps:

1. an entry in `OPERATIONS`, for example::

       Operation("deblur", "Deblur", "astro_nn_restore:deblur", task="deblur",
                 suffix="deblurred", description="...",
                 options=(Option("psf", "PSF layer", kind="layer",
                                 tooltip="Optional: an image layer holding the PSF"),)),
       Operation("superres", "Super-resolve", "astro_nn_restore:super_resolve",
                 task="superres", suffix="superres", description="...",
                 options=(Option("factor", "Factor", kind="choice", default=2,
                                 widget_options={"choices": [2, 3, 4]}),)),

2. a widget class in ``_widget.py``, added to ``WIDGETS`` (napari instantiates
   classes and passes the viewer to ``napari_viewer``)::

       class DeblurWidget(OperationWidget):
           def __init__(self, napari_viewer: Viewer):
               super().__init__(napari_viewer, OPERATIONS["deblur"])

3. a command and a widget entry in ``napari.yaml`` (and a test).

Outputs need no code: a `~astropy.nddata.CCDData` becomes an image layer (an
RGB one for a (3, ny, nx) cube), a larger output of an integer factor gets
``scale``/``translate`` so it overlays its input, and unit, WCS and header
travel in the layer metadata.
"""

from dataclasses import dataclass, field
from importlib import import_module

__all__ = ["Option", "Operation", "OPERATIONS"]


@dataclass(frozen=True)
class Option:
    """An extra keyword argument of an operation and the widget that sets it.

    Attributes
    ----------
    keyword : str
        Keyword argument of the core function.
    label : str
        Label shown in the widget.
    kind : {'layer', 'choice', 'value'}
        ``'layer'``: an optional image-layer picker whose layer's array is
        passed (None when "none" is picked). ``'choice'``: a drop-down of
        ``widget_options["choices"]``. ``'value'``: magicgui's widget for the
        type of ``default`` (number, bool, text).
    default : object
        Initial value.
    widget_options : dict
        Passed to magicgui (``choices``, ``min``, ``max``, ``step``...).
    tooltip : str
    """

    keyword: str
    label: str
    kind: str = "value"
    default: object = None
    widget_options: dict = field(default_factory=dict)
    tooltip: str = ""


@dataclass(frozen=True)
class Operation:
    """One restoration operation of `astro_nn_restore`, as the GUI shows it.

    Attributes
    ----------
    name : str
        Short key (``"denoise"``).
    title : str
        Human name, used on the Run button and the progress bar.
    function : str
        ``"module:attribute"`` of the core function. It is called as
        ``function(data, model=..., **options)`` plus, when ``tiled``,
        ``tile_size=`` and ``progress=callback``.
    task : str
        Registry task of its models (`astro_nn_restore.registry.available_models`).
    suffix : str
        Output layers are named ``<input>_<suffix>`` (then ``-2``, ``-3``...).
    description : str
        One or two sentences at the top of the widget.
    options : tuple of Option
    tiled : bool
        The function takes ``tile_size`` and a ``progress`` callback.
    """

    name: str
    title: str
    function: str
    task: str
    suffix: str
    description: str
    options: tuple = ()
    tiled: bool = True

    def resolve(self):
        """Import and return the core function."""
        module, _, attribute = self.function.partition(":")
        return getattr(import_module(module), attribute)


OPERATIONS = {
    op.name: op
    for op in (
        Operation(
            "denoise", "Denoise", "astro_nn_restore:denoise_residual", task="denoise",
            suffix="denoised",
            description=(
                "Removes noise and keeps fluxes, unit and WCS. Uses the layer's uncertainty "
                "(from a FITS UNCERT extension) if present, else estimates the noise. The "
                "result is added as a new layer; the input is not changed."
            ),
        ),
    )
}
