"""The NBS decision rule: threshold and CRF on or off, chosen on held-out labeled maps only."""
from __future__ import annotations

import numpy as np

from evaluation.decisions import HeldOutMaps, MethodMaps, choose_crf, nbs_method, run_heldout_maps
from models.crf import CRFConfig, dense_crf

N, S = 3, 48


def _blobs(seed: int = 0) -> HeldOutMaps:
    """Defects that are coloured squares; maps that are right on average but noisy pixel by pixel:
    the case the dense CRF is for."""
    rng = np.random.default_rng(seed)
    images = np.full((N, S, S, 3), 120, np.uint8)
    masks = np.zeros((N, S, S), bool)
    for k in range(N):
        masks[k, 10 + k:30 + k, 12:32] = True
    images[masks] = (200, 60, 60)
    prob = np.clip(np.where(masks, 0.7, 0.3) + rng.normal(0, 0.25, masks.shape), 0, 1).astype(np.float32)
    return HeldOutMaps(prob, masks, images)


def _thin_lines(seed: int = 0) -> HeldOutMaps:
    """One-pixel scratches with no colour edge, predicted exactly: the CRF's smoothing erases them."""
    rng = np.random.default_rng(seed)
    images = (120 + rng.integers(0, 30, (N, S, S, 3))).astype(np.uint8)
    masks = np.zeros((N, S, S), bool)
    masks[:, 20, 5:40] = True
    return HeldOutMaps(np.where(masks, 0.8, 0.1).astype(np.float32), masks, images)


def _method(held: HeldOutMaps) -> MethodMaps:
    return MethodMaps("m", None, held.prob, held.prob)


def test_crf_kept_when_it_raises_heldout_f1():
    held = _blobs()
    m = choose_crf(_method(held), held.prob, held)
    assert m.crf and m.crf_choice.startswith("CRF on: F1 on 3 held-out D_l maps")
    with_crf, without = (float(v) for v in m.crf_choice.replace(",", "").split()[8:13:4])
    crf_masks = np.stack([dense_crf(i, p) for i, p in zip(held.images, held.prob)])
    assert with_crf > without  # the numbers in the note are the real F1s
    assert with_crf == round(2 * (crf_masks & held.masks).sum() / (crf_masks.sum() + held.masks.sum()), 3)


def test_crf_dropped_when_it_erases_heldout_defects():
    held = _thin_lines()
    m = choose_crf(_method(held), held.prob, held)
    assert not m.crf and m.crf_choice.startswith("CRF off")


def test_crf_kept_without_defects_to_choose_with():
    held = _thin_lines()
    held = HeldOutMaps(held.prob, np.zeros_like(held.masks), held.images)
    m = choose_crf(_method(held), held.prob, held)
    assert m.crf and "no defect pixel" in m.crf_choice


def test_nbs_refit_decides_at_half_and_chooses_crf_on_its_heldout_maps():
    held = _thin_lines()
    prob_u = _blobs(1).prob
    m = nbs_method(prob_u, True, held, 0.05)
    assert m.threshold is None and m.prob is prob_u and not m.crf
    m = nbs_method(prob_u, True, _blobs(2), 0.05)
    assert m.crf and m.crf_choice.startswith("CRF on")


def test_nbs_heldout_predictors_threshold_then_crf_choice_on_the_shifted_maps():
    """Without a final predictor the threshold comes from the held-out maps, and the CRF is chosen
    on those maps moved to that threshold (the unary its D_u maps get)."""
    held = _thin_lines()
    ramp = np.linspace(0.3, 0.4, S, dtype=np.float32)[None, None, :]
    held = HeldOutMaps(np.where(held.masks, ramp, 0.1).astype(np.float32), held.masks, held.images)
    m = nbs_method(held.prob, False, held, 0.05)
    assert 0.1 < m.threshold <= held.prob[held.masks].min() and m.note == "threshold from held-out D_l maps"
    assert (m.prob > 0.5).sum() >= held.masks.sum() - N  # shifted: the line is above 0.5 (but for ties at t)
    assert not m.crf


def test_nbs_without_heldout_maps_keeps_the_crf_and_says_so_but_a_final_predictor_drops_it():
    prob_u = _blobs().prob
    m = nbs_method(prob_u, False, None, 0.2)
    assert m.crf and m.crf_choice == "CRF on: no held-out D_l maps to choose with"
    m = nbs_method(prob_u, True, None, 0.2)  # a final predictor without leave-one-out maps: no CRF
    assert not m.crf and m.threshold is None and m.crf_choice.startswith("CRF off: a final predictor")
    blank = _blobs()
    blank = HeldOutMaps(blank.prob, np.zeros_like(blank.masks), blank.images)
    m = nbs_method(prob_u, False, blank, 0.2)  # maps that cannot judge: prior-matched threshold, CRF kept
    assert m.crf and "no defect pixel" in m.crf_choice and "fraction" in m.note


def test_final_predictor_without_heldout_defects_drops_the_crf():
    """The final predictor's held-out maps cannot judge when D_l's only defect image is the one
    no fold can hold out: its masks are then p > 0.5 (the CRF lowered its F1 on every built-in
    split), while the papers' predictors keep the CRF."""
    prob_u = _blobs().prob
    blank = _blobs()
    blank = HeldOutMaps(blank.prob, np.zeros_like(blank.masks), blank.images)
    m = nbs_method(prob_u, True, blank, 0.2)
    assert not m.crf and m.threshold is None
    assert m.crf_choice == "CRF off: the held-out D_l maps have no defect pixel to choose with"
    assert choose_crf(_method(blank), blank.prob, blank).crf  # the default elsewhere: kept


def test_run_heldout_maps_reads_the_right_arrays():
    held = _blobs()
    refit_prob = held.prob[::-1].copy()
    profiles = {"labeled_refit_heldout_prob": refit_prob, "labeled_refit_heldout_index": np.arange(N),
                "labeled_heldout_prob": held.prob[1:], "labeled_heldout_index": np.array([1, 2])}
    got = run_heldout_maps(profiles, True, held.masks, held.images)
    assert got.prob is refit_prob
    np.testing.assert_array_equal(got.masks, held.masks)
    got = run_heldout_maps(profiles, False, held.masks, held.images)
    np.testing.assert_array_equal(got.masks, held.masks[1:])
    np.testing.assert_array_equal(got.images, held.images[1:])
    assert run_heldout_maps({"labeled_heldout_index": None}, False, held.masks, held.images) is None
    assert run_heldout_maps({}, True, held.masks, held.images) is None


def test_crf_choice_uses_the_given_crf_settings():
    """A CRF too weak to change anything (one iteration, no pairwise terms) changes no F1: kept (ties keep it)."""
    held = _thin_lines()
    m = choose_crf(_method(held), held.prob, held, CRFConfig(iterations=1, gaussian_compat=0, bilateral_compat=0))
    assert m.crf and "1.000 with the CRF, 1.000 without" in m.crf_choice
