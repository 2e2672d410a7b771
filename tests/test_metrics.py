"""Metrics against hand-computed values, against sklearn, and against slow reference loops."""

from __future__ import annotations

import sys

import numpy as np
import pytest
from scipy import ndimage
from sklearn import metrics as skm

from evaluation.metrics import (
    BinaryScores,
    aupro,
    auroc,
    best_f1_threshold,
    binary_scores,
    f1_max,
    image_scores_from_maps,
    precision_recall_curve,
    pro_curve,
)

# sklearn's documented example: negatives score 0.1 and 0.4, positives 0.35 and 0.8.
SCORES = np.array([0.1, 0.4, 0.35, 0.8])
GT = np.array([0, 0, 1, 1])


def _random_with_ties(seed: int, n: int = 2000) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    gt = rng.random(n) < 0.2
    # rounding to 1 decimal creates many ties, shifting positives up makes the curve non-trivial
    scores = np.round(rng.random(n) * 0.7 + 0.3 * gt, 1)
    return scores, gt


# ------------------------------------------------------------------ binary_scores
def test_binary_scores_hand() -> None:
    pred = np.array([1, 1, 0, 0, 1])
    gt = np.array([1, 0, 1, 0, 1])
    # tp: idx 0, 4 -> 2; fp: idx 1 -> 1; fn: idx 2 -> 1
    # precision = 2/3, recall = 2/3, f1 = 2*2 / (2*2 + 1 + 1) = 2/3
    s = binary_scores(pred, gt)
    assert (s.tp, s.fp, s.fn) == (2, 1, 1)
    assert s.precision == pytest.approx(2 / 3)
    assert s.recall == pytest.approx(2 / 3)
    assert s.f1 == pytest.approx(2 / 3)


def test_binary_scores_pools_over_images() -> None:
    # image 0: tp=1, fp=0, fn=0 ; image 1: tp=0, fp=0, fn=3 -> pooled tp=1, fn=3
    # precision 1/1 = 1, recall 1/4, f1 = 2 / (2 + 0 + 3) = 0.4 (a per-image mean would give 0.5)
    pred = np.array([[[1, 0], [0, 0]], [[0, 0], [0, 0]]], dtype=bool)
    gt = np.array([[[1, 0], [0, 0]], [[1, 1], [1, 0]]], dtype=bool)
    s = binary_scores(pred, gt)
    assert s == BinaryScores(precision=1.0, recall=0.25, f1=pytest.approx(0.4), tp=1, fp=0, fn=3)


def test_binary_scores_zero_division_is_zero() -> None:
    s = binary_scores(np.zeros(4, bool), np.zeros(4, bool))
    assert (s.precision, s.recall, s.f1) == (0.0, 0.0, 0.0)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_binary_scores_matches_sklearn(seed: int) -> None:
    rng = np.random.default_rng(seed)
    gt = rng.random((3, 20, 20)) < 0.3
    pred = rng.random((3, 20, 20)) < 0.4
    p, r, f, _ = skm.precision_recall_fscore_support(
        gt.ravel(), pred.ravel(), average="binary", zero_division=0
    )
    s = binary_scores(pred, gt)
    assert (s.precision, s.recall, s.f1) == pytest.approx((p, r, f))


# ------------------------------------------------------------------ PR curve / F1max
def test_precision_recall_curve_hand() -> None:
    # t=0.10: all 4 predicted, tp=2 fp=2 -> P=1/2, R=1
    # t=0.35: {.35,.4,.8}, tp=2 fp=1 -> P=2/3, R=1
    # t=0.40: {.4,.8},     tp=1 fp=1 -> P=1/2, R=1/2
    # t=0.80: {.8},        tp=1 fp=0 -> P=1,   R=1/2 ; then the appended end point (1, 0)
    p, r, t = precision_recall_curve(SCORES, GT)
    np.testing.assert_allclose(p, [0.5, 2 / 3, 0.5, 1.0, 1.0])
    np.testing.assert_allclose(r, [1.0, 1.0, 0.5, 0.5, 0.0])
    np.testing.assert_allclose(t, [0.1, 0.35, 0.4, 0.8])


def test_f1_max_hand() -> None:
    # F1 at the thresholds above: 2/3, 0.8, 1/2, 2/3 -> best 0.8 at t=0.35
    best, thr = f1_max(SCORES, GT)
    assert best == pytest.approx(0.8)
    assert thr == pytest.approx(0.35)
    assert best_f1_threshold(SCORES, GT) == pytest.approx(0.35)
    # the threshold reproduces the F1 when applied as scores >= t
    assert binary_scores(SCORES >= thr, GT).f1 == pytest.approx(best)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_pr_curve_and_f1_max_match_sklearn(seed: int) -> None:
    scores, gt = _random_with_ties(seed)
    p, r, t = precision_recall_curve(scores, gt)
    sp, sr, st = skm.precision_recall_curve(gt, scores)
    np.testing.assert_allclose(p, sp)
    np.testing.assert_allclose(r, sr)
    np.testing.assert_allclose(t, st)
    f1 = 2 * sp * sr / np.where(sp + sr == 0, 1, sp + sr)
    best, thr = f1_max(scores, gt)
    assert best == pytest.approx(f1.max())
    assert skm.f1_score(gt, scores >= thr) == pytest.approx(best)


# ------------------------------------------------------------------ AUROC
def test_auroc_hand() -> None:
    # pairs (pos, neg): (.35,.1) win, (.35,.4) loss, (.8,.1) win, (.8,.4) win -> 3/4
    assert auroc(SCORES, GT) == pytest.approx(0.75)


def test_auroc_ties_hand() -> None:
    # pos {0.5, 0.9}, neg {0.5, 0.5}: 0.9 beats both (2), 0.5 ties both (2 * 1/2) -> 3/4
    assert auroc(np.array([0.5, 0.5, 0.5, 0.9]), np.array([0, 1, 0, 1])) == pytest.approx(0.75)
    # all scores equal: the diagonal -> 1/2
    assert auroc(np.ones(6), np.array([0, 1, 0, 1, 1, 0])) == pytest.approx(0.5)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_auroc_matches_sklearn(seed: int) -> None:
    scores, gt = _random_with_ties(seed)
    assert auroc(scores, gt) == pytest.approx(skm.roc_auc_score(gt, scores))
    assert auroc(scores.reshape(40, 50), gt.reshape(40, 50)) == pytest.approx(
        skm.roc_auc_score(gt, scores)
    )


# ------------------------------------------------------------------ AUPRO
def _slow_aupro(maps: np.ndarray, masks: np.ndarray, fpr_limit: float) -> float:
    """Direct definition: loop over thresholds, per-region overlap, mean, FPR over normals."""
    regions = []
    for i in range(masks.shape[0]):
        lab, n = ndimage.label(masks[i], structure=np.ones((3, 3)))
        regions += [(i, lab == k) for k in range(1, n + 1)]
    normal = ~masks.astype(bool)
    points = [(0.0, 0.0)]
    for t in np.unique(maps)[::-1]:
        pred = maps >= t
        pro = np.mean([pred[i][m].mean() for i, m in regions])
        fpr = (pred & normal).sum() / normal.sum()
        points.append((fpr, pro))
    points.append((1.0, 1.0))
    area = 0.0
    for (x0, y0), (x1, y1) in zip(points[:-1], points[1:]):
        if x0 >= fpr_limit:
            break
        if x1 > fpr_limit:  # cut the segment at the limit
            y1 = y0 + (y1 - y0) * (fpr_limit - x0) / (x1 - x0)
            x1 = fpr_limit
        area += (x1 - x0) * (y0 + y1) / 2
    return area / fpr_limit


def _two_region_example() -> tuple[np.ndarray, np.ndarray]:
    gt = np.array([[1, 0, 0, 0],
                   [0, 0, 0, 0],
                   [0, 0, 1, 1]], dtype=bool)[None]
    scores = np.array([[0.9, 0.85, 0.0, 0.0],
                       [0.0, 0.5, 0.0, 0.0],
                       [0.0, 0.0, 0.8, 0.2]])[None]
    return scores, gt


def test_aupro_hand_two_regions() -> None:
    # Region A = {(0,0)} (size 1), region B = {(2,2),(2,3)} (size 2), 9 normal pixels.
    # Descending thresholds -> (FPR, PRO):
    #   0.90: A covered            -> (0,   1/2)
    #   0.85: + one normal         -> (1/9, 1/2)
    #   0.80: half of B            -> (1/9, 3/4)
    #   0.50: + one normal         -> (2/9, 3/4)
    #   0.20: all of B             -> (2/9, 1)
    #   0.00: all normals          -> (1,   1)
    # Area to 0.3: 1/2 * 1/9 + 3/4 * 1/9 + 1 * (0.3 - 2/9) = 0.3 - 0.75/9 = 0.216667
    # AUPRO = 0.216667 / 0.3 = 0.722222
    scores, gt = _two_region_example()
    fpr, pro = pro_curve(scores, gt)
    np.testing.assert_allclose(fpr, [0, 0, 1 / 9, 1 / 9, 2 / 9, 2 / 9, 1, 1])
    np.testing.assert_allclose(pro, [0, 0.5, 0.5, 0.75, 0.75, 1, 1, 1])
    expected = (0.3 - 0.75 / 9) / 0.3
    assert aupro(scores, gt) == pytest.approx(expected)
    assert _slow_aupro(scores, gt, 0.3) == pytest.approx(expected)
    # 2D input is one image
    assert aupro(scores[0], gt[0]) == pytest.approx(expected)


def test_aupro_regions_are_eight_connected() -> None:
    # (0,0) touches (1,1) only diagonally; (1,1)-(1,2) touch by an edge.
    # 8-connectivity: ONE region of size 3; 4-connectivity would give {(0,0)} and {(1,1),(1,2)}.
    gt = np.array([[1, 0, 0],
                   [0, 1, 1],
                   [0, 0, 0]], dtype=bool)
    scores = np.array([[1.0, 0.0, 0.0],
                       [0.0, 0.0, 0.0],
                       [0.0, 0.0, 0.0]])
    # t=1.0 covers (0,0) only: PRO = 1/3 (8-conn) -- 4-conn would give mean(1, 0) = 1/2.
    # t=0.0 covers everything: (FPR, PRO) = (1, 1).
    # Area to 0.3: segment (0, 1/3) -> (0.3, 1/3 + 0.3 * 2/3 = 8/15): 0.3 * (1/3 + 8/15) / 2
    # AUPRO = (1/3 + 8/15) / 2 = 13/30 = 0.433333
    fpr, pro = pro_curve(scores, gt)
    np.testing.assert_allclose(fpr, [0, 0, 1, 1])
    np.testing.assert_allclose(pro, [0, 1 / 3, 1, 1])
    assert aupro(scores, gt) == pytest.approx(13 / 30)
    assert _slow_aupro(scores[None], gt[None], 0.3) == pytest.approx(13 / 30)


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("fpr_limit", [0.05, 0.3, 1.0])
def test_aupro_matches_slow_reference(seed: int, fpr_limit: float) -> None:
    rng = np.random.default_rng(seed)
    masks = np.zeros((3, 16, 16), dtype=bool)
    masks[0, 2:6, 3:8] = True
    masks[0, 10:12, 10:15] = True
    masks[1, 5:9, 5:9] = True
    masks[1, 12, 1] = True
    # image 2 has no defect: its pixels only add to the FPR
    maps = np.round(rng.random(masks.shape) * 0.8 + 0.3 * masks, 2)  # ties on purpose
    assert aupro(maps, masks, fpr_limit) == pytest.approx(_slow_aupro(maps, masks, fpr_limit))


def test_aupro_bounds() -> None:
    _, gt = _two_region_example()
    assert aupro(gt.astype(float), gt) == pytest.approx(1.0)
    assert aupro(1.0 - gt, gt) == pytest.approx(0.0)
    rng = np.random.default_rng(0)
    big = np.zeros((4, 64, 64), bool)
    big[:, 10:30, 10:30] = True
    # a random ranking hugs the diagonal: area to 0.3 is ~0.3**2/2, normalised ~0.15
    assert aupro(rng.random(big.shape), big) == pytest.approx(0.15, abs=0.02)


# ------------------------------------------------------------------ image level
def test_image_scores_from_maps() -> None:
    maps = np.array([[[0.1, 0.2], [0.3, 0.0]], [[0.9, 0.1], [0.0, 0.0]]])
    np.testing.assert_allclose(image_scores_from_maps(maps), [0.3, 0.9])


# ------------------------------------------------------------------ errors
def test_errors_name_the_argument() -> None:
    with pytest.raises(ValueError, match="`gt`.*only one class"):
        auroc(np.array([0.1, 0.2]), np.array([0, 0]))
    with pytest.raises(ValueError, match="`gt`.*only one class"):
        auroc(np.array([0.1, 0.2]), np.array([1, 1]))
    with pytest.raises(ValueError, match="`scores` and `gt`.*same shape"):
        auroc(np.zeros(3), np.zeros(4))
    with pytest.raises(ValueError, match="`pred` and `gt`.*same shape"):
        binary_scores(np.zeros((2, 2)), np.zeros(4))
    with pytest.raises(ValueError, match="`pred` is empty"):
        binary_scores(np.zeros(0), np.zeros(0))
    with pytest.raises(ValueError, match="`gt` must contain only 0/1"):
        binary_scores(np.zeros(3), np.array([0, 0.5, 1]))
    with pytest.raises(ValueError, match="`gt` has no positive"):
        f1_max(np.array([0.1, 0.2]), np.array([0, 0]))
    with pytest.raises(ValueError, match="`scores` contains NaN"):
        f1_max(np.array([np.nan, 0.2]), np.array([0, 1]))
    with pytest.raises(ValueError, match="`gt_masks` has no anomalous region"):
        aupro(np.zeros((1, 4, 4)), np.zeros((1, 4, 4)))
    with pytest.raises(ValueError, match="`gt_masks` has no normal pixel"):
        aupro(np.zeros((1, 4, 4)), np.ones((1, 4, 4)))
    with pytest.raises(ValueError, match="`score_maps` and `gt_masks`"):
        aupro(np.zeros((1, 4, 4)), np.ones((1, 4, 5)))
    with pytest.raises(ValueError, match="`fpr_limit`"):
        aupro(np.zeros((1, 4, 4)), np.ones((1, 4, 4)), fpr_limit=0.0)


def _maps_and_masks(side: int, n: int = 16, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """n maps of side x side, distinct random scores; the first half carry one square defect."""
    rng = np.random.default_rng(seed)
    masks = np.zeros((n, side, side), dtype=bool)
    q = side // 4
    masks[: n // 2, q : 2 * q, q : 3 * q] = True
    maps = rng.random(masks.shape).astype(np.float32) + 0.5 * masks
    return maps, masks


def _python_lines_executed(fn, *args) -> int:
    """Python lines executed by fn(*args), in every module (numpy's C loops count as nothing)."""
    lines = 0

    def trace(frame, event, arg):
        nonlocal lines
        if event == "line":
            lines += 1
        return trace

    previous = sys.gettrace()
    sys.settrace(trace)
    try:
        fn(*args)
    finally:
        sys.settrace(previous)
    return lines


@pytest.mark.parametrize("metric", [auroc, f1_max, aupro], ids=lambda f: f.__name__)
def test_work_in_python_does_not_grow_with_the_pixel_count(metric) -> None:
    """The metrics are vectorised (one sort over all pixels): the Python code they run is the same
    for 16 maps of 8x8 and of 128x128 pixels (256x more pixels and distinct thresholds), so a loop
    over pixels, thresholds or regions in Python would show up here. Counting executed lines
    instead of timing cannot flake on a loaded machine."""
    small, large = _maps_and_masks(8), _maps_and_masks(128)
    assert _python_lines_executed(metric, *small) == _python_lines_executed(metric, *large)


def test_million_pixels() -> None:
    """A million pixels in one call (a method quadratic in the pixel count, even vectorised,
    would run out of memory here), with values that match sklearn where it has the metric."""
    maps, masks = _maps_and_masks(256)
    assert maps.size >= 1_000_000
    assert auroc(maps, masks) == pytest.approx(skm.roc_auc_score(masks.ravel(), maps.ravel()), abs=1e-12)
    f1, threshold = f1_max(maps, masks)
    assert 0.0 < f1 <= 1.0 and maps.min() <= threshold <= maps.max()
    assert 0.0 < aupro(maps, masks) <= 1.0
