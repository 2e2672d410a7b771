"""Agents that train against BatchSamplingEnv. They see the env only through its spaces, and all
share the verbs learn / predict / state_dict / load_state_dict."""
from agents.reinforce import REINFORCE, ReinforceConfig
from agents.sb3 import SamplerExtractor, SB3Agent, algorithm_class

__all__ = ["REINFORCE", "ReinforceConfig", "SB3Agent", "SamplerExtractor", "algorithm_class"]
