"""Configuration of the batch-sampling environment: one dataclass per part of the env, with working
defaults, grouped in EnvConfig.

    EnvConfig
      sampler      what the agent picks and sees: patch size, moves, episode length, observation
      ae           the autoencoder's shape (models.autoencoder.AEConfig)
      ae_training  its optimiser, re-initialisation cycle, warm-up and pretraining
      profiles     how loss maps are computed and how many are kept per image (T)
      predictor    the in-training predictor, its loss (l_pred, alpha) and its replay buffer
      rewards      the sampler's reward terms and the beta schedule
      device

Every field is range-checked when its group is built (common.settings), whichever way the value
came in. `ENV_PRESETS` holds the env part of each published system; the full presets (with the
final predictor and the AE probe) are runner.presets.PRESETS. Why each preset has its values:
docs/method.md.

Memory the env holds, for image side S, profile length T, n_l labeled and n_u unlabeled images
(float32 unless said):
  - labeled loss profiles      n_l * T * S^2 * 4 B
  - replay buffer              the raw D_l loss maps its entries span: at most
                               (buffer_size + 2 * T * n_l) * S^2 * 4 B (S=128, T=20, 512, n_l=5: 47 MB)
  - AE weight snapshots        2 * T * |AE| (current ring and the best one; ~2.4 MB each at S=128)
  - unlabeled profiles: none while training ("snapshots" mode); n_u * T * S^2 * 4 B in "eager"
    mode, twice (current and best).
"""
from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any, ClassVar

from common.settings import ConfigError, check_fields, from_dict, setting, to_dict, with_overrides
from data.config import DataConfig  # noqa: F401 - re-exported: envs.config.DataConfig
from models.autoencoder import LOSS_ERRORS, AEConfig
from models.predictor import PREDICTOR_ARCHS

STATES = ("chu2020", "noghredeh2025")
COVER_REWARDS = ("bonus", "frequency", "balance")
PREDICTOR_INPUTS = ("profile", "profile+rgb")
PRED_REWARDS = ("level", "improvement")
#: Largest image side the env accepts: its per-image maps and profiles grow with the side squared.
MAX_IMAGE_SIZE = 2048


@dataclass
class SamplerConfig:
    """What the agent picks and sees."""

    CONFIG_NAME: ClassVar[str] = "sampler"
    patch_size: int | None = setting(None, ge=8, power_of_two=True)
    """AE training patch side (a power of two); None = the largest power of two <= image side /
    patch_divisor, at least 8 (64 at 256 px with the default 4, as in the papers)"""
    patch_divisor: int = setting(4, ge=1)
    """image side / patch_divisor bounds the default patch_size: a ratio, so one preset fits every
    image size (2 in `ours`: half-image patches)"""
    stride: int | None = setting(None, ge=1)
    """centre shift of actions 0-7; None = patch_size // 2"""
    patches_per_update: int = setting(32, ge=1)
    """N: patches chosen per AE update = steps per episode"""
    observation: str = setting("image", choices=("image", "crop"))
    """'image': maps of the whole current image; 'crop': a crop_size window around the patch"""
    crop_size: int = setting(64, ge=8)
    """side of the observation window when observation == 'crop'"""
    loss_obs_clip: float = setting(10.0, gt=0)
    """the observed loss map is loss / mean(loss of the image), clipped to [0, loss_obs_clip]"""
    state: str = setting("chu2020", choices=STATES)
    """which maps the sampler sees. 'chu2020': rgb, loss, history (covered or not), patch (5+1
    channels); 'noghredeh2025': rgb, fused (fused_weights . (ARE, local variance, Sobel), min-max
    normalised), history as visit frequency, previous_loss (the ARE before the last AE update): 6"""
    fused_weights: tuple[float, float, float] = setting((0.7, 0.1, 0.2))
    """weights of (ARE, local variance, Sobel magnitude) in the fused map (noghredeh2025)"""
    variance_sigma: float = setting(2.0, gt=0)
    """Gaussian blur sigma (px) of the local variance Blur(x^2) - Blur(x)^2 (ours)"""

    def __post_init__(self) -> None:
        check_fields(self)
        if len(self.fused_weights) != 3:
            raise ConfigError(f"sampler.fused_weights={list(self.fused_weights)}: needs 3 weights (ARE, variance, Sobel)")


@dataclass
class AETrainingConfig:
    """How the AE is trained: optimiser, re-initialisation cycle, warm-up and pretraining."""

    CONFIG_NAME: ClassVar[str] = "ae_training"
    lr: float = setting(1e-3, gt=0, le=1)
    """Adam learning rate of the AE"""
    reinit_every: int = setting(200, ge=1)
    """K: AE updates between re-initialisations"""
    warmup_updates: int = setting(20, ge=0)
    """M: updates after each re-init done inside the env with uniformly random patches"""
    pretrain_steps: int = setting(0, ge=0)
    """AE steps on random patches of anomaly-free images (train/good) before the loop; every
    re-init then restarts from these weights (noghredeh2025: 500 (ours)). Without train/good
    images (CrackForest) the patches come from all images, labeled anomalies excluded"""

    def __post_init__(self) -> None:
        check_fields(self)
        if self.warmup_updates >= self.reinit_every:
            raise ConfigError(f"ae_training.warmup_updates={self.warmup_updates}: must be smaller than "
                              f"ae_training.reinit_every ({self.reinit_every})")


@dataclass
class ProfileConfig:
    """How the per-pixel loss maps are computed, and the loss profiles they make."""

    CONFIG_NAME: ClassVar[str] = "profiles"
    length: int = setting(20, ge=1, le=1000)
    """T: loss maps kept per image (FIFO)"""
    error: str = setting("squared", choices=LOSS_ERRORS)
    """the per-pixel error of a loss map (models.autoencoder.loss_map): 'squared' (chu2020),
    'absolute' |x - x_hat| (noghredeh2025) or 'ssim' ((1 - SSIM) / 2, as the AE-SSIM baseline scores)"""
    mode: str = setting("tiled", choices=("tiled", "whole"))
    """'tiled': the AE on patch-size windows, the way it was trained (exact on each window);
    'whole': one fully convolutional pass over the image, which a 1x1-bottleneck AE was never
    trained for (its decoder footprints overlap and add up). 'whole' is kept for the ablation only"""
    stride: int | None = setting(None, ge=1)
    """window step of the 'tiled' loss maps; None = patch_size (non-overlapping tiles: one AE
    pass per pixel). patch_size // 2 averages 4 windows per pixel at about 3.5x the cost"""
    unlabeled: str = setting("snapshots", choices=("snapshots", "eager"))
    """'snapshots': keep the last T AE weights and compute D_u profiles only when needed;
    'eager': evaluate D_u after every update (same profiles, much slower; for benchmarks)"""
    select_on: str = setting("l_pred", choices=("l_pred", "dl_auroc"))
    """which moment's profiles the run exports (its best moment). 'l_pred' (the papers'): the
    lowest loss of the in-training predictor on D_l (of its leave-one-out folds with
    predictor.heldout). 'dl_auroc' (ours): the highest pixel AUROC of the mean D_l profile against
    the D_l masks, which no predictor is fit to: a predictor that memorises D_l lowers l_pred while
    the profiles get no better (docs/results/per-run-choices.md)"""

    def __post_init__(self) -> None:
        check_fields(self)


@dataclass
class PredictorConfig:
    """The predictor trained during the run on the D_l profiles, its loss l_pred and its buffer."""

    CONFIG_NAME: ClassVar[str] = "predictor"
    width: int = setting(16, ge=1, le=512)
    """channels of the predictor's first layer (dilated convs, or the U-Net's first level)"""
    skip: bool = True
    """(ours) the logit starts as a monotone function of the pixel's mean relative loss (a
    learned-scale skip path, models.predictor.DilatedFCN), so it ranks pixels at least as the
    plain mean profile does before training refines it. False: the papers' plain FCN"""
    shrink: float = setting(0.01, ge=0)
    """weight of a penalty in the predictor's training loss: the mean square, over the batch's
    pixels, of the logit its convolutions add to the skip path (models.predictor.ranking_departure).
    The predictor keeps the profiles' mean ranking unless the labeled images pay for leaving it;
    without it, a predictor memorised a single D_l defect image (docs/results/papers-predictor-vs-profiles-mean.md).
    Needs skip"""
    prior_bias: bool = True
    """start the output at the constant logit that minimises l_pred on the D_l masks at the
    current alpha (models.predictor.prior_logit) instead of 0: a no-op for chu2020, whose alpha is
    the pixel ratio; under noghredeh2025's alpha ~1 it is ~-5, and a predictor started at 0 reached
    it by ranking pixels upside down (models.predictor.set_prior_bias)"""
    arch: str = setting("dilated", choices=PREDICTOR_ARCHS)
    """'dilated': the papers' dilated FCN; 'unet' (ours): a U-Net of the baseline's shape
    (GroupNorm, depth 3) on the same inputs"""
    dice: bool = False
    """train with the U-Net baseline's loss: BCE with anomalous pixels weighted 1/alpha
    (= l_pred / alpha) plus soft Dice. l_pred itself (reward, selection) is unchanged"""
    colour_jitter: float = setting(0.0, ge=0, lt=1)
    """with inputs 'profile+rgb': random brightness, contrast and saturation changes of up to this
    fraction on the RGB channels of each training sample (the U-Net baseline: 0.2)"""
    inputs: str = setting("profile", choices=PREDICTOR_INPUTS)
    """'profile': the mean-normalised loss profile (T channels), as in both papers; 'profile+rgb'
    (ours): the image's RGB as 3 more channels, so the predictor sees what a U-Net sees"""
    lr: float = setting(1e-3, gt=0, le=1)
    batch: int = setting(8, ge=1)
    crop: int | None = setting(64, ge=8)
    """train on random crops of this side (None: whole profiles): the net is translation-
    equivariant, so crops teach it the same for a fraction of the cost"""
    heldout: bool = False
    """(ours) also train one predictor per labeled image on the other labeled images only
    (leave-one-out, same buffer and steps): the best moment is then chosen by their held-out
    l_pred, not by the training l_pred (which rewards memorising D_l). Only images whose fold still
    has labeled defects to learn from are held out (models.fit.loo_folds)"""
    buffer_size: int = setting(512, ge=1)
    """FIFO replay buffer of augmented (labeled profile, mask) pairs"""
    alpha: float | None = setting(None, gt=0, le=1)
    """weight of normal pixels in l_pred; None = anomalous/normal pixel ratio of D_l (chu2020).
    Ignored when alpha_decay is on"""
    alpha_floor: float = setting(1e-3, gt=0, le=1)
    """lower bound of the pixel-ratio alpha: with tiny defects the ratio weighs normal pixels so
    little that p > 0.5 covers most of the image (0.02 caps the weight of anomalous pixels at 50,
    as the U-Net baseline's max_pos_weight does)"""
    alpha_decay: bool = False
    """noghredeh2025: alpha = max(alpha_min, alpha_start - (alpha_start - alpha_min) j / L_alpha)"""
    alpha_start: float = setting(1.0, gt=0, le=1)
    alpha_min: float = setting(0.15, gt=0, le=1)
    alpha_horizon: int | None = setting(None, ge=1)
    """L_alpha; None = rewards.beta_horizon"""
    freeze_updates: int = setting(0, ge=0)
    """the predictor is not trained during the first updates of the run (noghredeh2025: 50)"""

    def __post_init__(self) -> None:
        check_fields(self)
        if self.shrink > 0 and not self.skip:
            raise ConfigError(f"predictor.shrink={self.shrink}: needs predictor.skip=true (it penalises what the "
                              "convolutions add to the skip path)")


@dataclass
class RewardConfig:
    """The sampler's reward: beta (R_clone + R_cover) per step + (1 - beta) R_pred at the end."""

    CONFIG_NAME: ClassVar[str] = "rewards"
    beta_min: float = setting(0.0, ge=0, le=1)
    beta_horizon: int = setting(2000, ge=0)
    """L: beta = max(beta_min, 1 - j / L), j = AE updates so far"""
    cover_bonus: float = setting(0.1, ge=0)
    """R_cover = cover_bonus * fraction of the patch not yet covered this episode"""
    clone: str = setting("mask", choices=("mask", "sobel"))
    """'mask' (chu2020): +1 for a patch free of labeled anomalies, -1 otherwise, D_l only;
    'sobel' (noghredeh2025): mean Sobel magnitude (min-max normalised per image) of the patch"""
    cover: str = setting("bonus", choices=COVER_REWARDS)
    """'bonus' (chu2020, see cover_bonus); 'frequency' (noghredeh2025): -mean of the visit counts
    under the patch before this visit; 'balance' (beyond the papers, off in every preset):
    cover_bonus * (1 - mean visit count under the patch / mean over the dataset), the counts kept
    since the AE's last re-init (envs.rewards.balance_cover_reward)"""
    rl_feedback_after: int = setting(0, ge=0)
    """R_pred is 0 until this many AE updates have run (noghredeh2025: 100)"""
    pred: str = setting("level", choices=PRED_REWARDS)
    """'level' (both papers): R_pred = -l_pred after the update. 'improvement' (beyond the papers,
    off in every preset): R_pred = N * clip((l_before - l_after) / l_before, -1, 1), the relative
    change of the labeled-profile loss that this AE update alone caused, times N"""

    def __post_init__(self) -> None:
        check_fields(self)


def _group(cls: type) -> Any:
    return setting(factory=cls)


@dataclass
class EnvConfig:
    """Everything the env needs besides the data, in groups (see the module docstring)."""

    sampler: SamplerConfig = _group(SamplerConfig)
    ae: AEConfig = _group(AEConfig)
    ae_training: AETrainingConfig = _group(AETrainingConfig)
    profiles: ProfileConfig = _group(ProfileConfig)
    predictor: PredictorConfig = _group(PredictorConfig)
    rewards: RewardConfig = _group(RewardConfig)
    device: str = "auto"
    """'auto' = CUDA when available, else CPU"""

    def __post_init__(self) -> None:
        check_fields(self)

    def resolved(self, image_size: int) -> "EnvConfig":
        """A copy with the image-size-dependent defaults filled in (patch size, stride, alpha's
        horizon, the predictor's crop), checked against `image_size`."""
        if not isinstance(image_size, int) or not 8 <= image_size <= MAX_IMAGE_SIZE:
            raise ConfigError(f"image_size={image_size!r}: must be a whole number in 8..{MAX_IMAGE_SIZE}")
        c = copy.deepcopy(self)
        s = c.sampler
        if s.patch_size is None:
            s.patch_size = default_patch_size(image_size, s.patch_divisor)
        if s.patch_size > image_size:
            raise ConfigError(f"sampler.patch_size={s.patch_size}: larger than the images ({image_size} px)")
        if s.stride is None:
            s.stride = max(1, s.patch_size // 2)
        if c.profiles.stride is not None and c.profiles.stride > s.patch_size:
            raise ConfigError(f"profiles.stride={c.profiles.stride}: must be in 1..sampler.patch_size ({s.patch_size})")
        if c.predictor.alpha_horizon is None:
            c.predictor.alpha_horizon = c.rewards.beta_horizon
        if c.predictor.crop is not None and c.predictor.crop >= image_size:
            c.predictor.crop = None
        return c


def default_patch_size(image_size: int, divisor: int = 4) -> int:
    """The largest power of two <= image_size / divisor, at least 8: the AE's patch when none is
    given (64 px at 256 px with the papers' divisor of 4). A power of two because the AE halves
    the patch once per level down to its code."""
    return max(8, 1 << max(0, (image_size // divisor).bit_length() - 1))


#: The env part of each published system, as plain EnvConfig objects (print one to read it).
#: runner.presets.PRESETS adds each one's final predictor and AE probe; docs/method.md says why.
ENV_PRESETS: dict[str, EnvConfig] = {
    # Chu & Kitani 2020: the defaults.
    "chu2020": EnvConfig(),
    # Noghredeh et al. 2025 (../shared/method.md): 6-channel 128 px crop state, Sobel clone reward,
    # visit-frequency cover reward, beta floor 0.15, alpha decayed 1.0 -> 0.15, absolute-error
    # profiles, an AE without shortcuts (BatchNorm(affine=False), LeakyReLU(0.2), dropout 0.3)
    # pretrained on normal images, predictor frozen for 50 updates, no R_pred for 100.
    "noghredeh2025": EnvConfig(
        sampler=SamplerConfig(state="noghredeh2025", observation="crop", crop_size=128, stride=24),
        ae=AEConfig(skip_levels=(), norm=True, dropout=0.3, leaky_relu=True),
        ae_training=AETrainingConfig(pretrain_steps=500),
        profiles=ProfileConfig(error="absolute"),
        predictor=PredictorConfig(alpha_decay=True, alpha_start=1.0, alpha_min=0.15, freeze_updates=50),
        rewards=RewardConfig(clone="sobel", cover="frequency", beta_min=0.15, rl_feedback_after=100)),
    # Ours, beyond the papers: chu2020 with noghredeh2025's kind of AE (no shortcuts, BatchNorm
    # without affine, pretrained on normal images; width 16: on D_l as good as 32, twice as fast)
    # on half-image patches, whose best moment is the
    # one whose mean D_l profile ranks the labeled pixels best (no predictor is fit to it). Its
    # in-training predictor is chu2020's (it only scores the sampler's batches); its final
    # predictor, chosen per run on D_l: runner.presets.
    "ours": EnvConfig(
        sampler=SamplerConfig(patch_divisor=2),
        ae=AEConfig(width=16, skip_levels=(), norm=True),
        ae_training=AETrainingConfig(pretrain_steps=500),
        profiles=ProfileConfig(select_on="dl_auroc"),
        predictor=PredictorConfig(alpha_floor=0.02)),
}

#: The flat field names of run folders saved before the groups (config.json's "env"), and of
#: `--set` before them: each maps to its dotted place. Old names keep working everywhere.
FLAT_NAMES: dict[str, str] = {
    **{k: f"sampler.{k}" for k in ("patch_size", "patch_divisor", "stride", "patches_per_update", "observation",
                                   "crop_size", "loss_obs_clip", "state", "fused_weights", "variance_sigma")},
    "ae_lr": "ae_training.lr", "reinit_every": "ae_training.reinit_every",
    "warmup_updates": "ae_training.warmup_updates", "pretrain_steps": "ae_training.pretrain_steps",
    "profile_length": "profiles.length", "loss_map": "profiles.mode",
    "loss_map_stride": "profiles.stride", "unlabeled_profiles": "profiles.unlabeled",
    **{f"predictor_{k}": f"predictor.{k}" for k in ("width", "skip", "shrink", "prior_bias", "arch", "dice",
                                                     "colour_jitter", "inputs", "lr", "batch", "crop")},
    "heldout_predictors": "predictor.heldout", "buffer_size": "predictor.buffer_size",
    **{k: f"predictor.{k}" for k in ("alpha", "alpha_floor", "alpha_decay", "alpha_start", "alpha_min",
                                     "alpha_horizon")},
    "predictor_freeze_updates": "predictor.freeze_updates",
    "beta_min": "rewards.beta_min", "beta_horizon": "rewards.beta_horizon", "cover_bonus": "rewards.cover_bonus",
    "clone_reward": "rewards.clone", "cover_reward": "rewards.cover", "rl_feedback_after": "rewards.rl_feedback_after",
    "pred_reward": "rewards.pred",
}

#: Fields whose default changed after runs had been saved: a saved config without the field gets
#: the value its run trained with, so resuming or re-evaluating an old run changes nothing.
SAVED_BEFORE_FIELD: dict[str, Any] = {"predictor.shrink": 0.0, "predictor.prior_bias": False}


def make_env_config(preset: str = "chu2020", **overrides: Any) -> EnvConfig:
    """A fresh copy of a preset's EnvConfig with overrides: dotted keys (`**{"predictor.width": 32}`),
    whole groups (`sampler=SamplerConfig(...)`) or the old flat names (`patch_size=8`)."""
    if preset not in ENV_PRESETS:
        raise ConfigError(f"unknown preset {preset!r}; choose from {', '.join(sorted(ENV_PRESETS))}")
    return with_overrides(copy.deepcopy(ENV_PRESETS[preset]), overrides, FLAT_NAMES)


def config_to_dict(obj: Any) -> dict[str, Any]:
    """JSON-able dict of a (nested) config dataclass."""
    return to_dict(obj)


def unflatten(d: dict[str, Any]) -> dict[str, Any]:
    """A config.json "env" of either form as the grouped form: flat (runs saved before the groups,
    FLAT_NAMES) fields are moved to their groups, with the values of SAVED_BEFORE_FIELD for the
    fields those runs did not have. Keys that belong to the final predictor or the AE probe are
    dropped here (runner.presets reads them)."""
    if any(isinstance(v, dict) and k != "ae" for k, v in d.items()):
        return d  # already grouped
    out: dict[str, Any] = {}
    d = dict(d)
    if "absolute_error" in d:  # a bool before profiles.error
        d["profiles.error"] = "absolute" if d.pop("absolute_error") else "squared"
    saved = {**{k: v for k, v in SAVED_BEFORE_FIELD.items()}, **{FLAT_NAMES.get(k, k): v for k, v in d.items()}}
    for key, value in saved.items():
        if key.startswith(("predictor_refit_", "ae_candidates", "ae_probe_")):
            continue
        group, _, name = key.rpartition(".")
        (out.setdefault(group, {}) if group else out)[name] = value
    return out


def env_config_from_dict(d: dict[str, Any], where: str = "") -> EnvConfig:
    """Inverse of config_to_dict for EnvConfig; reads the flat form of older run folders too."""
    if not isinstance(d, dict):
        raise ConfigError(f"{where + ': ' if where else ''}expected the env's settings as a mapping, got "
                          f"{type(d).__name__}")
    return from_dict(EnvConfig, unflatten(d), where)


def ae_config_from_dict(d: dict[str, Any], where: str = "") -> AEConfig:
    """AEConfig from its JSON form (lists back to tuples)."""
    return from_dict(AEConfig, d, where)


__all__ = ["AEConfig", "AETrainingConfig", "ConfigError", "ENV_PRESETS", "EnvConfig", "PredictorConfig",
           "ProfileConfig", "RewardConfig", "SamplerConfig", "default_patch_size", "make_env_config"]
