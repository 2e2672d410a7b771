"""The U-Net network: the supervised baseline's (baselines.unet) and the U-Net variant of the
env's predictor (models.predictor.UNetPredictor). Training and inference: baselines.unet."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def _norm(kind: str, channels: int) -> nn.Module:
    if kind == "batch":
        return nn.BatchNorm2d(channels)
    return nn.GroupNorm(min(8, channels), channels)


def _double_conv(cin: int, cout: int, norm: str = "batch") -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, padding=1, bias=False), _norm(norm, cout), nn.ReLU(inplace=True),
        nn.Conv2d(cout, cout, 3, padding=1, bias=False), _norm(norm, cout), nn.ReLU(inplace=True))


class UNet(nn.Module):
    """Ronneberger-style U-Net: (conv-BN-ReLU)x2 per level, max-pool down, transpose-conv up,
    skip concatenation, 1x1 head giving anomaly logits (B,1,H,W). norm='group' (GroupNorm) for a
    net that is evaluated between single training steps, where BatchNorm's running statistics
    would trail the weights (the env's predictor).

    Same-padded convolutions, so the output has the input's size; sides must be multiples of
    `multiple` (baselines.unet.predict_unet reflect-pads for you).
    """

    def __init__(self, width: int = 16, depth: int = 3, in_channels: int = 3, norm: str = "batch") -> None:
        super().__init__()
        if width < 1 or depth < 1:
            raise ValueError(f"`width` and `depth` must be >= 1, got {width} and {depth}")
        if norm not in ("batch", "group"):
            raise ValueError(f"`norm` must be 'batch' or 'group', got {norm!r}")
        self.depth = depth
        chans = [width * 2**i for i in range(depth + 1)]
        self.inc = _double_conv(in_channels, chans[0], norm)
        self.down = nn.ModuleList(_double_conv(chans[i], chans[i + 1], norm) for i in range(depth))
        self.up = nn.ModuleList(nn.ConvTranspose2d(chans[i + 1], chans[i], 2, stride=2)
                                for i in reversed(range(depth)))
        self.up_conv = nn.ModuleList(_double_conv(2 * chans[i], chans[i], norm)
                                     for i in reversed(range(depth)))
        self.head = nn.Conv2d(chans[0], 1, 1)

    @property
    def multiple(self) -> int:
        """Input sides must be multiples of this."""
        return 2**self.depth

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        if h % self.multiple or w % self.multiple:
            raise ValueError(f"input sides must be multiples of {self.multiple}, got {h}x{w}")
        h = self.inc(x)
        skips = [h]
        for down in self.down:
            h = down(F.max_pool2d(h, 2))
            skips.append(h)
        for up, conv, skip in zip(self.up, self.up_conv, reversed(skips[:-1])):
            h = conv(torch.cat([up(h), skip], dim=1))
        return self.head(h)
