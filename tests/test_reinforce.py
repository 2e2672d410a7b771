"""REINFORCE: returns, the sign of its gradient on a toy problem, checkpoint round trip."""
from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch

from agents.reinforce import REINFORCE, ReinforceConfig, discounted_returns


class ConstantRewardEnv(gym.Env):
    """Two-step episodes with a fixed observation; every action earns `reward`."""

    def __init__(self, reward: float) -> None:
        self.observation_space = gym.spaces.Dict({"rgb": gym.spaces.Box(0, 1, (3, 16, 16), np.float32)})
        self.action_space = gym.spaces.Discrete(9)
        self.reward = reward
        self.obs = {"rgb": np.random.default_rng(0).random((3, 16, 16), dtype=np.float32)}

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.t = 0
        return {k: v.copy() for k, v in self.obs.items()}, {}

    def step(self, action):
        self.t += 1
        return {k: v.copy() for k, v in self.obs.items()}, self.reward, self.t == 2, False, {}


class BanditEnv(ConstantRewardEnv):
    """One-step episodes: action 3 pays +1, every other action 0."""

    def step(self, action):
        return {k: v.copy() for k, v in self.obs.items()}, float(action == 3), True, False, {}


def action_probs(agent: REINFORCE, obs) -> torch.Tensor:
    with torch.no_grad():
        return torch.softmax(agent.policy(agent._tensor_obs(obs))[0], -1)


def test_discounted_returns():
    np.testing.assert_allclose(discounted_returns([1.0, 0.0, 2.0], 0.5), [1.5, 1.0, 2.0])
    np.testing.assert_allclose(discounted_returns([0.0, 0.0, -1.0], 1.0), [-1.0, -1.0, -1.0])


@pytest.mark.parametrize("reward", [1.0, -1.0])
def test_gradient_sign(reward):
    """Positive return -> the taken actions become more likely; negative -> less likely."""
    env = ConstantRewardEnv(reward)
    agent = REINFORCE(env, ReinforceConfig(learning_rate=1e-3, ent_coef=0.0), seed=0)
    obs, _ = env.reset()
    before = action_probs(agent, obs)
    taken: list[int] = []
    original_predict = agent.predict
    agent.predict = lambda o, deterministic=False: taken.append(original_predict(o)) or taken[-1]
    agent.learn(1)
    after = action_probs(agent, obs)
    for a in set(taken):
        assert (after[a] > before[a]) == (reward > 0), (a, before[a], after[a])


def test_learns_a_bandit():
    env = BanditEnv(0.0)
    agent = REINFORCE(env, ReinforceConfig(learning_rate=3e-3, ent_coef=0.0), seed=1)
    obs, _ = env.reset()
    assert action_probs(agent, obs)[3] < 0.3
    agent.learn(150)
    assert action_probs(agent, obs)[3] > 0.8


def test_checkpoint_round_trip(tmp_path):
    env = BanditEnv(0.0)
    agent = REINFORCE(env, ReinforceConfig(learning_rate=3e-3), seed=2)
    agent.learn(5)
    agent.save(tmp_path / "agent.pt")
    loaded = REINFORCE.load(tmp_path / "agent.pt", env)
    obs, _ = env.reset()
    torch.testing.assert_close(action_probs(agent, obs), action_probs(loaded, obs))
    assert loaded.episodes == 5 and loaded.config == agent.config
    # the same RNG state: both continue identically
    agent.learn(10)
    loaded.learn(10)
    torch.testing.assert_close(action_probs(agent, obs), action_probs(loaded, obs))


def test_rejects_foreign_checkpoint():
    agent = REINFORCE(BanditEnv(0.0))
    with pytest.raises(ValueError, match="REINFORCE"):
        agent.load_state_dict({"algorithm": "ppo"})
