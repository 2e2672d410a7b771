"""Gymnasium environments for neural batch sampling.

Importing this package registers `NeuralBatchSampling/BatchSampling-v0` (the batch sampler) and
`NeuralBatchSampling/ResidualClassifier-v0` (image-level decisions from AE residual maps):

    import gymnasium, envs
    env = gymnasium.make("NeuralBatchSampling/BatchSampling-v0")            # built-in data
    env = gymnasium.make("NeuralBatchSampling/BatchSampling-v0", data=DataConfig(...), config=EnvConfig(...))
    env = gymnasium.make("NeuralBatchSampling/BatchSampling-v0", preset="ours", image_size=64,
                         config={"sampler.patches_per_update": 16})                  # plain values

The batch sampler is registered with max_episode_steps = the default patches_per_update (32): an
episode ends by itself (terminated) after its N patches and the AE update; with another N, pass
max_episode_steps=N to gymnasium.make, or the TimeLimit cuts each episode before its update (the
env warns).
"""
from gymnasium.envs.registration import register, registry

from common.device import resolve_device
from data.config import DataConfig
from data.loading import load_split
from envs.batch_sampling_env import BatchSamplingEnv
from envs.config import ENV_PRESETS, EnvConfig, SamplerConfig, make_env_config
from envs.residual_classifier_env import ClassifierConfig, ResidualClassifierEnv

ENV_ID = "NeuralBatchSampling/BatchSampling-v0"
CLASSIFIER_ENV_ID = "NeuralBatchSampling/ResidualClassifier-v0"

if ENV_ID not in registry:
    register(id=ENV_ID, entry_point="envs.batch_sampling_env:BatchSamplingEnv",
             max_episode_steps=SamplerConfig().patches_per_update)
if CLASSIFIER_ENV_ID not in registry:
    register(id=CLASSIFIER_ENV_ID, entry_point="envs.residual_classifier_env:ResidualClassifierEnv")

__all__ = ["CLASSIFIER_ENV_ID", "ClassifierConfig", "ENV_ID", "ResidualClassifierEnv", "BatchSamplingEnv", "DataConfig", "EnvConfig", "ENV_PRESETS", "load_split",
           "make_env_config", "resolve_device"]
