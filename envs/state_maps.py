"""Image maps of the noghredeh2025 sampler state: Sobel magnitude, local variance, the fused map.

Pure numpy/OpenCV functions of one image (channel-first float RGB in [0, 1]), so they are tested
on hand-made images and computed once per image by the env (only the ARE term changes with the AE).
"""
from __future__ import annotations

import cv2
import numpy as np


def minmax(x: np.ndarray, eps: float = 1e-12) -> np.ndarray:
    """x rescaled to [0, 1] (all zeros for a constant map), float32."""
    lo, hi = float(x.min()), float(x.max())
    if hi - lo < eps:
        return np.zeros_like(x, dtype=np.float32)
    return ((x - lo) / (hi - lo)).astype(np.float32)


def _gray(rgb: np.ndarray) -> np.ndarray:
    r, g, b = rgb
    return (0.299 * r + 0.587 * g + 0.114 * b).astype(np.float32)


def sobel_magnitude(rgb: np.ndarray) -> np.ndarray:
    """Min-max normalised Sobel gradient magnitude of the grey image, (3, H, W) -> (H, W) in [0, 1].

    Used by noghredeh2025 both in the state and as the clone reward: edges and texture are where
    small defects hide, so patches rich in gradient are the ones worth reconstructing."""
    g = _gray(rgb)
    gx = cv2.Sobel(g, cv2.CV_32F, 1, 0, ksize=3, borderType=cv2.BORDER_REFLECT)
    gy = cv2.Sobel(g, cv2.CV_32F, 0, 1, ksize=3, borderType=cv2.BORDER_REFLECT)
    return minmax(np.sqrt(gx * gx + gy * gy))


def local_variance(rgb: np.ndarray, sigma: float = 2.0) -> np.ndarray:
    """Blur(x^2) - Blur(x)^2 with a Gaussian blur, averaged over channels, (3, H, W) -> (H, W) >= 0."""
    out = np.zeros(rgb.shape[1:], np.float32)
    for ch in rgb.astype(np.float32):
        mean = cv2.GaussianBlur(ch, (0, 0), sigma, borderType=cv2.BORDER_REFLECT)
        sq = cv2.GaussianBlur(ch * ch, (0, 0), sigma, borderType=cv2.BORDER_REFLECT)
        out += np.maximum(sq - mean * mean, 0.0)
    return out / len(rgb)


def fuse_maps(are: np.ndarray, variance: np.ndarray, sobel: np.ndarray,
              weights: tuple[float, float, float] = (0.7, 0.1, 0.2)) -> np.ndarray:
    """noghredeh2025's fused map: minmax(w_0 minmax(ARE) + w_1 variance + w_2 Sobel), (H, W) in [0, 1].

    `variance` and `sobel` are expected min-max normalised already (they are per image constants)."""
    w0, w1, w2 = weights
    return minmax(w0 * minmax(are) + w1 * variance + w2 * sobel)
