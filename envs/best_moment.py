"""The best moment of a run: what the training process keeps of the update whose selection loss
was lowest, to export its loss profiles and predictor after training."""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch

Snapshot = dict[str, torch.Tensor]


@dataclass
class BestMoment:
    """The update whose selection loss (l_pred, or the held-out l_pred) was the lowest so far."""

    update: int
    """AE updates done at that moment"""
    l_pred: float
    """the in-training predictor's l_pred at that moment (nan while it was not trained)"""
    snapshots: list[Snapshot]
    """the T AE weight snapshots whose loss maps made the profiles of that moment (immutable
    copies: the D_u profiles are rebuilt from them when needed, and the bundle keeps them)"""
    labeled: torch.Tensor
    """(n_l, T, S, S) raw D_l profiles, oldest map first"""
    predictor: Snapshot
    """the in-training predictor's weights: its l_pred chose the moment, so it scores its profiles"""
    heldout_prob: torch.Tensor | None = None
    """(m, S, S) the held-out predictors' maps of their left-out D_l images, when there are any"""
    unlabeled: torch.Tensor | None = None
    """(n_u, T, S, S) D_u profiles, kept only in 'eager' mode"""
    score: float = math.nan
    """what chose it (lower is better): l_pred, the held-out l_pred, or minus the mean D_l
    profile's pixel AUROC (profiles.select_on)"""

    def state_dict(self) -> dict[str, Any]:
        """Host copies in the checkpoint's format (the keys of the untyped dict it replaced)."""
        out: dict[str, Any] = {"update": self.update, "l_pred": self.l_pred, "score": self.score,
                               "labeled": self.labeled.cpu(),
                               "snapshots": [{k: t.cpu() for k, t in s.items()} for s in self.snapshots],
                               "predictor": {k: t.cpu() for k, t in self.predictor.items()}}
        for key in ("heldout_prob", "unlabeled"):
            if getattr(self, key) is not None:
                out[key] = getattr(self, key).cpu()
        return out

    @classmethod
    def from_state_dict(cls, state: dict[str, Any], device: torch.device) -> "BestMoment":
        def on(t: torch.Tensor | None) -> torch.Tensor | None:
            return None if t is None else t.to(device)

        return cls(update=int(state["update"]), l_pred=float(state["l_pred"]), labeled=state["labeled"].to(device),
                   snapshots=[{k: t.to(device) for k, t in s.items()} for s in state["snapshots"]],
                   predictor={k: t.to(device) for k, t in state["predictor"].items()},
                   heldout_prob=on(state.get("heldout_prob")), unlabeled=on(state.get("unlabeled")),
                   score=float(state.get("score", state["l_pred"])))
