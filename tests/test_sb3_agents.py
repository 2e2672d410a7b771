"""SB3 algorithms train against BatchSamplingEnv unchanged, with the spec's network."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from agents.sb3 import SamplerExtractor, SB3Agent, algorithm_class
from envs import BatchSamplingEnv
from tests.test_env import TINY
from tests.helpers import toy_split


def tiny_env() -> BatchSamplingEnv:
    return BatchSamplingEnv(split=toy_split(32), config=dataclasses.replace(TINY, reinit_every=50))


@pytest.mark.parametrize("algo", ["PPO", "A2C", "DQN"])
def test_algorithm_trains_and_reports_episodes(algo):
    env = tiny_env()
    env.reset(seed=0)
    extra = {"n_steps": 8, "batch_size": 8} if algo == "PPO" else {"n_steps": 8} if algo == "A2C" else \
        {"learning_starts": 4, "buffer_size": 64}
    agent = SB3Agent(env, algo, seed=0, **extra)
    assert isinstance(agent.model.policy.features_extractor if algo != "DQN"
                      else agent.model.q_net.features_extractor, SamplerExtractor)
    seen = []
    agent.learn(5, lambda s: seen.append(s) or True)
    assert agent.episodes == 5 and [s["episode"] for s in seen] == [1, 2, 3, 4, 5]
    assert all(np.isfinite(s["return"]) and "l_pred" in s and 0 <= s["jump_rate"] <= 1 for s in seen)
    assert env.updates == TINY.warmup_updates + 5
    assert 0 <= agent.predict(env.reset()[0]) < 9


def test_state_dict_round_trip():
    env = tiny_env()
    env.reset(seed=0)
    agent = SB3Agent(env, "PPO", seed=0, n_steps=8, batch_size=8)
    agent.learn(3)
    state = agent.state_dict()
    other = SB3Agent(tiny_env(), "PPO", seed=1, n_steps=8, batch_size=8)
    other.load_state_dict(state)
    assert other.episodes == 3
    obs = env.reset()[0]
    with torch.no_grad():
        a = agent.model.policy.obs_to_tensor(obs)[0]
        torch.testing.assert_close(agent.model.policy.get_distribution(a).distribution.probs,
                                   other.model.policy.get_distribution(a).distribution.probs)
    with pytest.raises(ValueError, match="sb3:PPO"):
        other.load_state_dict({"algorithm": "reinforce"})


def test_unknown_algorithm():
    with pytest.raises(ValueError, match="NOPE"):
        algorithm_class("NOPE")
