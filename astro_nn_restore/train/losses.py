"""Loss functions for training (torch)."""

import torch
import torch.nn.functional as F

__all__ = ["charbonnier", "ssim_index", "gradient_loss", "compress"]


def compress(x):
    """asinh compression so faint sky and bright stars both count in SSIM."""
    return 4 * torch.asinh(x / 4)


def charbonnier(prediction, target, eps=1e-3):
    """Smooth L1: ``mean(sqrt((p - t)^2 + eps^2))``."""
    return torch.sqrt((prediction - target) ** 2 + eps**2).mean()


def _gaussian_window(size=7, sigma=1.5, device=None):
    coords = torch.arange(size, dtype=torch.float32, device=device) - size // 2
    g = torch.exp(-(coords**2) / (2 * sigma**2))
    g = g / g.sum()
    return (g[:, None] * g[None, :])[None, None]


def ssim_index(prediction, target, data_range=None):
    """Mean SSIM of (B, 1, H, W) tensors with a 7x7 Gaussian window."""
    if data_range is None:
        data_range = (target.amax(dim=(1, 2, 3), keepdim=True)
                      - target.amin(dim=(1, 2, 3), keepdim=True)).clamp_min(1e-6)
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    window = _gaussian_window(device=prediction.device)

    def blur(x):
        return F.conv2d(x, window)

    mu_p, mu_t = blur(prediction), blur(target)
    var_p = blur(prediction * prediction) - mu_p**2
    var_t = blur(target * target) - mu_t**2
    cov = blur(prediction * target) - mu_p * mu_t
    ssim_map = ((2 * mu_p * mu_t + c1) * (2 * cov + c2)) / (
        (mu_p**2 + mu_t**2 + c1) * (var_p + var_t + c2))
    return ssim_map.mean()


def gradient_loss(prediction, target):
    """L1 distance of horizontal and vertical finite differences."""
    def diffs(x):
        return x[..., 1:, :] - x[..., :-1, :], x[..., :, 1:] - x[..., :, :-1]

    (py, px), (ty, tx) = diffs(prediction), diffs(target)
    return (py - ty).abs().mean() + (px - tx).abs().mean()
