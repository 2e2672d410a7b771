"""Per-run choices on labeled images: which final map, which threshold, the CRF or not, which
image score, each decided on maps of labeled images the deciding model never trained on.

A user's data is always data nobody tuned on, so nothing of the method's decision is fixed on the
built-in data: each run decides on its own D_l. The maps judged here are out-of-fold (OOF): each
labeled image's map comes from nets fit without it (models.final_predictor.cross_fit). Where D_l
cannot judge (no out-of-fold defect pixel), the choice falls back to the option that cannot rank
below the profiles: the profiles' own member.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from evaluation.metrics import auroc, best_f1_threshold, binary_scores, f1_max
from models.crf import CRFConfig, dense_crf, shift_probability

#: Kind weights (profile nets, image-only nets, profiles' member) of the final maps a run chooses
#: among: the profiles' member alone first (the fallback, which ranks pixels exactly as the mean
#: profile), then pools of the member with the nets (mean logit of each kind, weighted).
CANDIDATES: dict[str, tuple[float, float, float]] = {
    "profiles' mean": (0.0, 0.0, 1.0),
    "all members (3 : 3 : 1)": (3 / 7, 3 / 7, 1 / 7),
    "profile nets + member (3 : 1)": (3 / 4, 0.0, 1 / 4),
    "image nets + member (3 : 1)": (0.0, 3 / 4, 1 / 4),
    "equal thirds": (1 / 3, 1 / 3, 1 / 3),
}
FALLBACK = "profiles' mean"
#: Image-level scores a run chooses among (image_score).
IMAGE_SCORES = ("max", "top1%", "area")


def combine(logits: dict[str, np.ndarray], weights: Sequence[float]) -> np.ndarray:
    """The pooled logit of the kinds ('profile', 'image', 'member') under kind weights."""
    out = np.zeros_like(logits["member"], dtype=np.float64)
    for kind, w in zip(("profile", "image", "member"), weights):
        if w:
            out = out + w * logits[kind]
    return out


def sigmoid(z: np.ndarray) -> np.ndarray:
    return (1.0 / (1.0 + np.exp(-np.clip(z, -60, 60)))).astype(np.float32)


@dataclass
class CandidateScore:
    """One candidate's out-of-fold scores on D_l."""

    name: str
    weights: tuple[float, float, float]
    auroc: float
    f1_max: float
    eligible: bool = False
    """its OOF pixel AUROC is at least the profiles' member's"""


@dataclass
class FinalChoice:
    """What a run chose on D_l for its final map, and why (report.md and predictor.pt record it)."""

    candidate: str
    weights: tuple[float, float, float]
    threshold: float
    """probability threshold of the decision"""
    threshold_rule: str
    crf: bool
    image_score: str
    judged_on: int
    """labeled images with out-of-fold maps (0: D_l could not judge, the fallback)"""
    scores: list[CandidateScore] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    image_threshold: float | None = None
    """image-score threshold of the image decision (choose_image_threshold); None: any defect pixel"""

    def record(self) -> dict[str, Any]:
        return asdict(self)


def judge_candidates(logits: dict[str, np.ndarray], masks: np.ndarray, profiles_mean: np.ndarray | None = None,
                     candidates: dict[str, tuple[float, float, float]] = CANDIDATES) -> list[CandidateScore]:
    """Each candidate's pooled OOF pixel AUROC and F1-max on the held-out labeled maps.

    Eligible: at least the pixel AUROC of `profiles_mean` (the mean profile the member reads, the
    same for every fold; default: the member's own OOF logits), so whatever is chosen ranks the
    held-out labeled pixels no worse than the profiles' mean does (the guarantee of the choice).
    The profiles' member alone is always eligible: shipped, it ranks as the mean profile."""
    scores = []
    for name, w in candidates.items():
        z = combine(logits, w)
        scores.append(CandidateScore(name, w, auroc(z, masks), f1_max(z, masks)[0]))
    floor = auroc(profiles_mean, masks) if profiles_mean is not None else next(
        s.auroc for s in scores if s.weights == CANDIDATES[FALLBACK])
    for s in scores:
        s.eligible = s.weights == CANDIDATES[FALLBACK] or s.auroc >= floor - 1e-12
    return scores


def pick(scores: list[CandidateScore]) -> CandidateScore:
    """The eligible candidate with the best OOF F1-max (first listed on a tie, the fallback first)."""
    eligible = [s for s in scores if s.eligible]
    return max(eligible, key=lambda s: s.f1_max)


def choose_threshold(prob: np.ndarray, masks: np.ndarray, groups: np.ndarray) -> tuple[float, str]:
    """The decision threshold of OOF probability maps: p > 0.5, or the best-F1 threshold of the
    maps, whichever gives the better F1 when each group's threshold is chosen on the other groups'
    maps (so the comparison itself is out of fold). Returns (threshold, why)."""
    at_half = binary_scores(prob >= 0.5, masks).f1
    chosen = np.zeros_like(prob, dtype=bool)
    ids = np.unique(groups)
    for g in ids:
        rest = groups != g
        if ids.size < 2 or not masks[rest].any():
            return 0.5, f"p > 0.5 (too few groups with defects to judge a threshold; F1 at 0.5: {at_half:.3f})"
        t = best_f1_threshold(prob[rest], masks[rest])
        chosen[groups == g] = prob[groups == g] >= t
    nested = binary_scores(chosen, masks).f1
    if nested > at_half:
        t = best_f1_threshold(prob, masks)
        return t, f"best-F1 threshold of the OOF maps ({t:.3g}; OOF F1 {nested:.3f} against {at_half:.3f} at 0.5)"
    return 0.5, f"p > 0.5 (OOF F1 {at_half:.3f}; a threshold chosen on the other folds gave {nested:.3f})"


def image_scores(prob: np.ndarray, rule: str, threshold: float = 0.5) -> np.ndarray:
    """Image-level scores (n,) of probability maps (n, H, W): 'max' (the MVTec AD convention),
    'top1%' (the mean of the top 1 % of pixels: one hot pixel does not decide), or 'area' (the
    fraction of pixels at or above the decision threshold, ties broken by the max)."""
    flat = prob.reshape(len(prob), -1)
    if rule == "max":
        return flat.max(axis=1).astype(np.float64)
    if rule == "top1%":
        k = max(1, flat.shape[1] // 100)
        return np.sort(flat, axis=1)[:, -k:].mean(axis=1).astype(np.float64)
    if rule == "area":
        return (flat >= threshold).mean(axis=1) + 1e-6 * flat.max(axis=1)
    raise ValueError(f"image score must be one of {IMAGE_SCORES}, got {rule!r}")


def choose_image_score(prob: np.ndarray, masks: np.ndarray, threshold: float) -> tuple[str, str]:
    """The image score with the best image AUROC on OOF maps (ties: 'max'), when the held-out
    labeled images hold both normal and defective ones; else 'max'. Returns (rule, why)."""
    labels = masks.reshape(len(masks), -1).any(axis=1)
    if labels.all() or not labels.any():
        return "max", "max (the held-out D_l images are all of one class: nothing to choose on)"
    results = {r: auroc(image_scores(prob, r, threshold), labels) for r in IMAGE_SCORES}
    best = max(IMAGE_SCORES, key=lambda r: (results[r], r == "max"))
    return best, (f"{best} (image AUROC on {len(labels)} held-out D_l images: "
                  + ", ".join(f"{r} {v:.3f}" for r, v in results.items()) + ")")


def choose_image_threshold(prob: np.ndarray, masks: np.ndarray, rule: str,
                           threshold: float) -> tuple[float | None, str]:
    """The threshold on the image score (`rule`) above which an image is called defective: the best
    image F1 on the labeled maps, at the midpoint between two neighbouring scores (ties: the widest
    gap, so the cut sits where the labeled images leave most room). None where the labeled images
    are all of one class: the decision is then "any defect pixel in the mask"."""
    labels = masks.reshape(len(masks), -1).any(axis=1)
    if labels.all() or not labels.any():
        return None, "image decision: any defect pixel in the mask (the D_l maps are all of one class)"
    s = image_scores(prob, rule, threshold)
    values = np.unique(s)
    cuts = np.concatenate([[values[0] - 1e-6], (values[1:] + values[:-1]) / 2])
    gaps = np.concatenate([[np.inf], values[1:] - values[:-1]])
    f1s = [binary_scores(s >= t, labels).f1 for t in cuts]
    best = max(range(len(cuts)), key=lambda i: (round(f1s[i], 12), gaps[i]))
    t = float(cuts[best])
    return t, (f"image decision: {rule} score >= {t:.4g} (the best image F1 on {len(labels)} D_l maps, "
               f"{f1s[best]:.3f}; {int(labels.sum())} defective, {int((~labels).sum())} normal)")


def choose_crf_oof(prob: np.ndarray, threshold: float, masks: np.ndarray, images: np.ndarray,
                   margin: float, crf: CRFConfig | None = None) -> tuple[bool, str]:
    """Whether the decision ends with the dense CRF: only if, on the OOF maps, it raises the F1 of
    the thresholded masks by at least `margin` (measured on the built-in data and the real sets,
    the CRF lowered the final predictor's F1 on every split, so it must earn its place)."""
    if not masks.any():
        return False, "CRF off: no out-of-fold defect pixel to judge it on"
    plain = binary_scores(prob >= threshold, masks).f1
    smoothed = binary_scores(np.stack([dense_crf(img, shift_probability(p, threshold), crf)
                                       for img, p in zip(images, prob)]), masks).f1
    keep = smoothed >= plain + margin
    return keep, (f"CRF {'on' if keep else 'off'}: out-of-fold F1 {smoothed:.3f} with it, {plain:.3f} without "
                  f"(kept only if it gains {margin:g})")
