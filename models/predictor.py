"""Dilated fully convolutional predictor: loss profile (T,H,W) -> anomaly logit map (1,H,W)."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class DilatedFCN(nn.Module):
    """3x3 convolutions with dilation rates 1, 2, 4, 8 (then 1) and a 1x1 head.

    The receptive field (about 35 px) lets a pixel's decision use how its loss evolved compared
    with its neighbourhood, while the net stays small enough to train one step per AE update.
    Outputs logits; apply a sigmoid for probabilities.
    """

    def __init__(self, profile_length: int = 20, width: int = 32,
                 dilations: tuple[int, ...] = (1, 2, 4, 8, 1)) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        cin = profile_length
        for d in dilations:
            layers += [nn.Conv2d(cin, width, 3, padding=d, dilation=d), nn.ReLU(inplace=True)]
            cin = width
        self.body = nn.Sequential(*layers)
        self.head = nn.Conv2d(width, 1, 1)

    def forward(self, profiles: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(profiles))


def normalize_profiles(profiles: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """Divide each profile (B,T,H,W) by its own mean, so the predictor sees relative loss.

    Absolute loss levels drift as the AE trains and after every re-init; the ratio to the mean is
    what tells an anomalous pixel from a normal one.
    """
    return profiles / (profiles.mean(dim=(1, 2, 3), keepdim=True) + eps)


def weighted_bce(logits: torch.Tensor, target: torch.Tensor, alpha: float) -> torch.Tensor:
    """l_pred = -mean_k mean_{w,h} [y log p + alpha (1-y) log(1-p)], computed from logits.

    Averaged first over each image's pixels, then over the batch, as the spec says; alpha
    down-weights the (far more numerous) normal pixels.
    """
    target = target.to(logits.dtype)
    per_pixel = -(target * F.logsigmoid(logits) + alpha * (1 - target) * F.logsigmoid(-logits))
    return per_pixel.flatten(1).mean(dim=1).mean()
