"""Unsupervised reconstruction AE baseline of the MVTec AD paper (Bergmann et al. 2019).

An autoencoder is trained on anomaly-free images only; at test time a pixel is as anomalous as it
is badly reconstructed. Two variants, as in the paper: AE-L2 (trained with and scored by the
squared error) and AE-SSIM (trained with 1 - SSIM and scored by 1 - the SSIM map, which reacts to
changes of local structure rather than of intensity).

The network is the package's ConvAutoencoder without shortcuts (a plain AE, as in the paper: a
shortcut would let anomalies through) and with the paper's 100-channel bottleneck. It is trained
on random patches and scores whole images patch by patch (see `reconstruct` for why not in one
fully convolutional pass).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import torch
import torch.nn.functional as F

from baselines.unet import to_tensor, validate_images
from common.progress import progress as progress_bar
from common.seeding import torch_rng_from
from common.settings import check_fields, setting
from models.autoencoder import (AEConfig, ConvAutoencoder, ae_train_step, reconstruction_loss_map,
                                tiled_reconstruction)
from models.ssim import ssim_map

LOSSES = ("l2", "ssim")


@dataclass
class ReconAEConfig:
    """Training of the reconstruction AE (Bergmann et al. 2019 where it says so)."""

    CONFIG_NAME: ClassVar[str] = "recon"
    loss: str = setting("l2", choices=LOSSES)
    """'l2' (AE-L2) or 'ssim' (AE-SSIM): the training loss"""
    patch_size: int = setting(64, ge=8, power_of_two=True)
    """side of the random training patches (a power of two); the AE then runs on whole images"""
    steps: int = setting(1500, ge=1)
    batch: int = setting(16, ge=1)
    lr: float = setting(1e-3, gt=0, le=1)
    """Adam; the paper's 2e-4 needs far more steps than a baseline run can afford"""
    weight_decay: float = setting(0.0, ge=0)
    """Adam's (coupled) L2 penalty. The paper uses 1e-5, but an AE starts on a plateau where it
    outputs the mean colour and its gradients are tiny; Adam normalises the penalty's gradient to
    full-size steps there, which kept our AE on the plateau for all 1500 steps (128 px toy)."""
    width: int = setting(32, ge=1, le=1024)
    """channels of the first encoder level"""
    bottleneck: int = setting(100, ge=1, le=4096)
    """latent channels (the paper uses 100)"""
    leaky_relu: bool = True
    """LeakyReLU(0.2) activations, as in the paper"""
    ssim_window: int = setting(11, ge=1)
    ssim_sigma: float = setting(1.5, gt=0)

    def __post_init__(self) -> None:
        check_fields(self)


# --------------------------------------------------------------------------------------------------
# training
# --------------------------------------------------------------------------------------------------
def sample_patches(images: torch.Tensor, size: int, batch: int,
                   rng: np.random.Generator) -> torch.Tensor:
    """`batch` random size x size patches of images (n,3,H,W), each randomly flipped."""
    n, _, height, width = images.shape
    patches = []
    for _ in range(batch):
        i = int(rng.integers(n))
        y, x = int(rng.integers(height - size + 1)), int(rng.integers(width - size + 1))
        p = images[i, :, y:y + size, x:x + size]
        if rng.random() < 0.5:
            p = p.flip(-1)
        if rng.random() < 0.5:
            p = p.flip(-2)
        patches.append(p)
    return torch.stack(patches)


def ssim_train_step(ae: ConvAutoencoder, optimizer: torch.optim.Optimizer, patches: torch.Tensor,
                    window: int = 11, sigma: float = 1.5) -> float:
    """One AE-SSIM step: loss = 1 - mean SSIM between patches and their reconstructions."""
    ae.train()
    loss = 1 - ssim_map(ae(patches), patches, window, sigma).mean()
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    ae.eval()
    return float(loss.detach())


def train_recon_ae(normal_images: np.ndarray, config: ReconAEConfig | None = None, seed: int = 0,
                   device: str | torch.device = "cpu", progress: str | None = None) -> tuple[ConvAutoencoder, list[float]]:
    """Train the reconstruction AE on random patches of anomaly-free images.

    Args:
        normal_images: uint8 RGB (n,H,W,3), defect-free only (MVTec's train/good).
        config: ReconAEConfig; `loss` picks AE-L2 or AE-SSIM.
        seed: seeds the init and the patch draws: same seed on CPU, same weights.
        device: where to train.
        progress: a progress bar with this label (None: silent).

    Returns:
        the AE (eval mode) and the loss of every step.
    """
    c = config or ReconAEConfig()
    images = validate_images(normal_images, "normal_images")
    if c.loss not in LOSSES:
        raise ValueError(f"`config.loss` must be one of {LOSSES}, got {c.loss!r}")
    if c.patch_size > min(images.shape[1:3]):
        raise ValueError(f"`config.patch_size` {c.patch_size} is larger than the images "
                         f"{images.shape[1]}x{images.shape[2]}")
    device = torch.device(device)
    rng = np.random.default_rng(seed)

    ae_config = AEConfig(width=c.width, bottleneck=c.bottleneck, skip_levels=(),
                         leaky_relu=c.leaky_relu)
    with torch_rng_from(rng, device):
        ae = ConvAutoencoder(c.patch_size, ae_config).to(device)
    optimizer = torch.optim.Adam(ae.parameters(), lr=c.lr, weight_decay=c.weight_decay)
    data = to_tensor(images)

    losses: list[float] = []
    bar = None if progress is None else progress_bar(c.steps, progress, leave=False)
    for _ in range(c.steps):
        patches = sample_patches(data, c.patch_size, c.batch, rng).to(device)
        if c.loss == "l2":
            losses.append(ae_train_step(ae, optimizer, patches))
        else:
            losses.append(ssim_train_step(ae, optimizer, patches, c.ssim_window, c.ssim_sigma))
        if bar is not None:
            bar.update(1)
    if bar is not None:
        bar.close()
    ae.eval()
    return ae, losses


# --------------------------------------------------------------------------------------------------
# scoring
# --------------------------------------------------------------------------------------------------
def reconstruct(ae: ConvAutoencoder, images: torch.Tensor, stride: int | None = None) -> torch.Tensor:
    """Reconstruction of whole images (B,3,H,W) by overlapping training-size patches, averaged
    (`models.autoencoder.tiled_reconstruction`; see there why not one fully convolutional pass).
    On trained toy AEs the whole-image pass reconstructed 12x (L2) to 300x (SSIM) worse in MSE
    than the same AE on its patches, and the pixel AUROC of AE-L2 fell from 0.99 to 0.72.

    stride: window step; None = a quarter of the patch side. Sides must be >= the patch side.
    """
    return tiled_reconstruction(ae, images, stride or max(1, ae.patch_size // 4))


@torch.no_grad()
def anomaly_maps(ae: ConvAutoencoder, images: np.ndarray, kind: str = "l2",
                 device: str | torch.device = "cpu", window: int = 11, sigma: float = 1.5,
                 batch: int = 8, stride: int | None = None, whole_image: bool = False) -> np.ndarray:
    """Per-pixel anomaly scores float32 (n,H,W) of uint8 RGB images (n,H,W,3).

    kind='l2': squared reconstruction error averaged over channels; kind='ssim': 1 - SSIM map
    between image and reconstruction. Higher = more anomalous; pick a threshold on labeled images
    (e.g. evaluation.metrics.best_f1_threshold).

    The reconstruction is patch-wise (see `reconstruct`, `stride` its window step);
    whole_image=True instead runs one fully convolutional pass (reconstruction_loss_map): faster,
    but far less faithful for this bottleneck AE.
    """
    images = validate_images(images, "images")
    if kind not in LOSSES:
        raise ValueError(f"`kind` must be one of {LOSSES}, got {kind!r}")
    device = torch.device(device)
    ae = ae.to(device).eval()
    out = []
    for start in range(0, len(images), batch):
        x = to_tensor(images[start:start + batch]).to(device)
        if whole_image and kind == "l2":
            m = reconstruction_loss_map(ae, x, whole_image=True)
        else:
            if whole_image:
                ph, pw = (-x.shape[-2]) % ae.multiple, (-x.shape[-1]) % ae.multiple
                xp = F.pad(x, (0, pw, 0, ph), mode="reflect") if (ph or pw) else x
                recon = ae(xp)[..., :x.shape[-2], :x.shape[-1]]
            else:
                recon = reconstruct(ae, x, stride)
            m = ((recon - x).square().mean(dim=1) if kind == "l2"
                 else 1 - ssim_map(x, recon, window, sigma))
        out.append(m.float().cpu())
    return torch.cat(out).numpy()
