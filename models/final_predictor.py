"""The final predictor (ours): fresh nets fit on the best moment's labeled loss profiles with the
U-Net baseline's recipe (models.fit), after the sampler has finished.

Why: during training the predictor takes one small step per AE update, on whatever the replay
buffer holds, with profiles that keep changing; it is there to score the sampler's batches, and by
the best moment it has seen each augmented view of the 5 labeled images only a few times. The
final predictor gives the method the U-Net baseline's full training on its own, richer input (the
best loss profiles, with the image in 'profile+rgb'). Its decision is the U-Net's: p > 0.5 of a
pos-weighted BCE + Dice net. What each of its settings was chosen on: docs/method.md.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import torch
from torch import nn

from common.seeding import torch_rng_from
from common.settings import ConfigError, check_fields, setting
from models.autoencoder import LOSS_ERRORS
from models.fit import FitConfig, fit_segmenter, loo_folds
from models.predictor import (ENSEMBLE_POOLS, PREDICTOR_ARCHS, FinalPool, ImageOnly, PredictorEnsemble,
                              ProfileMeanMember, build_predictor, predictor_input, probability_maps, profile_scale)


@dataclass
class FinalPredictorConfig:
    """How a run's exported predictor is made after training (runner.training.export)."""

    CONFIG_NAME: ClassVar[str] = "final"
    steps: int = setting(0, ge=0)
    """Adam steps of each fit (the U-Net baseline's recipe, models.fit). 0: export the predictor of
    the best moment, as the papers do"""
    members: int = setting(3, ge=1)
    """fits of the env predictor's shape and inputs, from different seeds, pooled: one fit on 5
    labeled images lands on a different calibration each seed"""
    image_members: int = setting(0, ge=0)
    """(predictor inputs 'profile+rgb') this many more fits that read the image only (ImageOnly):
    late fusion, so that what a U-Net gets from the image stays in the pool"""
    pool: str = setting("prob", choices=ENSEMBLE_POOLS)
    """how members are pooled: 'prob', the mean probability, or 'logit', the mean logit (every
    member's ranking counts in the tail; models.predictor.PredictorEnsemble)"""
    profile_member: bool = False
    """add a member that reads only the profiles' mean relative loss, through a logistic fit on
    the labeled profiles (ProfileMeanMember: two numbers)"""
    heldout: bool = False
    """also fit it once per labeled image on the other labeled images (leave-one-out,
    heldout_final_maps): their maps of the images left out decide whether the decision ends with
    the dense CRF (evaluation.decisions.choose_crf). Costs one fit per labeled image"""
    profile_dropout: float = setting(0.0, ge=0, lt=1)
    """('profile+rgb') probability that a training view's profile channels are zeroed"""
    choose: bool = False
    """(ours) choose the final map per run on D_l (evaluation.choice): the labeled images are split
    into `folds` groups, one net of each kind is fit per group on the others (cross_fit), and their
    out-of-fold maps choose among the profiles' member alone and pools of it with the nets, the
    threshold, the CRF and the image score. The fold nets are the final nets. Where D_l has too
    few defect images to judge (fold_groups), the profiles' member alone. members, image_members,
    pool, profile_member and heldout are then unused"""
    folds: int = setting(3, ge=2)
    """groups of labeled images for `choose` (at most one per labeled image)"""
    errors: tuple[str, ...] = setting(())
    """(with `choose`) the loss-map errors (models.autoencoder.LOSS_ERRORS) the final profiles may
    use besides the training ones: recomputed from the best moment's AE snapshots, the error (and
    raw or normalised mean) whose mean D_l profile ranks the labeled pixels best is used"""
    crf_margin: float = setting(0.02, ge=0)
    """(with `choose`) the dense CRF is kept only if it raises the out-of-fold F1 by this much"""
    arch: str | None = setting(None, choices=PREDICTOR_ARCHS)
    """the nets' architecture; None: the env predictor's (EnvConfig.predictor)"""
    inputs: str | None = setting(None, choices=("profile", "profile+rgb"))
    """what the nets read; None: the env predictor's"""
    width: int | None = setting(None, ge=1, le=512)
    """the nets' width; None: the env predictor's"""
    colour_jitter: float | None = setting(None, ge=0, lt=1)
    """colour jitter of their training; None: the env predictor's"""
    crop: int | None = setting(None, ge=8)
    """side of the training crops; None: half the image side (the U-Net baseline's, models.fit.default_crop)"""

    def __post_init__(self) -> None:
        check_fields(self)
        bad = [e for e in self.errors if e not in LOSS_ERRORS]
        if bad:
            raise ConfigError(f"final.errors={list(self.errors)}: {bad} not among {', '.join(LOSS_ERRORS)}")


@dataclass(frozen=True)
class PredictorShape:
    """The nets a final predictor is made of: the env predictor's shape (EnvConfig.predictor) and
    the profile length, plus the colour jitter of its training."""

    profile_length: int
    width: int
    inputs: str
    skip: bool
    arch: str
    colour_jitter: float


def _rgb(images: np.ndarray | None, device: torch.device) -> torch.Tensor | None:
    return None if images is None else torch.as_tensor(images, device=device).permute(0, 3, 1, 2).float() / 255.0


def refit_predictor(profiles: np.ndarray, images: np.ndarray | None, masks: np.ndarray, *, steps: int,
                    width: int, inputs: str, skip: bool, arch: str, colour_jitter: float = 0.2,
                    batch: int = 8, lr: float = 1e-3, max_pos_weight: float = 50.0, seed: int = 0,
                    profile_dropout: float = 0.0, device: str | torch.device = "cpu",
                    progress: str | None = None, crop: int | None = None) -> tuple[nn.Module, list[float]]:
    """Train a fresh predictor on labeled loss profiles; return it in eval mode and its losses.

    Args:
        profiles: raw loss profiles (n, T, H, W) of the labeled images at the best moment.
        images: uint8 RGB (n, H, W, 3) of the same images; needed when inputs is 'profile+rgb' or 'rgb'.
        masks: bool (n, H, W) defect masks.
        steps, batch, lr, max_pos_weight, colour_jitter: the few-shot recipe (models.fit.FitConfig).
        width, inputs, skip, arch: the predictor's shape (models.predictor.build_predictor); inputs
            'rgb' fits a net that reads the image only.
        profile_dropout: with 'profile+rgb', the probability that a view's profile channels are zeroed.
        seed: seeds the init and every crop and augmentation: the same seed on CPU, the same net.
    """
    if inputs in ("profile+rgb", "rgb") and images is None:
        raise ValueError(f"inputs {inputs!r} needs the labeled images")
    device = torch.device(device)
    rng = np.random.default_rng(seed)
    with torch.no_grad():  # an image-only fit ('rgb') reads the last 3 channels, as ImageOnly feeds it
        rgb = _rgb(images, device) if inputs in ("profile+rgb", "rgb") else None
        x = predictor_input(torch.as_tensor(profiles, dtype=torch.float32, device=device), rgb)
        x = x[:, -3:] if inputs == "rgb" else x
    y = torch.as_tensor(masks, dtype=torch.float32, device=device)
    norm = "batch" if arch == "unet" else "group"  # the U-Net baseline's BatchNorm, recomputed at the end
    with torch_rng_from(rng, device):
        net = build_predictor(profiles.shape[1], width, inputs, skip, arch, norm).to(device)
    fit = FitConfig(steps=steps, batch=batch, lr=lr, max_pos_weight=max_pos_weight, colour_jitter=colour_jitter,
                    crop=crop)
    losses = fit_segmenter(net, x, y, fit, rng, rgb_last=inputs in ("profile+rgb", "rgb"),
                           profile_dropout=profile_dropout, progress=progress)
    return net, losses


def _fit(profiles: np.ndarray, images: np.ndarray, masks: np.ndarray, shape: PredictorShape,
         final: FinalPredictorConfig, seed: int, device: str | torch.device, image_only: bool = False,
         progress: str | None = None) -> nn.Module:
    """One member: a fit of the shape's nets, or (image_only) of the same recipe on the image alone."""
    net, _ = refit_predictor(profiles, images, masks, steps=final.steps, width=shape.width,
                             inputs="rgb" if image_only else shape.inputs, skip=False if image_only else shape.skip,
                             arch=shape.arch, colour_jitter=shape.colour_jitter, seed=seed,
                             profile_dropout=0.0 if image_only else final.profile_dropout, device=device,
                             progress=progress, crop=final.crop)
    return ImageOnly(net) if image_only else net


def final_predictor(profiles: np.ndarray, images: np.ndarray, masks: np.ndarray, shape: PredictorShape,
                    final: FinalPredictorConfig, seed: int, device: str | torch.device = "cpu") -> nn.Module:
    """The final predictor of a run: final.members fits (member k seeded seed + 1000 k), then
    final.image_members image-only fits (seeded seed + 1000 k + 500), then, with
    final.profile_member, the profiles' mean fit on the same labeled images (fit_profile_member, no
    randomness): one net when there is one member, else their PredictorEnsemble pooled by final.pool."""
    n = final.members + final.image_members
    nets = [_fit(profiles, images, masks, shape, final, seed + 1000 * k, device,
                 progress=f"final predictor: fit {k + 1}/{n}") for k in range(final.members)]
    nets += [_fit(profiles, images, masks, shape, final, seed + 1000 * k + 500, device, image_only=True,
                  progress=f"final predictor: fit {final.members + k + 1}/{n} (image only)")
             for k in range(final.image_members)]
    if final.profile_member:
        nets.append(fit_profile_member(profiles, masks).to(device))
    return nets[0] if len(nets) == 1 else PredictorEnsemble(nets, final.pool)


def fit_profile_member(profiles: np.ndarray, masks: np.ndarray, ridge: float = 1e-4,
                       iterations: int = 100, raw: bool = False) -> ProfileMeanMember:
    """The ProfileMeanMember of labeled profiles (n, T, H, W) and masks (n, H, W): a and b of
    logit P(defect) = a log r + b, r = a pixel's mean relative loss (as the predictor normalises
    it), by unweighted logistic regression over every labeled pixel (Newton's method, float64;
    `ridge` on a keeps it finite when the pixels are separable). Unweighted, so p > 0.5 keeps its
    meaning in the pool: the member is a posterior, not a detector tuned to recall. Without both
    defect and normal pixels a stays 0 and b is the log-odds of the defect fraction (clipped)."""
    with torch.no_grad():  # log r exactly as the member reads it (its output with a = 1, b = 0)
        p = torch.as_tensor(profiles, dtype=torch.float32)
        z = ProfileMeanMember(profiles.shape[1], 1.0, 0.0, raw)(predictor_input(p), torch.log(profile_scale(p)))
        z = z.double().numpy().ravel()
    y = np.asarray(masks, dtype=np.float64).ravel()
    frac = float(np.clip(y.mean(), 1e-4, 1 - 1e-4))
    a, b = 0.0, float(np.log(frac / (1 - frac)))
    if 0 < y.sum() < len(y):
        for _ in range(iterations):
            with np.errstate(over="ignore"):  # exp -> inf gives p = 0, the right limit
                p = 1.0 / (1.0 + np.exp(-(a * z + b)))
            w = p * (1 - p)
            grad = np.array([((p - y) * z).mean() + ridge * a, (p - y).mean()])
            hess = np.array([[(w * z * z).mean() + ridge, (w * z).mean()], [(w * z).mean(), w.mean() + 1e-12]])
            step = np.linalg.solve(hess, grad)
            a, b = a - float(step[0]), b - float(step[1])
            if np.abs(step).max() < 1e-10:
                break
    return ProfileMeanMember(profiles.shape[1], a, b, raw)


def heldout_final_maps(profiles: np.ndarray, images: np.ndarray, masks: np.ndarray, shape: PredictorShape,
                       final: FinalPredictorConfig, seed: int,
                       device: str | torch.device = "cpu") -> tuple[np.ndarray, np.ndarray]:
    """Leave-one-out maps of the final predictor's recipe: for each labeled image k of
    models.fit.loo_folds, one fit (seeded seed + 7919 + k; with image members one of each kind,
    and the profiles' member when the final predictor has it, pooled as it pools) on the other
    labeled images predicts image k. Returns those (m, H, W) probability maps of images no fit saw
    and which labeled images they are of (m,): what the decision is chosen on without a D_u label."""
    rgb = _rgb(images, torch.device(device)) if shape.inputs == "profile+rgb" else None
    folds = loo_folds(masks)
    out = np.zeros((len(folds), *masks.shape[1:]), np.float32)
    for j, k in enumerate(folds):
        rest = [i for i in range(len(profiles)) if i != k]
        p, im, m = profiles[rest], None if images is None else images[rest], masks[rest]
        members = [_fit(p, im, m, shape, final, seed + 7919 + k, device)]
        if final.image_members:
            members.append(_fit(p, im, m, shape, final, seed + 7919 + 500 + k, device, image_only=True))
        if final.profile_member:
            members.append(fit_profile_member(p, m).to(device))
        net = members[0] if len(members) == 1 else PredictorEnsemble(members, final.pool)
        with torch.no_grad():
            out[j] = probability_maps(net, torch.as_tensor(profiles[k:k + 1], dtype=torch.float32),
                                      None if rgb is None else rgb[k:k + 1])[0].cpu().numpy()
    return out, np.asarray(folds, np.int64)


def fold_groups(masks: np.ndarray, folds: int) -> list[list[int]]:
    """Groups of labeled images for cross-fitting: defect images dealt round-robin over
    min(folds, images) groups, then the normal ones, so every group's complement holds a defect
    to learn from. [] when D_l has fewer than two defect images: no group could be judged by a
    fit that learned defects elsewhere."""
    has_defect = np.asarray(masks, bool).reshape(len(masks), -1).any(axis=1)
    defects, normals = list(np.flatnonzero(has_defect)), list(np.flatnonzero(~has_defect))
    if len(defects) < 2:
        return []
    k = min(folds, len(masks))
    groups: list[list[int]] = [[] for _ in range(k)]
    for j, i in enumerate(defects + normals):
        groups[j % k].append(int(i))
    return [sorted(g) for g in groups if g]


@dataclass
class CrossFit:
    """The fold nets of a cross-fit and their out-of-fold logits on the labeled images."""

    profile_nets: list[nn.Module]
    image_nets: list[nn.Module]
    logits: dict[str, np.ndarray]
    """'profile', 'image', 'member': (n, H, W) logits of each labeled image from the fold that held it out"""
    group_of: np.ndarray
    """(n,) the group each labeled image was held out in"""


@torch.no_grad()
def _logits(net: nn.Module, profiles: np.ndarray, rgb: torch.Tensor | None) -> np.ndarray:
    p = torch.as_tensor(profiles, dtype=torch.float32, device=rgb.device if rgb is not None else "cpu")
    x = predictor_input(p, rgb)
    out = net(x, torch.log(profile_scale(p))) if getattr(net, "reads_level", False) else net(x)
    return out[:, 0].double().cpu().numpy()


def cross_fit(profiles: np.ndarray, images: np.ndarray, masks: np.ndarray, shape: PredictorShape,
              final: FinalPredictorConfig, groups: list[list[int]], seed: int, raw_member: bool,
              device: str | torch.device = "cpu") -> CrossFit:
    """For each group g (fold_groups), one net of the shape's kind (seeded seed + 1000 g) and, with
    'profile+rgb' inputs, one image-only net (seed + 1000 g + 500) fit on the other labeled images
    by the final predictor's recipe, and the profiles' member fit on them too; each predicts the
    images of g. The nets are kept: together they are the final predictor's nets."""
    device = torch.device(device)
    rgb = _rgb(images, device) if shape.inputs == "profile+rgb" else None
    n = len(masks)
    logits = {k: np.zeros(masks.shape, np.float64) for k in ("profile", "image", "member")}
    group_of = np.full(n, -1)
    profile_nets, image_nets = [], []
    for g, held in enumerate(groups):
        rest = [i for i in range(n) if i not in held]
        p, im, m = profiles[rest], None if images is None else images[rest], masks[rest]
        label = f"final predictor: fold {g + 1}/{len(groups)}"
        net = _fit(p, im, m, shape, final, seed + 1000 * g, device, progress=f"{label}, profile net")
        profile_nets.append(net)
        logits["profile"][held] = _logits(net, profiles[held], None if rgb is None else rgb[held])
        if rgb is not None:
            img = _fit(p, im, m, shape, final, seed + 1000 * g + 500, device, image_only=True,
                       progress=f"{label}, image-only net")
            image_nets.append(img)
            logits["image"][held] = _logits(img, profiles[held], rgb[held])
        logits["member"][held] = _logits(fit_profile_member(p, m, raw=raw_member), profiles[held], None)
        group_of[held] = g
    if rgb is None:  # no image-only kind: its logits are the profile nets' (weight 0 in every pool that lacks it)
        logits["image"] = logits["profile"]
    return CrossFit(profile_nets, image_nets, logits, group_of)


def pooled(cross: CrossFit | None, member: ProfileMeanMember, weights: tuple[float, float, float]) -> FinalPool:
    """The final predictor of a choice: the member (fit on every labeled image) and the fold nets
    of the kinds the chosen weights use."""
    nets = (list(cross.profile_nets) if cross and weights[0] else [],
            list(cross.image_nets) if cross and weights[1] else [])
    if weights[1] and not nets[1] and cross is not None:  # no image-only nets (inputs 'profile'): none to weigh
        weights = (weights[0] + weights[1], 0.0, weights[2])
    return FinalPool(nets[0], nets[1], member, weights)
