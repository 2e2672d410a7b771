"""One episode of an agent in an env, and the per-episode statistics every agent reports.

REINFORCE and the fixed samplers roll out the same way; the loop lives here once. The env tells
whether a step jumped (`info["jump"]`), so an agent never needs to know which action that is; envs
without jumps (the residual classifier) get no jump rate."""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import gymnasium as gym
import numpy as np


@dataclass
class Episode:
    """What one rollout did: the actions, the rewards, the last step's info and how many steps
    the env reported as jumps (None: the env does not say). An agent that learns from the
    observations keeps what it needs of them itself (REINFORCE: its network's inputs)."""

    actions: list[int] = field(default_factory=list)
    rewards: list[float] = field(default_factory=list)
    info: dict[str, Any] = field(default_factory=dict)
    jumps: int | None = 0

    def stats(self, episode: int, **extra: Any) -> dict[str, Any]:
        """The callback's row: episode number, return, jump rate (if the env reports jumps),
        `extra` (e.g. the policy loss), then the last step's info (the env's training figures)."""
        row: dict[str, Any] = {"episode": episode, "return": float(sum(self.rewards)), **extra}
        if self.jumps is not None and self.actions:
            row["jump_rate"] = self.jumps / len(self.actions)
        row.update(self.info)
        return row


def play_episode(env: gym.Env, act: Callable[[dict[str, np.ndarray]], int]) -> Episode:
    """reset() (the env's running process continues), then act until the episode ends."""
    obs, _ = env.reset()
    episode = Episode()
    done = False
    while not done:
        action = act(obs)
        episode.actions.append(action)
        obs, reward, terminated, truncated, info = env.step(action)
        episode.rewards.append(float(reward))
        if episode.jumps is not None:
            episode.jumps = episode.jumps + bool(info["jump"]) if "jump" in info else None
        episode.info = info
        done = terminated or truncated
    return episode
