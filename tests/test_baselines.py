"""The non-learning samplers do what their names say, and the env's action masks are right."""
from __future__ import annotations


import numpy as np
import pytest

from agents.baselines import BASELINES, HeuristicSampler, RandomWalkSampler, UniformSampler
from envs import BatchSamplingEnv
from envs.batch_sampling_env import JUMP
from tests.helpers import toy_split, tiny_config


def env_for(region: str = "random", **overrides) -> BatchSamplingEnv:
    env = BatchSamplingEnv(split=toy_split(32, n_labeled=4, n_unlabeled=2, defect_region=region),
                           config=tiny_config(patches_per_update=8, **overrides))
    env.reset(seed=0)
    return env


def rollout(env: BatchSamplingEnv, agent, episodes: int) -> tuple[list[int], list[dict]]:
    actions, infos = [], []
    for _ in range(episodes):
        obs, _ = env.reset()
        done = False
        while not done:
            a = agent.predict(obs)
            obs, _, done, _, info = env.step(a)
            actions.append(a)
            infos.append(info)
    return actions, infos


def test_clean_actions_flag_exactly_the_actions_that_reach_labeled_anomalies():
    env = env_for("left")
    rng = np.random.default_rng(1)
    checked, dirty, fallbacks = 0, 0, 0
    for _ in range(80):
        clean, masks = env.clean_actions(), env.action_masks()
        assert masks.any() and (masks == clean).all() or (not clean.any() and masks.all())
        fallbacks += not clean.any()
        a = int(rng.integers(9))
        _, _, done, _, info = env.step(a)
        if info["image"] < env.n_labeled:  # the clone reward is the ground truth of a mask bit
            assert clean[a] == (info["r_clone"] > 0), (a, clean, info)
            checked += 1
            dirty += not clean[a]
        if done:
            env.reset()
    assert checked > 20 and dirty > 0


def test_heuristic_never_samples_a_labeled_anomaly_and_uniform_does():
    env = env_for("left")
    _, infos = rollout(env, HeuristicSampler(env, seed=0), episodes=10)
    assert all(i["r_clone"] >= 0 for i in infos)
    assert sum(i["image"] >= env.n_labeled for i in infos) > 0  # it still samples unlabeled images
    env = env_for("left")
    _, infos = rollout(env, UniformSampler(env, seed=0), episodes=10)
    assert any(i["r_clone"] < 0 for i in infos)


def test_uniform_always_jumps_and_random_walk_is_uniform():
    env = env_for()
    actions, _ = rollout(env, UniformSampler(env), episodes=3)
    assert set(actions) == {JUMP}
    actions, _ = rollout(env, RandomWalkSampler(env, seed=0), episodes=60)  # 480 actions
    counts = np.bincount(actions, minlength=9)
    expected = len(actions) / 9
    chi2 = float(((counts - expected) ** 2 / expected).sum())
    assert chi2 < 26.1, counts  # chi-square, 8 dof, p = 0.001


@pytest.mark.parametrize("name", sorted(BASELINES))
def test_learn_reports_episodes_and_state_round_trips(name):
    env = env_for()
    agent = BASELINES[name](env, seed=3)
    seen = []
    agent.learn(3, lambda s: seen.append(s) or True)
    assert [s["episode"] for s in seen] == [1, 2, 3] and agent.episodes == 3
    assert all(np.isfinite(s["return"]) and 0 <= s["jump_rate"] <= 1 for s in seen)
    other = BASELINES[name](env_for(), seed=99)
    other.load_state_dict(agent.state_dict())
    assert other.episodes == 3
    obs = env.reset()[0]
    if name != "heuristic":  # the heuristic reads its own env's masks
        assert [agent.predict(obs) for _ in range(20)] == [other.predict(obs) for _ in range(20)]
    with pytest.raises(ValueError, match=name):
        other.load_state_dict({"algorithm": "reinforce"})


def _touches(env: BatchSamplingEnv, info: dict) -> bool:
    """Whether the patch of a step touches an anomaly of its image (any image, D_u included)."""
    (cy, cx), h = info["centre"], env._half
    return bool(env.process.all_masks[info["image"], cy - h:cy + h, cx - h:cx + h].any())


def test_oracles_read_every_mask_and_are_not_default_samplers():
    """oracle-normal trains on (almost) no anomalous patch of any image, D_u included, oracle-defect
    on (almost) only such patches, each by jumping (uniform over the patches it allows); both are diagnostics, not among the baselines a sweep runs by default."""
    from agents.baselines import ORACLES, OracleDefectSampler, OracleNormalSampler
    from runner.ablation import DEFAULT_AGENTS

    share = {}
    for name, cls in (("uniform", UniformSampler), ("oracle-normal", OracleNormalSampler),
                      ("oracle-defect", OracleDefectSampler)):
        env = env_for("random")
        actions, infos = rollout(env, cls(env, seed=0), episodes=8)
        share[name] = np.mean([_touches(env, i) for i in infos])
        unlabeled = [i for i in infos if i["image"] >= env.n_labeled]
        assert unlabeled  # every sampler also samples D_u
        assert np.mean(np.array(actions) == JUMP) > 0.9  # uniform over the allowed patches: by rejected jumps
    assert share["oracle-normal"] < 0.05 < 0.95 < share["oracle-defect"] and 0.05 < share["uniform"] < 0.95
    assert set(ORACLES) == {"oracle-normal", "oracle-defect"} and not set(ORACLES) & set(DEFAULT_AGENTS)
    with pytest.raises(ValueError, match="kind"):
        env_for().oracle_action_masks("both")
