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


def test_baseline_ignores_a_reward_no_action_changes():
    """With baseline_rate > 0 a reward that every action earns alike (here: always 5) gives
    G_t - b_t = 0 and leaves the policy where it was; plain REINFORCE reinforces whatever it did."""
    env = ConstantRewardEnv(5.0)
    obs, _ = env.reset()
    plain = REINFORCE(env, ReinforceConfig(learning_rate=1e-3, ent_coef=0.0), seed=0)
    with_baseline = REINFORCE(env, ReinforceConfig(learning_rate=1e-3, ent_coef=0.0, baseline_rate=0.1), seed=0)
    before = action_probs(with_baseline, obs)
    plain.learn(3)
    with_baseline.learn(3)
    torch.testing.assert_close(action_probs(with_baseline, obs), before)
    assert (action_probs(plain, obs) - before).abs().max() > 1e-3
    np.testing.assert_allclose(with_baseline.baseline, discounted_returns([5.0, 5.0], 0.99))


def test_baseline_is_a_moving_average_of_the_returns_and_still_learns_a_bandit():
    env = BanditEnv(0.0)
    agent = REINFORCE(env, ReinforceConfig(learning_rate=3e-3, ent_coef=0.0, baseline_rate=0.1), seed=1)
    returns: list[float] = []
    agent.learn(150, lambda stats: returns.append(stats["return"]) or True)
    expected = returns[0]  # b = G after the first episode, then b += 0.1 (G - b)
    for g in returns[1:]:
        expected += 0.1 * (g - expected)
    assert agent.baseline.shape == (1,) and agent.baseline[0] == pytest.approx(expected, abs=1e-5)
    obs, _ = env.reset()
    assert action_probs(agent, obs)[3] > 0.8


def test_checkpoint_round_trip(tmp_path):
    env = BanditEnv(0.0)
    agent = REINFORCE(env, ReinforceConfig(learning_rate=3e-3, baseline_rate=0.1), seed=2)
    agent.learn(5)
    agent.save(tmp_path / "agent.pt")
    loaded = REINFORCE.load(tmp_path / "agent.pt", env)
    obs, _ = env.reset()
    torch.testing.assert_close(action_probs(agent, obs), action_probs(loaded, obs))
    np.testing.assert_array_equal(loaded.baseline, agent.baseline)
    assert loaded.episodes == 5 and loaded.config == agent.config
    # the same RNG state: both continue identically
    agent.learn(10)
    loaded.learn(10)
    torch.testing.assert_close(action_probs(agent, obs), action_probs(loaded, obs))


def test_rejects_foreign_checkpoint():
    agent = REINFORCE(BanditEnv(0.0))
    with pytest.raises(ValueError, match="REINFORCE"):
        agent.load_state_dict({"algorithm": "ppo"})


def test_policy_sees_the_maps_pooled_to_its_input_size():
    """input_size=8 on 16 px maps: the network's output is that of the 2x2-averaged maps, while
    input_size=0 looks at every pixel (an observation that differs only within 2x2 blocks, with
    the same block means, gives other logits)."""
    from models.policy import PolicyNet

    torch.manual_seed(0)
    x = torch.rand(2, 3, 16, 16)
    pooled = torch.nn.functional.avg_pool2d(x, 2)
    checker = (torch.arange(16)[:, None] + torch.arange(16)[None]) % 2 * 0.2 - 0.1  # zero mean per 2x2 block
    for size, same in ((8, True), (0, False)):
        torch.manual_seed(1)
        net = PolicyNet(3, 9, 32, input_size=size)
        with torch.no_grad():
            out, shifted = net({"rgb": x}), net({"rgb": x + checker})
        assert torch.allclose(out, shifted, atol=1e-6) == same
        if size:
            torch.manual_seed(1)
            small = PolicyNet(3, 9, 32, input_size=0)  # same weights (same seed), fed the pooled maps
            with torch.no_grad():
                torch.testing.assert_close(out, small({"rgb": pooled}))
    with pytest.raises(ValueError, match="input_size"):
        PolicyNet(3, 9, 32, input_size=-1)
    # REINFORCE keeps each step's stacked input and runs the update on them: bit-identical to
    # running the network on the batch of observations
    torch.manual_seed(2)
    net = PolicyNet(4, 9, 32, input_size=8)
    steps = [{"rgb": torch.rand(1, 3, 16, 16), "loss": torch.rand(1, 1, 16, 16)} for _ in range(5)]
    batch = {k: torch.cat([o[k] for o in steps]) for k in steps[0]}
    with torch.no_grad():
        assert torch.equal(net.logits(torch.cat([net.features.stack(o) for o in steps])), net(batch))


def test_policy_input_size_is_part_of_the_config_and_old_checkpoints_keep_full_size(tmp_path):
    env = BanditEnv(0.0)
    agent = REINFORCE(env, ReinforceConfig(policy_input_size=8), seed=0)
    assert agent.policy.features.input_size == 8
    agent.save(tmp_path / "agent.pt")
    assert REINFORCE.load(tmp_path / "agent.pt", env).policy.features.input_size == 8
    state = torch.load(tmp_path / "agent.pt", weights_only=False)
    del state["config"]["policy_input_size"]  # as written before the setting existed
    torch.save(state, tmp_path / "old.pt")
    assert REINFORCE.load(tmp_path / "old.pt", env).policy.features.input_size == 0
