"""Pixel- and image-level anomaly segmentation metrics, as pure numpy functions.

Every function follows the definition used in the literature the package compares against, so our
numbers can sit next to published ones:

* ``binary_scores`` — precision / recall / F1 of final binary masks (chu2020, Table 1), pooled over
  all pixels of all images (one confusion matrix, not a mean of per-image scores).
* ``precision_recall_curve`` / ``f1_max`` — anomalib's ``F1Max``: the best F1 over *every* threshold
  of the full precision–recall curve of the probability maps (noghredeh2025).
* ``auroc`` — exact pixel (or image) ROC AUC with ties handled by the trapezoid rule over distinct
  thresholds, i.e. the Mann–Whitney statistic with ties counted as one half.
* ``aupro`` — the MVTec AD / anomalib area under the per-region-overlap curve up to FPR 0.3,
  normalised by 0.3.

Conventions shared by all functions:

* scores are floats of any shape (flattened); ground truth is bool or 0/1 of the same shape;
* a pixel is predicted anomalous at threshold ``t`` iff ``score >= t``;
* a ratio whose denominator is zero (e.g. precision with no predicted positives) is ``0.0``.

Everything is vectorised (one sort over all pixels), so 1e6+ pixels take well under a second.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

# numpy >= 2.0 renamed trapz to trapezoid; support both (pyproject allows numpy >= 1.24)
_trapezoid = getattr(np, "trapezoid", None) or np.trapz  # type: ignore[attr-defined]

__all__ = [
    "BinaryScores",
    "binary_scores",
    "precision_recall_curve",
    "f1_max",
    "best_f1_threshold",
    "auroc",
    "pro_curve",
    "aupro",
    "image_scores_from_maps",
]


# --------------------------------------------------------------------------------------------------
# input validation
# --------------------------------------------------------------------------------------------------
def _as_binary(array: np.ndarray, name: str) -> np.ndarray:
    """Return ``array`` flattened as bool, rejecting anything that is not bool or 0/1.

    Silently thresholding e.g. a probability map passed as ``gt`` would produce plausible but wrong
    numbers, so we refuse instead.
    """
    array = np.asarray(array)
    if array.size == 0:
        raise ValueError(f"`{name}` is empty; metrics need at least one pixel.")
    if array.dtype == bool:
        return array.ravel()
    if not (np.issubdtype(array.dtype, np.number)):
        raise ValueError(f"`{name}` must be bool or numeric 0/1, got dtype {array.dtype}.")
    flat = array.ravel()
    is_zero = flat == 0
    if not np.all(is_zero | (flat == 1)):
        bad = flat[~(is_zero | (flat == 1))][0]
        raise ValueError(f"`{name}` must contain only 0/1 (or bool) values, found {bad!r}.")
    return ~is_zero


def _as_scores(array: np.ndarray, name: str) -> np.ndarray:
    """Return ``array`` flattened as float64, rejecting empty or non-finite input."""
    array = np.asarray(array)
    if array.size == 0:
        raise ValueError(f"`{name}` is empty; metrics need at least one pixel.")
    if not (np.issubdtype(array.dtype, np.number) or array.dtype == bool):
        raise ValueError(f"`{name}` must be numeric, got dtype {array.dtype}.")
    flat = array.astype(np.float64, copy=False).ravel()
    if not np.all(np.isfinite(flat)):
        raise ValueError(f"`{name}` contains NaN or infinite values.")
    return flat


def _check_same_shape(a: np.ndarray, a_name: str, b: np.ndarray, b_name: str) -> None:
    a_shape, b_shape = np.shape(a), np.shape(b)
    if a_shape != b_shape:
        raise ValueError(
            f"`{a_name}` and `{b_name}` must have the same shape, got {a_shape} and {b_shape}."
        )


def _safe_div(num: np.ndarray | float, den: np.ndarray | float) -> np.ndarray:
    """Elementwise ``num / den`` with ``0/0 -> 0`` (the convention of sklearn's ``zero_division=0``)."""
    num = np.asarray(num, dtype=np.float64)
    den = np.asarray(den, dtype=np.float64)
    out = np.zeros(np.broadcast(num, den).shape, dtype=np.float64)
    np.divide(num, den, out=out, where=den != 0)
    return out


def _binary_clf_curve(scores: np.ndarray, gt: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Cumulative false/true positives at each distinct score, thresholds in decreasing order.

    ``fps[k]``, ``tps[k]`` count pixels with ``score >= thresholds[k]``. One stable sort; ties are
    collapsed by keeping only the last index of each run of equal scores, which is what makes AUROC
    and the PR curve exact under ties.
    """
    order = np.argsort(scores, kind="mergesort")[::-1]
    sorted_scores = scores[order]
    sorted_gt = gt[order]
    distinct = np.flatnonzero(np.diff(sorted_scores))
    last_of_run = np.r_[distinct, sorted_gt.size - 1]
    tps = np.cumsum(sorted_gt, dtype=np.int64)[last_of_run]
    fps = (last_of_run + 1) - tps
    return fps, tps, sorted_scores[last_of_run]


# --------------------------------------------------------------------------------------------------
# binary masks
# --------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class BinaryScores:
    """Pixel confusion counts and the scores derived from them, pooled over all images."""

    precision: float
    """tp / (tp + fp); 0.0 when nothing is predicted anomalous."""
    recall: float
    """tp / (tp + fn); 0.0 when the ground truth has no anomalous pixel."""
    f1: float
    """Harmonic mean of precision and recall; 0.0 when both are 0."""
    tp: int
    """Anomalous pixels predicted anomalous."""
    fp: int
    """Normal pixels predicted anomalous."""
    fn: int
    """Anomalous pixels predicted normal."""


def binary_scores(pred: np.ndarray, gt: np.ndarray) -> BinaryScores:
    """Precision, recall and F1 of a binary prediction, pooled over all pixels of all images.

    Pooling (one confusion matrix for the whole set) is the chu2020 protocol; it weights large
    defects more than a per-image mean would. Undefined ratios (0/0) are reported as 0.0, the same
    as sklearn's ``precision_recall_fscore_support(..., zero_division=0)``.

    Args:
        pred: predicted mask(s), bool or 0/1, any shape.
        gt: ground-truth mask(s), bool or 0/1, same shape as ``pred``.
    """
    _check_same_shape(pred, "pred", gt, "gt")
    p = _as_binary(pred, "pred")
    g = _as_binary(gt, "gt")
    tp = int(np.count_nonzero(p & g))
    fp = int(np.count_nonzero(p & ~g))
    fn = int(np.count_nonzero(~p & g))
    precision = float(_safe_div(tp, tp + fp))
    recall = float(_safe_div(tp, tp + fn))
    f1 = float(_safe_div(2 * tp, 2 * tp + fp + fn))
    return BinaryScores(precision=precision, recall=recall, f1=f1, tp=tp, fp=fp, fn=fn)


# --------------------------------------------------------------------------------------------------
# threshold-free pixel metrics
# --------------------------------------------------------------------------------------------------
def precision_recall_curve(
    scores: np.ndarray, gt: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Precision and recall at every distinct score, laid out exactly like sklearn's.

    Returns ``(precision, recall, thresholds)`` with ``thresholds`` the distinct score values in
    increasing order and ``precision[k]``, ``recall[k]`` those of ``scores >= thresholds[k]``. As in
    sklearn, one final point ``(precision=1, recall=0)`` is appended so the curve reaches the axis,
    hence ``len(precision) == len(recall) == len(thresholds) + 1``.

    Raises:
        ValueError: if ``gt`` has no anomalous pixel (recall is undefined).
    """
    _check_same_shape(scores, "scores", gt, "gt")
    s = _as_scores(scores, "scores")
    g = _as_binary(gt, "gt")
    if not g.any():
        raise ValueError("`gt` has no positive (anomalous) pixel; the PR curve is undefined.")
    fps, tps, thresholds = _binary_clf_curve(s, g)
    precision = _safe_div(tps, tps + fps)
    recall = tps / tps[-1]
    return (
        np.r_[precision[::-1], 1.0],
        np.r_[recall[::-1], 0.0],
        thresholds[::-1].copy(),
    )


def f1_max(scores: np.ndarray, gt: np.ndarray) -> tuple[float, float]:
    """Best F1 over all thresholds of the full PR curve, and the threshold achieving it.

    This is anomalib's ``F1Max``: no fixed grid, every distinct score is a candidate, and the
    threshold is applied as ``scores >= threshold``. When several thresholds tie, the lowest one is
    returned (first maximum in increasing order, as anomalib's ``argmax`` does).

    Raises:
        ValueError: if ``gt`` has no anomalous pixel.
    """
    precision, recall, thresholds = precision_recall_curve(scores, gt)
    # drop the appended (1, 0) end point: it has no threshold and F1 = 0 there
    p, r = precision[:-1], recall[:-1]
    f1 = _safe_div(2 * p * r, p + r)
    best = int(np.argmax(f1))
    return float(f1[best]), float(thresholds[best])


def best_f1_threshold(scores: np.ndarray, gt: np.ndarray) -> float:
    """Threshold maximising F1, e.g. to tune a baseline's cut-off on the labeled images D_l.

    Apply it as ``scores >= threshold``; equal to ``f1_max(scores, gt)[1]``.
    """
    return f1_max(scores, gt)[1]


def auroc(scores: np.ndarray, gt: np.ndarray) -> float:
    """Exact area under the ROC curve.

    Trapezoid rule over the distinct thresholds, so a group of tied scores contributes a diagonal
    segment — equivalently the probability that a random anomalous pixel scores higher than a
    random normal one, ties counting one half. Matches ``sklearn.metrics.roc_auc_score``.

    Raises:
        ValueError: naming ``gt`` if it contains only one class.
    """
    _check_same_shape(scores, "scores", gt, "gt")
    s = _as_scores(scores, "scores")
    g = _as_binary(gt, "gt")
    n_pos = int(np.count_nonzero(g))
    if n_pos == 0 or n_pos == g.size:
        raise ValueError(
            "`gt` contains only one class "
            f"({'all anomalous' if n_pos else 'all normal'}); AUROC is undefined."
        )
    fps, tps, _ = _binary_clf_curve(s, g)
    fpr = np.r_[0.0, fps / fps[-1]]
    tpr = np.r_[0.0, tps / tps[-1]]
    return float(_trapezoid(tpr, fpr))


# --------------------------------------------------------------------------------------------------
# per-region overlap
# --------------------------------------------------------------------------------------------------
_EIGHT_CONNECTIVITY = np.ones((3, 3), dtype=int)


def _as_map_stack(array: np.ndarray, name: str) -> np.ndarray:
    array = np.asarray(array)
    if array.ndim == 2:
        array = array[None]
    if array.ndim != 3:
        raise ValueError(f"`{name}` must have shape (N, H, W) or (H, W), got {array.shape}.")
    if array.size == 0:
        raise ValueError(f"`{name}` is empty; metrics need at least one pixel.")
    return array


def pro_curve(score_maps: np.ndarray, gt_masks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Exact FPR / PRO curve, one point per distinct score (the MVTec AD reference algorithm).

    Each ground-truth connected component (8-connectivity, per image) is one region. At threshold
    ``t`` the region's overlap is the fraction of its pixels with ``score >= t``; PRO is the mean of
    that overlap over all regions of all images, so small defects count as much as large ones. FPR
    is over the normal pixels of all images. Instead of looping over thresholds, every anomalous
    pixel carries a weight ``1 / (size of its region)`` and every normal pixel a weight 1; after one
    descending sort, cumulative sums of these weights give PRO and FPR at every distinct score.

    Returns:
        ``(fpr, pro)``, both increasing, starting at ``(0, 0)`` and ending at ``(1, 1)``.

    Raises:
        ValueError: on shape mismatch, if ``gt_masks`` has no anomalous region, or no normal pixel.
    """
    _check_same_shape(score_maps, "score_maps", gt_masks, "gt_masks")
    maps = _as_map_stack(score_maps, "score_maps")
    masks = _as_map_stack(gt_masks, "gt_masks")
    s = _as_scores(maps, "score_maps")
    g = _as_binary(masks, "gt_masks").reshape(masks.shape)

    pro_weight = np.zeros(g.shape, dtype=np.float64)
    n_regions = 0
    for i in range(g.shape[0]):  # loop over images, not pixels
        labeled, n = ndimage.label(g[i], structure=_EIGHT_CONNECTIVITY)
        if n == 0:
            continue
        sizes = np.bincount(labeled.ravel())
        inv = np.zeros(n + 1, dtype=np.float64)
        inv[1:] = 1.0 / sizes[1:]
        pro_weight[i] = inv[labeled]
        n_regions += n
    if n_regions == 0:
        raise ValueError("`gt_masks` has no anomalous region; PRO is undefined.")
    normal = ~g.ravel()
    n_normal = int(np.count_nonzero(normal))
    if n_normal == 0:
        raise ValueError("`gt_masks` has no normal pixel; the false positive rate is undefined.")

    order = np.argsort(s, kind="mergesort")[::-1]
    sorted_scores = s[order]
    fpr = np.cumsum(normal[order], dtype=np.float64) / n_normal
    pro = np.cumsum(pro_weight.ravel()[order]) / n_regions
    last_of_run = np.r_[np.flatnonzero(np.diff(sorted_scores)), s.size - 1]
    fpr = np.clip(fpr[last_of_run], 0.0, 1.0)
    pro = np.clip(pro[last_of_run], 0.0, 1.0)
    return np.r_[0.0, fpr, 1.0], np.r_[0.0, pro, 1.0]


def aupro(score_maps: np.ndarray, gt_masks: np.ndarray, fpr_limit: float = 0.3) -> float:
    """Normalised area under the PRO curve up to ``fpr_limit`` (MVTec AD / anomalib AUPRO).

    The curve is exact (every distinct score is a threshold, see ``pro_curve``), so no threshold
    grid has to be chosen and the result does not depend on one. This is the MVTec AD evaluation
    code's algorithm; anomalib computes the same PRO/FPR quantities but resamples per-region ROC
    curves onto a shared grid, so its value can differ from ours in the last digits. The curve is cut at
    ``fpr_limit`` by linear interpolation, integrated with the trapezoid rule and divided by
    ``fpr_limit``, so perfect scores give 1.0 and a random ranking about ``fpr_limit / 2``.

    Args:
        score_maps: anomaly scores, shape (N, H, W) or (H, W).
        gt_masks: ground-truth masks, bool or 0/1, same shape.
        fpr_limit: integration limit on the false positive rate, in (0, 1].
    """
    if not 0.0 < fpr_limit <= 1.0:
        raise ValueError(f"`fpr_limit` must be in (0, 1], got {fpr_limit}.")
    fpr, pro = pro_curve(score_maps, gt_masks)
    # The curve can be vertical (several points at one FPR); for interpolation at fpr_limit take the
    # highest PRO reached at or below it and the lowest one above it, i.e. the curve's two sides.
    below = fpr <= fpr_limit
    x = fpr[below]
    y = pro[below]
    if x[-1] < fpr_limit:
        k = int(np.argmax(~below))  # first point beyond the limit (exists: fpr ends at 1.0)
        x0, y0, x1, y1 = fpr[k - 1], pro[k - 1], fpr[k], pro[k]
        y_lim = y0 + (y1 - y0) * (fpr_limit - x0) / (x1 - x0)
        x = np.r_[x, fpr_limit]
        y = np.r_[y, y_lim]
    return float(_trapezoid(y, x) / fpr_limit)


# --------------------------------------------------------------------------------------------------
# image level
# --------------------------------------------------------------------------------------------------
def image_scores_from_maps(score_maps: np.ndarray) -> np.ndarray:
    """Image-level anomaly score of each map: its maximum pixel score.

    The max is the usual reduction in the MVTec AD literature (an image is as anomalous as its most
    anomalous pixel); feed the result with per-image labels to ``auroc`` for image AUROC.

    Args:
        score_maps: shape (N, H, W) (or (N, ...) — all axes after the first are reduced, so pass
            a single map as ``map[None]``, not as (H, W), which would be read as H maps).

    Returns:
        float array of shape (N,).
    """
    maps = np.asarray(score_maps)
    if maps.ndim < 2:
        raise ValueError(f"`score_maps` must have shape (N, H, W), got {maps.shape}.")
    if maps.size == 0:
        raise ValueError(f"`score_maps` is empty, got shape {maps.shape}.")
    return maps.reshape(maps.shape[0], -1).max(axis=1).astype(np.float64)
