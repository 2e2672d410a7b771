"""Non-learning batch samplers: the floors every learned sampler is compared against.

They have the verbs of the learning agents (`learn(total_episodes, callback)`, `predict`,
`state_dict` / `load_state_dict`, `episodes`), so train.py, the checkpoints, evaluate.py and
ablate.py treat them like any other agent. "Learning" here only runs the env: the AE and the
predictor still train on the patches these samplers pick.

- `uniform`:     always jump, i.e. every patch is uniform over images and centres (random batches,
                 the usual way to train an AE).
- `random-walk`: each of the 9 actions with probability 1/9.
- `heuristic`:   chu2020's hand-made sampler: patches only where the labeled masks are normal,
                 uniform otherwise. It jumps (uniform patch) unless the next jump would land on a
                 labeled anomaly; then it moves to a clean neighbouring patch. The knowledge of
                 the labeled masks comes from the env's `action_masks()`.

Diagnostics, not methods (`ORACLES`): `oracle-normal` and `oracle-defect` read the masks of every
image, D_u included, to measure the headroom of choosing patches (what a sampler could win) and
the harm (what it could lose). No real run can know those masks.
"""
from __future__ import annotations

import abc
from typing import Any, Callable

import gymnasium as gym
import numpy as np

from agents.rollout import play_episode
from envs.actions import JUMP, N_ACTIONS


class FixedSampler(abc.ABC):
    """A sampler whose action distribution never changes; subclasses define `predict`."""

    name = "fixed"

    def __init__(self, env: gym.Env, seed: int = 0) -> None:
        if not (isinstance(env.action_space, gym.spaces.Discrete) and env.action_space.n == N_ACTIONS):
            raise ValueError(f"{self.name} needs the 9 actions of BatchSamplingEnv, got {env.action_space}")
        self.env = env
        self.rng = np.random.default_rng(seed)
        self.episodes = 0

    @abc.abstractmethod
    def predict(self, obs: dict[str, np.ndarray], deterministic: bool = False) -> int:
        """The next action (the observation may be ignored: these samplers do not look)."""

    def learn(self, total_episodes: int,
              callback: Callable[[dict[str, Any]], bool] | None = None) -> "FixedSampler":
        """Run episodes until `self.episodes == total_episodes` (or `callback` returns False)."""
        while self.episodes < total_episodes:
            episode = play_episode(self.env, self.predict)
            self.episodes += 1
            if callback is not None and callback(episode.stats(self.episodes)) is False:
                break
        return self

    def state_dict(self) -> dict[str, Any]:
        return {"algorithm": self.name, "rng": self.rng.bit_generator.state, "episodes": self.episodes}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state.get("algorithm") != self.name:
            raise ValueError(f"checkpoint holds {state.get('algorithm')!r}, not {self.name}")
        self.rng.bit_generator.state = state["rng"]
        self.episodes = int(state["episodes"])


class UniformSampler(FixedSampler):
    """Every patch uniform over all images and centres."""

    name = "uniform"

    def predict(self, obs: dict[str, np.ndarray], deterministic: bool = False) -> int:
        return JUMP


class RandomWalkSampler(FixedSampler):
    """Uniform over the 9 actions: a random walk with random restarts."""

    name = "random-walk"

    def predict(self, obs: dict[str, np.ndarray], deterministic: bool = False) -> int:
        return int(self.rng.integers(9))


class HeuristicSampler(FixedSampler):
    """Uniform patches, except none that overlaps an anomaly of a labeled image: it jumps unless
    the env says the next jump is not allowed, then moves to an allowed neighbouring patch."""

    name = "heuristic"
    env_method = "action_masks"
    """the env's method that says which actions are allowed"""

    def __init__(self, env: gym.Env, seed: int = 0) -> None:
        super().__init__(env, seed)
        try:
            self._query = env.get_wrapper_attr(self.env_method)
        except AttributeError:
            raise ValueError(f"the {self.name} sampler needs an env with {self.env_method}() "
                             "(BatchSamplingEnv has it)") from None

    def allowed(self) -> np.ndarray:
        return np.asarray(self._query(), bool)

    def predict(self, obs: dict[str, np.ndarray], deterministic: bool = False) -> int:
        allowed = self.allowed()
        if allowed[JUMP] or not allowed.any():
            return JUMP
        return int(self.rng.choice(np.flatnonzero(allowed)))


BASELINES: dict[str, type[FixedSampler]] = {
    cls.name: cls for cls in (UniformSampler, RandomWalkSampler, HeuristicSampler)}


class OracleSampler(HeuristicSampler):
    """DIAGNOSTIC ONLY, never a method: uniform over the patches its masks allow, on the masks of
    every image, D_u included (BatchSamplingEnv.oracle_action_masks), to measure how much a
    sampler could win by choosing patches ('oracle-normal') or lose ('oracle-defect'). No real run
    can do this. It jumps, drawing the next jump again (BatchSamplingEnv.redraw_jump) until it
    lands on an allowed patch: rejection sampling, so its patches are uniform over the allowed
    ones, as uniform's are over all. After `tries` draws it falls back to the heuristic's move."""

    env_method = "oracle_action_masks"
    kind = "normal"
    tries = 64

    def __init__(self, env: gym.Env, seed: int = 0) -> None:
        super().__init__(env, seed)
        self._redraw = env.get_wrapper_attr("redraw_jump")

    def allowed(self) -> np.ndarray:
        return np.asarray(self._query(self.kind), bool)

    def predict(self, obs: dict[str, np.ndarray], deterministic: bool = False) -> int:
        for _ in range(self.tries):
            if self.allowed()[JUMP]:
                return JUMP
            self._redraw()
        return super().predict(obs, deterministic)


class OracleNormalSampler(OracleSampler):
    """oracle-normal: uniform over the patches that touch no anomaly of ANY image (the ideal
    chu2020's R_clone aims at, extended to the unlabeled images)."""

    name, kind = "oracle-normal", "normal"


class OracleDefectSampler(OracleSampler):
    """oracle-defect: uniform over the patches that touch an anomaly: how much a bad sampler can hurt."""

    name, kind = "oracle-defect", "defect"


#: The diagnostic oracle samplers (ablate.py --agents oracle-normal oracle-defect); never in a
#: default sweep, never a shipped method.
ORACLES: dict[str, type[FixedSampler]] = {cls.name: cls for cls in (OracleNormalSampler, OracleDefectSampler)}
