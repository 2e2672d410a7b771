"""Every env registered under the NeuralBatchSampling namespace, made with gymnasium.make: env
checkers (Gymnasium's and SB3's) and seeded determinism, in the style of Minigrid's env suite.

A new registered env fails here until it gets an entry in FAST_KWARGS (tiny data and config, so
that each case runs in seconds on a CPU)."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env as gym_check_env
from stable_baselines3.common.env_checker import check_env as sb3_check_env

import envs  # noqa: F401  (registers the envs)
from envs.config import make_env_config
from envs import ClassifierConfig, DataConfig

NAMESPACE = "NeuralBatchSampling"
ENV_IDS = sorted(env_id for env_id, spec in gym.envs.registry.items() if spec.namespace == NAMESPACE)

#: Constructor kwargs per registered id, built from the path of the tiny generated dataset.
FAST_KWARGS: dict[str, Callable[[Path], dict[str, Any]]] = {
    "NeuralBatchSampling/BatchSampling-v0": lambda root: dict(
        data=DataConfig(data_root=str(root), category="brick", image_size=32, n_labeled=3),
        config=make_env_config(patch_size=8, patches_per_update=4, profile_length=2, warmup_updates=2,
                         reinit_every=10, buffer_size=8, predictor_batch=4, predictor_crop=None,
                         device="cpu")),
    "NeuralBatchSampling/ResidualClassifier-v0": lambda root: dict(
        data=DataConfig(data_root=str(root), category="brick", image_size=32, n_labeled=4),
        config=ClassifierConfig(inputs="residual+image+stats", images_per_episode=2, patch_size=8,
                                ae_steps=5, ae_batch=4, stats_snapshots=2, device="cpu")),
}

#: Runs a test once per registered id, with the `make_env` fixture making that env.
each_env = pytest.mark.parametrize("make_env", ENV_IDS, indirect=True)

#: Fixed actions of the determinism rollout (taken modulo the number of actions).
ACTIONS = [8, 2, 0, 5, 3, 7, 1, 4, 6, 8, 2, 2]


def test_the_namespace_registers_envs():
    assert ENV_IDS, f"no env registered under {NAMESPACE}/ by `import envs`"
    assert envs.ENV_ID in ENV_IDS and envs.CLASSIFIER_ENV_ID in ENV_IDS


@pytest.fixture
def make_env(request, tiny_root) -> Callable[[], gym.Env]:
    """gym.make(env_id, **FAST_KWARGS[env_id]); every env made is closed after the test."""
    env_id = request.param
    if env_id not in FAST_KWARGS:
        pytest.fail(f"{env_id} is registered but has no entry in FAST_KWARGS of {__file__}: add small, "
                    f"fast constructor kwargs for it")
    made: list[gym.Env] = []

    def make() -> gym.Env:
        made.append(gym.make(env_id, **FAST_KWARGS[env_id](tiny_root)))
        return made[-1]

    yield make
    for env in made:
        env.close()


def test_no_stale_kwargs():
    """Every FAST_KWARGS entry names a registered env (no typo hides a missing entry)."""
    assert set(FAST_KWARGS) <= set(ENV_IDS)


@each_env
def test_make_reset_and_spaces(make_env):
    env = make_env()
    obs, info = env.reset(seed=0)
    assert isinstance(env.action_space, gym.spaces.Discrete)
    assert env.observation_space.contains(obs) and isinstance(info, dict)
    obs, reward, terminated, truncated, info = env.step(env.action_space.sample())
    assert env.observation_space.contains(obs) and np.isfinite(reward)


@each_env
def test_gymnasium_env_checker(make_env):
    gym_check_env(make_env().unwrapped, skip_render_check=True)


@each_env
def test_sb3_env_checker(make_env):
    sb3_check_env(make_env().unwrapped, warn=True)


@each_env
def test_same_seed_same_rollout(make_env):
    """Two fresh envs, reset(seed=3), the same actions over two whole episodes (with the training
    done at each episode's end) and into a third: identical observations, rewards and flags."""
    a, b = make_env(), make_env()
    n_actions = int(a.action_space.n)
    obs_a, _ = a.reset(seed=3)
    obs_b, _ = b.reset(seed=3)
    _assert_same_obs(obs_a, obs_b)
    episodes = 0
    for t, action in enumerate(ACTIONS):
        step_a, step_b = a.step(action % n_actions), b.step(action % n_actions)
        _assert_same_obs(step_a[0], step_b[0])
        assert step_a[1:4] == step_b[1:4], f"step {t}: (reward, terminated, truncated) differ"
        if step_a[2] or step_a[3]:
            episodes += 1
            obs_a, _ = a.reset()
            obs_b, _ = b.reset()
            _assert_same_obs(obs_a, obs_b)
    assert episodes >= 2, "the rollout should cover whole episodes: lengthen ACTIONS"


def _assert_same_obs(x: dict[str, np.ndarray], y: dict[str, np.ndarray]) -> None:
    assert x.keys() == y.keys()
    for key in x:
        assert np.array_equal(x[key], y[key]), f"observation {key!r} differs"
