"""The final predictor (ours): a fresh predictor fit on the best moment's labeled loss profiles
with the U-Net baseline's recipe, after the sampler has finished.

Why: during training the predictor takes one small step per AE update, on whatever the replay
buffer holds, with profiles that keep changing; it is there to score the sampler's batches, and by
the best moment it has seen each augmented view of the 5 labeled images only a few times. The
U-Net baseline, trained for 600 steps on augmented crops of the same 5 images, beat it everywhere
(brick pixel AUROC 0.87 against 0.77). The final predictor gives the method that same training on
its own, richer input (the best loss profiles, with the image in 'profile+rgb'), so the method sees
everything the U-Net sees and the profiles on top. Its decision is the U-Net's: p > 0.5 of a
pos-weighted BCE + Dice net.
"""
from __future__ import annotations

import numpy as np
import torch

from baselines.unet import default_crop, recompute_batch_norm
from common.seeding import torch_rng_from
from envs.config import EnvConfig
from models.predictor import (ImageOnly, PredictorEnsemble, ProfileMeanMember, build_predictor, predictor_input,
                              probability_maps, segmentation_loss)


def jitter_rgb(batch: torch.Tensor, amount: float, rng: np.random.Generator) -> torch.Tensor:
    """Per sample, scale brightness, contrast and saturation of the last 3 (RGB) channels of a
    (B,C,H,W) batch by factors in [1 - amount, 1 + amount], as the U-Net baseline's augmentation
    does; the other channels (the loss profile) are left alone."""
    f = torch.as_tensor(rng.uniform(1 - amount, 1 + amount, size=(len(batch), 3, 1, 1, 1)),
                        dtype=batch.dtype, device=batch.device)
    rgb = batch[:, -3:] * f[:, 0]
    luma = torch.tensor([0.299, 0.587, 0.114], dtype=batch.dtype, device=batch.device).view(1, 3, 1, 1)
    gray = (rgb * luma).sum(1, keepdim=True)
    rgb = (rgb - gray.mean(dim=(2, 3), keepdim=True)) * f[:, 1] + gray.mean(dim=(2, 3), keepdim=True)
    gray = (rgb * luma).sum(1, keepdim=True)
    rgb = ((rgb - gray) * f[:, 2] + gray).clamp(0.0, 1.0)
    return torch.cat([batch[:, :-3], rgb], dim=1)


def refit_predictor(profiles: np.ndarray, images: np.ndarray | None, masks: np.ndarray, *, steps: int,
                    width: int, inputs: str, skip: bool, arch: str, colour_jitter: float = 0.2,
                    batch: int = 8, lr: float = 1e-3, max_pos_weight: float = 50.0, seed: int = 0,
                    profile_dropout: float = 0.0,
                    device: str | torch.device = "cpu") -> tuple[torch.nn.Module, list[float]]:
    """Train a fresh predictor on labeled loss profiles; return it in eval mode and its losses.

    Args:
        profiles: raw loss profiles (n, T, H, W) of the labeled images at the best moment.
        images: uint8 RGB (n, H, W, 3) of the same images; needed when inputs is 'profile+rgb'.
        masks: bool (n, H, W) defect masks.
        steps, batch, lr, max_pos_weight: the U-Net baseline's optimisation (baselines.unet.UNetConfig):
            Adam, random crops of half the image side with flips and 90-degree rotations, BCE with
            anomalous pixels weighted by #normal / #anomalous (capped), plus soft Dice.
        width, inputs, skip, arch: the predictor's shape (models.predictor.build_predictor).
        colour_jitter: brightness/contrast/saturation jitter of the RGB channels (0 = off).
        profile_dropout: with 'profile+rgb', the probability that a training crop's profile
            channels are zeroed, so that the net must also segment from the image alone and
            cannot lean on profiles that do not separate the defects (0 = off).
        seed: seeds the init and every crop and augmentation: the same seed on CPU, the same net.
    """
    if inputs in ("profile+rgb", "rgb") and images is None:
        raise ValueError(f"inputs {inputs!r} needs the labeled images")
    device = torch.device(device)
    rng = np.random.default_rng(seed)
    n, length, height, width_px = profiles.shape
    rgb = None
    if inputs in ("profile+rgb", "rgb"):
        rgb = torch.as_tensor(images, device=device).permute(0, 3, 1, 2).float() / 255.0
    with torch.no_grad():  # an image-only fit ('rgb') reads the last 3 channels, as ImageOnly feeds it
        x = predictor_input(torch.as_tensor(profiles, dtype=torch.float32, device=device), rgb)
        x = x[:, -3:] if inputs == "rgb" else x
    y = torch.as_tensor(masks, dtype=torch.float32, device=device)
    n_pos = float(y.sum())
    pos_weight = float(np.clip((y.numel() - n_pos) / max(n_pos, 1.0), 1.0, max_pos_weight))
    norm = "batch" if arch == "unet" else "group"  # the U-Net baseline's BatchNorm, recomputed below
    with torch_rng_from(rng, device):
        net = build_predictor(length, width, inputs, skip, arch, norm).to(device)
    multiple = getattr(getattr(net, "net", None), "multiple", 1)
    crop = default_crop(height, width_px, max(int(np.log2(multiple)), 0))
    optimizer = torch.optim.Adam(net.parameters(), lr=lr)
    losses: list[float] = []
    net.train()
    for _ in range(steps):
        xs, ys = [], []
        for i in rng.integers(n, size=batch):
            top, left = int(rng.integers(height - crop + 1)), int(rng.integers(width_px - crop + 1))
            xi, yi = x[i, :, top:top + crop, left:left + crop], y[i, top:top + crop, left:left + crop]
            if rng.random() < 0.5:
                xi, yi = xi.flip(-1), yi.flip(-1)
            if rng.random() < 0.5:
                xi, yi = xi.flip(-2), yi.flip(-2)
            k = int(rng.integers(4))
            xs.append(torch.rot90(xi, k, (-2, -1)))
            ys.append(torch.rot90(yi, k, (-2, -1)))
        xb, yb = torch.stack(xs), torch.stack(ys)[:, None]
        if colour_jitter > 0 and inputs in ("profile+rgb", "rgb"):
            xb = jitter_rgb(xb, colour_jitter, rng)
        if profile_dropout > 0 and inputs == "profile+rgb":
            keep = torch.as_tensor(rng.random(len(xb)) >= profile_dropout, dtype=xb.dtype, device=device)
            xb = torch.cat([xb[:, :-3] * keep.view(-1, 1, 1, 1), xb[:, -3:]], dim=1)
        loss = segmentation_loss(net(xb), yb, pos_weight)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        losses.append(float(loss.detach()))
    recompute_batch_norm(net, (x[k:k + batch] for k in range(0, n, batch)))  # as the U-Net's
    return net, losses


def final_predictor(profiles: np.ndarray, images: np.ndarray, masks: np.ndarray, config: EnvConfig, seed: int,
                    device: str | torch.device = "cpu") -> torch.nn.Module:
    """The final predictor of a run: config.predictor_refit_members fits (refit_predictor with
    the config's predictor shape, steps and colour jitter; member k seeded seed + 1000 k), then
    config.predictor_refit_image_members image-only fits (ImageOnly; seeded seed + 1000 k + 500),
    then, with predictor_refit_profile_member, the profiles' mean fit on the same labeled images
    (fit_profile_member, no randomness), as one net when there is one member, else their
    PredictorEnsemble pooled by predictor_refit_pool."""
    c = config
    nets = [refit_predictor(profiles, images, masks, steps=c.predictor_refit_steps, width=c.predictor_width,
                            inputs=c.predictor_inputs, skip=c.predictor_skip, arch=c.predictor_arch,
                            colour_jitter=c.predictor_colour_jitter, seed=seed + 1000 * k,
                            profile_dropout=c.predictor_refit_profile_dropout, device=device)[0]
            for k in range(c.predictor_refit_members)]
    nets += [ImageOnly(image_fit(profiles, images, masks, c, seed + 1000 * k + 500, device))
             for k in range(c.predictor_refit_image_members)]
    if c.predictor_refit_profile_member:
        nets.append(fit_profile_member(profiles, masks).to(device))
    return nets[0] if len(nets) == 1 else PredictorEnsemble(nets, c.predictor_refit_pool)


def fit_profile_member(profiles: np.ndarray, masks: np.ndarray, ridge: float = 1e-4,
                       iterations: int = 100) -> ProfileMeanMember:
    """The ProfileMeanMember of labeled profiles (n, T, H, W) and masks (n, H, W): a and b of
    logit P(defect) = a log r + b, r = a pixel's mean relative loss (as the predictor normalises
    it), by unweighted logistic regression over every labeled pixel (Newton's method, float64;
    `ridge` on a keeps it finite when the pixels are separable). Unweighted, so p > 0.5 keeps its
    meaning in the pool: the member is a posterior, not a detector tuned to recall. Without both
    defect and normal pixels a stays 0 and b is the log-odds of the defect fraction (clipped)."""
    with torch.no_grad():  # log r exactly as the member reads it (its output with a = 1, b = 0)
        x = predictor_input(torch.as_tensor(profiles, dtype=torch.float32))
        z = ProfileMeanMember(profiles.shape[1], 1.0, 0.0)(x).double().numpy().ravel()
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
    return ProfileMeanMember(profiles.shape[1], a, b)


def image_fit(profiles: np.ndarray, images: np.ndarray, masks: np.ndarray, config: EnvConfig, seed: int,
              device: str | torch.device = "cpu") -> torch.nn.Module:
    """One image-only fit of the final predictor's recipe (inputs 'rgb', no profile skip path)."""
    c = config
    return refit_predictor(profiles, images, masks, steps=c.predictor_refit_steps, width=c.predictor_width,
                           inputs="rgb", skip=False, arch=c.predictor_arch, colour_jitter=c.predictor_colour_jitter,
                           seed=seed, device=device)[0]


def heldout_final_maps(profiles: np.ndarray, images: np.ndarray, masks: np.ndarray, config: EnvConfig, seed: int,
                       device: str | torch.device = "cpu") -> tuple[np.ndarray, np.ndarray]:
    """Leave-one-out maps of the final predictor's recipe: for each labeled image k whose fold
    still has defects to learn from, one fit (refit_predictor with the config's shape, steps and
    jitter; seeded seed + 7919 + k) on the other labeled images predicts image k. Returns those
    (m, H, W) probability maps of images no fit saw, and which labeled images they are of (m,):
    what the method's decision (evaluation.decisions.choose_crf) is chosen on without a D_u label.
    One member per fold, not the ensemble (with image members: one of each kind, averaged): a
    fraction of the cost, the same recipe. With a single
    defect image in D_l its own fold has nothing to learn from and the other folds hold no defect
    to judge with, so no fold is fit (m = 0; the masks are then p > 0.5 without the CRF)."""
    c = config
    rgb = None
    if c.predictor_inputs == "profile+rgb":
        rgb = torch.as_tensor(images, device=device).permute(0, 3, 1, 2).float() / 255.0
    folds = [k for k in range(len(profiles)) if np.delete(masks, k, axis=0).any()]
    if not masks[folds].any():  # no held-out defect could judge the CRF: spare the fits
        folds = []
    out = np.zeros((len(folds), *masks.shape[1:]), np.float32)
    for j, k in enumerate(folds):
        rest = [i for i in range(len(profiles)) if i != k]
        net, _ = refit_predictor(profiles[rest], None if images is None else images[rest], masks[rest],
                                 steps=c.predictor_refit_steps, width=c.predictor_width, inputs=c.predictor_inputs,
                                 skip=c.predictor_skip, arch=c.predictor_arch, colour_jitter=c.predictor_colour_jitter,
                                 seed=seed + 7919 + k, profile_dropout=c.predictor_refit_profile_dropout, device=device)
        members = [net]  # the final predictor's mix: one member of each kind
        if c.predictor_refit_image_members:
            members.append(ImageOnly(image_fit(profiles[rest], images[rest], masks[rest], c, seed + 7919 + 500 + k,
                                               device)))
        if c.predictor_refit_profile_member:
            members.append(fit_profile_member(profiles[rest], masks[rest]).to(device))
        if len(members) > 1:
            net = PredictorEnsemble(members, c.predictor_refit_pool)
        with torch.no_grad():
            out[j] = probability_maps(net, torch.as_tensor(profiles[k:k + 1], dtype=torch.float32),
                                      None if rgb is None else rgb[k:k + 1])[0].cpu().numpy()
    return out, np.asarray(folds, np.int64)
