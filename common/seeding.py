"""Seeding: the process-wide seed of a run, and torch ops seeded from an env's numpy Generator
(so that an env is deterministic given its reset seed)."""
from __future__ import annotations

import contextlib
import random
from typing import Iterator

import numpy as np
import torch


def seed_everything(seed: int) -> None:
    """Seed Python's, numpy's and torch's global RNGs and make cuDNN deterministic."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    torch.backends.cudnn.deterministic = True
    torch.backends.cudnn.benchmark = False


@contextlib.contextmanager
def torch_rng_from(np_random: np.random.Generator, device: torch.device) -> Iterator[None]:
    """Run torch's random ops (init, dropout) from a seed drawn from `np_random`, without
    disturbing the caller's global torch RNG."""
    devices = [device] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(int(np_random.integers(2**31 - 1)))
        yield
