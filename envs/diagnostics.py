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
    to the host. nan when `labels` holds only one class.
    """
    s = scores.detach().flatten()
    y = labels.flatten().bool()
    n_pos = int(y.sum())
    n_neg = y.numel() - n_pos
    if n_pos == 0 or n_neg == 0:
        return math.nan
    _, inverse, counts = torch.unique(s, sorted=True, return_inverse=True, return_counts=True)
    last = torch.cumsum(counts, 0).double()
    average_rank = last - (counts.double() - 1.0) / 2.0  # 1-based rank, averaged over ties
    rank_sum = average_rank[inverse][y].sum()
    return float((rank_sum - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))
