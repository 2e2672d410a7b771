"""Per-run choices on D_l (evaluation.choice, models.final_predictor.cross_fit): the shipped map
never ranks the held-out labeled pixels below the profiles' mean, and falls back to it when the
nets are misled."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from evaluation.choice import (CANDIDATES, FALLBACK, choose_image_score, choose_threshold, combine, image_scores,
                               judge_candidates, pick, sigmoid)
from evaluation.metrics import auroc
from models.final_predictor import (FinalPredictorConfig, PredictorShape, cross_fit, fit_profile_member, fold_groups,
                                    pooled)
from models.predictor import FinalPool, predictor_from_saved, probability_maps


def test_fold_groups_leave_a_defect_to_learn_from_in_every_complement():
    masks = np.zeros((5, 4, 4), bool)
    masks[[0, 2, 3], 1, 1] = True
    groups = fold_groups(masks, 3)
    assert sorted(i for g in groups for i in g) == [0, 1, 2, 3, 4] and len(groups) == 3
    for g in groups:
        assert np.delete(masks, g, axis=0).any()
    one = np.zeros_like(masks)
    one[2, 0, 0] = True
    assert fold_groups(one, 3) == []  # a single defect image: nothing can be judged
    assert fold_groups(masks[[0, 2]], 3) == [[0], [1]]  # at most one group per image


def test_the_choice_never_ranks_below_the_profiles_and_falls_back_when_nets_mislead():
    """Synthetic out-of-fold logits: nets that rank the held-out pixels upside down make every pool
    with them ineligible, so the profiles' member is chosen; nets that rank better are chosen, and
    whatever is chosen ranks at least as the member does."""
    rng = np.random.default_rng(0)
    masks = rng.random((6, 16, 16)) < 0.05
    member = masks * 2.0 + rng.normal(0, 1, masks.shape)  # the profiles: a fair signal
    for nets, expect_fallback in ((-3.0 * masks + rng.normal(0, 0.3, masks.shape), True),
                                  (6.0 * masks + rng.normal(0, 0.3, masks.shape), False)):
        logits = {"profile": nets, "image": nets, "member": member}
        scores = judge_candidates(logits, masks)
        chosen = pick(scores)
        floor = auroc(member, masks)
        assert auroc(combine(logits, chosen.weights), masks) >= floor
        assert (chosen.name == FALLBACK) == expect_fallback
        assert all(s.eligible == (s.auroc >= floor - 1e-12) for s in scores)


def _misleading_toy(n: int = 4, size: int = 32, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Profiles that show every defect (high loss there), and images whose colour tells the wrong
    story across groups: in images 0 and 2 the defects are bright, in 1 and 3 they are dark while a
    bright decoy (normal) sits elsewhere. A net that learns colour from one group is wrong on the
    other."""
    rng = np.random.default_rng(seed)
    masks = np.zeros((n, size, size), bool)
    images = rng.integers(90, 110, size=(n, size, size, 3)).astype(np.uint8)
    profiles = rng.uniform(0.5, 1.0, size=(n, 4, size, size)).astype(np.float32)
    for i in range(n):
        y, x = rng.integers(4, size - 12, size=2)
        masks[i, y:y + 6, x:x + 6] = True
        profiles[i][:, masks[i]] *= 6.0
        if i % 2 == 0:
            images[i][masks[i]] = 240
        else:
            images[i][masks[i]] = 15
            decoy = np.zeros((size, size), bool)
            decoy[(y + 14) % (size - 6):(y + 14) % (size - 6) + 6, (x + 14) % (size - 6):(x + 14) % (size - 6) + 6] = True
            images[i][decoy & ~masks[i]] = 240
    return profiles, images, masks


def test_cross_fit_falls_back_to_the_profiles_where_image_nets_are_misled():
    """End to end on fitted nets: the image-only nets learn colour from one group and are wrong on
    the other, so no pool with them may ship; the shipped map ranks the labeled pixels out of fold
    at least as the profiles' mean does, and the FinalPool round-trips."""
    profiles, images, masks = _misleading_toy()
    shape = PredictorShape(4, 8, "profile+rgb", True, "unet", 0.0)
    final = FinalPredictorConfig(steps=40, choose=True, folds=2)
    groups = fold_groups(masks, 2)
    assert groups == [[0, 2], [1, 3]]
    cross = cross_fit(profiles, images, masks, shape, final, groups, seed=0, raw_member=False)
    mean = profiles.mean(1) / profiles.mean((1, 2, 3))[:, None, None]  # the normalised mean profile
    scores = judge_candidates(cross.logits, masks, mean)
    chosen = pick(scores)
    member_auroc = next(s.auroc for s in scores if s.name == FALLBACK)
    assert auroc(mean, masks) > 0.95 and auroc(cross.logits["image"], masks) < member_auroc - 0.15  # misled by colour
    assert not next(s for s in scores if s.weights == CANDIDATES["image nets + member (3 : 1)"]).eligible
    assert chosen.name == FALLBACK  # every eligible pool ties with it; ties go to the fallback
    assert all(s.auroc >= auroc(mean, masks) - 1e-12 for s in scores if s.eligible)
    assert auroc(combine(cross.logits, chosen.weights), masks) >= member_auroc
    member = fit_profile_member(profiles, masks)
    net = pooled(cross, member, chosen.weights)
    assert isinstance(net, FinalPool) and len(net.image_nets) == (len(groups) if chosen.weights[1] else 0)
    saved = {"state_dict": net.state_dict(), "profile_length": 4, "width": 8, "inputs": "profile+rgb", "skip": True,
             "arch": "unet", "norm": "batch", "pool": "final", "profile_nets": len(net.profile_nets),
             "image_nets": len(net.image_nets), "member_raw": False, "weights": chosen.weights}
    rgb = torch.as_tensor(images).permute(0, 3, 1, 2).float() / 255
    torch.testing.assert_close(probability_maps(predictor_from_saved(saved), torch.as_tensor(profiles), rgb),
                               probability_maps(net.eval(), torch.as_tensor(profiles), rgb))


def test_raw_member_ranks_as_the_plain_mean_and_needs_the_level():
    rng = np.random.default_rng(1)
    profiles = rng.uniform(0.1, 1.0, size=(3, 4, 8, 8)).astype(np.float32)
    profiles[0] *= 5  # one image with a higher loss level: the raw mean ranks all its pixels first
    masks = np.zeros((3, 8, 8), bool)
    masks[0, :2] = True
    raw = fit_profile_member(profiles, masks, raw=True)
    norm = fit_profile_member(profiles, masks, raw=False)
    p_raw = probability_maps(raw, torch.as_tensor(profiles)).numpy()
    p_norm = probability_maps(norm, torch.as_tensor(profiles)).numpy()
    assert auroc(p_raw, masks) == pytest.approx(auroc(profiles.mean(1), masks))
    assert auroc(p_norm, masks) == pytest.approx(auroc(profiles.mean(1) / profiles.mean((1, 2, 3))[:, None, None],
                                                       masks))
    with pytest.raises(ValueError, match="level"):
        raw(torch.ones(1, 4, 8, 8))


def test_threshold_and_image_score_are_chosen_out_of_fold():
    rng = np.random.default_rng(2)
    masks = rng.random((4, 16, 16)) < 0.05
    masks[3] = False  # one normal image: the image score can be judged
    prob = np.clip(0.3 * masks + rng.uniform(0, 0.2, masks.shape), 0, 1).astype(np.float32)  # never above 0.5
    t, why = choose_threshold(prob, masks, np.array([0, 1, 0, 1]))
    assert t < 0.5 and "best-F1" in why  # 0.5 flags nothing, a threshold from the other group works
    good = np.clip(0.9 * masks + rng.uniform(0, 0.1, masks.shape), 0, 1).astype(np.float32)
    assert choose_threshold(good, masks, np.array([0, 1, 0, 1]))[0] == 0.5  # 0.5 already works
    rule, _ = choose_image_score(prob, masks, t)
    assert rule in ("max", "top1%", "area")
    assert choose_image_score(prob[:3], masks[:3], t)[0] == "max"  # all defective: nothing to choose on
    np.testing.assert_array_equal(image_scores(prob, "max"), prob.reshape(4, -1).max(1))
    assert image_scores(prob, "area", t)[3] < image_scores(prob, "area", t)[0]
    assert sigmoid(np.array([0.0]))[0] == 0.5


def test_the_image_threshold_separates_the_labeled_images_where_it_can():
    """Between the highest normal and the lowest defective score where the two classes separate;
    the best image F1 where they overlap; none where D_l is all of one class."""
    from evaluation.choice import choose_image_threshold

    masks = np.zeros((5, 8, 8), bool)
    masks[4, 2:4, 2:4] = True
    prob = np.full((5, 8, 8), 0.01, np.float32)
    for i, peak in enumerate([0.02, 0.03, 0.025, 0.035, 0.04]):
        prob[i, 5, 5] = peak
    t, why = choose_image_threshold(prob, masks, "max", 0.02)
    assert t == pytest.approx(0.0375) and "1.000" in why
    prob[1, 5, 5] = 0.05  # a normal image above the defect: the best F1 flags both, not everything
    t, _ = choose_image_threshold(prob, masks, "max", 0.02)
    assert 0.035 < t <= 0.04
    assert choose_image_threshold(prob, np.zeros_like(masks), "max", 0.02)[0] is None
