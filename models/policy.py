"""The neural batch sampler's network: 5 conv + 2 FC layers over the state maps."""
from __future__ import annotations

import torch
import gymnasium as gym
from torch import nn

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
    """

    def __init__(self, in_channels: int, features_dim: int = 256, width: int = 32) -> None:
        super().__init__()
        chans = [width, width * 2, width * 2, width * 2, width * 2]
        layers: list[nn.Module] = []
        cin = in_channels
        for c in chans:
            layers += [nn.Conv2d(cin, c, 3, stride=2, padding=1), nn.ReLU(inplace=True)]
            cin = c
        self.convs = nn.Sequential(*layers, nn.AdaptiveAvgPool2d(4), nn.Flatten())
        self.fc = nn.Sequential(nn.Linear(cin * 16, features_dim), nn.ReLU(inplace=True))
        self.features_dim = features_dim

    def forward(self, obs: dict[str, torch.Tensor]) -> torch.Tensor:
        x = torch.cat([obs[k] for k in OBSERVATION_KEYS if k in obs], dim=1)
        return self.fc(self.convs(x))


class PolicyNet(nn.Module):
    """SamplerFeatures followed by the second FC layer: logits over the 9 actions."""

    def __init__(self, in_channels: int, n_actions: int = 9, features_dim: int = 256) -> None:
        super().__init__()
        self.features = SamplerFeatures(in_channels, features_dim)
        self.head = nn.Linear(features_dim, n_actions)

    def forward(self, obs: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.head(self.features(obs))
