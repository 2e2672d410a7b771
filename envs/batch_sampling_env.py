"""BatchSamplingEnv: the neural batch sampler's world, as a Gymnasium environment.

The env owns the whole training process the sampler serves: the autoencoder (AE), the loss
profiles, the replay buffer and the predictor. An agent only picks patches. That is what lets any
RL algorithm (our REINFORCE, any SB3 algorithm with Discrete actions) train against it unchanged.
"""
from __future__ import annotations

import contextlib
import math
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from gymnasium import spaces

from data.split import Split
from envs.buffers import ProfileRing, ReplayBuffer, dihedral, snapshot
from envs.config import DataConfig, EnvConfig
from envs.rewards import (alpha_from_masks, alpha_schedule, beta_schedule, clone_reward, cover_reward,
                          frequency_cover_reward)
from envs.state_maps import fuse_maps, local_variance, minmax, sobel_magnitude
from envs.seeding import torch_rng_from
from models.autoencoder import ConvAutoencoder, ae_train_step, loss_map, reconstruct_images, reconstruction_loss_map
from envs.diagnostics import rank_auroc
from envs.profiling import section
from envs.refit import jitter_rgb
from models.predictor import build_predictor, input_channels, predictor_input, soft_dice_loss, weighted_bce

#: (dy, dx) of actions 0-7: N, NE, E, SE, S, SW, W, NW. Action 8 jumps to a random image.
MOVES: tuple[tuple[int, int], ...] = ((-1, 0), (-1, 1), (0, 1), (1, 1), (1, 0), (1, -1), (0, -1), (-1, -1))
JUMP = 8


def resolve_device(name: str) -> torch.device:
    """'auto' -> CUDA when present, else CPU; anything else is passed to torch.device."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def load_split(data: DataConfig) -> Split:
    """The semi-supervised split a DataConfig describes (the built-in data when data_root is None)."""
    return load_split_and_summary(data)[0]


def load_split_and_summary(data: DataConfig) -> tuple[Split, str]:
    """load_split, plus the loader's account of what it found (counts per split and defect type).

    train/good is always loaded: the AE pretraining of noghredeh2025 and the unsupervised baseline
    train on it (Split.normal), whether or not it also joins D_u."""
    from data.datasets import load_dataset
    from data.mvtec import DatasetError
    from data.split import make_split
    from data.synthetic import ensure_default_dataset

    if data.data_root is None and data.dataset != "mvtec":
        raise DatasetError(f"dataset {data.dataset!r} needs a data root (--data-root): the built-in "
                           "data is in the mvtec layout")
    root = data.data_root if data.data_root is not None else ensure_default_dataset()
    category = load_dataset(data.dataset, root, data.category, image_size=data.image_size,
                            load_train_good=True)
    split = make_split(category, n_labeled=data.n_labeled, seed=data.split_seed,
                       include_train_good=data.include_train_good, per_defect_type=data.per_defect_type,
                       include_unannotated=data.include_unannotated, holdout_fraction=data.holdout_fraction)
    return split, category.summary()


class BatchSamplingEnv(gym.Env):
    """Pick the N patches of each AE update; get rewarded for patches that make anomalies findable.

    Observation (`spaces.Dict`, float32, channel-first, side V = image_size, or crop_size when
    config.observation == 'crop', the crop centred on the patch and zero-padded). config.state
    'chu2020':
      - "rgb"     (3, V, V) in [0, 1]: the current image
      - "loss"    (1, V, V) in [0, loss_obs_clip]: the AE's current per-pixel reconstruction loss
                  of that image divided by its mean
      - "history" (1, V, V) in {0, 1}: pixels of that image covered by patches this episode
      - "patch"   (1, V, V) in {0, 1}: where the current patch is
    config.state 'noghredeh2025' (6 channels):
      - "rgb"     as above
      - "fused"   (1, V, V) in [0, 1]: min-max normalised w . (ARE, local variance, Sobel magnitude),
                  each term min-max normalised per image
      - "history" (1, V, V) in [0, 1]: visits of each pixel this episode / patches_per_update
      - "previous_loss" (1, V, V) in [0, loss_obs_clip]: the "loss" map of the AE before its last update
    Actions (`Discrete(9)`): 0-7 move the patch centre by `stride` to N, NE, E, SE, S, SW, W, NW
    (clipped to the image); 8 jumps to a random image at a random centre. `action_masks()` tells
    which actions lead to a patch free of labeled anomalies (for heuristic samplers, MaskablePPO).
    Episode: `patches_per_update` steps, each sampling the patch at the new position. The last step
    trains the AE one step on those patches, appends every labeled image's loss map to its profile,
    pushes augmented (profile, mask) pairs to the replay buffer, trains the predictor one step and
    re-initialises the AE every `reinit_every` updates (followed by `warmup_updates` updates on
    random patches done here, unseen by the agent).
    Reward: beta * (R_clone + R_cover) per step, plus (1 - beta) * R_pred on the last step, R_pred
    = -l_pred of the predictor on the current labeled profiles (0 before rl_feedback_after
    updates). R_clone: +-1 for a patch free of / touching labeled anomalies (D_l only; 'mask') or
    its mean Sobel magnitude ('sobel'); R_cover: a bonus for new pixels ('bonus') or -mean visit
    count under the patch ('frequency'). `info` carries the terms and the training figures.
    Seeding: `reset(seed=s)` starts the training process afresh from s (AE, predictor, buffer,
    profiles); `reset()` without a seed starts the next episode of the running process.
    """

    metadata = {"render_modes": []}

    def __init__(self, split: Split | None = None, data: DataConfig | None = None,
                 config: EnvConfig | None = None) -> None:
        super().__init__()
        self.data_config = data or DataConfig()
        self.split = split if split is not None else load_split(self.data_config)
        images = self.split.labeled + self.split.unlabeled + self.split.extra_unlabeled
        if not self.split.labeled:
            raise ValueError("the split has no labeled image: BatchSamplingEnv needs D_l")
        size = images[0].image.shape[0]
        for s in images:
            if s.image.shape != (size, size, 3):
                raise ValueError(f"image {s.name} has shape {s.image.shape}; expected ({size}, {size}, 3)")
        self.image_size = size
        self.config = (config or EnvConfig()).resolved(size)
        c = self.config
        self.n_labeled = len(self.split.labeled)
        self.n_scored = len(self.split.unlabeled)
        self.n_images = len(images)
        self.device = resolve_device(c.device)

        # Host copies used every step (observation, clone reward); device copies for training.
        self._rgb = np.stack([s.image.transpose(2, 0, 1) for s in images]).astype(np.float32) / 255.0
        self._masks = np.stack([s.mask for s in self.split.labeled]).astype(bool)
        self._images = torch.from_numpy(self._rgb).to(self.device)
        self._label_masks = torch.from_numpy(self._masks).to(self.device)
        self._ratio_alpha = c.alpha if c.alpha is not None else alpha_from_masks(self._masks, c.alpha_floor)
        # Per-image maps that do not change with the AE (noghredeh2025's state and clone reward).
        needs_static = c.state == "noghredeh2025" or c.clone_reward == "sobel"
        self._sobel = np.stack([sobel_magnitude(x) for x in self._rgb]) if needs_static else None
        self._variance = (np.stack([minmax(local_variance(x, c.variance_sigma)) for x in self._rgb])
                          if c.state == "noghredeh2025" else None)
        self._normal = [s.image for s in self.split.normal]
        # Yardsticks of a collapsed AE (e.g. one that outputs black on dark images, whose loss
        # maps are then the image's own intensity): the loss of the trivial reconstruction "each
        # image's mean colour", and the spread (std over pixels) of the D_l images themselves.
        rgb_l = self._images[:self.n_labeled]
        self._mean_colour_loss = float(loss_map(rgb_l.mean(dim=(2, 3), keepdim=True).expand_as(rgb_l), rgb_l,
                                                c.absolute_error).mean())
        self._image_spread = rgb_l.std(dim=(2, 3)).clamp_min(1e-6)
        self._has_both_classes = bool(self._masks.any()) and not bool(self._masks.all())
        # Leave-one-out folds that can learn anything: image k is held out only when the other
        # labeled images hold anomalous pixels (a fold trained on normal images alone learns to
        # suppress high loss, and would rank its held-out defects upside down), and only if some
        # held-out image has a defect to be judged on (else selection would reward predicting
        # nothing). With a single defect image in D_l there are none: selection is on l_pred.
        folds = [k for k in range(self.n_labeled) if np.delete(self._masks, k, axis=0).any()]
        useful = c.heldout_predictors and bool(self._masks[folds].any())
        self.heldout_images = folds if useful else []
        self._heldout_masks = self._label_masks[self.heldout_images]

        v = c.crop_size if c.observation == "crop" else size
        unit = spaces.Box(0.0, 1.0, (1, v, v), np.float32)
        loss_box = spaces.Box(0.0, c.loss_obs_clip, (1, v, v), np.float32)
        rgb_box = spaces.Box(0.0, 1.0, (3, v, v), np.float32)
        if c.state == "chu2020":
            maps = {"rgb": rgb_box, "loss": loss_box, "history": unit, "patch": unit}
        else:
            maps = {"rgb": rgb_box, "fused": unit, "history": unit, "previous_loss": loss_box}
        self.observation_space = spaces.Dict(maps)
        self.action_space = spaces.Discrete(9)
        self._half = c.patch_size // 2
        self._initialised = False

    @property
    def alpha(self) -> float:
        """Current weight of normal pixels in l_pred: the D_l pixel ratio (or config.alpha), or
        the decayed value when config.alpha_decay is on."""
        c = self.config
        if c.alpha_decay:
            return alpha_schedule(getattr(self, "updates", 0), c.alpha_horizon, c.alpha_start, c.alpha_min)
        return self._ratio_alpha

    @property
    def episode_steps(self) -> int:
        """Steps per episode (patches per AE update), for agents that budget in steps."""
        return self.config.patches_per_update

    # ------------------------------------------------------------------ training state
    def _torch_rng(self) -> contextlib.AbstractContextManager[None]:
        return torch_rng_from(self.np_random, self.device)

    def _init_training_state(self, warmup: bool = True) -> None:
        c, s, dev = self.config, self.image_size, self.device
        with self._torch_rng():
            self.predictor = self._new_predictor()
        self.predictor_opt = torch.optim.Adam(self.predictor.parameters(), lr=c.predictor_lr)
        self.fold_predictors: list[torch.nn.Module] = []
        if c.heldout_predictors:
            with self._torch_rng():
                self.fold_predictors = [self._new_predictor() for _ in self.heldout_images]
        self.fold_opts = [torch.optim.Adam(f.parameters(), lr=c.predictor_lr) for f in self.fold_predictors]
        self.heldout_prob: torch.Tensor | None = None
        self.last_heldout_l_pred = math.nan
        self.labeled_profiles = ProfileRing(self.n_labeled, c.profile_length, s, s, dev)
        self.unlabeled_profiles = (ProfileRing(self.n_images - self.n_labeled, c.profile_length, s, s, dev)
                                   if c.unlabeled_profiles == "eager" else None)
        self.buffer = ReplayBuffer(c.buffer_size, input_channels(c.profile_length, c.predictor_inputs), s, s, dev)
        self.snapshots: list[dict[str, torch.Tensor]] = []
        self.best: dict[str, Any] | None = None
        self.best_l_pred = math.inf
        self.updates = 0
        self.reinits = 0
        self.last_ae_loss = math.nan
        self.last_l_pred = math.nan
        self.diagnostics: dict[str, float] = {}
        self.pretrained: dict[str, torch.Tensor] | None = None
        if c.pretrain_steps > 0 and warmup:  # (warmup=False: load_state_dict restores it)
            self._pretrain_ae()
        self._reinit_ae(warmup)
        self._initialised = True

    def _new_predictor(self) -> torch.nn.Module:
        c = self.config
        return build_predictor(c.profile_length, c.predictor_width, c.predictor_inputs,
                               c.predictor_skip, c.predictor_arch).to(self.device)

    def _new_ae(self) -> ConvAutoencoder:
        return ConvAutoencoder(self.config.patch_size, self.config.ae).to(self.device)

    def _pretrain_ae(self) -> None:
        """noghredeh2025: train an AE on normal material before the loop; re-inits restart from it.

        Patches come from the anomaly-free images (train/good) when the dataset has them; without
        (CrackForest) from all images, skipping patches that touch a labeled anomaly."""
        c, h = self.config, self._half
        with self._torch_rng():
            ae = self._new_ae()
        opt = torch.optim.Adam(ae.parameters(), lr=c.ae_lr)
        normal = (torch.from_numpy(np.stack(self._normal).transpose(0, 3, 1, 2).astype(np.float32) / 255.0)
                  .to(self.device) if self._normal else None)
        lo, hi = h, self.image_size - h
        for _ in range(c.pretrain_steps):
            if normal is not None:
                idx = self.np_random.integers(len(normal), size=c.patches_per_update)
                ys, xs = self.np_random.integers(lo, hi + 1, size=(2, c.patches_per_update))
                x = torch.stack([normal[i, :, y - h:y + h, x_ - h:x_ + h] for i, y, x_ in zip(idx, ys, xs)])
            else:
                patches = [p for p in self._random_patches(4 * c.patches_per_update)
                           if p[0] >= self.n_labeled or not self._masks[p[0], p[1] - h:p[1] + h, p[2] - h:p[2] + h].any()]
                patches = patches[:c.patches_per_update] or self._random_patches(c.patches_per_update)
                x = torch.stack([self._images[i, :, y - h:y + h, x_ - h:x_ + h] for i, y, x_ in patches])
            with self._torch_rng():
                ae_train_step(ae, opt, x)
        self.pretrained = snapshot(ae)

    def _reinit_ae(self, warmup: bool = True) -> None:
        """Fresh (or pretrained) AE weights and optimiser, empty current profiles, then M warm-up
        updates."""
        with self._torch_rng():
            self.ae = self._new_ae()
        if self.pretrained is not None:
            self.ae.load_state_dict(self.pretrained)
        self.ae_opt = torch.optim.Adam(self.ae.parameters(), lr=self.config.ae_lr)
        self.labeled_profiles.reset()
        if self.unlabeled_profiles is not None:
            self.unlabeled_profiles.reset()
        self.snapshots = []
        self.reinits += 1
        for _ in range(self.config.warmup_updates if warmup else 0):
            self._train_iteration(self._random_patches(self.config.patches_per_update), warmup=True)

    def _random_patches(self, n: int) -> list[tuple[int, int, int]]:
        lo, hi = self._half, self.image_size - self._half
        return [(int(self.np_random.integers(self.n_images)), int(self.np_random.integers(lo, hi + 1)),
                 int(self.np_random.integers(lo, hi + 1))) for _ in range(n)]

    def _train_iteration(self, patches: list[tuple[int, int, int]], warmup: bool = False) -> float:
        """One AE update on `patches` and everything that follows it; returns l_pred (nan while
        the predictor is not trained yet)."""
        h = self._half
        with section("AE step"):
            x = torch.stack([self._images[i, :, cy - h:cy + h, cx - h:cx + h] for i, cy, cx in patches])
            with self._torch_rng():  # dropout, if any
                self.last_ae_loss = ae_train_step(self.ae, self.ae_opt, x)
        self.updates += 1
        with torch.no_grad():
            c = self.config
            with section("D_l loss maps"):
                recon = reconstruct_images(self.ae, self._images[:self.n_labeled], c.loss_map_stride, c.loss_map == "whole")
                self._labeled_loss = loss_map(recon, self._images[:self.n_labeled], c.absolute_error)
                self.labeled_profiles.append(self._labeled_loss)
            if self.unlabeled_profiles is not None:
                with section("D_u loss maps (eager)"):
                    self.unlabeled_profiles.append(self._loss_maps(self.ae, range(self.n_labeled, self.n_images)))
            with section("diagnostics"):
                self._update_diagnostics(recon)
        self.snapshots.append(snapshot(self.ae))
        if len(self.snapshots) > self.config.profile_length + 1:  # +1: the previous AE (noghredeh2025 state)
            self.snapshots.pop(0)
        trains = self.updates > self.config.predictor_freeze_updates
        self.last_heldout_l_pred = math.nan  # set by this update's predictor step, if any
        with section("predictor step"):
            l_pred = self._predictor_step(trains) if self.labeled_profiles.full else math.nan
        self.last_l_pred = l_pred
        # The best moment: lowest l_pred, or lowest held-out l_pred with heldout_predictors. A
        # frozen (untrained) predictor's loss says nothing about the profiles: no best before.
        select = self.last_heldout_l_pred if self.fold_predictors else l_pred
        if trains and not math.isnan(select) and select < self.best_l_pred:
            self._record_best(select)
        if not warmup and self.updates % self.config.reinit_every == 0:
            with section("AE re-init"):
                self._reinit_ae()
        return l_pred

    def _update_diagnostics(self, recon: torch.Tensor) -> None:
        """What a user reads while training to see whether the AE's signal separates defects:
        pixel AUROC of the current D_l loss maps and of the mean D_l profile against the D_l
        masks (nan while D_l lacks either class); the AE's loss relative to predicting each
        image's mean colour, and the spread of its reconstructions relative to the images' (both
        low-level signs of a collapsed AE: ratio >= 1 with spread near 0)."""
        loss = self._labeled_loss
        d = {"ae_vs_mean_colour": float(loss.mean()) / max(self._mean_colour_loss, 1e-12),
             "ae_output_spread": float((recon.std(dim=(2, 3)) / self._image_spread).mean())}
        if self._has_both_classes:
            ring = self.labeled_profiles
            mean_profile = ring.data[:, :ring.count].mean(dim=1) if ring.count < ring.length else ring.data.mean(dim=1)
            d["dl_loss_auroc"] = rank_auroc(loss, self._label_masks)
            d["dl_profile_auroc"] = rank_auroc(mean_profile, self._label_masks)
        else:
            d["dl_loss_auroc"] = d["dl_profile_auroc"] = math.nan
        self.diagnostics = d

    def _loss_maps(self, ae: ConvAutoencoder, indices: range, batch: int = 16) -> torch.Tensor:
        c = self.config
        out = []
        idx = list(indices)
        for k in range(0, len(idx), batch):
            out.append(reconstruction_loss_map(ae, self._images[idx[k:k + batch]], c.absolute_error,
                                               stride=c.loss_map_stride, whole_image=c.loss_map == "whole"))
        if not out:
            return torch.zeros(0, self.image_size, self.image_size, device=self.device)
        return torch.cat(out)

    def _predictor_step(self, train: bool = True) -> float:
        """Push augmented labeled profiles, one predictor step on a buffer batch (unless frozen),
        then l_pred of the current (unaugmented) labeled profiles: the reward follows what this AE
        update did."""
        c = self.config
        rgb = self._images[:self.n_labeled] if c.predictor_inputs == "profile+rgb" else None
        profiles = predictor_input(self.labeled_profiles.ordered(), rgb)
        ks = self.np_random.integers(0, 8, size=self.n_labeled)
        self.buffer.push(torch.stack([dihedral(p, int(k)) for p, k in zip(profiles, ks)]),
                         torch.stack([dihedral(m, int(k)) for m, k in zip(self._label_masks, ks)]))
        if not train:
            with torch.no_grad():
                return float(weighted_bce(self.predictor(profiles)[:, 0], self._label_masks, self.alpha))
        self._train_predictor(self.predictor, self.predictor_opt, self.buffer.sample(c.predictor_batch, self.np_random))
        if self.fold_predictors:
            self._heldout_step(profiles)
        with torch.no_grad():
            return float(weighted_bce(self.predictor(profiles)[:, 0], self._label_masks, self.alpha))

    def _train_predictor(self, net: torch.nn.Module, opt: torch.optim.Optimizer,
                         batch: tuple[torch.Tensor, torch.Tensor] | None) -> None:
        """One weighted-BCE (+ Dice) step of `net` on a buffer batch, on one random crop of it."""
        if batch is None:
            return
        c = self.config
        batch_p, batch_m = batch
        if c.predictor_crop is not None:
            y, x = self.np_random.integers(0, self.image_size - c.predictor_crop + 1, size=2)
            batch_p = batch_p[..., y:y + c.predictor_crop, x:x + c.predictor_crop]
            batch_m = batch_m[..., y:y + c.predictor_crop, x:x + c.predictor_crop]
        if c.predictor_colour_jitter > 0 and c.predictor_inputs == "profile+rgb":
            batch_p = self._jitter_rgb(batch_p, c.predictor_colour_jitter)
        net.train()
        logits = net(batch_p)[:, 0]
        loss = weighted_bce(logits, batch_m, self.alpha)
        if c.predictor_dice:  # the U-Net baseline's loss: BCE with pos_weight 1/alpha, + soft Dice
            loss = loss / self.alpha + soft_dice_loss(logits, batch_m)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        net.eval()

    def _jitter_rgb(self, batch: torch.Tensor, amount: float) -> torch.Tensor:
        """The U-Net baseline's colour jitter of the RGB channels (envs.refit.jitter_rgb)."""
        return jitter_rgb(batch, amount, self.np_random)

    def _heldout_step(self, profiles: torch.Tensor) -> None:
        """Leave-one-out: fold predictor j trains on the buffer entries of every labeled image but
        heldout_images[j] and predicts that image. Their maps (`heldout_prob`, in heldout_images
        order) and loss (`last_heldout_l_pred`) are what the predictor does on labeled images it
        never saw."""
        c = self.config
        for k, net, opt in zip(self.heldout_images, self.fold_predictors, self.fold_opts):
            self._train_predictor(net, opt, self.buffer.sample(c.predictor_batch, self.np_random, exclude=k))
        with torch.no_grad():
            logits = torch.cat([net(profiles[k:k + 1]) for k, net in zip(self.heldout_images, self.fold_predictors)])[:, 0]
        self.last_heldout_l_pred = float(weighted_bce(logits, self._heldout_masks, self.alpha))
        self.heldout_prob = torch.sigmoid(logits)
        if self._heldout_masks.any() and not self._heldout_masks.all():
            self.diagnostics["dl_heldout_auroc"] = rank_auroc(self.heldout_prob, self._heldout_masks)

    def _record_best(self, l_pred: float) -> None:
        """Keep what is needed to rebuild the D_u profiles of this moment: the T AE snapshots
        (the snapshots are immutable copies, so keeping references is enough)."""
        self.best_l_pred = l_pred
        self.best = {"l_pred": l_pred, "update": self.updates,
                     "snapshots": list(self.snapshots[-self.config.profile_length:]),
                     "labeled": self.labeled_profiles.ordered()}
        # The predictor of that moment scores the best profiles at inference: its l_pred chose
        # them, and the held-out threshold belongs to it, not to a predictor trained on for
        # hundreds more updates on other profiles.
        self.best["predictor"] = snapshot(self.predictor)
        if self.heldout_prob is not None:
            self.best["heldout_prob"] = self.heldout_prob.clone()
        if self.unlabeled_profiles is not None:
            self.best["unlabeled"] = self.unlabeled_profiles.ordered()

    # ------------------------------------------------------------------ gym API
    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        super().reset(seed=seed)
        if seed is not None or not self._initialised:
            self._init_training_state()
        self._t = 0
        self._patches: list[tuple[int, int, int]] = []
        self._action_counts = np.zeros(9, np.int64)
        self._history: dict[int, np.ndarray] = {}
        self._loss_cache: dict[tuple[str, int], np.ndarray] = {}
        self._next_jump = self._random_patches(1)[0]
        self._jump()
        return self._observation(), self._info()

    def step(self, action):
        if not self._initialised:
            raise RuntimeError("call reset() before step()")
        if self._t >= self.config.patches_per_update:
            raise RuntimeError("episode is over: call reset()")
        a = int(action)
        if not 0 <= a < 9:
            raise ValueError(f"action must be in 0..8, got {action!r}")
        self._action_counts[a] += 1
        if a == JUMP:
            self._jump()
        else:
            _, self._cy, self._cx = self._destination(a)
        i, cy, cx, h = self._img, self._cy, self._cx, self._half
        self._patches.append((i, cy, cx))
        hist = self._history.get(i)
        if hist is None:  # allocated once per image and episode, not on every step
            hist = self._history[i] = np.zeros((self.image_size, self.image_size), np.float32)
        c = self.config
        beta = beta_schedule(self.updates, c.beta_horizon, c.beta_min)
        window = (slice(cy - h, cy + h), slice(cx - h, cx + h))
        if c.clone_reward == "sobel":
            r_clone = float(self._sobel[i][window].mean())
        else:
            r_clone = clone_reward(self._masks[i][window]) if i < self.n_labeled else 0.0
        if c.cover_reward == "frequency":
            r_cover = frequency_cover_reward(hist[window])
        else:
            r_cover = cover_reward(hist[window], c.cover_bonus)
        hist[window] += 1.0  # visit counts: binary (> 0) in the chu2020 state, frequency in noghredeh2025
        reward = beta * (r_clone + r_cover)
        self._t += 1
        terminated = self._t == self.config.patches_per_update
        info = {"r_clone": r_clone, "r_cover": r_cover, "beta": beta, "jump": a == JUMP}
        if terminated:
            reinit_before = self.reinits
            l_pred = self._train_iteration(self._patches)
            r_pred = 0.0 if math.isnan(l_pred) or self.updates <= c.rl_feedback_after else -l_pred
            reward += (1.0 - beta) * r_pred
            self._loss_cache = {}
            info.update(r_pred=r_pred, reinit=self.reinits != reinit_before, **self.diagnostics,
                        jump_rate=float(self._action_counts[JUMP] / self._t),
                        action_hist=(self._action_counts / self._t).tolist())
            if self.fold_predictors:
                info["heldout_l_pred"] = self.last_heldout_l_pred
        info.update(self._info())
        with section("observation"):
            obs = self._observation()
        return obs, float(reward), terminated, False, info

    # ------------------------------------------------------------------ observation
    def _jump(self) -> None:
        # The destination of every jump is drawn one jump ahead, so that action_masks() can tell
        # whether the next jump lands on a known anomaly; it is still uniform and agent-independent.
        self._img, self._cy, self._cx = self._next_jump
        self._next_jump = self._random_patches(1)[0]

    def _destination(self, action: int) -> tuple[int, int, int]:
        """(image, cy, cx) of the patch that `action` would sample next."""
        if action == JUMP:
            return self._next_jump
        dy, dx = MOVES[action]
        lo, hi = self._half, self.image_size - self._half
        return (self._img, int(np.clip(self._cy + dy * self.config.stride, lo, hi)),
                int(np.clip(self._cx + dx * self.config.stride, lo, hi)))

    def clean_actions(self) -> np.ndarray:
        """bool (9,): True for the actions whose next patch holds no *labeled* anomalous pixel.

        Uses only what R_clone uses (the masks of D_l); on unlabeled images every move is clean.
        This is the knowledge of the paper's heuristic sampler."""
        h = self._half
        clean = np.ones(9, bool)
        for a in range(9):
            i, cy, cx = self._destination(a)
            if i < self.n_labeled:
                clean[a] = not self._masks[i, cy - h:cy + h, cx - h:cx + h].any()
        return clean

    def action_masks(self) -> np.ndarray:
        """clean_actions(), or all True when no action is clean: the form sb3-contrib's
        MaskablePPO expects from `env.action_masks()` (at least one valid action)."""
        clean = self.clean_actions()
        return clean if clean.any() else np.ones(9, bool)

    def _loss_map(self, which: str = "current") -> np.ndarray:
        """The current image's loss map under the current AE ('current'), or under the AE before
        its last update ('previous'), divided by its mean and clipped; cached until the AE changes."""
        i = self._img
        key = (which, i)
        if key not in self._loss_cache:
            ae = self.ae
            if which == "previous" and len(self.snapshots) >= 2:
                if getattr(self, "_prev_ae", None) is None:  # one module, reloaded, not one per call
                    self._prev_ae = self._new_ae()
                ae = self._prev_ae
                ae.load_state_dict(self.snapshots[-2])
            with torch.no_grad():
                ae.eval()
                m = self._loss_maps(ae, range(i, i + 1))[0]
                m = torch.clamp(m / (m.mean() + 1e-12), 0.0, self.config.loss_obs_clip)
            self._loss_cache[key] = m.cpu().numpy().astype(np.float32)
        return self._loss_cache[key]

    def _observation(self) -> dict[str, np.ndarray]:
        s, h, i = self.image_size, self._half, self._img
        hist = self._history.get(i)
        if hist is None:
            hist = np.zeros((s, s), np.float32)
        if self.config.state == "chu2020":
            patch = np.zeros((s, s), np.float32)
            patch[self._cy - h:self._cy + h, self._cx - h:self._cx + h] = 1.0
            maps = {"rgb": self._rgb[i], "loss": self._loss_map()[None],
                    "history": (hist > 0).astype(np.float32)[None], "patch": patch[None]}
        else:
            fused = fuse_maps(self._loss_map(), self._variance[i], self._sobel[i], self.config.fused_weights)
            maps = {"rgb": self._rgb[i], "fused": fused[None],
                    "history": (hist / self.config.patches_per_update)[None],
                    "previous_loss": self._loss_map("previous")[None]}
        if self.config.observation == "crop":
            return {k: self._crop(v) for k, v in maps.items()}  # _crop returns new arrays
        # Fresh arrays every call: users (and replay buffers) keep what they are given.
        return {k: np.array(v, dtype=np.float32, copy=True) for k, v in maps.items()}

    def _crop(self, x: np.ndarray) -> np.ndarray:
        v = self.config.crop_size
        out = np.zeros((x.shape[0], v, v), np.float32)
        y0, x0 = self._cy - v // 2, self._cx - v // 2
        sy0, sx0 = max(0, y0), max(0, x0)
        sy1, sx1 = min(self.image_size, y0 + v), min(self.image_size, x0 + v)
        out[:, sy0 - y0:sy1 - y0, sx0 - x0:sx1 - x0] = x[:, sy0:sy1, sx0:sx1]
        return out

    def _info(self) -> dict[str, Any]:
        return {"ae_updates": self.updates, "ae_loss": self.last_ae_loss, "l_pred": self.last_l_pred,
                "best_l_pred": self.best_l_pred,
                "beta": beta_schedule(self.updates, self.config.beta_horizon, self.config.beta_min),
                "image": self._img, "centre": (self._cy, self._cx)}

    # ------------------------------------------------------------------ results and checkpoints
    def best_profiles(self) -> dict[str, np.ndarray]:
        """The loss profiles of the moment l_pred was lowest, raw (not normalised), float32
        (n, T, S, S): "labeled" (D_l), "unlabeled" (the scored D_u), "extra" (train/good in D_u).
        In 'snapshots' mode the D_u profiles are computed here from the AE weights kept then."""
        if self.best is None:
            raise RuntimeError("no best profiles yet: the predictor has not trained (run longer "
                               "than profile_length AE updates)")
        if "unlabeled" in self.best:
            unl = self.best["unlabeled"]
        else:
            ae = self._new_ae()
            maps = []
            with torch.no_grad():
                for snap in self.best["snapshots"]:
                    ae.load_state_dict(snap)
                    ae.eval()
                    maps.append(self._loss_maps(ae, range(self.n_labeled, self.n_images)))
            unl = torch.stack(maps, dim=1)
        unl = unl.cpu().numpy()
        out = {"labeled": self.best["labeled"].cpu().numpy(),
               "unlabeled": unl[:self.n_scored], "extra": unl[self.n_scored:]}
        if "heldout_prob" in self.best:
            out["labeled_heldout_prob"] = self.best["heldout_prob"].cpu().numpy()
            out["labeled_heldout_index"] = np.asarray(self.heldout_images, np.int64)
        return out

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to resume training exactly (take it between episodes).

        Like `nn.Module.state_dict`, it holds references to live tensors: save it (torch.save)
        before stepping the env again."""
        best = None
        if self.best is not None:
            best = {k: (v.cpu() if torch.is_tensor(v) else v) for k, v in self.best.items()
                    if k not in ("snapshots", "predictor")}
            best["snapshots"] = [{k: t.cpu() for k, t in s.items()} for s in self.best["snapshots"]]
            best["predictor"] = {k: t.cpu() for k, t in self.best["predictor"].items()}
        return {
            "ae": self.ae.state_dict(), "ae_opt": self.ae_opt.state_dict(),
            "predictor": self.predictor.state_dict(), "predictor_opt": self.predictor_opt.state_dict(),
            "fold_predictors": [f.state_dict() for f in self.fold_predictors],
            "fold_opts": [o.state_dict() for o in self.fold_opts],
            "heldout_prob": None if self.heldout_prob is None else self.heldout_prob.cpu(),
            "last_heldout_l_pred": self.last_heldout_l_pred,
            "labeled_profiles": self.labeled_profiles.state_dict(),
            "unlabeled_profiles": None if self.unlabeled_profiles is None else self.unlabeled_profiles.state_dict(),
            "buffer": self.buffer.state_dict(),
            "snapshots": [{k: t.cpu() for k, t in s.items()} for s in self.snapshots],
            "best": best, "best_l_pred": self.best_l_pred, "updates": self.updates,
            "pretrained": None if self.pretrained is None else {k: t.cpu() for k, t in self.pretrained.items()},
            "reinits": self.reinits, "last_ae_loss": self.last_ae_loss, "last_l_pred": self.last_l_pred,
            "np_random": self.np_random.bit_generator.state,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore a state_dict(); the next reset() (without seed) continues the same run."""
        if not self._initialised:
            self._init_training_state(warmup=False)  # everything is overwritten below
        dev = self.device
        self.ae.load_state_dict(state["ae"])
        self.ae_opt.load_state_dict(state["ae_opt"])
        self.predictor.load_state_dict(state["predictor"])
        self.predictor_opt.load_state_dict(state["predictor_opt"])
        for net, opt, s_net, s_opt in zip(self.fold_predictors, self.fold_opts, state["fold_predictors"],
                                          state["fold_opts"]):
            net.load_state_dict(s_net)
            opt.load_state_dict(s_opt)
        self.heldout_prob = None if state["heldout_prob"] is None else state["heldout_prob"].to(dev)
        self.last_heldout_l_pred = float(state["last_heldout_l_pred"])
        self.labeled_profiles.load_state_dict(state["labeled_profiles"])
        if self.unlabeled_profiles is not None and state["unlabeled_profiles"] is not None:
            self.unlabeled_profiles.load_state_dict(state["unlabeled_profiles"])
        self.buffer.load_state_dict(state["buffer"])
        self.snapshots = [{k: t.to(dev) for k, t in s.items()} for s in state["snapshots"]]
        best = state["best"]
        if best is not None:
            best = {k: (v.to(dev) if torch.is_tensor(v) else v) for k, v in best.items()}
            best["snapshots"] = [{k: t.to(dev) for k, t in s.items()} for s in best["snapshots"]]
            best["predictor"] = {k: t.to(dev) for k, t in best["predictor"].items()}
        self.best = best
        pre = state.get("pretrained")
        self.pretrained = None if pre is None else {k: t.to(dev) for k, t in pre.items()}
        self.best_l_pred = float(state["best_l_pred"])
        self.updates, self.reinits = int(state["updates"]), int(state["reinits"])
        self.last_ae_loss, self.last_l_pred = float(state["last_ae_loss"]), float(state["last_l_pred"])
        self.np_random.bit_generator.state = state["np_random"]
