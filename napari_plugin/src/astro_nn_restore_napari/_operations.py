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
travel in the layer metadata. An operation with ``output="points"`` returns an
`~astro_nn_restore_napari._anomaly.SourceScores` and gets a Points layer over
its input plus a table of the highest scores in the widget.
"""

from dataclasses import dataclass, field
from importlib import import_module

__all__ = ["Option", "Operation", "OPERATIONS", "STRETCHES"]

#: Stretch names offered by Colorize: `astro_nn_restore.colorize.STRETCH_NAMES`,
#: written out so that loading the plugin imports nothing of the core.
STRETCHES = ("asinh", "sqrt", "log", "linear")


def _stretch(name):
    """The astropy stretch of a `STRETCHES` name (imported when Run is pressed)."""
    from astro_nn_restore.colorize import stretch_by_name

    return stretch_by_name(name)


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
    convert : callable, optional
        Applied to the widget's value before it is passed (for example a
        stretch name -> an astropy stretch), so heavy imports wait for Run.
    """

    keyword: str
    label: str
    kind: str = "value"
    default: object = None
    widget_options: dict = field(default_factory=dict)
    tooltip: str = ""
    convert: object = None


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
    progress : bool
        The function takes a ``progress(done, total)`` callback (default: ``tiled``).
    steps : str
        What ``progress`` counts, for the status line ("tiles", "cutouts").
    rgb_input : bool
        An RGB layer is accepted (as an (ny, nx, 3) array).
    output : {'image', 'points'}
        ``'points'``: the result is a `~astro_nn_restore_napari._anomaly.SourceScores`.
    """

    name: str
    title: str
    function: str
    task: str
    suffix: str
    description: str
    options: tuple = ()
    tiled: bool = True
    progress: bool = None
    steps: str = "tiles"
    rgb_input: bool = True
    output: str = "image"

    def __post_init__(self):
        if self.progress is None:
            object.__setattr__(self, "progress", self.tiled)

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
        Operation(
            "deblur", "Deblur", "astro_nn_restore:deblur", task="deblur", suffix="deblurred",
            description=(
                "Sharpens an image blurred by the telescope/seeing PSF and keeps the total flux, "
                "unit and WCS. Pick a PSF image layer (a star or a PSF model at the image's "
                "pixel scale) if you have one; 'none' estimates the blur from the image."
            ),
            options=(Option("psf", "PSF (optional)", kind="layer",
                            tooltip="An image layer holding the PSF at the image's pixel "
                                    "scale (any size, normalised to sum 1). 'none': blind"),),
        ),
        Operation(
            "superres", "Super-resolve", "astro_nn_restore:super_resolve", task="superres",
            suffix="superres",
            description=(
                "Upsamples by 2 or 4 with a network. The new layer has finer pixels, overlays "
                "the input exactly and carries a rescaled WCS. Counts per pixel are divided by "
                "factor² so the total flux is kept; surface brightness is not."
            ),
            options=(
                Option("factor", "Factor", kind="choice", default=2,
                       widget_options={"choices": [2, 4]},
                       tooltip="Output pixels per input pixel along each axis (4 = two x2 "
                               "passes)"),
                Option("flux_conserving", "Pixel values", kind="choice", default=None,
                       widget_options={"choices": [
                           ("from the unit", None),
                           ("per pixel (keep total flux)", True),
                           ("surface brightness (keep values)", False)]},
                       tooltip="'from the unit' guesses: counts, adu, electron, Jy/pixel are "
                               "per pixel; MJy/sr, mag/arcsec² are surface brightness"),
            ),
        ),
        Operation(
            "colorize", "Colorize", "astro_nn_restore:colorize", task="colorize",
            suffix="colorized", rgb_input=False,
            description=(
                "Adds plausible colour to a greyscale image (for outreach, not for "
                "measurement). The lightness is your image after the chosen stretch; the "
                "result is an RGB layer in [0, 1] with the input's WCS."
            ),
            options=(Option("stretch", "Stretch", kind="choice", default="asinh",
                            widget_options={"choices": list(STRETCHES)},
                            convert=_stretch,
                            tooltip="How pixel values map to lightness (limits: 99.5 % of "
                                    "the pixels). asinh shows faint and bright parts together"),),
        ),
        Operation(
            "anomaly", "Anomaly map", "astro_nn_restore_napari._anomaly:anomaly_map",
            task="autoencoder", suffix="anomalies", tiled=False, progress=True,
            steps="cutouts", rgb_input=False, output="points",
            description=(
                "Detects sources, cuts a stamp around each and scores how badly an autoencoder "
                "trained on ordinary sources reconstructs it (about 1 for ordinary sources, "
                "high for unusual ones), compared with this image's sources or with pure "
                "noise. Adds a Points layer coloured by score; the highest scores are listed "
                "below: click a row to go there."
            ),
            options=(
                Option("size", "Cutout size (px)", default=32,
                       widget_options={"min": 8, "max": 256, "step": 8},
                       tooltip="Side of the stamps: must be the model's (32 for the "
                               "shipped autoencoder)"),
                Option("threshold", "Detection (σ)", default=5.0,
                       widget_options={"min": 1.0, "max": 100.0, "step": 0.5},
                       tooltip="Detection threshold in units of the noise of the image "
                               "smoothed by a 1-pixel Gaussian"),
                Option("max_sources", "Max. sources", default=2000,
                       widget_options={"min": 1, "max": 100000},
                       tooltip="Keep at most this many detections, brightest first"),
                Option("relative", "Compare with", kind="choice", default=True,
                       widget_options={"choices": [("this image's sources", True),
                                                   ("pure noise", False)]},
                       tooltip="'this image's sources': about 1 for a typical source of "
                               "the image, so crowding and PSF do not dominate the ranking "
                               "(needs 10 sources, else pure noise); 'pure noise': the "
                               "reconstruction error in noise units"),
            ),
        ),
    )
}
