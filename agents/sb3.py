"""Any Stable-Baselines3 algorithm with Discrete actions as a batch sampler, unchanged.

The spec's policy network (models/policy.py: 5 conv + FC) becomes the algorithm's features
extractor for the env's Dict observation; SB3's own extractors would flatten the float maps or
expect uint8 images, neither of which fits. `net_arch=[]` puts the action (and value) head straight
on top, so the network is the spec's 5 conv + 2 FC whatever the algorithm.

`SB3Agent` gives an SB3 model the verbs train.py uses for every agent: `learn(total_episodes,
callback)`, `predict`, `state_dict` / `load_state_dict`, `episodes`. Using SB3 directly instead,
`policy_kwargs()` gives its Dict policy the same network:

    model = PPO("MultiInputPolicy", env, policy_kwargs=policy_kwargs())
"""
from __future__ import annotations

import importlib
import inspect
from collections.abc import Mapping
from typing import Any, Callable

import gymnasium as gym
import numpy as np
import torch
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.on_policy_algorithm import OnPolicyAlgorithm
from stable_baselines3.common.torch_layers import BaseFeaturesExtractor
from stable_baselines3.common.type_aliases import TrainFrequencyUnit
from stable_baselines3.common.utils import set_random_seed

from models.policy import SamplerFeatures, observation_channels

#: Settings that make each algorithm fit this env: short episodes (one AE update each), large
#: image observations (a replay buffer of 10^6 of them would not fit in memory).
DEFAULTS: dict[str, dict[str, Any]] = {
    "PPO": {"n_steps": 128, "batch_size": 32, "n_epochs": 4, "learning_rate": 1e-4},
    "A2C": {"n_steps": 32, "learning_rate": 1e-4},
    "DQN": {"buffer_size": 2000, "learning_starts": 200, "train_freq": 4, "target_update_interval": 500,
            "learning_rate": 1e-4},
    "QRDQN": {"buffer_size": 2000, "learning_starts": 200, "train_freq": 4, "learning_rate": 1e-4},
    "RecurrentPPO": {"n_steps": 128, "batch_size": 32, "n_epochs": 4, "learning_rate": 1e-4},
}


class SamplerExtractor(BaseFeaturesExtractor):
    """SB3 features extractor wrapping the spec's SamplerFeatures (5 conv + the first FC)."""

    def __init__(self, observation_space: gym.spaces.Dict, features_dim: int = 256, input_size: int = 0) -> None:
        super().__init__(observation_space, features_dim)
        self.net = SamplerFeatures(observation_channels(observation_space), features_dim, input_size=input_size)

    def forward(self, observations: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.net(observations)


def policy_kwargs(features_dim: int = 256, input_size: int = 64, **extra: Any) -> dict[str, Any]:
    """`policy_kwargs` that give an SB3 algorithm's Dict policy the spec's network (5 conv + FC,
    the maps average-pooled to `input_size`, 0: their own size) as its features extractor, with
    the action and value heads straight on top (`net_arch=[]`); `extra` adds or replaces entries
    (e.g. lstm_hidden_size for RecurrentPPO):

        PPO("MultiInputPolicy", env, policy_kwargs=policy_kwargs())
        RecurrentPPO("MultiInputLstmPolicy", env, policy_kwargs=policy_kwargs())

    Why: SB3's own extractors do not fit the observation. CnnPolicy refuses Dict observations,
    MultiInputPolicy flattens float maps into an MLP's input (795k parameters at 32 px, growing with
    the image's area) and RecurrentPPO's LSTM then reads that vector (13.2M parameters at 32 px)."""
    return {"features_extractor_class": SamplerExtractor,
            "features_extractor_kwargs": {"features_dim": features_dim, "input_size": input_size},
            "net_arch": [], **extra}


#: Constructor arguments SB3Agent sets itself; every other argument of the algorithm may be given.
SET_BY_AGENT = ("self", "policy", "env", "seed", "device", "verbose", "_init_setup_model")


def accepted_settings(cls: type[BaseAlgorithm]) -> list[str]:
    """The constructor arguments of an SB3 algorithm a user may set (its hyperparameters)."""
    return sorted(p for p in inspect.signature(cls.__init__).parameters if p not in SET_BY_AGENT)


def algorithm_settings(cls: type[BaseAlgorithm], settings: Mapping[str, Any]) -> dict[str, Any]:
    """`settings` checked against the algorithm's accepted names (ValueError listing them), with
    rl-zoo3's "lin_<value>" learning-rate / clip-range schedules made functions (linear from the
    value to 0 over training). `policy_kwargs` must be a mapping: rl-zoo3's Python-expression
    strings are not evaluated (a config file must never run code)."""
    unknown = sorted(set(settings) - set(accepted_settings(cls)))
    if unknown:
        raise ValueError(f"unknown setting(s) {', '.join(unknown)} for {cls.__name__}; it accepts: "
                         f"{', '.join(accepted_settings(cls))}")
    out = dict(settings)
    if "policy_kwargs" in out and not isinstance(out["policy_kwargs"], Mapping):
        raise ValueError(f"policy_kwargs={out['policy_kwargs']!r}: expected a mapping, e.g. "
                         '{"features_dim": 128}; expressions are not evaluated')
    for key, value in out.items():
        if isinstance(value, str) and value.startswith("lin_"):
            try:
                start = float(value[4:])
            except ValueError:
                raise ValueError(f"{key}={value!r}: expected lin_<number>, e.g. lin_3e-4") from None
            out[key] = _linear(start)
    return out


def _linear(start: float) -> Callable[[float], float]:
    def schedule(progress_remaining: float) -> float:
        return progress_remaining * start
    return schedule


def algorithm_class(name: str) -> type[BaseAlgorithm]:
    """'PPO' / 'A2C' / 'DQN' from stable_baselines3, else from sb3_contrib (e.g. 'QRDQN')."""
    for module in ("stable_baselines3", "sb3_contrib"):
        try:
            cls = getattr(importlib.import_module(module), name, None)
        except ImportError:
            continue
        if isinstance(cls, type) and issubclass(cls, BaseAlgorithm):
            return cls
    raise ValueError(f"unknown SB3 algorithm {name!r}: not in stable_baselines3 "
                     f"(nor in sb3_contrib, if installed)")


def dict_policy(cls: type[BaseAlgorithm]) -> str:
    """The algorithm's policy for Dict observations: 'MultiInputPolicy', or e.g. RecurrentPPO's
    'MultiInputLstmPolicy'."""
    names = [n for n in getattr(cls, "policy_aliases", {}) if n.startswith("MultiInput")]
    if not names:
        raise ValueError(f"{cls.__name__} has no policy for Dict observations (no MultiInput* policy)")
    return "MultiInputPolicy" if "MultiInputPolicy" in names else names[0]


#: log.csv's agent columns from SB3's logger: the first key the algorithm records. SB3 logs the
#: entropy term as its negative (train/entropy_loss = -mean entropy).
LOSS_KEYS = ("train/policy_gradient_loss", "train/policy_loss", "train/loss")
ENTROPY_KEY = "train/entropy_loss"


def last_update_stats(values: dict[str, float]) -> dict[str, float]:
    """`policy_loss` and `entropy` of the algorithm's latest gradient update, read from its SB3
    logger's `name_to_value`: the policy-gradient loss (PPO, A2C) or the TD loss (DQN, QR-DQN),
    and the mean policy entropy (not for value-based algorithms). Empty before the first update.
    SB3 updates every n_steps (PPO, A2C) or train_freq steps (DQN), not once per episode, so
    episodes between two updates repeat the same values; REINFORCE reports its own per episode."""
    out = {}
    loss = next((values[k] for k in LOSS_KEYS if k in values), None)
    if loss is not None:
        out["policy_loss"] = float(loss)
    if ENTROPY_KEY in values:
        out["entropy"] = -float(values[ENTROPY_KEY])
    return out


class _EpisodeCallback(BaseCallback):
    """Counts finished episodes, reports each to the user's callback (with the last update's loss
    and entropy, `last_update_stats`), stops at the target."""

    def __init__(self, agent: "SB3Agent", total: int, user: Callable[[dict[str, Any]], bool] | None) -> None:
        super().__init__()
        self.agent, self.total, self.user = agent, total, user
        self._jumps: np.ndarray | None = None

    def _on_step(self) -> bool:
        infos = self.locals["infos"]
        if self._jumps is None:
            self._jumps = np.zeros((len(infos), 2))  # per env: jumps, steps this episode
        for i, info in enumerate(infos):  # the env says whether a step jumped; no action numbers here
            self._jumps[i] += (bool(info.get("jump", False)), 1)
        for i, (done, info) in enumerate(zip(self.locals["dones"], infos)):
            if not done:
                continue
            self.agent.episodes += 1
            stats = {"episode": self.agent.episodes, "return": float(info["episode"]["r"])}
            if "jump" in info:
                stats["jump_rate"] = float(self._jumps[i, 0] / max(1.0, self._jumps[i, 1]))
            stats.update({k: v for k, v in info.items() if k not in ("episode", "terminal_observation")})
            stats.update(last_update_stats(self.model.logger.name_to_value))
            self._jumps[i] = 0
            if self.user is not None and self.user(stats) is False:
                return False
            if self.agent.episodes >= self.total:
                return False
        return True


class SB3Agent:
    """An SB3 model behind the same verbs as agents.reinforce.REINFORCE."""

    def __init__(self, env: gym.Env, algorithm: str = "PPO", device: str | torch.device = "cpu",
                 seed: int = 0, episode_steps: int | None = None, policy_input_size: int = 64,
                 **kwargs: Any) -> None:
        """`episode_steps`: steps per episode, which SB3's step-based schedules (DQN's
        exploration, learning-rate schedules) need to map episodes to steps; default: the env's
        `episode_steps` attribute (both envs of this package have one). `policy_input_size`: the
        features extractor pools the observation maps to this side (0: their own size), as
        REINFORCE's policy does; `kwargs` go to the SB3 algorithm."""
        self.algorithm = algorithm
        self.cls = algorithm_class(algorithm)
        self.env = env
        if episode_steps is None:
            try:
                episode_steps = int(env.get_wrapper_attr("episode_steps"))
            except AttributeError:
                raise ValueError(f"{type(env.unwrapped).__name__} has no `episode_steps`: pass SB3Agent(..., "
                                 "episode_steps=<steps per episode>)") from None
        if episode_steps < 1:
            raise ValueError(f"episode_steps must be >= 1, got {episode_steps}")
        self.episode_steps = episode_steps
        self.device = torch.device(device)
        self.policy_input_size = policy_input_size
        self.settings = algorithm_settings(self.cls, {**DEFAULTS.get(algorithm, {}), **kwargs})
        self.model = self._make_model(seed)
        self.episodes = 0
        self.seed = seed

    def _make_model(self, seed: int | None) -> BaseAlgorithm:
        settings = dict(self.settings)
        kwargs = policy_kwargs(input_size=self.policy_input_size, **settings.pop("policy_kwargs", {}))
        return self.cls(dict_policy(self.cls), self.env, seed=seed, device=self.device,
                        policy_kwargs=kwargs, verbose=0, **settings)

    def first_update(self) -> tuple[int, str]:
        """(env steps before the algorithm's first gradient step, the settings that say so): an
        on-policy algorithm updates after n_steps, an off-policy one at the first train_freq
        boundary past learning_starts. A run shorter than that trains nothing."""
        model = self.model
        if isinstance(model, OnPolicyAlgorithm):
            return model.n_steps * model.n_envs, f"n_steps={model.n_steps}"
        freq = model.train_freq
        every = freq.frequency * (self.episode_steps if freq.unit == TrainFrequencyUnit.EPISODE else 1)
        return ((model.learning_starts // every + 1) * every,
                f"learning_starts={model.learning_starts}, train_freq={freq.frequency} {freq.unit.value}(s)")

    def learn(self, total_episodes: int,
              callback: Callable[[dict[str, Any]], bool] | None = None) -> "SB3Agent":
        """Train until `self.episodes == total_episodes` (or `callback` returns False)."""
        remaining = total_episodes - self.episodes
        if remaining <= 0:
            return self
        # SB3 counts steps; its schedules (e.g. DQN's exploration) need a realistic total.
        self.model.learn(total_timesteps=remaining * self.episode_steps, reset_num_timesteps=False,
                         callback=_EpisodeCallback(self, total_episodes, callback))
        return self

    def predict(self, obs: dict[str, Any], deterministic: bool = False) -> int:
        action, _ = self.model.predict(obs, deterministic=deterministic)
        return int(action)

    def action_probabilities(self, obs: dict[str, Any]) -> np.ndarray:
        """pi(. | obs) for policy-gradient algorithms (a recurrent policy decides from a fresh
        state); for value-based ones (DQN, QR-DQN) the softmax of the Q-values: a ranking score
        rather than a calibrated probability."""
        policy = self.model.policy
        with torch.no_grad():
            x, _ = policy.obs_to_tensor(obs)
            if hasattr(policy, "lstm_hidden_state_shape"):  # recurrent (RecurrentPPO): one decision, fresh state
                zeros = torch.zeros(policy.lstm_hidden_state_shape, device=policy.device)
                dist, _ = policy.get_distribution(x, (zeros, zeros), torch.ones(1, device=policy.device))
                probs = dist.distribution.probs
            elif hasattr(policy, "get_distribution"):
                probs = policy.get_distribution(x).distribution.probs
            elif hasattr(policy, "quantile_net"):  # QR-DQN: Q = mean over quantiles
                probs = torch.softmax(policy.quantile_net(x).mean(dim=1), -1)
            else:
                probs = torch.softmax(policy.q_net(x), -1)
        return probs[0].cpu().numpy()

    def state_dict(self) -> dict[str, Any]:
        """The networks' and optimisers' weights (tensors only, SB3's get_parameters) and the
        counters, not SB3's zip: that holds cloudpickled objects, and loading it could execute
        code from a checkpoint someone handed over."""
        return {"algorithm": f"sb3:{self.algorithm}", "parameters": self.model.get_parameters(),
                "num_timesteps": int(self.model.num_timesteps), "n_updates": int(getattr(self.model, "_n_updates", 0)),
                "episodes": self.episodes}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state.get("algorithm") != f"sb3:{self.algorithm}":
            raise ValueError(f"checkpoint holds {state.get('algorithm')!r}, not sb3:{self.algorithm}")
        if "parameters" not in state:
            raise ValueError("checkpoint from an older version (an SB3 zip, which can execute code when "
                             "loaded): retrain the run")
        # A model of the same env and settings, built with seed=None: SB3 would otherwise seed the
        # env's next reset, and a seeded reset restarts the env's training process; the run must
        # continue where the checkpoint left it. The agent's own RNGs are re-seeded from (seed,
        # episodes): a resumed run is reproducible, though not bit-identical to an uninterrupted
        # one (SB3 does not expose its RNG states).
        self.model = self._make_model(None)
        self.model.seed = self.seed
        self.model.set_parameters(state["parameters"], exact_match=True, device=self.device)
        self.model.num_timesteps = int(state["num_timesteps"])
        if hasattr(self.model, "_n_updates"):
            self.model._n_updates = int(state["n_updates"])
        self.episodes = int(state["episodes"])
        set_random_seed(self.seed + self.episodes, using_cuda=self.device.type == "cuda")
        self.model.action_space.seed(self.seed + self.episodes)
