"""The predictor: skip path, U-Net variant, inputs with RGB, held-out folds, colour jitter."""
from __future__ import annotations


import numpy as np
import pytest
import torch

from envs import BatchSamplingEnv
from envs.buffers import ReplayBuffer
from envs.diagnostics import rank_auroc
from models.fit import jitter_rgb
from models.predictor import build_predictor, predictor_input
from tests.helpers import TINY, run_episodes, tiny_env, toy_split, tiny_config


@pytest.mark.parametrize("arch", ["dilated", "unet"])
@pytest.mark.parametrize("inputs", ["profile", "profile+rgb"])
def test_skip_path_starts_as_the_mean_profile_ranking(arch, inputs):
    """At initialisation the predictor ranks pixels exactly as the mean relative loss does, so
    it cannot start by throwing the profile's signal away."""
    torch.manual_seed(0)
    profiles = torch.rand(3, 6, 20, 28) ** 4  # (B,T,H,W), not a multiple of the U-Net's 8
    labels = profiles.mean(dim=1) + 0.3 * torch.rand(3, 20, 28) > 0.4
    rgb = torch.rand(3, 3, 20, 28) if inputs == "profile+rgb" else None
    x = predictor_input(profiles, rgb)
    net = build_predictor(6, 8, inputs, skip=True, arch=arch).eval()
    with torch.no_grad():
        logits = net(x)[:, 0]
    mean_relative = x[:, :6].mean(dim=1)
    assert logits.shape == (3, 20, 28)
    assert rank_auroc(logits, labels) == pytest.approx(rank_auroc(mean_relative, labels), abs=1e-9)
    torch.testing.assert_close(logits, torch.log(mean_relative), rtol=1e-5, atol=1e-5)
    plain = build_predictor(6, 8, inputs, skip=False, arch=arch).eval()
    with torch.no_grad():
        assert not torch.allclose(plain(x)[:, 0], torch.log(mean_relative), atol=1e-2)


def final_setup(steps: int = 40, members: int = 3, image_members: int = 0, pool: str = "prob",
                profile_member: bool = False, heldout: bool = False, width: int = 8, inputs: str = "profile+rgb",
                skip: bool = True, arch: str = "unet") -> tuple:
    """(PredictorShape, FinalPredictorConfig) of a small final predictor for the toy profiles."""
    from models.final_predictor import FinalPredictorConfig, PredictorShape

    return (PredictorShape(4, width, inputs, skip, arch, 0.0),
            FinalPredictorConfig(steps=steps, members=members, image_members=image_members, pool=pool,
                                 profile_member=profile_member, heldout=heldout))


def test_shrink_keeps_the_predictor_near_the_profiles_mean_ranking():
    """predictor_shrink penalises the logit the convolutions add to the skip path: trained alike,
    the predictor with it departs less from the profiles' mean ranking than the one without; the
    penalty needs the skip path and cannot be negative; an older run's config (no such field)
    gets 0, what it trained with."""
    from common.settings import ConfigError
    from envs.config import PredictorConfig, config_to_dict, env_config_from_dict
    from models.predictor import skip_logits

    def departure(shrink: float) -> float:
        env = BatchSamplingEnv(split=toy_split(32), config=tiny_config(predictor_shrink=shrink))
        env.reset(seed=0)
        run_episodes(env, 12)
        net = env.process.predictor
        x = predictor_input(env.process.labeled_profiles.ordered())
        with torch.no_grad():
            return float((net(x) - skip_logits(net, x)).std())

    assert departure(1000.0) < 0.5 * departure(0.0)
    plain = build_predictor(4, 8, "profile", skip=False)
    torch.testing.assert_close(skip_logits(plain, torch.rand(2, 4, 8, 8)), torch.zeros(2, 1, 8, 8))
    for bad in (dict(shrink=-1.0), dict(shrink=0.1, skip=False)):
        with pytest.raises(ConfigError, match="predictor.shrink"):
            PredictorConfig(**bad)
    old = config_to_dict(tiny_config(predictor_shrink=0.5))
    del old["predictor"]["shrink"]
    assert env_config_from_dict(old).predictor.shrink == 0.01  # a grouped config without it: today's default


def test_prior_bias_starts_at_the_loss_minimum_and_keeps_the_ranking():
    """prior_logit is the constant that minimises weighted_bce (0 when alpha is the masks' pixel
    ratio, chu2020's alpha); started there, a predictor under an alpha far from that ratio keeps
    ranking its own training pixels as their mean profile does, while one started at 0 lowers
    its output through features that grow with the loss and loses the ranking; the env starts
    its predictor there only when predictor_prior_bias is on."""
    from envs.config import env_config_from_dict
    from envs.rewards import alpha_from_masks
    from models.predictor import prior_logit, set_prior_bias, skip_logits, weighted_bce

    g = torch.Generator().manual_seed(0)
    n, length, side = 4, 4, 32
    profiles = torch.exp(0.8 * torch.randn(n, 1, side, side, generator=g)
                         + 0.1 * torch.randn(n, length, side, side, generator=g))
    masks = torch.zeros(n, side, side, dtype=torch.bool)
    masks[:, 10:12, 10:12] = True
    profiles[:, :, 10:12, 10:12] *= 4
    level = prior_logit(masks.numpy(), 0.7)
    grid = torch.linspace(level - 1, level + 1, 41)
    losses = [float(weighted_bce(torch.full((n, side, side), float(z)), masks, 0.7)) for z in grid]
    assert abs(float(grid[int(np.argmin(losses))]) - level) <= 0.05
    assert prior_logit(masks.numpy(), alpha_from_masks(masks.numpy())) == 0.0
    assert prior_logit(np.zeros((2, 4, 4), bool), 0.7) is None

    x = predictor_input(profiles)
    mean_ranking = rank_auroc(x.mean(dim=1), masks)

    def trained(start_at_prior: bool) -> float:
        torch.manual_seed(0)
        net = build_predictor(length, 16, "profile", skip=True)
        if start_at_prior:
            set_prior_bias(net, level)
        opt = torch.optim.Adam(net.parameters(), lr=1e-3)
        for _ in range(50):
            loss = weighted_bce(net(x)[:, 0], masks, 0.7)
            opt.zero_grad()
            loss.backward()
            opt.step()
        with torch.no_grad():
            return rank_auroc(net(x)[:, 0], masks)

    assert trained(True) >= mean_ranking
    assert trained(False) < mean_ranking - 0.2

    for on in (True, False):
        env = tiny_env(alpha=0.7, predictor_prior_bias=on)
        env.reset(seed=0)
        process = env.process
        x = predictor_input(torch.rand(2, TINY.profiles.length, 32, 32))
        with torch.no_grad():
            offset = process.predictor(x) - skip_logits(process.predictor, x)
        expected = prior_logit(process.masks, 0.7) if on else 0.0  # ~-4 on toy_split's masks
        assert expected < -1 or not on
        torch.testing.assert_close(offset, torch.full_like(offset, expected), rtol=0, atol=0.02)  # reset's warm-up steps
    assert env_config_from_dict({"patch_size": 8}).predictor.prior_bias is False  # a flat config from before it


def test_buffer_sampling_can_leave_one_labeled_image_out():
    buf = ReplayBuffer(12, 2, torch.zeros(4, 4, 4, dtype=torch.bool))
    rng = np.random.default_rng(0)
    for _ in range(4):
        buf.append(torch.rand(4, 4, 4))
        if buf.appended >= 2:
            buf.push(torch.rand(4) + 0.5, rng.integers(0, 8, size=4))
    entries = buf.entries(np.arange(12))[0]
    for k in range(4):
        profiles, _ = buf.sample(64, rng, exclude=k)
        ids = {i for i in range(12) if any(torch.equal(entries[i], p) for p in profiles)}
        assert k not in {int(buf.image[i]) for i in ids} and len(ids) == 9
    only = ReplayBuffer(4, 1, torch.zeros(1, 4, 4, dtype=torch.bool))  # one labeled image
    only.append(torch.rand(1, 4, 4))
    only.push(torch.ones(1), np.zeros(1, np.int64))
    assert only.sample(4, rng, exclude=0) is None


def _split_with_defect_images(n_defect: int):
    split = toy_split(32, n_labeled=4)
    for k, s in enumerate(split.labeled):
        if k >= n_defect:
            s.mask[:] = False
    return split


def test_heldout_folds_only_where_they_can_learn_and_be_judged():
    cfg = tiny_config(heldout_predictors=True)
    one = BatchSamplingEnv(split=_split_with_defect_images(1), config=cfg)
    assert one.process.heldout_images == []  # a single defect image: nothing to judge a fold on
    two = BatchSamplingEnv(split=_split_with_defect_images(2), config=cfg)
    assert two.process.heldout_images == [0, 1, 2, 3]
    two.reset(seed=0)
    run_episodes(two, 10)
    assert len(two.process.fold_predictors) == 4 and two.process.heldout_prob.shape == (4, 32, 32)
    assert np.isfinite(two.process.best.l_pred) and two.process.best.score == two.process.best_l_pred  # the held-out l_pred chose
    profiles = two.best_profiles()
    assert profiles["labeled_heldout_prob"].shape == (4, 32, 32)
    assert list(profiles["labeled_heldout_index"]) == [0, 1, 2, 3]
    # each fold trained on its own data (every labeled image but one), none on all of D_l
    weights = [f.head.weight.detach() for f in two.process.fold_predictors] + [two.process.predictor.head.weight.detach()]
    assert all(not torch.equal(a, b) for i, a in enumerate(weights) for b in weights[i + 1:])
    assert np.isfinite(two.process.last_heldout_l_pred)


def test_best_moment_keeps_its_predictor():
    env = BatchSamplingEnv(split=toy_split(32), config=TINY)
    env.reset(seed=0)
    run_episodes(env, 12)
    kept = env.process.best.predictor
    assert set(kept) == set(env.process.predictor.state_dict())
    if env.process.best.update != env.process.updates:  # trained on since: the kept weights are not the live ones
        assert any(not torch.equal(kept[k], v) for k, v in env.process.predictor.state_dict().items())


def test_alpha_floor_caps_the_weight_of_anomalous_pixels():
    env = BatchSamplingEnv(split=toy_split(32), config=tiny_config(alpha_floor=0.2))
    assert env.process.alpha == 0.2
    assert BatchSamplingEnv(split=toy_split(32), config=TINY).process.alpha < 0.2


def test_colour_jitter_changes_only_the_rgb_channels():
    batch = torch.rand(5, 4 + 3, 16, 16)
    out = jitter_rgb(batch, 0.2, np.random.default_rng(0))
    torch.testing.assert_close(out[:, :4], batch[:, :4])
    assert not torch.allclose(out[:, 4:], batch[:, 4:])
    assert out[:, 4:].min() >= 0 and out[:, 4:].max() <= 1


def test_prior_matched_threshold_flags_the_labeled_defect_fraction():
    from evaluation.decisions import prior_matched

    rng = np.random.default_rng(0)
    scores = rng.random((4, 32, 32)).astype(np.float32)
    m = prior_matched("NBS", "method", scores, 0.03)
    assert (m.prob > 0.5).mean() == pytest.approx(0.03, abs=1e-3)
    assert ((scores > m.threshold) == (m.prob > 0.5)).all()
    # a predictor whose p > 0.5 flags everything (alpha-weighted training) is cut back all the same
    saturated = 0.9 + 0.1 * scores
    assert (prior_matched("NBS", "method", saturated, 0.03).prob > 0.5).mean() == pytest.approx(0.03, abs=1e-3)


def test_logit_shift_moves_the_threshold_to_one_half_and_keeps_the_order():
    from evaluation.decisions import prior_matched
    from models.crf import shift_probability

    p = np.array([1e-4, 0.05, 0.2, 0.9, 0.97, 0.999], np.float32)
    q = shift_probability(p, 0.9)
    assert q[3] == pytest.approx(0.5, abs=1e-6)
    assert (np.diff(q) > 0).all() and ((q > 0.5) == (p > 0.9)).all()
    assert q[-1] > 0.98  # confident far above the threshold, unlike a logistic of (p - t) / std
    m = prior_matched("NBS", "method", np.random.default_rng(0).random((2, 8, 8)), 0.1, probabilities=True)
    assert ((m.prob > 0.5) == (m.scores > m.threshold)).all()


def _refit_toy(seed: int = 0, n: int = 4, size: int = 32):
    """Labeled toy profiles whose loss is high on a square defect; the RGB is noise."""
    rng = np.random.default_rng(seed)
    masks = np.zeros((n, size, size), bool)
    for k in range(n):
        y, x = rng.integers(0, size - 8, size=2)
        masks[k, y:y + 8, x:x + 8] = True
    profiles = (rng.random((n, 4, size, size)) * 0.5 + 1.0 + 3.0 * masks[:, None]).astype(np.float32)
    images = rng.integers(0, 256, size=(n, size, size, 3), dtype=np.uint8)
    return profiles, images, masks


@pytest.mark.parametrize("inputs", ["profile", "profile+rgb"])
def test_final_predictor_learns_the_profiles_and_is_seeded(inputs):
    """The final predictor (final.steps) segments what its profiles show, decides at
    p > 0.5 as the U-Net does, and the same seed gives the same weights."""
    from models.final_predictor import refit_predictor

    profiles, images, masks = _refit_toy()
    kwargs = dict(steps=40, width=8, inputs=inputs, skip=True, arch="unet", seed=3)
    net, losses = refit_predictor(profiles, images, masks, **kwargs)
    assert not net.training and net.norm == "batch" and losses[-1] < losses[0]
    test_profiles, test_images, test_masks = _refit_toy(seed=1)
    rgb = torch.as_tensor(test_images).permute(0, 3, 1, 2).float() / 255 if inputs == "profile+rgb" else None
    with torch.no_grad():
        p = torch.sigmoid(net(predictor_input(torch.as_tensor(test_profiles), rgb)))[:, 0]
    assert rank_auroc(p, torch.as_tensor(test_masks)) > 0.95
    pred = (p > 0.5).numpy()
    assert (pred & test_masks).sum() / max((pred | test_masks).sum(), 1) > 0.5  # IoU at p > 0.5
    again, _ = refit_predictor(profiles, images, masks, **kwargs)
    for (k, a), b in zip(net.state_dict().items(), again.state_dict().values()):
        torch.testing.assert_close(a, b, msg=k)


def test_ensemble_averages_member_probabilities_and_round_trips():
    from models.predictor import PredictorEnsemble, predictor_from_saved

    torch.manual_seed(0)
    members = [build_predictor(3, 8, "profile", skip=False, arch="dilated").eval() for _ in range(3)]
    for m in members:  # make the members differ in their output
        torch.nn.init.normal_(m.head.weight)
    ens = PredictorEnsemble(members).eval()
    x = predictor_input(torch.rand(2, 3, 12, 12) + 0.1)
    with torch.no_grad():
        expected = torch.stack([torch.sigmoid(m(x)) for m in members]).mean(0)
        torch.testing.assert_close(torch.sigmoid(ens(x)), expected, rtol=1e-4, atol=1e-5)
        saved = {"state_dict": ens.state_dict(), "profile_length": 3, "width": 8, "inputs": "profile",
                 "skip": False, "arch": "dilated", "ensemble": 3}
        torch.testing.assert_close(predictor_from_saved(saved)(x), ens(x))


def test_profile_dropout_teaches_the_final_predictor_to_read_the_image():
    """With final.profile_dropout the final predictor also segments from the RGB alone
    (profiles zeroed), which is what keeps uninformative profiles from costing it what a U-Net
    finds in the image; at 0 it is the same net as before the option existed (no extra draws)."""
    from models.final_predictor import refit_predictor

    rng = np.random.default_rng(0)
    profiles, _, masks = _refit_toy()
    images = np.where(masks[..., None], 230, rng.integers(0, 120, size=masks.shape + (3,))).astype(np.uint8)
    kwargs = dict(steps=60, width=8, inputs="profile+rgb", skip=True, arch="unet", seed=3, colour_jitter=0.0)
    net, _ = refit_predictor(profiles, images, masks, profile_dropout=0.5, **kwargs)
    with torch.no_grad():
        rgb = torch.as_tensor(images).permute(0, 3, 1, 2).float() / 255
        p = torch.sigmoid(net(predictor_input(torch.zeros_like(torch.as_tensor(profiles)), rgb)))[:, 0]
    assert rank_auroc(p, torch.as_tensor(masks)) > 0.95
    plain, _ = refit_predictor(profiles, images, masks, **kwargs)
    off, _ = refit_predictor(profiles, images, masks, profile_dropout=0.0, **kwargs)
    for (k, a), b in zip(plain.state_dict().items(), off.state_dict().values()):
        torch.testing.assert_close(a, b, msg=k)
    with pytest.raises(ValueError, match="final.profile_dropout"):
        from models.final_predictor import FinalPredictorConfig
        FinalPredictorConfig(profile_dropout=1.0)


def test_heldout_final_maps_never_see_the_image_they_predict():
    """Leave-one-out fits of the final predictor: image k's map comes from a fit on the other
    images (changing image k's mask changes no other fold's input, and not its own map), folds
    without defects to learn from are skipped, and the maps still find the toy defects."""
    from models.final_predictor import heldout_final_maps

    profiles, images, masks = _refit_toy(n=4)
    shape, final = final_setup(skip=True, heldout=True)
    maps, index = heldout_final_maps(profiles, images, masks, shape, final, seed=0)
    assert list(index) == [0, 1, 2, 3] and maps.shape == masks.shape
    assert rank_auroc(torch.as_tensor(maps), torch.as_tensor(masks)) > 0.9
    changed = masks.copy()
    changed[2] = np.roll(changed[2], 5, axis=0)
    again, _ = heldout_final_maps(profiles, images, changed, shape, final, seed=0)
    np.testing.assert_array_equal(again[2], maps[2])
    assert not np.array_equal(again[0], maps[0])  # the other folds trained on image 2's mask
    one = masks.copy()
    one[1:] = False  # a single defect image: its fold has nothing to learn from, the others nothing to judge
    none, index = heldout_final_maps(profiles, images, one, shape, final, seed=0)
    assert list(index) == [] and none.shape == (0, *masks.shape[1:])
    two = masks.copy()
    two[2:] = False  # two defect images: every fold can learn, and the two defect folds can judge
    _, index = heldout_final_maps(profiles, images, two, shape, final, seed=0)
    assert list(index) == [0, 1, 2, 3]


def test_image_members_read_only_the_image_and_round_trip():
    """final.image_members: the final predictor averages profile members with members
    that see only the RGB (changing the profiles moves no image member), and predictor_from_saved
    rebuilds the mixed ensemble exactly; a saved mix that cannot be rebuilt is refused."""
    from models.final_predictor import final_predictor
    from models.predictor import ImageOnly, PredictorEnsemble, predictor_from_saved
    from runner.presets import method_config

    rng = np.random.default_rng(0)
    profiles, _, masks = _refit_toy()
    images = np.where(masks[..., None], 230, rng.integers(0, 120, size=masks.shape + (3,))).astype(np.uint8)
    net = final_predictor(profiles, images, masks, *final_setup(members=1, image_members=2), seed=0)
    assert isinstance(net, PredictorEnsemble) and len(net.members) == 3
    assert [isinstance(m, ImageOnly) for m in net.members] == [False, True, True]
    rgb = torch.as_tensor(images).permute(0, 3, 1, 2).float() / 255
    x = predictor_input(torch.as_tensor(profiles), rgb)
    x_other = predictor_input(torch.as_tensor(profiles)[torch.randperm(4)], rgb)
    with torch.no_grad():
        torch.testing.assert_close(net.members[1](x), net.members[1](x_other))
        assert not torch.allclose(net.members[0](x), net.members[0](x_other))
        assert rank_auroc(torch.sigmoid(net.members[2](x))[:, 0], torch.as_tensor(masks)) > 0.95  # it learned the image
        saved = {"state_dict": net.state_dict(), "profile_length": 4, "width": 8, "inputs": "profile+rgb",
                 "skip": True, "arch": "unet", "norm": "batch", "ensemble": 3, "image_members": 2}
        torch.testing.assert_close(predictor_from_saved(saved)(x), net(x))
    with pytest.raises(ValueError, match="image_members"):
        predictor_from_saved({**saved, "image_members": 3})
    with pytest.raises(ValueError, match="final.image_members"):
        method_config("chu2020", {"final.image_members": 1})


def test_heldout_final_maps_with_image_members_follow_the_final_recipe():
    """With image members, each fold averages one profile fit and one image-only fit (and, in
    ours' pool, the profiles' member), none of which saw the image it predicts: its own mask
    changes nothing in its map."""
    from models.final_predictor import heldout_final_maps

    profiles, images, masks = _refit_toy(n=3, size=24)
    kwargs = dict(steps=15, heldout=True)
    mixed, index = heldout_final_maps(profiles, images, masks, *final_setup(image_members=1, **kwargs), 0)
    plain, _ = heldout_final_maps(profiles, images, masks, *final_setup(**kwargs), 0)
    assert list(index) == [0, 1, 2] and mixed.shape == masks.shape and not np.allclose(mixed, plain)
    changed = masks.copy()
    changed[1] = np.roll(changed[1], 4, axis=1)
    again, _ = heldout_final_maps(profiles, images, changed, *final_setup(image_members=1, **kwargs), 0)
    np.testing.assert_array_equal(again[1], mixed[1])
    # ours' pool: + the profiles' member (fit on the fold too), logits pooled
    pooled = final_setup(image_members=1, profile_member=True, pool="logit", **kwargs)
    with_member, _ = heldout_final_maps(profiles, images, masks, *pooled, 0)
    assert not np.allclose(with_member, mixed)
    again, _ = heldout_final_maps(profiles, images, changed, *pooled, 0)
    np.testing.assert_array_equal(again[1], with_member[1])


def test_logit_pool_is_the_members_mean_logit_and_round_trips():
    """PredictorEnsemble(pool='logit') outputs the mean of its members' logits, ranks the pixels
    every member calls normal by all members at once (where the probability mean follows the most
    confident one), and predictor_from_saved rebuilds it; an unknown pool is refused."""
    from models.final_predictor import FinalPredictorConfig
    from models.predictor import PredictorEnsemble, predictor_from_saved

    torch.manual_seed(0)
    members = [build_predictor(3, 8, "profile", skip=False, arch="dilated").eval() for _ in range(3)]
    for m in members:
        torch.nn.init.normal_(m.head.weight)
    ens = PredictorEnsemble(members, pool="logit").eval()
    x = predictor_input(torch.rand(2, 3, 12, 12) + 0.1)
    with torch.no_grad():
        torch.testing.assert_close(ens(x), torch.stack([m(x) for m in members]).mean(0))
        saved = {"state_dict": ens.state_dict(), "profile_length": 3, "width": 8, "inputs": "profile",
                 "skip": False, "arch": "dilated", "ensemble": 3, "pool": "logit"}
        torch.testing.assert_close(predictor_from_saved(saved)(x), ens(x))
        assert not torch.allclose(predictor_from_saved({**saved, "pool": "prob"})(x), ens(x))

    class Constant(torch.nn.Module):  # a member with fixed logits per pixel
        def __init__(self, logits):
            super().__init__()
            self.logits = torch.tensor(logits).view(1, 1, 1, -1)

        def forward(self, x):
            return self.logits.expand(len(x), 1, 1, -1)

    # pixel 0: one member gives it 0.12, the other is sure it is normal (4.5e-5); pixel 1: both
    # give it a few percent (0.047, 0.018). The probability mean follows the first member and puts
    # pixel 0 above pixel 1; the logit mean weighs the second member's certainty (-6 vs -3.5).
    a, b = Constant([-2.0, -3.0]), Constant([-10.0, -4.0])
    with torch.no_grad():
        by_logit = PredictorEnsemble([a, b], "logit")(x[:1])[0, 0, 0]
        by_prob = PredictorEnsemble([a, b], "prob")(x[:1])[0, 0, 0]
    assert by_logit[0] < by_logit[1] and by_prob[0] > by_prob[1]
    with pytest.raises(ValueError, match="pool"):
        PredictorEnsemble(members, pool="max")
    with pytest.raises(ValueError, match="final.pool"):
        FinalPredictorConfig(pool="mean")


def test_profile_member_is_a_logistic_fit_of_the_mean_relative_loss():
    """fit_profile_member recovers a known logistic law of log r (r: a pixel's mean relative
    loss), ranks pixels exactly as r does, reads no RGB, and without defect
    pixels it is the (clipped) prior. In a final predictor it is the last member and round-trips."""
    from models.final_predictor import final_predictor, fit_profile_member
    from models.predictor import PredictorEnsemble, ProfileMeanMember, predictor_from_saved, probability_maps

    rng = np.random.default_rng(0)
    n, size = 4, 64
    profiles = np.exp(rng.normal(0.0, 1.0, (n, 1, size, size))).astype(np.float32).repeat(3, axis=1)
    with torch.no_grad():
        log_r = torch.log(predictor_input(torch.as_tensor(profiles)).mean(1)).numpy()
    masks = rng.random(log_r.shape) < 1 / (1 + np.exp(-(1.5 * log_r - 3.0)))
    member = fit_profile_member(profiles, masks)
    assert abs(float(member.a) - 1.5) < 0.15 and abs(float(member.b) + 3.0) < 0.15
    x = predictor_input(torch.as_tensor(profiles), torch.rand(n, 3, size, size))
    with torch.no_grad():
        out = member(x)[:, 0]
        torch.testing.assert_close(out, member(torch.cat([x[:, :3], torch.zeros(n, 3, size, size)], 1))[:, 0])
    assert rank_auroc(out, torch.as_tensor(masks)) == pytest.approx(
        rank_auroc(torch.as_tensor(log_r), torch.as_tensor(masks)), abs=1e-9)  # monotone in r (a > 0)
    torch.testing.assert_close(probability_maps(member, torch.as_tensor(profiles)), torch.sigmoid(out))  # buffers only
    empty = fit_profile_member(profiles, np.zeros_like(masks))
    assert float(empty.a) == 0.0 and float(empty.b) == pytest.approx(np.log(1e-4 / (1 - 1e-4)))

    toy, images, toy_masks = _refit_toy()
    net = final_predictor(toy, images, toy_masks, *final_setup(steps=10, members=1, image_members=1, pool="logit",
                                                               profile_member=True), seed=0)
    assert isinstance(net, PredictorEnsemble) and net.pool == "logit"
    assert isinstance(net.members[-1], ProfileMeanMember) and len(net.members) == 3
    saved = {"state_dict": net.state_dict(), "profile_length": 4, "width": 8, "inputs": "profile+rgb",
             "skip": True, "arch": "unet", "norm": "batch", "ensemble": 2, "image_members": 1,
             "pool": "logit", "profile_member": True}
    xt = predictor_input(torch.as_tensor(toy), torch.as_tensor(images).permute(0, 3, 1, 2).float() / 255)
    with torch.no_grad():
        torch.testing.assert_close(predictor_from_saved(saved)(xt), net(xt))
