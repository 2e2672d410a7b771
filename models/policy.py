"""The neural batch sampler's network: 5 conv + 2 FC layers over the state maps."""
from __future__ import annotations

import torch
import gymnasium as gym
from torch import nn
from torch.nn import functional as F

#: Order in which the observation's maps are stacked into channels.
#: rgb/loss/history/patch: BatchSamplingEnv (chu2020 state); rgb/fused/history/previous_loss:
#: BatchSamplingEnv (noghredeh2025 state); residual/rgb/residual_stats: ResidualClassifierEnv.
OBSERVATION_KEYS: tuple[str, ...] = ("rgb", "loss", "fused", "history", "patch", "previous_loss",
                                     "residual", "residual_stats")


def observation_channels(space: gym.spaces.Dict) -> int:
    """Number of channels stacked from a Dict observation space's maps (see OBSERVATION_KEYS)."""
    keys = [k for k in OBSERVATION_KEYS if k in space.spaces]
    if not keys:
        raise ValueError(f"observation space has none of the keys {OBSERVATION_KEYS}")
    return sum(space[k].shape[0] for k in keys)


class SamplerFeatures(nn.Module):
    """5 strided convs and the first FC layer: Dict observation -> feature vector.

    Kept apart from the action head so that SB3 algorithms can use it as a features extractor
    and REINFORCE as the body of its policy: the same network either way.

    `input_size` > 0: the stacked maps are average-pooled to at most that side before the convs.
    The agent's choice, not the env's: the observation space stays the full maps. Why: at 128 px
    REINFORCE's policy forward passes and update were a large share of an update's time on 2 CPU
    cores (scripts/profile_update.py, docs/performance.md); pooled to 64 px they cost about half,
    with the same quality on brick (3 seeds, docs/results/policy-input-pooling.md). The sampler's decision (one of 8 directions, or
    jump) needs where the loss is high, not pixel detail.
    """

    def __init__(self, in_channels: int, features_dim: int = 256, width: int = 32, input_size: int = 0) -> None:
        super().__init__()
        if input_size < 0:
            raise ValueError(f"input_size must be >= 0 (0: the observation's own size), got {input_size}")
        self.input_size = input_size
        chans = [width, width * 2, width * 2, width * 2, width * 2]
        layers: list[nn.Module] = []
        cin = in_channels
        for c in chans:
            layers += [nn.Conv2d(cin, c, 3, stride=2, padding=1), nn.ReLU(inplace=True)]
            cin = c
        self.convs = nn.Sequential(*layers, nn.AdaptiveAvgPool2d(4), nn.Flatten())
        self.fc = nn.Sequential(nn.Linear(cin * 16, features_dim), nn.ReLU(inplace=True))
        self.features_dim = features_dim

    def stack(self, obs: dict[str, torch.Tensor]) -> torch.Tensor:
        """The network's input: the maps stacked as channels (OBSERVATION_KEYS order), pooled to
        input_size. Kept apart so that an agent can store it instead of the full observation."""
        x = torch.cat([obs[k] for k in OBSERVATION_KEYS if k in obs], dim=1)
        if self.input_size and max(x.shape[-2:]) > self.input_size:
            x = F.adaptive_avg_pool2d(x, (min(x.shape[-2], self.input_size), min(x.shape[-1], self.input_size)))
        return x

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Features of a stacked input (see `stack`)."""
        return self.fc(self.convs(x))

    def forward(self, obs: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.encode(self.stack(obs))


class PolicyNet(nn.Module):
    """SamplerFeatures followed by the second FC layer: logits over the 9 actions."""

    def __init__(self, in_channels: int, n_actions: int = 9, features_dim: int = 256, input_size: int = 0) -> None:
        super().__init__()
        self.features = SamplerFeatures(in_channels, features_dim, input_size=input_size)
        self.head = nn.Linear(features_dim, n_actions)

    def forward(self, obs: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.head(self.features(obs))

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        """Logits of stacked inputs (SamplerFeatures.stack): the same as forward on their observations."""
        return self.head(self.features.encode(x))
