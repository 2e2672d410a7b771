"""Reward terms and schedules of the sampler, as pure functions (tested on hand-made masks)."""
from __future__ import annotations

import numpy as np


def beta_schedule(update: int, horizon: int, beta_min: float = 0.0) -> float:
    """beta = max(beta_min, 1 - j / L): the weight moves from the dense cloning/coverage terms to
    the prediction reward as the predictor becomes worth listening to."""
    if horizon <= 0:
        return float(beta_min)
    return float(max(beta_min, 1.0 - update / horizon))


def clone_reward(patch_mask: np.ndarray) -> float:
    """R_clone (chu2020): +1 if the patch holds no anomalous pixel, -1 otherwise.

    Behaviour cloning of the heuristic "train the AE on normal material only"; only computable
    where the mask is known (D_l).
    """
    return -1.0 if bool(np.any(patch_mask)) else 1.0


def cover_reward(patch_history: np.ndarray, bonus: float) -> float:
    """R_cover (chu2020): `bonus` times the fraction of the patch's pixels not yet covered in this
    episode, so revisiting the same spot earns nothing."""
    if patch_history.size == 0:
        return 0.0
    return float(bonus * (1.0 - np.count_nonzero(patch_history) / patch_history.size))


def alpha_from_masks(masks: np.ndarray, floor: float = 1e-3) -> float:
    """chu2020's alpha: anomalous/normal pixel ratio of the labeled masks, in [floor, 1].

    With it the normal pixels, which outnumber the anomalous ones, weigh as much in l_pred as the
    anomalous ones do."""
    pos = float(np.count_nonzero(masks))
    neg = float(masks.size - pos)
    if neg == 0:
        return 1.0
    return float(min(1.0, max(floor, pos / neg)))
