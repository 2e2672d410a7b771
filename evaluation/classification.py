"""Image-level decisions: metrics, and the classical rules on residual maps that the RL classifier
is compared with (a tuned threshold on the max residual; the MVTec AD paper's threshold +
minimum defect area). Thresholds are tuned on the labeled images only."""
from __future__ import annotations

import math

import cv2
import numpy as np

from evaluation.metrics import auroc, binary_scores

__all__ = ["decision_metrics", "tune_threshold", "largest_region_areas", "tune_threshold_min_area",
           "balanced_accuracy"]


def decision_metrics(decisions: np.ndarray, labels: np.ndarray, scores: np.ndarray | None = None) -> dict[str, float]:
    """Accuracy, precision, recall, F1 of binary decisions (anomalous = positive) and, given
    scores (higher = more anomalous), AUROC; nan where undefined (AUROC with a single class)."""
    d, y = np.asarray(decisions, bool).ravel(), np.asarray(labels, bool).ravel()
    if d.shape != y.shape:
        raise ValueError(f"decisions {d.shape} and labels {y.shape} differ in size")
    b = binary_scores(d, y)
    out = {"accuracy": float(np.mean(d == y)), "precision": b.precision, "recall": b.recall, "F1": b.f1}
    out["AUROC"] = auroc(np.asarray(scores, float).ravel(), y) if scores is not None and 0 < y.sum() < len(y) else math.nan
    return out


def balanced_accuracy(decisions: np.ndarray, labels: np.ndarray) -> float:
    """Mean of the per-class accuracies: the criterion for tuning on a class-imbalanced few-shot set."""
    d, y = np.asarray(decisions, bool), np.asarray(labels, bool)
    return float(np.mean([np.mean(d[y == c] == c) for c in (False, True) if (y == c).any()]))


def tune_threshold(scores: np.ndarray, labels: np.ndarray) -> float:
    """Threshold t (decide anomalous when score >= t) with the best balanced accuracy on the
    labeled images; among ties, the midpoint of the best run of candidate thresholds."""
    s = np.unique(np.asarray(scores, float))
    candidates = np.concatenate([[s[0]], (s[1:] + s[:-1]) / 2, [s[-1] + 1e-12]])
    acc = np.array([balanced_accuracy(np.asarray(scores) >= t, labels) for t in candidates])
    best = np.flatnonzero(acc == acc.max())
    return float(candidates[best[len(best) // 2]])


def largest_region_areas(residuals: np.ndarray, threshold: float) -> np.ndarray:
    """Per map, the pixel area of the largest 8-connected region with residual >= threshold."""
    areas = []
    for r in residuals:
        n, _, stats, _ = cv2.connectedComponentsWithStats((r >= threshold).astype(np.uint8), connectivity=8)
        areas.append(int(stats[1:, cv2.CC_STAT_AREA].max()) if n > 1 else 0)
    return np.array(areas)


def tune_threshold_min_area(residuals: np.ndarray, labels: np.ndarray, n_thresholds: int = 25) -> tuple[float, int]:
    """The MVTec AD paper's rule: an image is anomalous when a connected region of residual >= t
    covers at least A pixels. (t, A) maximise balanced accuracy on the labeled images; t is
    searched over high quantiles of their residuals, A over the region areas that occur."""
    qs = np.quantile(residuals, np.linspace(0.90, 0.9999, n_thresholds))
    best: tuple[float, float, int] = (-1.0, float(qs[0]), 1)
    for t in np.unique(qs):
        areas = largest_region_areas(residuals, float(t))
        for a in np.unique(np.concatenate([[1], areas[areas > 0]])):
            acc = balanced_accuracy(areas >= a, labels)
            if acc > best[0]:
                best = (acc, float(t), int(a))
    return best[1], best[2]
