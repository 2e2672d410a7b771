"""Differentiable per-pixel SSIM (Wang et al. 2004): the training loss and the anomaly score of the
MVTec AD paper's AE-SSIM baseline (baselines.recon_ae)."""
from __future__ import annotations

import torch
import torch.nn.functional as F


def _symmetric_pad(x: torch.Tensor, r: int) -> torch.Tensor:
    """Pad the last two axes by r with edge-including mirroring (d c b a | a b c d | d c b a).

    This is scipy.ndimage's 'reflect' mode, the one skimage's SSIM filters with, so our map equals
    skimage's up to the border too; it keeps the map at the input's size."""
    if r > min(x.shape[-2:]):
        raise ValueError(f"SSIM window radius {r} is larger than the image {tuple(x.shape[-2:])}")
    x = torch.cat([x[..., :r, :].flip(-2), x, x[..., x.shape[-2] - r:, :].flip(-2)], dim=-2)
    return torch.cat([x[..., :r].flip(-1), x, x[..., x.shape[-1] - r:].flip(-1)], dim=-1)


def _gaussian_blur(x: torch.Tensor, window: int, sigma: float) -> torch.Tensor:
    """Separable normalised Gaussian filter of each channel, output the size of the input."""
    r = window // 2
    t = torch.arange(-r, r + 1, dtype=x.dtype, device=x.device)
    k = torch.exp(-0.5 * (t / sigma) ** 2)
    k = k / k.sum()
    c = x.shape[1]
    x = _symmetric_pad(x, r)
    x = F.conv2d(x, k.view(1, 1, 1, -1).expand(c, 1, 1, -1), groups=c)
    return F.conv2d(x, k.view(1, 1, -1, 1).expand(c, 1, -1, 1), groups=c)


def ssim_map(x: torch.Tensor, y: torch.Tensor, window: int = 11, sigma: float = 1.5,
             data_range: float = 1.0) -> torch.Tensor:
    """Per-pixel SSIM of two image batches (B,C,H,W) -> (B,H,W), averaged over channels.

    Gaussian-weighted local statistics (Wang et al. 2004): with window=11, sigma=1.5 this is
    skimage.metrics.structural_similarity(gaussian_weights=True, sigma=1.5,
    use_sample_covariance=False) per channel. Differentiable, so it is also the training loss of
    AE-SSIM. 1 means identical local structure.
    """
    if x.shape != y.shape or x.ndim != 4:
        raise ValueError(f"`x` and `y` must both be (B,C,H,W) of the same shape, "
                         f"got {tuple(x.shape)} and {tuple(y.shape)}")
    if window < 1 or window % 2 == 0:
        raise ValueError(f"`window` must be a positive odd number, got {window}")
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    stats = _gaussian_blur(torch.cat([x, y, x * x, y * y, x * y], dim=1), window, sigma)
    mu_x, mu_y, xx, yy, xy = stats.chunk(5, dim=1)
    var_x, var_y, cov = xx - mu_x**2, yy - mu_y**2, xy - mu_x * mu_y
    s = ((2 * mu_x * mu_y + c1) * (2 * cov + c2)) / ((mu_x**2 + mu_y**2 + c1) * (var_x + var_y + c2))
    return s.mean(dim=1)
