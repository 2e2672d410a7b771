"""Convolutional autoencoder trained on the sampled patches.

The AE is trained on small patches and applied to whole images window by window
(`tiled_reconstruction`), to give the per-pixel reconstruction-loss maps that make up the loss
profiles.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from common.settings import ConfigError, check_fields, setting
from models.ssim import ssim_map


@dataclass
class AEConfig:
    """Shape of the autoencoder (chu2020 defaults)."""

    CONFIG_NAME: ClassVar[str] = "ae"
    width: int = setting(32, ge=1, le=1024)
    """channels of the first encoder level; doubled per level up to 4x"""
    bottleneck: int = setting(64, ge=1, le=4096)
    """channels K of the 1x1xK bottleneck reached on a training patch"""
    skip_levels: tuple[int, ...] = setting((1, 2))
    """encoder levels (0 = the first, at half resolution) joined to the decoder by additive
    shortcuts. The last level (the 4x4 map entering the bottleneck) never is: a shortcut there
    would bypass the bottleneck. Level 0 would let the AE copy fine detail, anomalies included."""
    norm: bool = False
    """BatchNorm2d(affine=False) after each conv (noghredeh2025)"""
    dropout: float = setting(0.0, ge=0, lt=1)
    """dropout before the bottleneck (noghredeh2025: 0.3)"""
    leaky_relu: bool = False
    """LeakyReLU(0.2) instead of ReLU (noghredeh2025)"""

    def __post_init__(self) -> None:
        check_fields(self)
        if any(not isinstance(v, int) or v < 0 for v in self.skip_levels):
            raise ConfigError(f"ae.skip_levels={list(self.skip_levels)}: expected encoder levels (whole numbers >= 0)")


def ae_levels(patch_size: int) -> int:
    """Number of stride-2 levels that bring a patch down to 4x4 before the 4x4 bottleneck conv."""
    levels = int(round(math.log2(patch_size))) - 2
    if 2 ** (levels + 2) != patch_size or levels < 1:
        raise ValueError(f"patch_size must be a power of two >= 8, got {patch_size}")
    return levels


class ConvAutoencoder(nn.Module):
    """Conv encoder to a 1x1xK bottleneck (on a patch), transpose-conv decoder, sigmoid output.

    On an input larger than a patch the bottleneck becomes a grid of codes whose decoder footprints
    overlap: not what the AE was trained on. Whole images go through `tiled_reconstruction`
    (patch-size windows) instead; `reconstruction_loss_map` does that for you.
    """

    def __init__(self, patch_size: int = 64, config: AEConfig | None = None) -> None:
        super().__init__()
        self.config = config or AEConfig()
        c = self.config
        self.levels = ae_levels(patch_size)
        act = (lambda: nn.LeakyReLU(0.2)) if c.leaky_relu else (lambda: nn.ReLU(inplace=True))
        chans = [min(c.width * 2**i, c.width * 4) for i in range(self.levels)]

        def block(cin: int, cout: int, transpose: bool = False) -> nn.Sequential:
            conv = (nn.ConvTranspose2d(cin, cout, 4, stride=2, padding=1) if transpose
                    else nn.Conv2d(cin, cout, 4, stride=2, padding=1))
            layers: list[nn.Module] = [conv]
            if c.norm:
                layers.append(nn.BatchNorm2d(cout, affine=False))
            layers.append(act())
            return nn.Sequential(*layers)

        self.encoder = nn.ModuleList(block(cin, cout) for cin, cout in zip([3] + chans[:-1], chans))
        self.dropout = nn.Dropout2d(c.dropout) if c.dropout > 0 else nn.Identity()
        # 4x4 valid conv: a 4x4 map becomes the 1x1xK code; the transpose conv undoes it exactly.
        self.to_code = nn.Sequential(nn.Conv2d(chans[-1], c.bottleneck, 4), act())
        self.from_code = nn.Sequential(nn.ConvTranspose2d(c.bottleneck, chans[-1], 4), act())
        dec_out = chans[-2::-1] + [c.width]
        self.decoder = nn.ModuleList(
            block(cin, cout, transpose=True) for cin, cout in zip(chans[::-1], dec_out))
        self.head = nn.Conv2d(c.width, 3, 3, padding=1)
        self.skip_levels = tuple(s for s in c.skip_levels if 0 <= s < self.levels - 1)

    @property
    def patch_size(self) -> int:
        """Side of the training patches (the input the 1x1 bottleneck is made for)."""
        return 4 * self.multiple

    @property
    def multiple(self) -> int:
        """Input sides must be multiples of this."""
        return 2**self.levels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        feats = []
        h = x
        for enc in self.encoder:
            h = enc(h)
            feats.append(h)
        h = self.from_code(self.to_code(self.dropout(h)))
        for i, dec in enumerate(self.decoder):
            level = self.levels - 1 - i  # encoder level whose output has h's resolution
            if level in self.skip_levels:
                h = h + feats[level]
            h = dec(h)
        return torch.sigmoid(self.head(h))


def window_starts(side: int, patch: int, stride: int) -> list[int]:
    """Window offsets covering [0, side) with the given stride, the last one flush with the end."""
    if side < patch:
        raise ValueError(f"a side of {side} px is smaller than the AE's {patch} px patches")
    starts = list(range(0, side - patch + 1, stride))
    if starts[-1] != side - patch:
        starts.append(side - patch)
    return starts


def tiled_reconstruction(ae: ConvAutoencoder, images: torch.Tensor, stride: int | None = None,
                         max_batch: int = 512) -> torch.Tensor:
    """Reconstruction of whole images (B,3,H,W) by training-size windows, averaged where they overlap.

    Why not one fully convolutional pass: on a patch the bottleneck is a single 1x1 code, on a
    larger input it is a grid of codes whose 4x4 transpose-conv footprints overlap and add up
    before the sigmoid, something the AE never saw in training. Measured on bottle at 128 px, the
    whole-image pass ranks defects *below* normal pixels (pixel AUROC 0.34) where the same AE on
    its own patches gives 0.67. Windows of the training size keep the AE on the inputs it was
    trained on: with stride = patch side (non-overlapping tiles, sides multiples of the patch) each
    window's output is exactly the AE's output on that patch.

    stride: window step; None = the patch side (non-overlapping tiles, the cheapest: one AE pass
    per pixel). All windows of the batch go through the AE together, `max_batch` at a time.
    """
    patch = ae.patch_size
    _, _, h, w = images.shape
    if h < patch or w < patch:
        raise ValueError(f"images of {h}x{w} are smaller than the AE's {patch}x{patch} patches")
    stride = stride or patch
    windows = [(y, x) for y in window_starts(h, patch, stride) for x in window_starts(w, patch, stride)]
    b = images.shape[0]
    out = torch.zeros_like(images)
    count = torch.zeros((1, 1, h, w), dtype=images.dtype, device=images.device)
    per_chunk = max(1, max_batch // max(1, b))
    for k in range(0, len(windows), per_chunk):
        chunk = windows[k:k + per_chunk]
        x = torch.cat([images[..., y:y + patch, x_:x_ + patch] for y, x_ in chunk])
        recon = ae(x).view(len(chunk), b, 3, patch, patch)
        for (y, x_), r in zip(chunk, recon):
            out[..., y:y + patch, x_:x_ + patch] += r
            count[..., y:y + patch, x_:x_ + patch] += 1
    return out / count


def reconstruct_images(ae: ConvAutoencoder, images: torch.Tensor, stride: int | None = None,
                       whole_image: bool = False) -> torch.Tensor:
    """The AE's reconstruction of whole images (B,3,H,W): applied the way it was trained, on
    patch-size windows (`tiled_reconstruction`, `stride` its step); or, with whole_image=True, the
    old single fully convolutional pass (images reflect-padded to a multiple of the AE's stride),
    which a 1x1-bottleneck AE was never trained for: on real data its loss ranks defects below
    normal pixels. Kept for the ablation."""
    if not whole_image:
        return tiled_reconstruction(ae, images, stride)
    _, _, h, w = images.shape
    m = ae.multiple
    ph, pw = (-h) % m, (-w) % m
    x = F.pad(images, (0, pw, 0, ph), mode="reflect") if (ph or pw) else images
    return ae(x)[..., :h, :w]


#: Per-pixel errors a loss map can measure (loss_map).
LOSS_ERRORS = ("squared", "absolute", "ssim")
#: Window and sigma of the 'ssim' loss map: those of the MVTec AD paper's AE-SSIM.
SSIM_WINDOW, SSIM_SIGMA = 11, 1.5


def loss_map(reconstruction: torch.Tensor, images: torch.Tensor, error: str = "squared") -> torch.Tensor:
    """Per-pixel loss (B,H,W) of a reconstruction: 'squared' error averaged over channels
    (chu2020), 'absolute' error (noghredeh2025), or 'ssim': (1 - SSIM) / 2 of the local structure
    (Gaussian window as AE-SSIM's), which compares contrast and structure rather than intensity,
    so a defect on a dark or low-contrast surface is not drowned by the bright parts' larger errors."""
    if error == "ssim":
        return (1.0 - ssim_map(reconstruction, images, SSIM_WINDOW, SSIM_SIGMA)) / 2.0
    if error not in LOSS_ERRORS:
        raise ValueError(f"error must be one of {LOSS_ERRORS}, got {error!r}")
    err = reconstruction - images
    return (err.abs() if error == "absolute" else err.square()).mean(dim=1)


def reconstruction_loss_map(ae: ConvAutoencoder, images: torch.Tensor, error: str = "squared",
                            stride: int | None = None, whole_image: bool = False) -> torch.Tensor:
    """Per-pixel reconstruction loss of whole images, (B,3,H,W) in [0,1] -> (B,H,W)
    (`reconstruct_images`, then `loss_map`)."""
    return loss_map(reconstruct_images(ae, images, stride, whole_image), images, error)


def ae_train_step(ae: ConvAutoencoder, optimizer: torch.optim.Optimizer, patches: torch.Tensor) -> float:
    """One MSE reconstruction step on a batch of patches (B,3,P,P); returns the loss.

    The single place the package trains an AE: the batch sampling env and the residual-map
    classifier env both call it."""
    ae.train()
    loss = F.mse_loss(ae(patches), patches)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    ae.eval()
    return float(loss.detach())

