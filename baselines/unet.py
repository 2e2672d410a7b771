"""Supervised U-Net baseline: trained on the same few labeled images D_l as the RL method.

chu2020 (Table 1) and noghredeh2025 report a U-Net trained on D_l beside the batch-sampling
method; this is that comparison, with the standard few-shot recipe: random crops, flips, 90-degree
rotations and colour jitter, BCE with a positive-class weight plus soft Dice (defects cover a few
percent of the pixels, so plain BCE would learn "all normal").

Everything random (init, crops, augmentation) comes from `seed`, so a CPU run is reproducible.

The network itself is models.unet.UNet; this module holds its training and inference, and
`recompute_batch_norm`, which the env's final predictor (envs.refit) shares.
"""
from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from common.seeding import torch_rng_from
from models.predictor import segmentation_loss
from models.unet import UNet


@dataclass
class UNetConfig:
    """Network shape, optimisation and augmentation of the U-Net baseline."""

    width: int = 16
    """channels of the first level, doubled per level"""
    depth: int = 3
    """down-sampling levels; input sides must be multiples of 2**depth (predict_unet pads)"""
    steps: int = 600
    """Adam steps (x batch = ~1000 augmented crops per image of a 5-image D_l). At lr 1e-3 fewer
    steps leave p > 0.5 badly calibrated even where the ranking (AUROC) is already right."""
    batch: int = 8
    """crops per step"""
    crop: int | None = None
    """side of the random training crops; None = half the image side, at least 32 px (whole image
    if smaller), rounded down to a multiple of 2**depth. Crops multiply the 5 labeled images into
    many different samples and make the steps cheap."""
    lr: float = 1e-3
    pos_weight: float | None = None
    """BCE weight of anomalous pixels; None = (#normal / #anomalous) pixels of the labeled masks,
    clipped to [1, max_pos_weight]"""
    max_pos_weight: float = 50.0
    """cap of the automatic pos_weight: tiny defects would otherwise give weights in the
    thousands and a net that flags everything"""
    flips: bool = True
    """random horizontal and vertical flips"""
    rot90: bool = True
    """random multiples of 90-degree rotations"""
    colour_jitter: float = 0.2
    """max relative change of brightness, contrast and saturation (0 = off)"""


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
# augmentation
# --------------------------------------------------------------------------------------------------
def default_crop(height: int, width: int, depth: int) -> int:
    """Half the smaller side, at least 32 px but no more than the image, as a multiple of 2**depth."""
    side = min(height, width)
    crop = min(side, max(32, side // 2))
    crop -= crop % 2**depth
    if crop < 2**depth:
        raise ValueError(f"images of {height}x{width} are too small for a U-Net of depth {depth}")
    return crop


def augment(image: np.ndarray, mask: np.ndarray, crop: int, config: UNetConfig,
            rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Random crop, flips and 90-degree rotation (same on image and mask), then colour jitter.

    image: float32 (H,W,3) in [0,1]; mask: float32 (H,W). Returns a (crop,crop,3), (crop,crop) pair.
    """
    y = int(rng.integers(image.shape[0] - crop + 1))
    x = int(rng.integers(image.shape[1] - crop + 1))
    img, m = image[y:y + crop, x:x + crop], mask[y:y + crop, x:x + crop]
    if config.flips:
        if rng.random() < 0.5:
            img, m = img[:, ::-1], m[:, ::-1]
        if rng.random() < 0.5:
            img, m = img[::-1], m[::-1]
    if config.rot90:
        k = int(rng.integers(4))
        img, m = np.rot90(img, k), np.rot90(m, k)
    j = config.colour_jitter
    if j > 0:
        brightness, contrast, saturation = rng.uniform(1 - j, 1 + j, size=3)
        img = img * brightness
        gray = img @ np.array([0.299, 0.587, 0.114], np.float32)
        img = (img - gray.mean()) * contrast + gray.mean()
        gray = (img @ np.array([0.299, 0.587, 0.114], np.float32))[..., None]
        img = (img - gray) * saturation + gray
        img = np.clip(img, 0.0, 1.0)
    return np.ascontiguousarray(img, dtype=np.float32), np.ascontiguousarray(m, dtype=np.float32)


# --------------------------------------------------------------------------------------------------
# training and inference
# --------------------------------------------------------------------------------------------------
def train_unet(images: np.ndarray, masks: np.ndarray, config: UNetConfig | None = None,
               seed: int = 0, device: str | torch.device = "cpu") -> tuple[UNet, list[float]]:
    """Train a U-Net on labeled images; return it in eval mode and the loss of every step.

    Args:
        images: uint8 RGB (n,H,W,3), the labeled images D_l.
        masks: bool or 0/1 (n,H,W) ground-truth defect masks of those images.
        config: UNetConfig; defaults are the few-shot recipe described there.
        seed: seeds the init and every random crop/augmentation: same seed on CPU, same weights.
        device: where to train.
    """
    c = config or UNetConfig()
    images = validate_images(images, "images")
    masks = _validate_masks(masks, images)
    n, height, width = masks.shape
    crop = c.crop if c.crop is not None else default_crop(height, width, c.depth)
    if crop % 2**c.depth or not 0 < crop <= min(height, width):
        raise ValueError(f"`config.crop` must be a positive multiple of {2**c.depth} no larger "
                         f"than the images ({height}x{width}), got {crop}")
    if c.pos_weight is not None:
        pos_weight = float(c.pos_weight)
    else:
        n_pos = int(masks.sum())
        pos_weight = float(np.clip((masks.size - n_pos) / max(n_pos, 1), 1.0, c.max_pos_weight))
    device = torch.device(device)
    rng = np.random.default_rng(seed)

    with torch_rng_from(rng, device):
        net = UNet(c.width, c.depth).to(device)
    optimizer = torch.optim.Adam(net.parameters(), lr=c.lr)
    data = images.astype(np.float32) / 255.0
    targets = masks.astype(np.float32)

    losses: list[float] = []
    net.train()
    for _ in range(c.steps):
        idx = rng.integers(n, size=c.batch)
        pairs = [augment(data[i], targets[i], crop, c, rng) for i in idx]
        x = torch.from_numpy(np.stack([p[0] for p in pairs])).permute(0, 3, 1, 2).to(device)
        y = torch.from_numpy(np.stack([p[1] for p in pairs]))[:, None].to(device)
        loss = segmentation_loss(net(x), y, pos_weight)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        losses.append(float(loss.detach()))
    recompute_bn_stats(net, images, device)
    return net, losses


@torch.no_grad()
def recompute_bn_stats(net: UNet, images: np.ndarray, device: str | torch.device = "cpu",
                       batch: int = 8) -> None:
    """Re-estimate BatchNorm's running statistics with the final weights; leave net in eval mode.

    The running averages (momentum 0.1) trail the weights, and a few hundred fast steps move the
    weights enough that eval-mode outputs drift from what training optimised: on the toy of the
    tests one seed in five flagged 77% of the pixels at p > 0.5, with AUROC still 1.0. A pass
    over the whole labeled images, averaging their batch statistics exactly, fixes the stats to
    the final weights and to the whole-image inputs that prediction uses. Each batch counts
    equally in the average, so a D_l of up to `batch` images gives its exact statistics."""
    _, height, width, _ = images.shape
    ph, pw = (-height) % net.multiple, (-width) % net.multiple
    batches = (to_tensor(images[start:start + batch]).to(device) for start in range(0, len(images), batch))
    recompute_batch_norm(net, (F.pad(x, (0, pw, 0, ph), mode="reflect") if (ph or pw) else x for x in batches))


@torch.no_grad()
def recompute_batch_norm(net: nn.Module, batches: Iterable[torch.Tensor]) -> None:
    """Reset every BatchNorm of `net` and set its statistics to the exact average over `batches`
    (each counting equally), run through the net in train mode; leave net in eval mode."""
    bns = [m for m in net.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    momenta = [bn.momentum for bn in bns]
    for bn in bns:
        bn.reset_running_stats()
        bn.momentum = None  # cumulative average over the batches below
    net.train()
    for x in batches:
        net(x)
    for bn, momentum in zip(bns, momenta):
        bn.momentum = momentum
    net.eval()


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
