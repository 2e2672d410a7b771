"""BatchSamplingEnv: spaces, env checkers, reward terms, schedules, re-init, buffers, determinism."""
from __future__ import annotations

import copy
import io

import gymnasium as gym
import numpy as np
import pytest
import torch

import envs
from envs import BatchSamplingEnv
from envs.buffers import ProfileRing, ReplayBuffer, dihedral
from envs.rewards import alpha_from_masks, balance_cover_reward, beta_schedule, clone_reward, cover_reward
from models.predictor import predictor_input, profile_scale
from tests.helpers import TINY, run_episodes, tiny_env, toy_split, tiny_config


# ---------------------------------------------------------------- reward terms and schedules
def test_clone_reward_on_hand_made_masks():
    m = np.zeros((8, 8), bool)
    assert clone_reward(m) == 1.0
    m[7, 7] = True
    assert clone_reward(m) == -1.0


def test_cover_reward_counts_uncovered_fraction():
    h = np.zeros((4, 4), np.float32)
    assert cover_reward(h, 0.1) == pytest.approx(0.1)
    h[:2] = 1.0  # half covered
    assert cover_reward(h, 0.1) == pytest.approx(0.05)
    h[:] = 1.0
    assert cover_reward(h, 0.1) == 0.0


def test_balance_cover_reward_pays_below_average_counts():
    v = np.zeros((4, 4), np.float32)
    assert balance_cover_reward(v, 0.0, 0.1) == pytest.approx(0.1)  # nothing counted yet
    assert balance_cover_reward(v, 2.0, 0.1) == pytest.approx(0.1)  # never seen, dataset seen twice
    v[:] = 2.0
    assert balance_cover_reward(v, 2.0, 0.1) == pytest.approx(0.0)  # as often as the average pixel
    v[:2] = 4.0  # mean 3 = 1.5 x the average
    assert balance_cover_reward(v, 2.0, 0.1) == pytest.approx(-0.05)
    v[:] = 100.0
    assert balance_cover_reward(v, 2.0, 0.1) == pytest.approx(-0.1)  # clipped


def test_balance_cover_counts_since_the_reinit_and_resumes_exactly():
    """cover_reward='balance': the env counts every AE training patch (warm-up ones too) since the
    last re-init, a step's R_cover reads those counts plus this episode's, the history map shows
    counts / (2 x mean), and a checkpoint carries the counts."""
    env = tiny_env(cover_reward="balance")
    env.reset(seed=2)
    p, area = env.process, TINY.sampler.patch_size ** 2
    assert p.visit_total == pytest.approx(TINY.ae_training.warmup_updates * TINY.sampler.patches_per_update * area)
    assert p.visits.sum() == pytest.approx(p.visit_total)
    env._img, env._cy, env._cx = 0, 16, 16
    counts = p.visits[0].copy()
    mean = p.visit_total / (env.n_images * 32 * 32)
    _, _, _, _, info = env.step(0)  # north by the stride: centre (12, 16)
    window = counts[8:16, 12:20]
    assert info["r_cover"] == pytest.approx(balance_cover_reward(window, mean, TINY.rewards.cover_bonus), abs=1e-6)
    obs, _, _, _, info2 = env.step(4)  # back south to (16, 16): half of it counted once more
    mean2 = (p.visit_total + 2 * area) / (env.n_images * 32 * 32)
    counts[8:16, 12:20] += 1.0
    assert info2["r_cover"] == pytest.approx(balance_cover_reward(counts[12:20, 12:20], mean2, TINY.rewards.cover_bonus),
                                             abs=1e-6)
    counts[12:20, 12:20] += 1.0
    np.testing.assert_allclose(obs["history"][0], np.clip(counts / (2 * mean2), 0, 1), rtol=1e-6)
    assert env.observation_space.contains(obs)
    done = False
    while not done:
        obs, _, done, _, _ = env.step(0)
    assert p.visit_total == pytest.approx((TINY.ae_training.warmup_updates + 1) * TINY.sampler.patches_per_update * area)
    mean = p.visit_total / (env.n_images * 32 * 32)  # the episode's patches are counted once, not twice
    np.testing.assert_allclose(obs["history"][0], np.clip(p.visits[0] / (2 * mean), 0, 1), rtol=1e-6)
    run_episodes(env, TINY.ae_training.reinit_every - TINY.ae_training.warmup_updates - 1)  # up to the next re-init and its warm-up
    assert p.reinits == 2 and p.visit_total == pytest.approx(TINY.ae_training.warmup_updates * TINY.sampler.patches_per_update * area)

    blob = io.BytesIO()
    torch.save(env.state_dict(), blob)
    expected = run_episodes(env, 3, actions_seed=1)
    resumed = tiny_env(cover_reward="balance")
    blob.seek(0)
    resumed.load_state_dict(torch.load(blob, weights_only=False))
    assert run_episodes(resumed, 3, actions_seed=1) == expected
    np.testing.assert_array_equal(resumed.process.visits, env.process.visits)


def test_beta_schedule():
    assert beta_schedule(0, 2000) == 1.0
    assert beta_schedule(500, 2000) == pytest.approx(0.75)
    assert beta_schedule(5000, 2000) == 0.0
    assert beta_schedule(5000, 2000, beta_min=0.15) == 0.15
    assert beta_schedule(100, 2000, beta_min=0.15) == pytest.approx(0.95)


def test_alpha_is_pixel_ratio():
    masks = np.zeros((2, 10, 10), bool)
    masks[0, :2, :5] = True  # 10 anomalous of 200
    assert alpha_from_masks(masks) == pytest.approx(10 / 190)


def aim(env: BatchSamplingEnv, image: int, mask: np.ndarray, dirty: bool) -> tuple[int, tuple[int, int]]:
    """Put the current patch on `image` where one of the moves 0-7 leads to a patch whose window
    in `mask` (that image's ground truth, taken from the split, not from the env) holds an
    anomalous pixel (`dirty`) or none; return that move and the centre it leads to."""
    h, s = TINY.sampler.patch_size // 2, env.image_size
    for cy in range(h, s - h + 1):
        for cx in range(h, s - h + 1):
            env._img, env._cy, env._cx = image, cy, cx
            for a in range(8):
                i, y, x = env._destination(a)
                if i == image and bool(mask[y - h:y + h, x - h:x + h].any()) == dirty:
                    return a, (y, x)
    raise AssertionError(f"no {'dirty' if dirty else 'clean'} patch on image {image}")


@pytest.mark.parametrize("case, expected_clone", [("labeled anomaly", -1.0), ("labeled clean", 1.0),
                                                  ("unlabeled anomaly", 0.0)])
def test_step_rewards_follow_the_mask(case, expected_clone):
    """R_clone is -1 for a patch touching a labeled anomaly, +1 for a clean patch of a labeled
    image, 0 on unlabeled images (even on their anomalies: their masks are unknown to the
    sampler). The step reward is beta * (R_clone + R_cover), R_cover = 0.1 on a first visit."""
    split = toy_split(32)
    env = BatchSamplingEnv(split=split, config=TINY)
    env.reset(seed=0)
    if case == "unlabeled anomaly":
        j = next(j for j, s in enumerate(split.unlabeled) if s.mask.any())
        image, mask = env.n_labeled + j, split.unlabeled[j].mask
    else:
        image = next(k for k, s in enumerate(split.labeled) if s.mask.any())
        mask = split.labeled[image].mask
    dirty = case != "labeled clean"
    action, centre = aim(env, image, mask, dirty)
    assert env.clean_actions()[action] == (not dirty or image >= env.n_labeled)
    _, r, _, _, info = env.step(action)
    assert info["image"] == image and info["centre"] == centre
    cy, cx = centre
    h = TINY.sampler.patch_size // 2
    assert mask[cy - h:cy + h, cx - h:cx + h].any() == dirty  # the case really happened
    assert info["r_clone"] == expected_clone
    assert info["r_cover"] == pytest.approx(0.1)  # first visit: nothing covered yet
    assert r == pytest.approx(info["beta"] * (expected_clone + 0.1))


def test_revisited_patch_earns_no_cover_reward():
    env = tiny_env()
    env.reset(seed=0)
    env._img, env._cy, env._cx = 0, 16, 16
    _, _, _, _, info = env.step(0)  # move north by the stride, then sample
    env.step(4)  # back south ...
    _, _, _, _, info2 = env.step(0)  # ... and north again: the same patch, already covered
    assert info2["centre"] == info["centre"] and info2["r_cover"] == 0.0


def test_moves_are_clipped_to_the_image():
    env = tiny_env()
    env.reset(seed=0)
    env._cy = env._cx = 12
    for _ in range(3):
        _, _, done, _, info = env.step(7)  # north-west by 3 strides of 4 px: past the corner
    assert info["centre"] == (4, 4)


# ---------------------------------------------------------------- spaces and checkers
def test_registered_and_spaces():
    env = gym.make(envs.ENV_ID, split=toy_split(32), config=TINY)
    obs, info = env.reset(seed=3)
    assert env.observation_space.contains(obs)
    assert env.action_space == gym.spaces.Discrete(9)
    assert set(obs) == {"rgb", "loss", "history", "patch"}
    assert obs["rgb"].shape == (3, 32, 32) and obs["loss"].dtype == np.float32
    env.close()


def test_crop_observation():
    env = tiny_env(observation="crop", crop_size=16)
    obs, _ = env.reset(seed=0)
    assert obs["rgb"].shape == (3, 16, 16)
    assert env.observation_space.contains(obs)
    assert obs["patch"][0, 4:12, 4:12].all()  # the patch is centred in the crop


def test_gymnasium_env_checker():
    from gymnasium.utils.env_checker import check_env
    check_env(tiny_env(), skip_render_check=True)


def test_sb3_env_checker():
    from stable_baselines3.common.env_checker import check_env
    check_env(tiny_env(), warn=True)


def test_bad_config_is_reported():
    with pytest.raises(ValueError, match="patch_size"):
        tiny_env(patch_size=64)
    with pytest.raises(ValueError, match="observation"):
        tiny_env(observation="pixels")
    with pytest.raises(ValueError, match="power of two"):
        tiny_env(patch_size=12)


def test_make_with_no_arguments_uses_the_built_in_data(tmp_path, monkeypatch):
    """gym.make(ENV_ID) alone works on a fresh machine: the built-in dataset is generated."""
    monkeypatch.setenv("NBS_DATA_DIR", str(tmp_path / "builtin"))
    env = gym.make(envs.ENV_ID, config=tiny_config(warmup_updates=4))
    obs, _ = env.reset(seed=0)
    assert obs["rgb"].shape == (3, 128, 128) and env.observation_space.contains(obs)
    assert (tmp_path / "builtin" / "brick" / "test").is_dir()
    env.close()


# ---------------------------------------------------------------- training process
def test_episode_trains_the_ae_and_fills_profiles():
    env = tiny_env()
    env.reset(seed=0)
    assert env.process.updates == TINY.ae_training.warmup_updates and env.process.labeled_profiles.full
    before = {k: v.clone() for k, v in env.process.ae.state_dict().items()}
    run_episodes(env, 1)
    assert env.process.updates == TINY.ae_training.warmup_updates + 1
    assert any(not torch.equal(before[k], v) for k, v in env.process.ae.state_dict().items())
    assert np.isfinite(env.process.last_l_pred)


def test_ae_is_reinitialised_every_k_updates():
    env = tiny_env()
    env.reset(seed=0)
    assert env.process.reinits == 1
    run_episodes(env, TINY.ae_training.reinit_every - TINY.ae_training.warmup_updates - 1)
    assert env.process.reinits == 1
    old = env.process.ae
    run_episodes(env, 1)  # update K: re-init, then M warm-up updates inside the env
    assert env.process.reinits == 2 and env.process.ae is not old
    assert env.process.updates == TINY.ae_training.reinit_every + TINY.ae_training.warmup_updates
    assert len(env.process.snapshots) == TINY.profiles.length and env.process.labeled_profiles.full


def test_buffer_is_bounded():
    env = tiny_env()
    env.reset(seed=0)
    run_episodes(env, 8)
    buf, t = env.process.buffer, TINY.profiles.length
    assert buf.size == TINY.predictor.buffer_size
    # the raw maps kept: from the oldest live entry's first one to the newest, nothing older
    assert sorted(buf.maps) == list(range(int(buf.end.min()) - t + 1, buf.appended + 1))
    assert len(buf.maps) <= TINY.predictor.buffer_size  # a fraction of what whole profiles would take


def _materialised(pushes: list[tuple[torch.Tensor, torch.Tensor]], capacity: int) -> tuple[torch.Tensor, torch.Tensor]:
    """What the buffer held before it kept raw maps: every entry's float16 profile and its mask."""
    last = pushes[-capacity:]
    return torch.stack([p for p, _ in last]).to(torch.float16), torch.stack([m for _, m in last])


def test_replay_buffer_rebuilds_entries_exactly():
    """Entries rebuilt from raw maps equal the float16 (dihedral of the normalised profile, mask)
    pairs the buffer used to store, through ring resets (AE re-inits), wrap-around and a
    checkpoint round trip; with the images' RGB channels appended too."""
    rng = np.random.default_rng(0)
    n, t, s, cap = 3, 4, 6, 10
    masks = torch.as_tensor(rng.random((n, s, s)) > 0.7)
    for rgb in (None, torch.rand(n, 3, s, s)):
        ring = ProfileRing(n, t, s, s, torch.device("cpu"))
        buf = ReplayBuffer(cap, t, masks, rgb)
        pushes = []
        for step in range(40):
            if step in (9, 23):  # an AE re-init: the profiles start again
                ring.reset()
            maps = torch.rand(n, s, s) * (step + 1)
            ring.append(maps)
            buf.append(maps)
            if ring.full:
                ordered = ring.ordered()
                x = predictor_input(ordered, rgb)
                ks = rng.integers(0, 8, size=n)
                buf.push(profile_scale(ordered)[:, 0, 0, 0], ks)
                pushes += [(dihedral(p, int(k)), dihedral(m, int(k))) for p, m, k in zip(x, masks, ks)]
        want_p, want_m = _materialised(pushes, cap)
        order = [(buf.next + j) % cap for j in range(cap)]  # oldest first
        got_p, got_m = buf.entries(np.array(order))
        assert torch.equal(got_p, want_p.float()) and torch.equal(got_m, want_m)
        assert got_p.shape == (cap, t + (0 if rgb is None else 3), s, s) and got_p.dtype == torch.float32
        again = ReplayBuffer(cap, t, masks, rgb)
        again.load_state_dict(buf.state_dict())
        assert torch.equal(again.entries(np.array(order))[0], got_p)
        assert torch.equal(again.sample(7, np.random.default_rng(1))[0], buf.sample(7, np.random.default_rng(1))[0])
        assert len(buf.maps) <= cap // n + 2 * t  # raw maps, not cap profiles of t channels


def test_replay_buffer_refuses_old_checkpoints_and_early_pushes():
    buf = ReplayBuffer(4, 3, torch.zeros(2, 4, 4, dtype=torch.bool))
    with pytest.raises(ValueError, match="needs 3 appended loss maps, got 0"):
        buf.push(torch.ones(2), np.zeros(2, np.int64))
    with pytest.raises(ValueError, match="older version"):
        buf.load_state_dict({"profiles": torch.zeros(1, 3, 4, 4), "masks": None, "next": 0, "size": 1})


def test_profile_ring():
    ring = ProfileRing(2, 3, 4, 4, torch.device("cpu"))
    for k in range(5):
        ring.append(torch.full((2, 4, 4), float(k)))
    assert ring.full and ring.ordered()[0, :, 0, 0].tolist() == [2.0, 3.0, 4.0]


def test_dihedral_group():
    x = torch.arange(9.0).reshape(3, 3)
    images = {tuple(dihedral(x, k).flatten().tolist()) for k in range(8)}
    assert len(images) == 8


def test_same_seed_same_numbers():
    a, b = tiny_env(), tiny_env()
    a.reset(seed=7)
    b.reset(seed=7)
    ra, rb = run_episodes(a, 6), run_episodes(b, 6)
    assert ra == rb
    pa, pb = a.best_profiles(), b.best_profiles()
    np.testing.assert_array_equal(pa["unlabeled"], pb["unlabeled"])


def test_seeded_reset_restarts_training():
    """A seed other than the run's restarts it; the run's own seed does once asked to (a run under
    way continues on its own seed: tests/test_rl_users.py)."""
    env = tiny_env()
    env.reset(seed=1)
    first = run_episodes(env, 3)
    with pytest.warns(UserWarning, match="restarts the training process"):
        env.reset(seed=2)
    assert env.process.updates == TINY.ae_training.warmup_updates
    env.reset(seed=1, options={"restart": True})
    assert env.process.updates == TINY.ae_training.warmup_updates
    assert run_episodes(env, 3) == first


def test_snapshot_profiles_equal_eager_profiles():
    """D_u profiles rebuilt from kept AE weights are exactly those of evaluating every update."""
    lazy, eager = tiny_env(), tiny_env(unlabeled_profiles="eager")
    lazy.reset(seed=2)
    eager.reset(seed=2)
    run_episodes(lazy, 9)
    run_episodes(eager, 9)
    pl, pe = lazy.best_profiles(), eager.best_profiles()
    assert lazy.process.best.update == eager.process.best.update
    np.testing.assert_allclose(pl["unlabeled"], pe["unlabeled"], rtol=0, atol=1e-7)
    np.testing.assert_array_equal(pl["labeled"], pe["labeled"])


def test_state_dict_round_trip_resumes_exactly():
    ref = tiny_env()
    ref.reset(seed=4)
    run_episodes(ref, 3)
    blob = io.BytesIO()
    torch.save(ref.state_dict(), blob)  # as train.py does; state_dict() holds live references
    expected = run_episodes(ref, 4, actions_seed=1)

    resumed = tiny_env()
    blob.seek(0)
    resumed.load_state_dict(torch.load(blob, weights_only=False))
    assert run_episodes(resumed, 4, actions_seed=1) == expected
    np.testing.assert_array_equal(ref.best_profiles()["unlabeled"], resumed.best_profiles()["unlabeled"])


def test_improvement_reward_credits_the_ae_update_alone():
    """pred_reward="improvement": R_pred = N * clip((l_before - l_after) / l_before), both losses of
    the same (not yet stepped) predictor, before and after this update's AE step. Only the
    terminal reward changes: the training run itself is the same as with the papers' reward."""
    from models.predictor import weighted_bce
    level, gain = tiny_env(), tiny_env(pred_reward="improvement")
    level.reset(seed=3)
    gain.reset(seed=3)
    for env in (level, gain):
        run_episodes(env, 2)
    predictor = copy.deepcopy(gain.process.predictor)  # as it is before the next update
    l_before = gain.process.last_l_pred
    rng = np.random.default_rng(5)
    actions = [int(rng.integers(0, 9)) for _ in range(TINY.sampler.patches_per_update)]
    for env in (level, gain):
        env.reset()
    beta = beta_schedule(gain.process.updates, TINY.rewards.beta_horizon, TINY.rewards.beta_min)  # of this update
    steps = {id(env): [env.step(a) for a in actions] for env in (level, gain)}
    lv, gn = steps[id(level)], steps[id(gain)]
    assert [s[1] for s in lv[:-1]] == [s[1] for s in gn[:-1]]  # per-step terms untouched
    assert lv[-1][4]["l_pred"] == gn[-1][4]["l_pred"] and lv[-1][4]["ae_loss"] == gn[-1][4]["ae_loss"]
    p = gain.process
    with torch.no_grad():
        profiles = predictor_input(p.labeled_profiles.ordered(), None)
        l_after = float(weighted_bce(predictor(profiles)[:, 0], p._label_masks, p.alpha))
    expected = TINY.sampler.patches_per_update * float(np.clip((l_before - l_after) / l_before, -1, 1))
    assert gn[-1][4]["r_pred"] == pytest.approx(expected, rel=1e-5) and expected != 0.0
    assert gn[-1][1] - lv[-1][1] == pytest.approx((1 - beta) * (expected + lv[-1][4]["l_pred"]), rel=1e-4, abs=1e-7)
    with pytest.raises(ValueError, match="rewards.pred"):
        tiny_env(pred_reward="delta")
