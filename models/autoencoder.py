"""Convolutional autoencoder trained on the sampled patches.

The AE is fully convolutional so that, although it is trained on small patches, it can be run on
whole images to give the per-pixel reconstruction-loss maps that make up the loss profiles.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn


@dataclass
class AEConfig:
    """Shape of the autoencoder (chu2020 defaults)."""

    width: int = 32
    """channels of the first encoder level; doubled per level up to 4x"""
    bottleneck: int = 64
    """channels K of the 1x1xK bottleneck reached on a training patch"""
    skip_levels: tuple[int, ...] = (1, 2)
    """encoder levels (0 = the first, at half resolution) joined to the decoder by additive
    shortcuts. The last level (the 4x4 map entering the bottleneck) never is: a shortcut there
    would bypass the bottleneck. Level 0 would let the AE copy fine detail, anomalies included."""
    norm: bool = False
    """BatchNorm2d(affine=False) after each conv (noghredeh2025)"""
    dropout: float = 0.0
    """dropout before the bottleneck (noghredeh2025: 0.3)"""
    leaky_relu: bool = False
    """LeakyReLU(0.2) instead of ReLU (noghredeh2025)"""


def ae_levels(patch_size: int) -> int:
    """Number of stride-2 levels that bring a patch down to 4x4 before the 4x4 bottleneck conv."""
    levels = int(round(math.log2(patch_size))) - 2
    if 2 ** (levels + 2) != patch_size or levels < 1:
        raise ValueError(f"patch_size must be a power of two >= 8, got {patch_size}")
    return levels


class ConvAutoencoder(nn.Module):
    """Conv encoder to a 1x1xK bottleneck (on a patch), transpose-conv decoder, sigmoid output.

    On an input larger than a patch the bottleneck is spatial, so the same weights map a whole
    image to its reconstruction. Inputs must be multiples of 2**levels; `reconstruction_loss_map`
    pads for you.
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


def reconstruction_loss_map(ae: ConvAutoencoder, images: torch.Tensor,
                            absolute: bool = False) -> torch.Tensor:
    """Per-pixel reconstruction loss of whole images, (B,3,H,W) in [0,1] -> (B,H,W).

    Squared error averaged over channels (chu2020), or absolute error (noghredeh2025). Images are
    reflect-padded to a multiple of the AE's stride and the map is cropped back.
    """
    _, _, h, w = images.shape
    m = ae.multiple
    ph, pw = (-h) % m, (-w) % m
    x = F.pad(images, (0, pw, 0, ph), mode="reflect") if (ph or pw) else images
    err = ae(x)[..., :h, :w] - images
    err = err.abs() if absolute else err.square()
    return err.mean(dim=1)


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

