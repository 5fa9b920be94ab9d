"""PyTorch networks used by the operations.

Importing this subpackage imports torch; the operations import it only when a
model is needed. `build_model` makes a network from the architecture name and
arguments recorded in a model card.
"""

from .blocks import UNet
from .denoise import ResidualUNet

__all__ = ["ARCHITECTURES", "UNet", "ResidualUNet", "build_model"]

#: Architecture name (as written in model cards) -> nn.Module class.
ARCHITECTURES = {
    "UNet": UNet,
    "ResidualUNet": ResidualUNet,
}


def register_architecture(cls):
    """Make ``cls`` loadable from model cards under its class name."""
    ARCHITECTURES[cls.__name__] = cls
    return cls


def build_model(architecture, **kwargs):
    """Instantiate a registered architecture with the card's arguments.

    Examples
    --------
    >>> net = build_model("ResidualUNet", channels=(8, 16))
    >>> type(net).__name__
    'ResidualUNet'
    """
    try:
        cls = ARCHITECTURES[architecture]
    except KeyError:
        known = ", ".join(sorted(ARCHITECTURES))
        raise ValueError(f"unknown architecture {architecture!r}; known: {known}") from None
    return cls(**kwargs)
