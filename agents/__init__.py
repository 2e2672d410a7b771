"""Agents that train against BatchSamplingEnv. They see the env only through its spaces (and, for
the heuristic baseline, its action_masks()), and all share the verbs learn / predict / state_dict /
load_state_dict."""
from agents.baselines import BASELINES, HeuristicSampler, RandomWalkSampler, UniformSampler
from agents.reinforce import REINFORCE, ReinforceConfig
from agents.sb3 import SamplerExtractor, SB3Agent, algorithm_class

__all__ = ["BASELINES", "HeuristicSampler", "RandomWalkSampler", "REINFORCE", "ReinforceConfig",
           "SB3Agent", "SamplerExtractor", "UniformSampler", "algorithm_class"]
