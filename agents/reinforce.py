"""REINFORCE for the neural batch sampler, readable top to bottom (CleanRL style).

One episode = the N patches of one AE update. The policy (5 conv + 2 FC, models/policy.py) samples
an action per step; at the episode's end the discounted returns weight the log-probabilities:

    loss = -sum_t log pi(a_t | s_t) * G_t  -  ent_coef * sum_t H(pi(. | s_t)),   G_t = sum_k gamma^k r_{t+k}

No reward or return normalisation, on purpose: the prediction reward arrives only on the last step
of an episode, and its *level* (how low l_pred got) is the signal. Standardising returns within an
episode would subtract it away (the terminal reward shifts every G_t by almost the same amount),
leaving only the dense cloning/coverage terms. The agent knows the env only through its spaces.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import gymnasium as gym
import numpy as np
import torch

from agents.rollout import play_episode
from common.profiling import section
from models.policy import PolicyNet, observation_channels
from common.files import load_weights


@dataclass
class ReinforceConfig:
    """Hyper-parameters of REINFORCE."""

    learning_rate: float = 1e-4
    """Adam step size of the policy"""
    gamma: float = 0.99
    """discount of the return"""
    ent_coef: float = 0.01
    """entropy bonus, keeps the sampler exploring while the terminal reward is still noisy"""
    max_grad_norm: float = 1.0
    """gradient clipping of the policy update"""
    features_dim: int = 256
    """width of the first FC layer"""
    policy_input_size: int = 64
    """the policy sees the observation maps average-pooled to this side (0: at their own size);
    see models.policy.SamplerFeatures"""
    baseline_rate: float = 0.0
    """> 0: REINFORCE with a baseline. b_t, one value per step index of the episode, follows the
    returns G_t of past episodes as an exponential moving average (b <- b + rate (G - b), b = G
    after the first episode), and the update weighs log pi(a_t) by G_t - b_t instead of G_t.
    Why: the env's prediction reward drifts with the AE's re-init cycle (large after a re-init,
    near 0 later), a trend no action causes; plain REINFORCE credits it to whatever the sampler
    did. 0: the papers' plain REINFORCE"""


def discounted_returns(rewards: list[float], gamma: float) -> np.ndarray:
    """G_t = r_t + gamma * G_{t+1}, computed backwards."""
    out = np.zeros(len(rewards), dtype=np.float32)
    g = 0.0
    for t in range(len(rewards) - 1, -1, -1):
        g = rewards[t] + gamma * g
        out[t] = g
    return out


class REINFORCE:
    """Monte-Carlo policy gradient with `learn` / `predict` / `save` / `load` like SB3's agents."""

    def __init__(self, env: gym.Env, config: ReinforceConfig | None = None,
                 device: str | torch.device = "cpu", seed: int = 0) -> None:
        self.env = env
        self.config = config or ReinforceConfig()
        self.device = torch.device(device)
        torch.manual_seed(seed)  # policy initialisation
        self.policy = PolicyNet(observation_channels(env.observation_space), int(env.action_space.n),
                                self.config.features_dim, self.config.policy_input_size).to(self.device)
        self.optimizer = torch.optim.Adam(self.policy.parameters(), lr=self.config.learning_rate)
        self.generator = torch.Generator(device="cpu").manual_seed(seed)  # action sampling
        self.episodes = 0
        self.baseline = np.zeros(0, dtype=np.float32)  # b_t of baseline_rate, grown to the longest episode
        self._inputs: list[torch.Tensor] = []  # the network inputs of the episode being played

    def _tensor_obs(self, obs: dict[str, np.ndarray]) -> dict[str, torch.Tensor]:
        return {k: torch.as_tensor(v, device=self.device).unsqueeze(0) for k, v in obs.items()}

    def _choose(self, logits: torch.Tensor, deterministic: bool) -> int:
        if deterministic:
            return int(logits.argmax())
        return int(torch.multinomial(torch.softmax(logits, -1), 1, generator=self.generator))

    def predict(self, obs: dict[str, np.ndarray], deterministic: bool = False) -> int:
        """Action for one observation: the most likely one, or a sample from the policy."""
        with torch.no_grad():
            return self._choose(self.policy(self._tensor_obs(obs))[0].cpu(), deterministic)

    def _act(self, obs: dict[str, np.ndarray]) -> int:
        """predict(), keeping the network's input for the update: the stacked, pooled maps are
        a fraction of the observation, and stacking 32 full observations again would cost about
        as much as the update's own forward and backward passes."""
        with section("policy forward"), torch.no_grad():
            x = self.policy.features.stack(self._tensor_obs(obs))
            self._inputs.append(x)
            return self._choose(self.policy.logits(x)[0].cpu(), deterministic=False)

    def action_probabilities(self, obs: dict[str, np.ndarray]) -> np.ndarray:
        """pi(. | obs) as a numpy vector (used to score image-level decisions)."""
        with torch.no_grad():
            return torch.softmax(self.policy(self._tensor_obs(obs))[0], -1).cpu().numpy()

    def learn(self, total_episodes: int,
              callback: Callable[[dict[str, Any]], bool] | None = None) -> "REINFORCE":
        """Run episodes until `self.episodes == total_episodes`; one policy update per episode.

        `callback(stats)` is called after every update; returning False stops training (used by
        train.py for checkpoints and Ctrl-C)."""
        cfg = self.config
        while self.episodes < total_episodes:
            # 1. Roll out one episode with the current policy (_act keeps each step's network input).
            self._inputs = []
            episode = play_episode(self.env, self._act)
            actions, rewards = episode.actions, episode.rewards

            # 2. Policy gradient on the whole episode in one batched forward pass.
            with section("policy update"):
                returns_np = discounted_returns(rewards, cfg.gamma)
                weights = returns_np - self._advance_baseline(returns_np) if cfg.baseline_rate > 0 else returns_np
                returns = torch.as_tensor(weights, device=self.device)
                dist = torch.distributions.Categorical(logits=self.policy.logits(torch.cat(self._inputs)))
                log_probs = dist.log_prob(torch.as_tensor(actions, device=self.device))
                entropy = dist.entropy()
                loss = -(log_probs * returns).sum() - cfg.ent_coef * entropy.sum()
                self.optimizer.zero_grad(set_to_none=True)
                loss.backward()
                torch.nn.utils.clip_grad_norm_(self.policy.parameters(), cfg.max_grad_norm)
                self.optimizer.step()
            self.episodes += 1

            stats = episode.stats(self.episodes, policy_loss=float(loss.detach()),
                                  entropy=float(entropy.mean().detach()))
            if callback is not None and callback(stats) is False:
                break
        return self

    def _advance_baseline(self, returns: np.ndarray) -> np.ndarray:
        """b_t before this episode (a step index seen for the first time starts at its own G_t),
        then move b towards this episode's returns by baseline_rate."""
        n = len(returns)
        if n > len(self.baseline):
            self.baseline = np.concatenate([self.baseline, returns[len(self.baseline):]]).astype(np.float32)
        before = self.baseline[:n].copy()
        self.baseline[:n] += self.config.baseline_rate * (returns - before)
        return before

    # ------------------------------------------------------------------ checkpoints
    def state_dict(self) -> dict[str, Any]:
        return {"algorithm": "reinforce", "config": dataclasses.asdict(self.config),
                "policy": self.policy.state_dict(), "optimizer": self.optimizer.state_dict(),
                "generator": self.generator.get_state(), "episodes": self.episodes,
                "baseline": torch.as_tensor(self.baseline)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state.get("algorithm") != "reinforce":
            raise ValueError(f"not a REINFORCE checkpoint (algorithm={state.get('algorithm')!r})")
        self.policy.load_state_dict(state["policy"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.generator.set_state(state["generator"])
        self.episodes = int(state["episodes"])
        self.baseline = torch.as_tensor(state.get("baseline", torch.zeros(0))).float().cpu().numpy().copy()

    def save(self, path: str | Path) -> None:
        torch.save(self.state_dict(), path)

    @classmethod
    def load(cls, path: str | Path, env: gym.Env, device: str | torch.device = "cpu") -> "REINFORCE":
        state = load_weights(path, map_location=device)
        # Checkpoints from before policy_input_size saw the maps at their own size.
        agent = cls(env, ReinforceConfig(**{"policy_input_size": 0, **state["config"]}), device)
        agent.load_state_dict(state)
        return agent
