"""Wall time per part of a training update, for scripts/profile_update.py.

The env, the REINFORCE agent and the profiling script mark their parts with `section("name")`.
Off (the default) a section costs one global lookup; on, it adds the part's own wall time (after a
CUDA synchronise, so GPU work is charged to the part that queued it) to a running total: the time
of sections nested inside it is charged to them alone (an AE re-init runs warm-up updates, whose
AE and predictor steps are their own sections), so the parts add up to the wall time. Plain
timers rather than torch.profiler: the question is where an update's seconds go, and recording
every operator would change the answer.
"""
from __future__ import annotations

import contextlib
import time
from collections import defaultdict
from collections.abc import Iterator

import torch

_totals: dict[str, float] | None = None
_calls: dict[str, int] = defaultdict(int)
_sync = False
_nested: list[float] = []  # per open section: wall time of the sections nested in it so far


@contextlib.contextmanager
def section(name: str) -> Iterator[None]:
    """Charge the wall time of the block to `name` while profiling is on."""
    if _totals is None:
        yield
        return
    if _sync:
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    _nested.append(0.0)
    try:
        yield
    finally:
        if _sync:
            torch.cuda.synchronize()
        elapsed = time.perf_counter() - t0
        _totals[name] += elapsed - _nested.pop()
        _calls[name] += 1
        if _nested:
            _nested[-1] += elapsed


def start(cuda: bool = False) -> None:
    """Start collecting (and forget earlier totals); `cuda`: synchronise around each section."""
    global _totals, _sync
    _totals, _sync = defaultdict(float), cuda and torch.cuda.is_available()
    _calls.clear()
    _nested.clear()


def stop() -> dict[str, tuple[float, int]]:
    """Stop collecting; return {section: (seconds, calls)}."""
    global _totals
    out = {k: (v, _calls[k]) for k, v in (_totals or {}).items()}
    _totals = None
    return out
