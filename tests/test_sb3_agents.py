"""SB3 algorithms train against BatchSamplingEnv unchanged, with the spec's network."""
from __future__ import annotations

import importlib.util

import numpy as np
import pytest
import torch

from agents.sb3 import SamplerExtractor, SB3Agent, algorithm_class
from envs import BatchSamplingEnv
from tests.helpers import TINY, toy_split, tiny_config


def tiny_env() -> BatchSamplingEnv:
    return BatchSamplingEnv(split=toy_split(32), config=tiny_config(reinit_every=50))


#: Small per-algorithm settings: a few steps per rollout / a tiny replay buffer.
SMALL = {"PPO": {"n_steps": 8, "batch_size": 8}, "A2C": {"n_steps": 8}, "DQN": {"learning_starts": 4, "buffer_size": 64},
         "RecurrentPPO": {"n_steps": 8, "batch_size": 8}, "QRDQN": {"learning_starts": 4, "buffer_size": 64}}
CONTRIB = pytest.mark.skipif(importlib.util.find_spec("sb3_contrib") is None, reason="sb3-contrib not installed")


@pytest.mark.parametrize("algo", ["PPO", "A2C", "DQN", pytest.param("RecurrentPPO", marks=CONTRIB),
                                  pytest.param("QRDQN", marks=CONTRIB)])
def test_algorithm_trains_and_reports_episodes(algo):
    """Every algorithm of agents.sb3.DEFAULTS trains unchanged (RecurrentPPO: its Dict-observation
    LSTM policy), reports each episode, and gives action probabilities."""
    env = tiny_env()
    env.reset(seed=0)
    agent = SB3Agent(env, algo, seed=0, policy_input_size=16, **SMALL[algo])
    extractors = [m for m in agent.model.policy.modules() if isinstance(m, SamplerExtractor)]
    assert extractors and all(m.net.input_size == 16 for m in extractors)  # the spec's network, pooled
    seen = []
    agent.learn(5, lambda s: seen.append(s) or True)
    assert agent.episodes == 5 and [s["episode"] for s in seen] == [1, 2, 3, 4, 5]
    assert all(np.isfinite(s["return"]) and "l_pred" in s and 0 <= s["jump_rate"] <= 1 for s in seen)
    assert env.process.updates == TINY.ae_training.warmup_updates + 5
    # log.csv's agent columns: the last update's loss, and (policy-gradient algorithms) its entropy,
    # which for 9 actions lies in (0, ln 9]. 5 episodes of 4 steps are past the first update.
    assert np.isfinite(seen[-1]["policy_loss"])
    if algo in ("PPO", "A2C", "RecurrentPPO"):
        assert 0 < seen[-1]["entropy"] <= np.log(9) + 1e-6
    else:
        assert "entropy" not in seen[-1]
    obs = env.reset()[0]
    assert 0 <= agent.predict(obs) < 9
    probs = agent.action_probabilities(obs)
    assert probs.shape == (9,) and abs(float(probs.sum()) - 1.0) < 1e-5


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
