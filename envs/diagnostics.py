"""Training diagnostics the env computes on its own device, once per AE update.

They answer the first question a user has on new data, within minutes: does the AE's
reconstruction loss separate the labeled defects from normal pixels at all? If the pixel AUROC of
the D_l loss maps stays near 0.5 (or below), no predictor and no sampler can fix it downstream.
"""
from __future__ import annotations

import math

import torch


def rank_auroc(scores: torch.Tensor, labels: torch.Tensor) -> float:
    """Pixel AUROC of `scores` against bool `labels` (same shape), on the tensors' device.

    The Mann-Whitney statistic with tied scores sharing their average rank (ties count one half),
    i.e. the same number as `evaluation.metrics.auroc` (sklearn's roc_auc_score), without a copy
    to the host. nan when `labels` holds only one class. One sort of all scores, then the average
    rank of each positive from its tie run's bounds (`searchsorted` left and right): defects are
    few, so this is cheaper than ranking every pixel (it runs twice per AE update).
    """
    s = scores.detach().flatten()
    y = labels.flatten().bool()
    n_pos = int(y.sum())
    n_neg = y.numel() - n_pos
    if n_pos == 0 or n_neg == 0:
        return math.nan
    ordered = torch.sort(s).values
    positives = s[y]
    below = torch.searchsorted(ordered, positives, right=False).double()  # scores < p
    up_to = torch.searchsorted(ordered, positives, right=True).double()  # scores <= p
    rank_sum = ((below + 1.0 + up_to) / 2.0).sum()  # 1-based rank, averaged over p's ties
    return float((rank_sum - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))
