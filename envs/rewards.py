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


def frequency_cover_reward(patch_visits: np.ndarray) -> float:
    """R_cover (noghredeh2025): -mean(H_P), H_P the visit counts of the patch's pixels before this
    visit; a first visit costs nothing, every earlier visit of the same pixels costs."""
    if patch_visits.size == 0:
        return 0.0
    return -float(patch_visits.mean())


def balance_cover_reward(patch_visits: np.ndarray, mean_visits: float, bonus: float) -> float:
    """R_cover (beyond the papers, not in any preset): bonus * (1 - mean(V_P) / mean(V)), clipped to
    [-bonus, bonus]. V counts how often each pixel of the dataset has been in an AE training patch
    since the AE's last re-initialisation (this episode's patches included), V_P under the patch
    before this visit, mean(V) over every pixel of every image; bonus when nothing is counted yet.

    Why: chu2020's bonus and noghredeh2025's frequency term count pixels new *this episode*, so a
    jump (a random image, almost surely unvisited among ~80) always pays the most and a move of
    half a patch always overlaps the patch before it: REINFORCE learns to jump only
    (docs/results/why-the-sampler-collapses.md). Counted since the re-init instead, a jump lands on a
    pixel of average count (reward ~0) and a move pays where the AE has seen less than average,
    e.g. the image borders that uniformly drawn patch centres cover least."""
    if patch_visits.size == 0:
        return 0.0
    if mean_visits <= 0.0:
        return float(bonus)
    return float(bonus * np.clip(1.0 - float(patch_visits.mean()) / mean_visits, -1.0, 1.0))


def alpha_schedule(update: int, horizon: int, start: float = 1.0, floor: float = 0.15) -> float:
    """noghredeh2025's alpha: decayed linearly from `start` to `floor` over `horizon` updates.

    Early on the (many) normal pixels weigh fully, which keeps the young predictor from calling
    everything anomalous; later the anomalous pixels gain weight."""
    if horizon <= 0:
        return float(floor)
    return float(max(floor, start - (start - floor) * update / horizon))
