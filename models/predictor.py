"""Dilated fully convolutional predictor: loss profile (T,H,W), optionally with the image's RGB,
-> anomaly logit map (1,H,W)."""
from __future__ import annotations

import itertools
import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from models.unet import UNet


class DilatedFCN(nn.Module):
    """3x3 convolutions with dilation rates 1, 2, 4, 8 (then 1) and a 1x1 head.

    The receptive field (about 35 px) lets a pixel's decision use how its loss evolved compared
    with its neighbourhood, while the net stays small enough to train one step per AE update.
    Outputs logits; apply a sigmoid for probabilities.

    skip_channels > 0 (the first that many input channels being the mean-normalised profile):
    the logit is s * log(mean over those channels) + the convolutions' output, with s > 0
    learned and the head initialised to zero. At initialisation the output is then a monotone
    function of the pixel's mean relative loss, so it ranks pixels exactly as the plain mean
    profile does; training refines that ranking instead of having to rediscover it from a few
    labeled images (without it, on the built-in brick with one defect image in D_l, the predictor
    memorised that image and ranked D_u at chance while the mean profile gave AUROC 0.74).
    """

    def __init__(self, in_channels: int = 20, width: int = 32,
                 dilations: tuple[int, ...] = (1, 2, 4, 8, 1), skip_channels: int = 0) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        cin = in_channels
        for d in dilations:
            layers += [nn.Conv2d(cin, width, 3, padding=d, dilation=d), nn.ReLU(inplace=True)]
            cin = width
        self.body = nn.Sequential(*layers)
        self.head = nn.Conv2d(width, 1, 1)
        self.skip_channels = skip_channels
        if skip_channels:
            self.skip_scale = _init_skip(self.head)

    def forward(self, profiles: torch.Tensor) -> torch.Tensor:
        out = self.head(self.body(profiles))
        if self.skip_channels:
            out = out + profile_skip(profiles, self.skip_channels, self.skip_scale)
        return out


def _init_skip(head: nn.Conv2d) -> nn.Parameter:
    """Zero the head (the convolutions start as a no-op on the logit) and return the skip's
    scale parameter, softplus(scale) = 1 at initialisation."""
    nn.init.zeros_(head.weight)
    nn.init.zeros_(head.bias)
    return nn.Parameter(torch.tensor(math.log(math.e - 1.0)))


def profile_skip(x: torch.Tensor, channels: int, scale: torch.Tensor) -> torch.Tensor:
    """softplus(scale) * log(mean of the first `channels` input channels): the skip path's logit,
    monotone in the pixel's mean relative loss."""
    relative = x[:, :channels].mean(dim=1, keepdim=True)
    return F.softplus(scale) * torch.log(relative.clamp_min(1e-6))


def prior_logit(masks: np.ndarray, alpha: float) -> float | None:
    """The constant logit that minimises weighted_bce on these masks: log(pi / (alpha (1 - pi)))
    with pi their anomalous pixel fraction; 0 when alpha is their pixel ratio (chu2020). None when
    the masks hold one class only (no constant is finite)."""
    pos = np.count_nonzero(masks)
    neg = masks.size - pos
    if pos == 0 or neg == 0:
        return None
    return math.log(pos / neg / alpha)  # pi / (1 - pi) = pos / neg; exactly 0 at alpha = pos / neg


def set_prior_bias(net: nn.Module, logit: float) -> None:
    """Shift a DilatedFCN's or UNetPredictor's output by the constant `logit` (its head's bias; with
    the skip path, whose head starts at zero, the convolutions' share then starts at exactly that).

    Why: under a weighted BCE whose optimum level is far from 0 (noghredeh2025's alpha ~1 with
    defects on 0.5 % of D_l's pixels: logit -5), Adam moves the one bias parameter ~lr per step
    while the head's many weights move together, so the net first lowers its output through
    features that grow with the loss (most high-loss pixels are normal) and ranks pixels upside
    down: on the built-in brick, a predictor trained on the D_l profiles of three noghredeh2025
    runs ranked its own D_l pixels at AUROC 0.007-0.10 after 20 steps, at 0.83-0.99 when started
    at this level (docs/results/papers-predictor-vs-profiles-mean.md)."""
    head = net.net.head if isinstance(net, UNetPredictor) else net.head
    with torch.no_grad():
        head.bias.fill_(logit)


def skip_logits(net: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The skip path's share (B,1,H,W) of net(x) for a DilatedFCN or UNetPredictor built with
    one; zeros for a net without. net(x) minus this is what the convolutions add to the profiles'
    mean ranking (the part EnvConfig.predictor_shrink penalises)."""
    channels = getattr(net, "skip_channels", 0)
    if not channels:
        return torch.zeros_like(x[:, :1])
    return profile_skip(x, channels, net.skip_scale)


def ranking_departure(net: nn.Module, x: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
    """The mean square over all pixels of the batch of what net's convolutions add to its skip path
    (logits = net(x)[:, 0]): how far the net has moved from the profiles' mean ranking (and level).
    EnvConfig.predictor_shrink weighs it in the predictor's training loss."""
    return (logits - skip_logits(net, x)[:, 0]).pow(2).mean()


class UNetPredictor(nn.Module):
    """The predictor as a U-Net (models.unet.UNet with GroupNorm, the U-Net baseline's shape) on
    the same inputs and with the same skip path as DilatedFCN: a supervised U-Net's capacity and
    context, plus the loss profile. Sides need not be multiples of 2**depth: inputs are
    reflect-padded and the logits cropped back. norm='group' inside the env, which evaluates the
    net between single training steps; 'batch' for the final predictor (envs.refit), trained once
    as the U-Net baseline is and its statistics then recomputed."""

    def __init__(self, in_channels: int, width: int = 16, depth: int = 3, skip_channels: int = 0,
                 norm: str = "group") -> None:
        super().__init__()
        self.net = UNet(width, depth, in_channels, norm=norm)
        self.norm = norm
        self.skip_channels = skip_channels
        if skip_channels:
            self.skip_scale = _init_skip(self.net.head)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        m = self.net.multiple
        ph, pw = (-h) % m, (-w) % m
        padded = F.pad(x, (0, pw, 0, ph), mode="reflect") if (ph or pw) else x
        out = self.net(padded)[..., :h, :w]
        if self.skip_channels:
            out = out + profile_skip(x, self.skip_channels, self.skip_scale)
        return out


ENSEMBLE_POOLS = ("prob", "logit")


class PredictorEnsemble(nn.Module):
    """Members trained alike from different seeds; the output is one logit map. Used for the final
    predictor (envs.refit): one fit on 5 labeled images lands on a different calibration each
    seed (on brick, p > 0.5 gave F1 0.09 to 0.63 for the same profiles), and a pool of a few is
    steadier and ranks better.

    `pool` 'prob': the logit of the members' mean probability. 'logit': the mean of their logits
    (the geometric mean of their odds). The probability mean lets the most confident member rank
    the many pixels every member calls normal (a member's 1e-3 drowns another's 1e-6), so the pool
    ranked pixels worse than most of its members (built-in brick seed 0: members 0.77 to 0.83
    pixel AUROC, their probability mean 0.773, their logit mean 0.803)."""

    def __init__(self, members: list[nn.Module], pool: str = "prob") -> None:
        super().__init__()
        if pool not in ENSEMBLE_POOLS:
            raise ValueError(f"ensemble pool must be one of {ENSEMBLE_POOLS}, got {pool!r}")
        self.members = nn.ModuleList(members)
        self.pool = pool

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits = torch.stack([m(x) for m in self.members])
        if self.pool == "logit":
            return logits.mean(dim=0)
        return torch.logit(torch.sigmoid(logits).mean(dim=0), eps=1e-6)


class ProfileMeanMember(nn.Module):
    """A member that reads only the mean over the profile of a pixel's relative loss r (the first
    `profile_length` input channels, mean-normalised by predictor_input): logit = a log r + b.
    With `raw`, it reads the raw mean loss instead, log r + log(the profile's mean loss) (the
    `level` that probability_maps passes to nets that ask for it): the profiles' plain mean,
    as evaluate.py's "Recon. error of the loss profiles" row ranks pixels across images.

    a and b are fit on the labeled profiles by logistic regression
    (models.final_predictor.fit_profile_member): two numbers, well determined even by one defect
    image, so the plain reconstruction-error signal of the profiles reaches the pooled output,
    where nets fit on 5 labeled images can drop it."""

    def __init__(self, profile_length: int, a: float = 0.0, b: float = 0.0, raw: bool = False) -> None:
        super().__init__()
        self.profile_length = profile_length
        self.raw = raw
        self.register_buffer("a", torch.tensor(float(a)))
        self.register_buffer("b", torch.tensor(float(b)))

    @property
    def reads_level(self) -> bool:
        return self.raw

    def forward(self, x: torch.Tensor, level: torch.Tensor | None = None) -> torch.Tensor:
        r = torch.log(x[:, :self.profile_length].mean(dim=1, keepdim=True).clamp_min(1e-8))
        if self.raw:
            if level is None:
                raise ValueError("a raw profile member needs the profiles' level (log of their mean loss)")
            r = r + level
        return self.a * r + self.b


class FinalPool(nn.Module):
    """The final predictor a run chose on D_l (evaluation.choice): a weighted sum of the mean logit
    of each kind of member: nets that read the profiles (and the image), nets that read the image
    only (ImageOnly), and the profiles' member. Kinds with weight 0 hold no nets."""

    def __init__(self, profile_nets: list[nn.Module], image_nets: list[nn.Module], member: ProfileMeanMember,
                 weights: tuple[float, float, float]) -> None:
        super().__init__()
        self.profile_nets, self.image_nets = nn.ModuleList(profile_nets), nn.ModuleList(image_nets)
        self.member = member
        self.register_buffer("weights", torch.tensor([float(w) for w in weights]))

    @property
    def reads_level(self) -> bool:
        return self.member.reads_level

    def forward(self, x: torch.Tensor, level: torch.Tensor | None = None) -> torch.Tensor:
        out = self.weights[2] * self.member(x, level)
        for w, nets in zip(self.weights[:2], (self.profile_nets, self.image_nets)):
            if len(nets):
                out = out + w * torch.stack([n(x) for n in nets]).mean(dim=0)
        return out


class ImageOnly(nn.Module):
    """A member that reads only the last 3 input channels (the RGB) of a 'profile+rgb' input:
    an image-only net (built with inputs 'rgb') that can sit in a PredictorEnsemble beside
    members that read the profiles (the final predictor's predictor_refit_image_members)."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x[:, -3:])


def normalize_profiles(profiles: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """Divide each profile (B,T,H,W) by its own mean, so the predictor sees relative loss.

    Absolute loss levels drift as the AE trains and after every re-init; the ratio to the mean is
    what tells an anomalous pixel from a normal one.
    """
    return profiles / profile_scale(profiles, eps)


def profile_scale(profiles: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """The divisor of normalize_profiles, (B,1,1,1): each profile's mean (+ eps). The replay
    buffer keeps it to rebuild a normalised profile from its raw loss maps exactly."""
    return profiles.mean(dim=(1, 2, 3), keepdim=True) + eps


def predictor_input(profiles: torch.Tensor, rgb: torch.Tensor | None = None) -> torch.Tensor:
    """What the predictor reads: the mean-normalised profiles (B,T,H,W), followed by the images'
    RGB (B,3,H,W) in [0, 1] when the predictor also sees the image (predictor_inputs
    'profile+rgb'). Training (the env) and inference (evaluate.py) both build it here."""
    x = normalize_profiles(profiles)
    return x if rgb is None else torch.cat([x, rgb.to(x.dtype)], dim=1)


def input_channels(profile_length: int, inputs: str = "profile") -> int:
    """Input channels of the predictor for a profile length and an inputs mode ('rgb': the
    image only, for ImageOnly members of a final predictor)."""
    if inputs == "rgb":
        return 3
    return profile_length + (3 if inputs == "profile+rgb" else 0)


PREDICTOR_ARCHS = ("dilated", "unet")


def build_predictor(profile_length: int, width: int, inputs: str = "profile", skip: bool = False,
                    arch: str = "dilated", norm: str = "group") -> nn.Module:
    """The predictor for a profile length, width, inputs mode, skip path and architecture (and
    the U-Net's normalisation): the one constructor training (the env, envs.refit) and inference
    (evaluate.py) share."""
    cin, skip_channels = input_channels(profile_length, inputs), (profile_length if skip and inputs != "rgb" else 0)
    if arch == "unet":
        return UNetPredictor(cin, width, skip_channels=skip_channels, norm=norm)
    if arch != "dilated":
        raise ValueError(f"predictor arch must be one of {PREDICTOR_ARCHS}, got {arch!r}")
    return DilatedFCN(cin, width, skip_channels=skip_channels)


def predictor_from_saved(saved: dict, device: str | torch.device = "cpu") -> nn.Module:
    """The predictor stored in a predictor.pt or a bundle (its state dict plus the fields
    build_predictor needs; `ensemble` members, if any, pooled by `pool` (default 'prob'), the last
    `image_members` of the nets image-only, followed by a ProfileMeanMember when `profile_member`;
    or, with pool 'final', a FinalPool of `profile_nets` and `image_nets` nets and a member that
    reads the raw mean when `member_raw`, weighted by `weights`), in eval mode on `device`."""
    def member(image_only: bool = False) -> nn.Module:
        if image_only:
            return ImageOnly(build_predictor(saved["profile_length"], saved["width"], "rgb", False,
                                             saved.get("arch", "dilated"), saved.get("norm", "group")))
        return build_predictor(saved["profile_length"], saved["width"], saved.get("inputs", "profile"),
                               saved.get("skip", False), saved.get("arch", "dilated"), saved.get("norm", "group"))

    if saved.get("pool") == "final":  # a FinalPool (a run that chose its final map on D_l)
        net = FinalPool([member() for _ in range(int(saved["profile_nets"]))],
                        [member(image_only=True) for _ in range(int(saved["image_nets"]))],
                        ProfileMeanMember(saved["profile_length"], raw=bool(saved["member_raw"])),
                        tuple(saved["weights"]))
        net.load_state_dict(saved["state_dict"])
        return net.to(device).eval()
    k, m = int(saved.get("ensemble", 1)), int(saved.get("image_members", 0))
    if not 0 <= m < k or (m and saved.get("inputs") != "profile+rgb"):
        raise ValueError(f"image_members={m} needs a 'profile+rgb' ensemble of more than {m} members "
                         f"(ensemble={k}, inputs={saved.get('inputs')!r})")
    nets = [member(i >= k - m) for i in range(k)]
    if saved.get("profile_member", False):
        nets.append(ProfileMeanMember(saved["profile_length"]))
    net = nets[0] if len(nets) == 1 else PredictorEnsemble(nets, saved.get("pool", "prob"))
    net.load_state_dict(saved["state_dict"])
    return net.to(device).eval()


@torch.no_grad()
def probability_maps(net: nn.Module, profiles: torch.Tensor, rgb: torch.Tensor | None = None,
                     batch: int = 8) -> torch.Tensor:
    """Anomaly probabilities (n,H,W) of a predictor on raw loss profiles (n,T,H,W), with the
    images' RGB (n,3,H,W) in [0, 1] for a predictor that reads it; in batches, on the net's device."""
    device = next(itertools.chain(net.parameters(), net.buffers())).device  # a ProfileMeanMember has buffers only
    out = []
    for k in range(0, len(profiles), batch):
        p = profiles[k:k + batch].to(device)
        x = predictor_input(p, None if rgb is None else rgb[k:k + batch].to(device))
        logits = net(x, torch.log(profile_scale(p))) if getattr(net, "reads_level", False) else net(x)
        out.append(torch.sigmoid(logits)[:, 0])
    return torch.cat(out) if out else torch.zeros(0, *profiles.shape[2:], device=device)


def soft_dice_loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """1 - soft Dice pooled over the batch (smoothing 1), as the U-Net baseline's loss adds it:
    it scores the overlap as a whole, so it does not care that defects are rare."""
    p = torch.sigmoid(logits)
    target = target.to(p.dtype)
    return 1 - (2 * (p * target).sum() + 1) / (p.sum() + target.sum() + 1)


def segmentation_loss(logits: torch.Tensor, target: torch.Tensor, pos_weight: float) -> torch.Tensor:
    """BCE with logits (anomalous pixels weighted by pos_weight) + soft Dice over the batch.

    BCE gives per-pixel gradients; Dice scores the overlap as a whole, so it does not care that
    defects are rare. Dice is pooled over the batch (smoothing 1) so a crop without defect pixels
    simply pushes its probabilities to 0 instead of being undefined."""
    bce = F.binary_cross_entropy_with_logits(
        logits, target, pos_weight=torch.tensor(pos_weight, device=logits.device))
    return bce + soft_dice_loss(logits, target)


def weighted_bce(logits: torch.Tensor, target: torch.Tensor, alpha: float) -> torch.Tensor:
    """l_pred = -mean_k mean_{w,h} [y log p + alpha (1-y) log(1-p)], computed from logits.

    Averaged first over each image's pixels, then over the batch, as the spec says; alpha
    down-weights the (far more numerous) normal pixels.
    """
    target = target.to(logits.dtype)
    per_pixel = -(target * F.logsigmoid(logits) + alpha * (1 - target) * F.logsigmoid(-logits))
    return per_pixel.flatten(1).mean(dim=1).mean()
