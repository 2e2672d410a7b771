"""Supervised U-Net baseline: trained on the same few labeled images D_l as the RL method.

chu2020 (Table 1) and noghredeh2025 report a U-Net trained on D_l beside the batch-sampling
method; this is that comparison, with the standard few-shot recipe: random crops, flips, 90-degree
rotations and colour jitter, BCE with a positive-class weight plus soft Dice (defects cover a few
percent of the pixels, so plain BCE would learn "all normal").

Everything random (init, crops, augmentation) comes from `seed`, so a CPU run is reproducible.

The network is models.unet.UNet and its training the package's one fit loop (models.fit), which
the final predictor of `ours` (models.final_predictor) is trained by too; this module holds the
baseline's shape, input checks and inference.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import torch
import torch.nn.functional as F

from common.seeding import torch_rng_from
from common.settings import setting
from models.fit import FitConfig, fit_segmenter
from models.unet import UNet


@dataclass
class UNetConfig(FitConfig):
    """Network shape of the U-Net baseline, with the few-shot recipe it is trained by
    (models.fit.FitConfig: 600 Adam steps of 8 augmented crops, pos-weighted BCE + Dice)."""

    CONFIG_NAME: ClassVar[str] = "unet"
    width: int = setting(16, ge=1, le=512)
    """channels of the first level, doubled per level"""
    depth: int = setting(3, ge=1, le=6)
    """down-sampling levels; input sides must be multiples of 2**depth (predict_unet pads)"""


# --------------------------------------------------------------------------------------------------
# input validation
# --------------------------------------------------------------------------------------------------
def validate_images(images: np.ndarray, name: str = "images") -> np.ndarray:
    """Check that `images` is a non-empty uint8 RGB stack (n,H,W,3); return it as an array.

    Shared with baselines.recon_ae. uint8 is required so that no one passes [0,1] floats that would
    silently be scaled by 255 twice."""
    images = np.asarray(images)
    if images.ndim != 4 or images.shape[-1] != 3:
        raise ValueError(f"`{name}` must have shape (n, H, W, 3), got {images.shape}")
    if images.shape[0] == 0:
        raise ValueError(f"`{name}` holds no images")
    if images.dtype != np.uint8:
        raise ValueError(f"`{name}` must be uint8 RGB in [0, 255], got dtype {images.dtype}")
    return images


def _validate_masks(masks: np.ndarray, images: np.ndarray) -> np.ndarray:
    """Masks must be bool or 0/1 with the images' (n,H,W); a probability map would be wrong."""
    masks = np.asarray(masks)
    if masks.shape != images.shape[:3]:
        raise ValueError(f"`masks` must have shape {images.shape[:3]} to match `images`, "
                         f"got {masks.shape}")
    if masks.dtype != bool:
        if not np.issubdtype(masks.dtype, np.number) or not np.isin(masks, (0, 1)).all():
            raise ValueError(f"`masks` must be bool or 0/1, got dtype {masks.dtype} with other values")
        masks = masks.astype(bool)
    return masks


def to_tensor(images: np.ndarray) -> torch.Tensor:
    """uint8 (n,H,W,3) -> float (n,3,H,W) in [0,1]."""
    return torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).float() / 255.0


# --------------------------------------------------------------------------------------------------
# training and inference
# --------------------------------------------------------------------------------------------------
def train_unet(images: np.ndarray, masks: np.ndarray, config: UNetConfig | None = None,
               seed: int = 0, device: str | torch.device = "cpu", progress: str | None = None) -> tuple[UNet, list[float]]:
    """Train a U-Net on labeled images; return it in eval mode and the loss of every step.

    Args:
        images: uint8 RGB (n,H,W,3), the labeled images D_l.
        masks: bool or 0/1 (n,H,W) ground-truth defect masks of those images.
        config: UNetConfig; defaults are the few-shot recipe described there.
        seed: seeds the init and every random crop/augmentation: same seed on CPU, same weights.
        device: where to train.
        progress: a progress bar with this label (None: silent).
    """
    c = config or UNetConfig()
    images = validate_images(images, "images")
    masks = _validate_masks(masks, images)
    _, height, width = masks.shape
    if c.crop is not None and (c.crop % 2**c.depth or not 0 < c.crop <= min(height, width)):
        raise ValueError(f"`config.crop` must be a positive multiple of {2**c.depth} no larger "
                         f"than the images ({height}x{width}), got {c.crop}")
    device = torch.device(device)
    rng = np.random.default_rng(seed)
    with torch_rng_from(rng, device):
        net = UNet(c.width, c.depth).to(device)
    x = to_tensor(images).to(device)
    y = torch.from_numpy(masks.astype(np.float32)).to(device)
    losses = fit_segmenter(net, x, y, c, rng, rgb_last=True, progress=progress)
    return net, losses


@torch.no_grad()
def predict_unet(net: UNet, images: np.ndarray, device: str | torch.device = "cpu",
                 batch: int = 4, logits: bool = False) -> np.ndarray:
    """Anomaly probability maps float32 (n,H,W) in [0,1] of uint8 RGB images (n,H,W,3); with
    `logits`, the net's logits instead (what a logit mean of several fits pools).

    Whole images go through the net (it is fully convolutional); they are reflect-padded to a
    multiple of 2**depth and the maps cropped back, so any size works."""
    images = validate_images(images, "images")
    if batch < 1:
        raise ValueError(f"`batch` must be >= 1, got {batch}")
    device = torch.device(device)
    net = net.to(device).eval()
    _, height, width, _ = images.shape
    ph, pw = (-height) % net.multiple, (-width) % net.multiple
    out = []
    for start in range(0, len(images), batch):
        x = to_tensor(images[start:start + batch]).to(device)
        if ph or pw:
            x = F.pad(x, (0, pw, 0, ph), mode="reflect")
        y = net(x)
        out.append((y if logits else torch.sigmoid(y))[:, 0, :height, :width].float().cpu())
    return torch.cat(out).numpy()
