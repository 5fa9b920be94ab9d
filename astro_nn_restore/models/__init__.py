"""PyTorch networks used by the operations.

Importing this subpackage imports torch; the operations import it only when a
model is needed. `build_model` makes a network from the architecture name and
arguments recorded in a model card.
"""

from importlib import import_module

from .blocks import ResBlock, UNet
from .denoise import ResidualUNet

__all__ = ["ARCHITECTURES", "ResBlock", "ResidualUNet", "UNet", "build_model"]

#: Architecture name (as written in model cards) -> "module:Class" in this package.
ARCHITECTURES = {
    "UNet": "blocks:UNet",
    "ResidualUNet": "denoise:ResidualUNet",
    "DeblurUNet": "deblur:DeblurUNet",
    "ColorGenerator": "colorize:ColorGenerator",
    "CutoutAutoencoder": "autoencoder:CutoutAutoencoder",
    "SRCNN": "superres:SRCNN", "SRResNet": "superres:SRResNet",
}


def build_model(architecture, **kwargs):
    """Instantiate a registered architecture with the card's arguments.

    Only classes listed in `ARCHITECTURES` can be built, so a model card can
    never make the package import or run anything else.

    Examples
    --------
    >>> net = build_model("ResidualUNet", channels=(8, 16))
    >>> type(net).__name__
    'ResidualUNet'
    """
    try:
        module_name, class_name = ARCHITECTURES[architecture].split(":")
    except KeyError:
        known = ", ".join(sorted(ARCHITECTURES))
        raise ValueError(f"unknown architecture {architecture!r}; known: {known}") from None
    cls = getattr(import_module(f".{module_name}", __name__), class_name)
    return cls(**kwargs)
