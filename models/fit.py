"""Fitting segmentation nets on a few labeled images: the package's one training loop and step.

Three things fit a segmentation net on the 5 or so labeled images: the supervised U-Net baseline
(baselines.unet), the final predictor of a run (models.final_predictor: nets on the best loss
profiles, with or without the image) and, one step per AE update, the env's in-training
predictor. They share everything here, so that "the same recipe" means the same code:

- `fit_segmenter`: the few-shot recipe. Adam; per step `batch` random crops of the inputs
  (`random_views`: a random image, crop, flips, 90-degree rotation), colour jitter on the RGB
  channels (`jitter_rgb`), BCE with anomalous pixels weighted by #normal / #anomalous (capped,
  `pos_weight_of`) plus soft Dice; BatchNorm statistics recomputed on the whole inputs at the end
  (`recompute_batch_norm`).
- `predictor_step`: one step of the env's recipe on a replay-buffer batch (one crop for the
  batch, colour jitter, alpha-weighted BCE, optionally + Dice and the ranking penalty).
- `loo_folds`: which labeled images a leave-one-out fit can hold out.
"""
from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from common.progress import progress as progress_bar
from common.settings import check_fields, setting
from models.predictor import ranking_departure, segmentation_loss, soft_dice_loss, weighted_bce


@dataclass
class FitConfig:
    """The few-shot recipe's optimisation and augmentation (the U-Net baseline's defaults)."""

    CONFIG_NAME: ClassVar[str] = "fit"
    steps: int = setting(600, ge=1)
    """Adam steps (x batch = ~1000 augmented crops per image of a 5-image D_l). At lr 1e-3 fewer
    steps leave p > 0.5 badly calibrated even where the ranking (AUROC) is already right"""
    batch: int = setting(8, ge=1)
    """crops per step"""
    crop: int | None = setting(None, ge=1)
    """side of the random training crops; None = half the image side, at least 32 px (whole image
    if smaller), rounded down to a multiple of the net's input multiple (default_crop)"""
    lr: float = setting(1e-3, gt=0, le=1)
    pos_weight: float | None = setting(None, gt=0)
    """BCE weight of anomalous pixels; None = #normal / #anomalous pixels of the labeled masks,
    clipped to [1, max_pos_weight] (pos_weight_of)"""
    max_pos_weight: float = setting(50.0, ge=1)
    """cap of the automatic pos_weight: tiny defects would otherwise give weights in the
    thousands and a net that flags everything"""
    flips: bool = True
    """random horizontal and vertical flips"""
    rot90: bool = True
    """random multiples of 90-degree rotations"""
    colour_jitter: float = setting(0.2, ge=0, lt=1)
    """max relative change of brightness, contrast and saturation of the RGB channels (0 = off)"""

    def __post_init__(self) -> None:
        check_fields(self)


def default_crop(height: int, width: int, depth: int) -> int:
    """Half the smaller side, at least 32 px but no more than the image, as a multiple of 2**depth."""
    side = min(height, width)
    crop = min(side, max(32, side // 2))
    crop -= crop % 2**depth
    if crop < 2**depth:
        raise ValueError(f"images of {height}x{width} are too small for a U-Net of depth {depth}")
    return crop


def input_multiple(net: nn.Module) -> int:
    """What the sides of a net's input must be multiples of (a U-Net's 2**depth; 1 otherwise)."""
    return int(getattr(net, "multiple", getattr(getattr(net, "net", None), "multiple", 1)))


def pos_weight_of(masks: torch.Tensor, cap: float) -> float:
    """#normal / #anomalous pixels of the labeled masks, clipped to [1, cap]: the BCE weight that
    makes the rare anomalous pixels count as much as the normal ones."""
    n_pos = float(masks.sum())
    return float(np.clip((masks.numel() - n_pos) / max(n_pos, 1.0), 1.0, cap))


def loo_folds(masks: np.ndarray) -> list[int]:
    """The labeled images a leave-one-out fit can hold out: image k only when the other labeled
    images hold anomalous pixels (a fit on normal images alone learns to suppress high loss and
    ranks its held-out defects upside down), and none at all when no such image has a defect to
    be judged on. With a single defect image in D_l there are none."""
    masks = np.asarray(masks, bool)
    folds = [k for k in range(len(masks)) if np.delete(masks, k, axis=0).any()]
    return folds if masks[folds].any() else []


def jitter_rgb(batch: torch.Tensor, amount: float, rng: np.random.Generator) -> torch.Tensor:
    """Per sample, scale brightness, contrast and saturation of the last 3 (RGB) channels of a
    (B,C,H,W) batch by factors in [1 - amount, 1 + amount]; other channels (a loss profile) are
    left alone."""
    f = torch.as_tensor(rng.uniform(1 - amount, 1 + amount, size=(len(batch), 3, 1, 1, 1)),
                        dtype=batch.dtype, device=batch.device)
    rgb = batch[:, -3:] * f[:, 0]
    luma = torch.tensor([0.299, 0.587, 0.114], dtype=batch.dtype, device=batch.device).view(1, 3, 1, 1)
    gray = (rgb * luma).sum(1, keepdim=True)
    rgb = (rgb - gray.mean(dim=(2, 3), keepdim=True)) * f[:, 1] + gray.mean(dim=(2, 3), keepdim=True)
    gray = (rgb * luma).sum(1, keepdim=True)
    rgb = ((rgb - gray) * f[:, 2] + gray).clamp(0.0, 1.0)
    return torch.cat([batch[:, :-3], rgb], dim=1)


def random_views(x: torch.Tensor, y: torch.Tensor, batch: int, crop: int, rng: np.random.Generator,
                 flips: bool = True, rot90: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """`batch` training views of inputs x (n,C,H,W) and masks y (n,H,W): per view a random image,
    a random crop x crop window, random flips and a random multiple of 90 degrees (the same on
    input and mask). Returns (batch,C,crop,crop) and (batch,1,crop,crop)."""
    n, _, height, width = x.shape
    xs, ys = [], []
    for i in rng.integers(n, size=batch):
        top, left = int(rng.integers(height - crop + 1)), int(rng.integers(width - crop + 1))
        xi, yi = x[i, :, top:top + crop, left:left + crop], y[i, top:top + crop, left:left + crop]
        if flips:
            if rng.random() < 0.5:
                xi, yi = xi.flip(-1), yi.flip(-1)
            if rng.random() < 0.5:
                xi, yi = xi.flip(-2), yi.flip(-2)
        if rot90:
            k = int(rng.integers(4))
            xi, yi = torch.rot90(xi, k, (-2, -1)), torch.rot90(yi, k, (-2, -1))
        xs.append(xi)
        ys.append(yi)
    return torch.stack(xs), torch.stack(ys)[:, None]


def _gradient_step(optimizer: torch.optim.Optimizer, loss: torch.Tensor) -> None:
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()


def fit_segmenter(net: nn.Module, x: torch.Tensor, y: torch.Tensor, config: FitConfig, rng: np.random.Generator,
                  rgb_last: bool = True, profile_dropout: float = 0.0, progress: str | None = None) -> list[float]:
    """Train `net` on inputs x (n,C,H,W) with masks y (n,H,W) by the few-shot recipe (module
    docstring); return the loss of every step, with `net` left in eval mode and its BatchNorm
    statistics (if any) those of the whole inputs under the final weights.

    rgb_last: the last 3 channels of x are RGB in [0, 1] (colour jitter applies to them).
    profile_dropout: with inputs that hold a profile before the RGB, the probability that a
    view's profile channels are zeroed (the net must then segment from the image alone).
    progress: show a progress bar over the steps with this label (None: silent)."""
    c = config
    n, _, height, width = x.shape
    multiple = input_multiple(net)
    crop = c.crop if c.crop is not None else default_crop(height, width, max(int(np.log2(multiple)), 0))
    if crop % multiple or not 0 < crop <= min(height, width):
        raise ValueError(f"`config.crop` must be a positive multiple of {multiple} no larger than the "
                         f"images ({height}x{width}), got {crop}")
    y = y.to(x.dtype)
    pos_weight = float(c.pos_weight) if c.pos_weight is not None else pos_weight_of(y, c.max_pos_weight)
    optimizer = torch.optim.Adam(net.parameters(), lr=c.lr)
    losses: list[float] = []
    net.train()
    bar = None if progress is None else progress_bar(c.steps, progress, leave=False)
    for _ in range(c.steps):
        xb, yb = random_views(x, y, c.batch, crop, rng, c.flips, c.rot90)
        if c.colour_jitter > 0 and rgb_last:
            xb = jitter_rgb(xb, c.colour_jitter, rng)
        if profile_dropout > 0 and rgb_last and xb.shape[1] > 3:
            keep = torch.as_tensor(rng.random(len(xb)) >= profile_dropout, dtype=xb.dtype, device=xb.device)
            xb = torch.cat([xb[:, :-3] * keep.view(-1, 1, 1, 1), xb[:, -3:]], dim=1)
        loss = segmentation_loss(net(xb), yb, pos_weight)
        _gradient_step(optimizer, loss)
        losses.append(float(loss.detach()))
        if bar is not None:
            bar.update(1)
    if bar is not None:
        bar.close()
    recompute_batch_norm(net, (pad_to_multiple(x[k:k + c.batch], multiple) for k in range(0, n, c.batch)))
    return losses


def pad_to_multiple(x: torch.Tensor, multiple: int) -> torch.Tensor:
    """x (B,C,H,W) reflect-padded at the bottom and right to sides that are multiples of `multiple`."""
    ph, pw = (-x.shape[-2]) % multiple, (-x.shape[-1]) % multiple
    return F.pad(x, (0, pw, 0, ph), mode="reflect") if (ph or pw) else x


@torch.no_grad()
def recompute_batch_norm(net: nn.Module, batches: Iterable[torch.Tensor]) -> None:
    """Reset every BatchNorm of `net` and set its statistics to the exact average over `batches`
    (each counting equally), run through the net in train mode; leave net in eval mode.

    Why: the running averages (momentum 0.1) trail the weights, and a few hundred fast steps move
    the weights enough that eval-mode outputs drift from what training optimised (on a toy, one
    seed in five flagged 77 % of the pixels at p > 0.5 with AUROC still 1.0). One pass over the
    whole labeled inputs fixes the statistics to the final weights and to what prediction sees."""
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


def predictor_step(net: nn.Module, optimizer: torch.optim.Optimizer, batch_p: torch.Tensor, batch_m: torch.Tensor,
                   rng: np.random.Generator, *, alpha: float, crop: int | None = None, colour_jitter: float = 0.0,
                   dice: bool = False, shrink: float = 0.0) -> None:
    """One step of the env's predictor recipe on a batch of (already dihedrally augmented)
    normalised profiles (B,C,S,S) and masks (B,S,S): one random crop x crop window for the whole
    batch (None: whole maps), colour jitter of the last 3 channels (0: off), l_pred (alpha-weighted
    BCE), divided by alpha plus soft Dice when `dice` (the U-Net baseline's loss), plus `shrink`
    times models.predictor.ranking_departure. Leaves `net` in eval mode."""
    if crop is not None:
        size = batch_p.shape[-1]
        top, left = rng.integers(0, size - crop + 1, size=2)
        batch_p = batch_p[..., top:top + crop, left:left + crop]
        batch_m = batch_m[..., top:top + crop, left:left + crop]
    if colour_jitter > 0:
        batch_p = jitter_rgb(batch_p, colour_jitter, rng)
    net.train()
    logits = net(batch_p)[:, 0]
    loss = weighted_bce(logits, batch_m, alpha)
    if dice:
        loss = loss / alpha + soft_dice_loss(logits, batch_m)
    if shrink > 0:  # leaving the profiles' mean ranking costs
        loss = loss + shrink * ranking_departure(net, batch_p, logits)
    _gradient_step(optimizer, loss)
    net.eval()
