"""Gymnasium environments for neural batch sampling.

Importing this package registers `NeuralBatchSampling/BatchSampling-v0`:

    import gymnasium, envs
    env = gymnasium.make("NeuralBatchSampling/BatchSampling-v0")            # built-in data
    env = gymnasium.make("NeuralBatchSampling/BatchSampling-v0", data=DataConfig(...), config=EnvConfig(...))
"""
from gymnasium.envs.registration import register, registry

from envs.batch_sampling_env import BatchSamplingEnv, load_split, resolve_device
from envs.config import PRESETS, DataConfig, EnvConfig, make_env_config

ENV_ID = "NeuralBatchSampling/BatchSampling-v0"

if ENV_ID not in registry:
    register(id=ENV_ID, entry_point="envs.batch_sampling_env:BatchSamplingEnv")

__all__ = ["ENV_ID", "BatchSamplingEnv", "DataConfig", "EnvConfig", "PRESETS", "load_split",
           "make_env_config", "resolve_device"]
