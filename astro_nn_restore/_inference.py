"""Run a network over a normalised image, tile by tile, on the CPU.

The fast path (bf16 autocast + channels_last, under `torch.inference_mode`)
is the default where the CPU supports bf16 natively; ``precision="fp32"``
turns it off.

``torch.compile`` is not used: measured on this 2-core AVX-512 machine (1
thread, shipped denoiser, batches of 4 tiles of 256², torch 2.13, other jobs
running) it took 152 s to compile and then ran a batch in 0.75 s against
0.40 s eager in bf16 (fp32 eager: 1.05 s).
"""

import numpy as np

from .tiling import tiled_apply

__all__ = ["run_network", "network_function"]


def _use_bf16(precision):
    if precision not in ("auto", "bf16", "fp32"):
        raise ValueError(f"precision must be 'auto', 'bf16' or 'fp32', got {precision!r}")
    if precision == "auto":
        import torch

        return torch.backends.cpu.get_cpu_capability() in ("AVX512", "AMX")
    return precision == "bf16"


def network_function(module, *, precision="auto"):
    """Wrap ``module`` as a numpy (B, C, h, w) -> (B, C', h', w') function."""
    import torch

    bf16 = _use_bf16(precision)
    module = module.eval().to(memory_format=torch.channels_last)

    def apply(batch):
        x = torch.from_numpy(np.ascontiguousarray(batch))
        x = x.contiguous(memory_format=torch.channels_last)
        with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            y = module(x)
        return y.float().numpy()

    return apply


def run_network(module, channels, *, tile_size=256, overlap=32, batch_size=4, progress=False,
                precision="auto", scale=1, out_channels=1):
    """Tiled inference of ``module`` on a (C, H, W) float32 array.

    Returns (out_channels, H*scale, W*scale).
    """
    fn = network_function(module, precision=precision)
    multiple = getattr(module, "size_multiple", 1)
    out = tiled_apply(fn, channels, tile_size=tile_size, overlap=overlap, batch_size=batch_size,
                      scale=scale, out_channels=out_channels, size_multiple=multiple,
                      progress=progress)
    if not np.isfinite(out).all():  # its inputs are always finite: bad pixels are filled
        raise FloatingPointError(f"the network returned {int((~np.isfinite(out)).sum())} "
                                 "non-finite value(s) on finite inputs: its weights are broken "
                                 "or the data are far outside what it was trained on")
    return out
