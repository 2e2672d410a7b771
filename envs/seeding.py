"""Seeding torch from an env's numpy Generator, so that an env is deterministic given its seed."""
from __future__ import annotations

import contextlib
from typing import Iterator

import numpy as np
import torch


@contextlib.contextmanager
def torch_rng_from(np_random: np.random.Generator, device: torch.device) -> Iterator[None]:
    """Run torch's random ops (init, dropout) from a seed drawn from `np_random`, without
    disturbing the caller's global torch RNG."""
    devices = [device] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(int(np_random.integers(2**31 - 1)))
        yield
