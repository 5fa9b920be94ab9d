"""Super-resolution networks: SRCNN (baseline) and a low-resolution residual net.

Both take a whole-image-normalised low-resolution image ``(B, 1, h, w)`` and
return ``(B, 1, f*h, f*w)`` in the same normalised units. Both share three
design choices, so a comparison measures the architectures:

* **Dynamic range.** They work on ``A asinh(x / A)`` (``A = softening``, in
  noise units), so faint sky and bright star cores both fall in a range a small
  network handles, and map back with ``A sinh(y / A)`` (exactly inverse).
* **Residual over bicubic.** They predict a correction to the bicubic
  upsampling of the compressed input, not the image itself.
* **Block consistency** (``project=True``). The last step adds to every
  ``f x f`` block of the output the difference between the input pixel and the
  block's mean, so binning the output by ``f`` (block mean) gives the input
  back exactly. The network can only redistribute each pixel's flux inside
  its block: it cannot create or remove flux.

The tail (expansion, projection) runs in float32 even under bf16 autocast.
"""

import torch
import torch.nn.functional as F
from torch import nn

from .blocks import ResBlock

__all__ = ["SRCNN", "SRResNet", "block_project"]


def block_project(output, low, factor):
    """Correct each ``factor x factor`` block mean of ``output`` to the ``low`` pixel.

    Examples
    --------
    >>> import torch
    >>> low = torch.rand(1, 1, 3, 4)
    >>> out = block_project(torch.rand(1, 1, 6, 8), low, 2)
    >>> bool(torch.allclose(F.avg_pool2d(out, 2), low, atol=1e-6))
    True
    """
    error = low - F.avg_pool2d(output, factor)
    return output + F.interpolate(error, scale_factor=factor, mode="nearest")


class _SuperResolution(nn.Module):
    """Shared compression, bicubic skip and block projection."""

    in_channels = 1
    size_multiple = 1

    def _setup(self, factor, softening, project):
        if factor not in (2, 3, 4):
            raise ValueError(f"factor must be 2, 3 or 4, got {factor!r}")
        if not softening > 0:
            raise ValueError(f"softening must be > 0, got {softening!r}")
        self.factor, self.softening, self.project = int(factor), float(softening), bool(project)

    def _compress(self, x):
        return self.softening * torch.asinh(x / self.softening)

    def _bicubic(self, c):
        return F.interpolate(c, scale_factor=self.factor, mode="bicubic", align_corners=False)

    def _finish(self, base, residual, x):
        """Add the residual to the bicubic base, expand, project (float32)."""
        with torch.autocast("cpu", enabled=False):
            y = base.float() + residual.float()
            out = self.softening * torch.sinh(y / self.softening)
            if self.project:
                out = block_project(out, x.float(), self.factor)
        return out


class SRCNN(_SuperResolution):
    """SRCNN (Dong et al. 2014): bicubic upsampling, then 9-1-5 convolutions.

    Works on the high-resolution grid, one channel at a time, with 64 and 32
    feature maps. Here it predicts the residual over bicubic (as VDSR does),
    which trains much faster than predicting the image and is never worse.

    Parameters
    ----------
    factor : int
        Upsampling factor.
    features : (int, int)
        Feature maps of the first two layers.
    kernels : (int, int, int)
        Kernel sizes of the three layers.
    softening : float
        ``A`` of the asinh compression, in noise units.
    project : bool
        Make the output exactly block-consistent with the input.

    Examples
    --------
    >>> import torch
    >>> net = SRCNN()
    >>> net(torch.zeros(1, 1, 8, 10)).shape
    torch.Size([1, 1, 16, 20])
    """

    def __init__(self, factor=2, *, features=(64, 32), kernels=(9, 1, 5), softening=4.0,
                 project=True):
        super().__init__()
        self._setup(factor, softening, project)
        self.config = dict(factor=int(factor), features=tuple(features), kernels=tuple(kernels),
                           softening=float(softening), project=bool(project))
        widths = (1, *features, 1)
        layers = []
        for i, k in enumerate(kernels):
            layers.append(nn.Conv2d(widths[i], widths[i + 1], k, padding=k // 2,
                                    padding_mode="replicate"))
            if i < len(kernels) - 1:
                layers.append(nn.ReLU())
        self.body = nn.Sequential(*layers)
        nn.init.zeros_(self.body[-1].weight)
        nn.init.zeros_(self.body[-1].bias)

    def forward(self, x):
        base = self._bicubic(self._compress(x))
        return self._finish(base, self.body(base), x)


class SRResNet(_SuperResolution):
    """Residual blocks on the low-resolution grid, a PixelShuffle output.

    All convolutions run on the input grid (``f**2`` times fewer pixels than
    SRCNN's); the last one makes ``f**2`` channels that PixelShuffle arranges
    into the ``f x f`` sub-pixels. A bicubic skip means the net learns only
    the residual.

    Parameters
    ----------
    factor : int
        Upsampling factor.
    channels : int
        Feature channels.
    blocks : int
        Residual blocks (two 3x3 convolutions each).
    softening : float
        ``A`` of the asinh compression, in noise units.
    project : bool
        Make the output exactly block-consistent with the input.

    Examples
    --------
    >>> import torch
    >>> net = SRResNet(channels=8, blocks=1)
    >>> net(torch.zeros(2, 1, 8, 10)).shape
    torch.Size([2, 1, 16, 20])
    """

    def __init__(self, factor=2, *, channels=32, blocks=4, softening=4.0, project=True):
        super().__init__()
        self._setup(factor, softening, project)
        self.config = dict(factor=int(factor), channels=int(channels), blocks=int(blocks),
                           softening=float(softening), project=bool(project))
        self.head = nn.Conv2d(1, channels, 3, padding=1, padding_mode="replicate")
        self.body = nn.Sequential(*(ResBlock(channels) for _ in range(blocks)),
                                  nn.Conv2d(channels, channels, 3, padding=1))
        self.tail = nn.Sequential(nn.SiLU(), nn.Conv2d(channels, factor**2, 3, padding=1),
                                  nn.PixelShuffle(factor))
        nn.init.zeros_(self.tail[1].weight)
        nn.init.zeros_(self.tail[1].bias)

    def deepened(self, extra_blocks):
        """A copy with ``extra_blocks`` more residual blocks, computing the same function.

        The new blocks go after the existing ones. A `ResBlock` starts with its
        last convolution at zero, i.e. as the identity, so the deeper network's
        output equals this one's until training changes it (growing a trained
        model instead of training a larger one from scratch).

        Examples
        --------
        >>> import torch
        >>> net = SRResNet(channels=8, blocks=1)
        >>> _ = torch.nn.init.normal_(net.tail[1].weight)
        >>> deeper = net.deepened(2)
        >>> deeper.config["blocks"]
        3
        >>> x = torch.rand(1, 1, 8, 8)
        >>> bool(torch.equal(deeper(x), net(x)))
        True
        """
        if int(extra_blocks) != extra_blocks or extra_blocks < 1:
            raise ValueError(f"extra_blocks must be a positive integer, got {extra_blocks!r}")
        blocks = self.config["blocks"]
        deeper = type(self)(**{**self.config, "blocks": blocks + int(extra_blocks)})
        old_conv, new_conv = f"body.{blocks}.", f"body.{blocks + int(extra_blocks)}."
        state = {(new_conv + key[len(old_conv):] if key.startswith(old_conv) else key): value
                 for key, value in self.state_dict().items()}
        missing, unexpected = deeper.load_state_dict(state, strict=False)
        fresh = {f"body.{i}." for i in range(blocks, blocks + int(extra_blocks))}
        if unexpected or not all(key[:key.index(".", 5) + 1] in fresh for key in missing):
            raise RuntimeError(f"cannot deepen: unexpected {unexpected}, missing {missing}")
        return deeper.train(self.training)

    @property
    def receptive_radius(self):
        """Receptive-field radius in input pixels (tiles should overlap 4x this)."""
        return 2 * self.config["blocks"] + 3

    def forward(self, x):
        c = self._compress(x)
        features = self.head(c)
        residual = self.tail(features + self.body(features))
        return self._finish(self._bicubic(c), residual, x)
