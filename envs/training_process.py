"""The training process a BatchSamplingEnv drives: AE, loss profiles, replay buffer, predictor.

The env (envs/batch_sampling_env.py) is the Gymnasium shell: spaces, patch positions, rewards and
observations. Everything an AE update sets in motion lives here: the AE and its re-initialisation,
the D_l (and, eagerly or on demand, D_u) loss profiles, the FIFO replay buffer, the predictor and
its leave-one-out folds, the best moment, and the state dict that resumes all of it.
"""
from __future__ import annotations

import contextlib
import math
from typing import Any

import numpy as np
import torch

from common.profiling import section
from common.progress import progress
from common.seeding import torch_rng_from
from data.split import Split
from envs.best_moment import BestMoment
from envs.buffers import ProfileRing, snapshot
from envs.config import EnvConfig
from envs.diagnostics import rank_auroc
from envs.predictor_training import PredictorTraining
from envs.rewards import alpha_from_masks, alpha_schedule
from models.autoencoder import ConvAutoencoder, ae_train_step, loss_map, reconstruct_images, reconstruction_loss_map


class TrainingProcess:
    """AE updates on the patches an agent picks, and everything that follows each of them.

    Images are indexed D_l first, then the scored D_u, then the extra (never scored) D_u images.
    `start(rng)` begins a run; `train_iteration(patches)` is one AE update (returns l_pred);
    `best_profiles()` gives the profiles of the best moment; `state_dict()` / `load_state_dict()`
    resume it exactly. All randomness comes from the generator given to `start`."""

    def __init__(self, split: Split, config: EnvConfig, device: torch.device) -> None:
        """`config` must be resolved for the images' side (EnvConfig.resolved)."""
        images = split.labeled + split.unlabeled + split.extra_unlabeled
        self.config = c = config
        self.device = device
        self.image_size = images[0].image.shape[0]
        self.n_labeled = len(split.labeled)
        self.n_scored = len(split.unlabeled)
        self.n_images = len(images)
        self._half = c.sampler.patch_size // 2
        # Host copies (the env's observations and clone reward read them every step); device
        # copies for training.
        self.rgb = np.stack([s.image.transpose(2, 0, 1) for s in images]).astype(np.float32) / 255.0
        self.masks = np.stack([s.mask for s in split.labeled]).astype(bool)
        # Every image's mask (D_u and the unscored images too; all False where unannotated): read
        # only by the oracle samplers' diagnostic (BatchSamplingEnv.oracle_action_masks), never by
        # training, rewards or the agent's observation.
        self.all_masks = np.stack([s.mask for s in images]).astype(bool)
        self._images = torch.from_numpy(self.rgb).to(device)
        self._label_masks = torch.from_numpy(self.masks).to(device)
        self._ratio_alpha = c.predictor.alpha if c.predictor.alpha is not None else alpha_from_masks(self.masks, c.predictor.alpha_floor)
        self._normal = [s.image for s in split.normal]
        # Yardsticks of a collapsed AE (e.g. one that outputs black on dark images, whose loss
        # maps are then the image's own intensity): the loss of the trivial reconstruction "each
        # image's mean colour", and the spread (std over pixels) of the D_l images themselves.
        rgb_l = self._images[:self.n_labeled]
        self._mean_colour_loss = float(loss_map(rgb_l.mean(dim=(2, 3), keepdim=True).expand_as(rgb_l), rgb_l,
                                                c.profiles.error).mean())
        self._image_spread = rgb_l.std(dim=(2, 3)).clamp_min(1e-6)
        self._has_both_classes = bool(self.masks.any()) and not bool(self.masks.all())
        self.predictors = PredictorTraining(c, self.masks, self._label_masks, self._images[:self.n_labeled],
                                            lambda: self.alpha, device)
        self.started = False
        self.updates = 0

    @property
    def alpha(self) -> float:
        """Current weight of normal pixels in l_pred: the D_l pixel ratio (or config.predictor.alpha), or
        the decayed value when config.predictor.alpha_decay is on."""
        c = self.config
        if c.predictor.alpha_decay:
            return alpha_schedule(self.updates, c.predictor.alpha_horizon, c.predictor.alpha_start, c.predictor.alpha_min)
        return self._ratio_alpha

    def _torch_rng(self) -> contextlib.AbstractContextManager[None]:
        return torch_rng_from(self.rng, self.device)

    def start(self, rng: np.random.Generator, warmup: bool = True) -> None:
        """Begin the training process afresh, drawing every random number from `rng` (the env's
        np_random, so that reset(seed=s) fixes the whole run): new predictor(s), empty profiles
        and buffer, a new (or pretrained) AE and its warm-up updates. warmup=False skips the
        pretraining and warm-up (load_state_dict overwrites everything next)."""
        self.rng = rng
        c, s, dev = self.config, self.image_size, self.device
        self.predictors.start(rng, self._torch_rng)
        self.labeled_profiles = ProfileRing(self.n_labeled, c.profiles.length, s, s, dev)
        self.unlabeled_profiles = (ProfileRing(self.n_images - self.n_labeled, c.profiles.length, s, s, dev)
                                   if c.profiles.unlabeled == "eager" else None)
        self.snapshots: list[dict[str, torch.Tensor]] = []
        self.best: BestMoment | None = None
        self.best_l_pred = math.inf
        self.best_score = math.inf
        self.updates = 0
        self.reinits = 0
        self.last_ae_loss = math.nan
        self.last_l_pred = math.nan
        self.pred_improvement = math.nan
        """relative drop of l_pred that the last AE update alone caused (pred_reward="improvement")"""
        self._l_unchanged_predictor: float | None = None
        self.diagnostics: dict[str, float] = {}
        self._previous_ae: ConvAutoencoder | None = None
        self.pretrained: dict[str, torch.Tensor] | None = None
        # cover_reward 'balance': how often each pixel was in an AE training patch since the
        # last re-init (host memory, n_images x S x S; reset by _reinit_ae).
        self.visits = np.zeros((self.n_images, s, s), np.float32) if c.rewards.cover == "balance" else None
        self.visit_total = 0.0  # visits.sum(), kept up to date
        if c.ae_training.pretrain_steps > 0 and warmup:  # (warmup=False: load_state_dict restores it)
            self._pretrain_ae()
        self._reinit_ae(warmup)
        self.started = True

    # The in-training predictor's parts, as the env, the runner and the tests read them.
    predictor = property(lambda self: self.predictors.predictor)
    fold_predictors = property(lambda self: self.predictors.fold_predictors)
    heldout_images = property(lambda self: self.predictors.heldout_images)
    heldout_prob = property(lambda self: self.predictors.heldout_prob)
    last_heldout_l_pred = property(lambda self: self.predictors.last_heldout_l_pred)
    buffer = property(lambda self: self.predictors.buffer)

    def new_ae(self) -> ConvAutoencoder:
        return ConvAutoencoder(self.config.sampler.patch_size, self.config.ae).to(self.device)

    def _pretrain_ae(self) -> None:
        """noghredeh2025: train an AE on normal material before the loop; re-inits restart from it.

        Patches come from the anomaly-free images (train/good) when the dataset has them; without
        (CrackForest) from all images, skipping patches that touch a labeled anomaly."""
        c, h = self.config, self._half
        with self._torch_rng():
            ae = self.new_ae()
        opt = torch.optim.Adam(ae.parameters(), lr=c.ae_training.lr)
        normal = (torch.from_numpy(np.stack(self._normal).transpose(0, 3, 1, 2).astype(np.float32) / 255.0)
                  .to(self.device) if self._normal else None)
        lo, hi = h, self.image_size - h
        bar = progress(c.ae_training.pretrain_steps, "AE pretraining on normal patches", leave=False)
        for _ in range(c.ae_training.pretrain_steps):
            bar.update()
            if normal is not None:
                idx = self.rng.integers(len(normal), size=c.sampler.patches_per_update)
                ys, xs = self.rng.integers(lo, hi + 1, size=(2, c.sampler.patches_per_update))
                x = torch.stack([normal[i, :, y - h:y + h, x_ - h:x_ + h] for i, y, x_ in zip(idx, ys, xs)])
            else:
                patches = [p for p in self.random_patches(4 * c.sampler.patches_per_update)
                           if p[0] >= self.n_labeled or not self.masks[p[0], p[1] - h:p[1] + h, p[2] - h:p[2] + h].any()]
                patches = patches[:c.sampler.patches_per_update] or self.random_patches(c.sampler.patches_per_update)
                x = torch.stack([self._images[i, :, y - h:y + h, x_ - h:x_ + h] for i, y, x_ in patches])
            with self._torch_rng():
                ae_train_step(ae, opt, x)
        bar.close()
        self.pretrained = snapshot(ae)

    def _reinit_ae(self, warmup: bool = True) -> None:
        """Fresh (or pretrained) AE weights and optimiser, empty current profiles, then M warm-up
        updates."""
        with self._torch_rng():
            self.ae = self.new_ae()
        if self.pretrained is not None:
            self.ae.load_state_dict(self.pretrained)
        self.ae_opt = torch.optim.Adam(self.ae.parameters(), lr=self.config.ae_training.lr)
        self.labeled_profiles.reset()
        if self.unlabeled_profiles is not None:
            self.unlabeled_profiles.reset()
        if self.visits is not None:
            self.visits[:] = 0.0
            self.visit_total = 0.0
        self.snapshots = []
        self.reinits += 1
        for _ in range(self.config.ae_training.warmup_updates if warmup else 0):
            self.train_iteration(self.random_patches(self.config.sampler.patches_per_update), warmup=True)

    def random_patches(self, n: int) -> list[tuple[int, int, int]]:
        lo, hi = self._half, self.image_size - self._half
        return [(int(self.rng.integers(self.n_images)), int(self.rng.integers(lo, hi + 1)),
                 int(self.rng.integers(lo, hi + 1))) for _ in range(n)]

    def train_iteration(self, patches: list[tuple[int, int, int]], warmup: bool = False) -> float:
        """One AE update on `patches` and everything that follows it; returns l_pred (nan while
        the predictor is not trained yet)."""
        h = self._half
        with section("AE step"):
            x = torch.stack([self._images[i, :, cy - h:cy + h, cx - h:cx + h] for i, cy, cx in patches])
            with self._torch_rng():  # dropout, if any
                self.last_ae_loss = ae_train_step(self.ae, self.ae_opt, x)
        if self.visits is not None:
            for i, cy, cx in patches:
                self.visits[i, cy - h:cy + h, cx - h:cx + h] += 1.0
            self.visit_total += float(len(patches) * (2 * h) ** 2)
        self.updates += 1
        with torch.no_grad():
            c = self.config
            with section("D_l loss maps"):
                recon = reconstruct_images(self.ae, self._images[:self.n_labeled], c.profiles.stride, c.profiles.mode == "whole")
                self._labeled_loss = loss_map(recon, self._images[:self.n_labeled], c.profiles.error)
                self.labeled_profiles.append(self._labeled_loss)
                self.predictors.buffer.append(self._labeled_loss)
            if self.unlabeled_profiles is not None:
                with section("D_u loss maps (eager)"):
                    self.unlabeled_profiles.append(self.loss_maps(self.ae, range(self.n_labeled, self.n_images)))
            with section("diagnostics"):
                self._update_diagnostics(recon)
        self.snapshots.append(snapshot(self.ae))
        if len(self.snapshots) > self.config.profiles.length + 1:  # +1: the previous AE (noghredeh2025 state)
            self.snapshots.pop(0)
        trains = self.updates > self.config.predictor.freeze_updates
        self.predictors.last_heldout_l_pred = math.nan  # set by this update's predictor step, if any
        l_before = self.last_l_pred  # the current predictor's loss on the profiles before this update
        self._l_unchanged_predictor = None  # the same predictor's loss after this AE update, when asked for
        with section("predictor step"):
            l_pred = math.nan
            if self.labeled_profiles.full:
                l_pred, self._l_unchanged_predictor = self.predictors.step(
                    self.labeled_profiles, trains, unchanged=self.config.rewards.pred == "improvement")
                if not math.isnan(self.predictors.heldout_auroc):
                    self.diagnostics["dl_heldout_auroc"] = self.predictors.heldout_auroc
        self.last_l_pred = l_pred
        # What this AE update alone did to the labeled profiles, seen by the same predictor (nan
        # when either loss is missing): the credit signal of pred_reward="improvement".
        self.pred_improvement = math.nan
        if self._l_unchanged_predictor is not None and l_before > 0:  # nan > 0 is False
            self.pred_improvement = (l_before - self._l_unchanged_predictor) / l_before
        self._select_best(trains, l_pred)
        if not warmup and self.updates % self.config.ae_training.reinit_every == 0:
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

    def loss_maps(self, ae: ConvAutoencoder, indices: range, batch: int = 16, error: str | None = None) -> torch.Tensor:
        """Loss maps (n, S, S) of images `indices` under `ae`, with the config's error (or `error`)."""
        c = self.config
        out = []
        idx = list(indices)
        for k in range(0, len(idx), batch):
            out.append(reconstruction_loss_map(ae, self._images[idx[k:k + batch]], error or c.profiles.error,
                                               stride=c.profiles.stride, whole_image=c.profiles.mode == "whole"))
        if not out:
            return torch.zeros(0, self.image_size, self.image_size, device=self.device)
        return torch.cat(out)

    def relative_loss_map(self, image: int, previous: bool = False) -> np.ndarray:
        """The loss map of one image under the current AE (or, with `previous`, the AE before its
        last update), divided by its mean and clipped to [0, loss_obs_clip]: the sampler's view."""
        ae = self.ae
        if previous and len(self.snapshots) >= 2:
            if self._previous_ae is None:  # one module, reloaded, not one per call
                self._previous_ae = self.new_ae()
            ae = self._previous_ae
            ae.load_state_dict(self.snapshots[-2])
        with torch.no_grad():
            ae.eval()
            m = self.loss_maps(ae, range(image, image + 1))[0]
            m = torch.clamp(m / (m.mean() + 1e-12), 0.0, self.config.sampler.loss_obs_clip)
        return m.cpu().numpy().astype(np.float32)

    def _select_best(self, trains: bool, l_pred: float) -> None:
        """Record this update as the best moment if its selection score (profiles.select_on) is the
        lowest so far: l_pred, or the held-out l_pred with predictor.heldout (a frozen, untrained
        predictor's loss says nothing about the profiles: no best before it trains); or, with
        'dl_auroc', minus the mean D_l profile's pixel AUROC once the profiles are full (the
        papers' selection when D_l lacks a defect or a normal pixel to rank)."""
        if self.config.profiles.select_on == "dl_auroc" and self._has_both_classes:
            auroc = self.diagnostics.get("dl_profile_auroc", math.nan)
            score = -auroc if self.labeled_profiles.full else math.nan
        else:
            score = self.predictors.last_heldout_l_pred if self.fold_predictors else l_pred
            score = score if trains else math.nan
        if not math.isnan(score) and score < self.best_score:
            self._record_best(score, l_pred)

    def _record_best(self, score: float, l_pred: float) -> None:
        """Keep what is needed to rebuild the D_u profiles of this moment: the T AE snapshots
        (immutable copies, so keeping references is enough), and the predictor of that moment,
        which scores the best profiles at inference (its l_pred chose them, and the held-out
        threshold belongs to it, not to a predictor trained on for hundreds more updates)."""
        self.best_score = score
        self.best_l_pred = score if self.config.profiles.select_on == "l_pred" else l_pred
        self.best = BestMoment(
            update=self.updates, l_pred=l_pred, score=score,
            snapshots=list(self.snapshots[-self.config.profiles.length:]),
            labeled=self.labeled_profiles.ordered(), predictor=snapshot(self.predictor),
            heldout_prob=None if self.heldout_prob is None else self.heldout_prob.clone(),
            unlabeled=None if self.unlabeled_profiles is None else self.unlabeled_profiles.ordered())

    def best_profiles(self, error: str | None = None) -> dict[str, np.ndarray]:
        """The loss profiles of the best moment, raw (not normalised), float32 (n, T, S, S):
        "labeled" (D_l), "unlabeled" (the scored D_u), "extra" (train/good in D_u). In 'snapshots'
        mode the D_u profiles are computed here from the AE weights kept then; with `error` other
        than the config's, all of them are (models.autoencoder.loss_map), the AE snapshots being
        those of the best moment."""
        if self.best is None:
            raise RuntimeError("no best profiles yet: the predictor has not trained (run longer "
                               "than profile_length AE updates)")
        other = error is not None and error != self.config.profiles.error
        if self.best.unlabeled is not None and not other:
            unl = self.best.unlabeled
        else:
            unl = self._snapshot_profiles(range(self.n_labeled, self.n_images), error)
        unl = unl.cpu().numpy()
        labeled = self._snapshot_profiles(range(self.n_labeled), error) if other else self.best.labeled
        out = {"labeled": labeled.cpu().numpy(), "unlabeled": unl[:self.n_scored], "extra": unl[self.n_scored:]}
        if self.best.heldout_prob is not None and not other:
            out["labeled_heldout_prob"] = self.best.heldout_prob.cpu().numpy()
            out["labeled_heldout_index"] = np.asarray(self.heldout_images, np.int64)
        return out

    def _snapshot_profiles(self, indices: range, error: str | None) -> torch.Tensor:
        ae = self.new_ae()
        maps = []
        with torch.no_grad():
            for snap in self.best.snapshots:
                ae.load_state_dict(snap)
                ae.eval()
                maps.append(self.loss_maps(ae, indices, error=error))
        return torch.stack(maps, dim=1)

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to resume training exactly (take it between episodes).

        Like `nn.Module.state_dict`, it holds references to live tensors: save it (torch.save)
        before stepping the env again."""
        best = None if self.best is None else self.best.state_dict()
        return {
            "ae": self.ae.state_dict(), "ae_opt": self.ae_opt.state_dict(), **self.predictors.state_dict(),
            "labeled_profiles": self.labeled_profiles.state_dict(),
            "unlabeled_profiles": None if self.unlabeled_profiles is None else self.unlabeled_profiles.state_dict(),
            "snapshots": [{k: t.cpu() for k, t in s.items()} for s in self.snapshots],
            "best": best, "best_l_pred": self.best_l_pred, "best_score": self.best_score, "updates": self.updates,
            "pretrained": None if self.pretrained is None else {k: t.cpu() for k, t in self.pretrained.items()},
            "reinits": self.reinits, "last_ae_loss": self.last_ae_loss, "last_l_pred": self.last_l_pred,
            "np_random": self.rng.bit_generator.state,
            "visits": None if self.visits is None else torch.from_numpy(self.visits.copy()),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore a state_dict(); the next reset() (without seed) continues the same run."""
        if not self.started:
            self.start(self.rng, warmup=False)  # everything is overwritten below
        dev = self.device
        self.ae.load_state_dict(state["ae"])
        self.ae_opt.load_state_dict(state["ae_opt"])
        self.predictors.load_state_dict(state)
        self.labeled_profiles.load_state_dict(state["labeled_profiles"])
        if self.unlabeled_profiles is not None and state["unlabeled_profiles"] is not None:
            self.unlabeled_profiles.load_state_dict(state["unlabeled_profiles"])
        self.snapshots = [{k: t.to(dev) for k, t in s.items()} for s in state["snapshots"]]
        self.best = None if state["best"] is None else BestMoment.from_state_dict(state["best"], dev)
        pre = state.get("pretrained")
        self.pretrained = None if pre is None else {k: t.to(dev) for k, t in pre.items()}
        self.best_l_pred = float(state["best_l_pred"])
        self.best_score = float(state.get("best_score", self.best_l_pred))  # older checkpoints selected on l_pred
        self.updates, self.reinits = int(state["updates"]), int(state["reinits"])
        self.last_ae_loss, self.last_l_pred = float(state["last_ae_loss"]), float(state["last_l_pred"])
        self.rng.bit_generator.state = state["np_random"]
        if self.visits is not None:
            if state.get("visits") is None:
                raise ValueError("the checkpoint has no visit counts, which cover_reward='balance' needs: "
                                 "it was trained with another cover_reward")
            self.visits[:] = state["visits"].numpy()
            self.visit_total = float(self.visits.sum(dtype=np.float64))
