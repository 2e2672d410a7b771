"""Agents that train against BatchSamplingEnv. They see the env only through its spaces."""
from agents.reinforce import REINFORCE, ReinforceConfig

__all__ = ["REINFORCE", "ReinforceConfig"]
