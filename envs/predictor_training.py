"""The predictor a run trains on its labeled loss profiles, one step per AE update: its replay
buffer, its optimiser, and the leave-one-out predictors that tell what it does on labeled images
it never trained on (predictor.heldout). The training process (envs.training_process) owns one
and hands it each update's profiles; l_pred, what it returns, is the reward's R_pred and the papers'
selection of the best moment."""
from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from envs.buffers import ProfileRing, ReplayBuffer
from envs.config import EnvConfig
from envs.diagnostics import rank_auroc
from models.fit import loo_folds, predictor_step
from models.predictor import build_predictor, predictor_input, prior_logit, profile_scale, set_prior_bias, weighted_bce


class PredictorTraining:
    """The in-training predictor, its leave-one-out folds and their replay buffer."""

    def __init__(self, config: EnvConfig, masks: np.ndarray, label_masks: torch.Tensor, images_l: torch.Tensor,
                 alpha: Callable[[], float], device: torch.device) -> None:
        """`masks` / `label_masks`: the D_l masks on the host and the device; `images_l`: the D_l
        images (n, 3, S, S) on the device; `alpha`: the current weight of normal pixels in l_pred."""
        self.config, self.device, self.alpha = config, device, alpha
        self.masks, self._label_masks, self._images_l = masks, label_masks, images_l
        # Leave-one-out folds that can learn anything (models.fit.loo_folds); with a single defect
        # image in D_l there are none, and selection is on l_pred.
        self.heldout_images = loo_folds(masks) if config.predictor.heldout else []
        self._heldout_masks = label_masks[self.heldout_images]

    def new_predictor(self) -> torch.nn.Module:
        c = self.config
        net = build_predictor(c.profiles.length, c.predictor.width, c.predictor.inputs, c.predictor.skip,
                              c.predictor.arch)
        level = prior_logit(self.masks, self.alpha()) if c.predictor.prior_bias else None
        if level is not None:
            set_prior_bias(net, level)
        return net.to(self.device)

    def start(self, rng: np.random.Generator, torch_rng: Callable[[], Any]) -> None:
        """New predictor(s) (their init drawn from `rng` through `torch_rng`), optimisers, buffer."""
        self.rng = rng
        c = self.config
        with torch_rng():
            self.predictor = self.new_predictor()
        self.predictor_opt = torch.optim.Adam(self.predictor.parameters(), lr=c.predictor.lr)
        self.fold_predictors: list[torch.nn.Module] = []
        if c.predictor.heldout:
            with torch_rng():
                self.fold_predictors = [self.new_predictor() for _ in self.heldout_images]
        self.fold_opts = [torch.optim.Adam(f.parameters(), lr=c.predictor.lr) for f in self.fold_predictors]
        self.heldout_prob: torch.Tensor | None = None
        self.last_heldout_l_pred = math.nan
        self.heldout_auroc = math.nan
        self.buffer = ReplayBuffer(c.predictor.buffer_size, c.profiles.length, self._label_masks,
                                   self._images_l if c.predictor.inputs == "profile+rgb" else None)

    def step(self, labeled: ProfileRing, train: bool = True, unchanged: bool = False) -> tuple[float, float | None]:
        """Push augmented labeled profiles, one predictor step on a buffer batch (unless frozen:
        `train` False), then l_pred of the current (unaugmented) labeled profiles: the reward follows
        what this AE update did. Returns l_pred and, when `unchanged` (or frozen), the l_pred of the
        predictor as it was before this step (None otherwise)."""
        c = self.config
        self.last_heldout_l_pred = self.heldout_auroc = math.nan
        rgb = self._images_l if c.predictor.inputs == "profile+rgb" else None
        ordered = labeled.ordered()
        profiles = predictor_input(ordered, rgb)
        ks = self.rng.integers(0, 8, size=len(ordered))
        self.buffer.push(profile_scale(ordered)[:, 0, 0, 0], ks)  # augmented copies of `profiles`
        before = None
        if not train or unchanged:  # the predictor as it was before this update
            with torch.no_grad():
                before = float(weighted_bce(self.predictor(profiles)[:, 0], self._label_masks, self.alpha()))
            if not train:
                return before, before
        self._train(self.predictor, self.predictor_opt, self.buffer.sample(c.predictor.batch, self.rng))
        if self.fold_predictors:
            self._heldout_step(profiles)
        with torch.no_grad():
            return float(weighted_bce(self.predictor(profiles)[:, 0], self._label_masks, self.alpha())), before

    def _train(self, net: torch.nn.Module, opt: torch.optim.Optimizer,
               batch: tuple[torch.Tensor, torch.Tensor] | None) -> None:
        """One step of the env's predictor recipe (models.fit.predictor_step) on a buffer batch."""
        if batch is None:
            return
        c = self.config.predictor
        jitter = c.colour_jitter if c.inputs == "profile+rgb" else 0.0
        predictor_step(net, opt, *batch, self.rng, alpha=self.alpha(), crop=c.crop, colour_jitter=jitter,
                       dice=c.dice, shrink=c.shrink)

    def _heldout_step(self, profiles: torch.Tensor) -> None:
        """Leave-one-out: fold predictor j trains on the buffer entries of every labeled image but
        heldout_images[j] and predicts that image. Their maps (`heldout_prob`, in heldout_images
        order) and loss (`last_heldout_l_pred`) are what the predictor does on labeled images it
        never saw."""
        c = self.config
        for k, net, opt in zip(self.heldout_images, self.fold_predictors, self.fold_opts):
            self._train(net, opt, self.buffer.sample(c.predictor.batch, self.rng, exclude=k))
        with torch.no_grad():
            logits = torch.cat([net(profiles[k:k + 1]) for k, net in zip(self.heldout_images, self.fold_predictors)])[:, 0]
        self.last_heldout_l_pred = float(weighted_bce(logits, self._heldout_masks, self.alpha()))
        self.heldout_prob = torch.sigmoid(logits)
        if self._heldout_masks.any() and not self._heldout_masks.all():
            self.heldout_auroc = rank_auroc(self.heldout_prob, self._heldout_masks)

    def state_dict(self) -> dict[str, Any]:
        return {"predictor": self.predictor.state_dict(), "predictor_opt": self.predictor_opt.state_dict(),
                "fold_predictors": [f.state_dict() for f in self.fold_predictors],
                "fold_opts": [o.state_dict() for o in self.fold_opts],
                "heldout_prob": None if self.heldout_prob is None else self.heldout_prob.cpu(),
                "last_heldout_l_pred": self.last_heldout_l_pred, "buffer": self.buffer.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.predictor.load_state_dict(state["predictor"])
        self.predictor_opt.load_state_dict(state["predictor_opt"])
        for net, opt, s_net, s_opt in zip(self.fold_predictors, self.fold_opts, state["fold_predictors"],
                                          state["fold_opts"]):
            net.load_state_dict(s_net)
            opt.load_state_dict(s_opt)
        self.heldout_prob = None if state["heldout_prob"] is None else state["heldout_prob"].to(self.device)
        self.last_heldout_l_pred = float(state["last_heldout_l_pred"])
        self.buffer.load_state_dict(state["buffer"])
