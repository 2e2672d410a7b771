"""Where a training update's time goes: one table per agent, and the bare env loop beside it.

    python scripts/profile_update.py                                   # built-in brick, 128 px
    python scripts/profile_update.py --agents reinforce sb3:PPO --updates 80 --threads 2
    python scripts/profile_update.py --data-root ../shared/datasets/mvtec_ad --category bottle \
        --image-size 256 --device cuda

For each agent it trains `--updates` AE updates after `--warmup` unmeasured ones, as train.py does
(a log row per update, a checkpoint every --checkpoint-every), with common.profiling timers on: the
env's AE step, D_l loss maps, predictor step, diagnostics, AE re-inits and observations, the rest
of env.step (rewards, bookkeeping), env.reset, REINFORCE's policy forward and update, logging and
checkpointing; "agent (rest)" is what remains of the wall time (for SB3: its rollout buffer,
policy forward and update). Then the same env config is stepped with uniformly random actions
(the bare env loop), and the script prints updates/s of both and their ratio. Every figure is
measured by this run; nothing is estimated.
"""
from __future__ import annotations

import argparse
import csv
import functools
import io
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from common import profiling  # noqa: E402
from common.files import save_weights_atomic  # noqa: E402
from runner.factory import build_run  # noqa: E402
from runner.spec import parse_args  # noqa: E402

ENV_PARTS = ["AE step", "D_l loss maps", "D_u loss maps (eager)", "predictor step", "diagnostics", "AE re-init",
             "observation"]
AGENT_PARTS = ["policy forward", "policy update"]
LOOP_PARTS = ["logging", "checkpoint"]


def timed(name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        with profiling.section(name):
            return fn(*args, **kwargs)
    return wrapper


def build(argv: list[str]) -> tuple[Any, Any, Any]:
    """env, agent and Args as train.py builds them from the same flags."""
    args, _ = parse_args(argv)
    args.updates = args.updates or 0
    env, agent = build_run(args)
    return env, agent, args


def profile_agent(argv: list[str], warmup: int, updates: int, checkpoint_every: int) -> tuple[dict, float]:
    """Per-part seconds and the wall time of `updates` training updates after `warmup` ones."""
    env, agent, _ = build(argv)
    env.reset(seed=0)
    env.step = timed("env.step", env.step)
    env.reset = timed("env.reset", env.reset)
    log = csv.writer(io.StringIO())
    folder = Path(tempfile.mkdtemp(prefix="nbs-profile-"))

    def callback(stats: dict[str, Any]) -> bool:
        with profiling.section("logging"):
            log.writerow([stats.get(k) for k in sorted(stats) if k != "action_hist"])
        if stats["episode"] % checkpoint_every == 0:
            with profiling.section("checkpoint"):
                save_weights_atomic({"env": env.state_dict(), "agent": agent.state_dict()}, folder / "checkpoint.pt")
        return True

    agent.learn(warmup, callback)
    cuda = env.device.type == "cuda"
    profiling.start(cuda)
    if cuda:
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    agent.learn(warmup + updates, callback)
    if cuda:
        torch.cuda.synchronize()
    wall = time.perf_counter() - t0
    return profiling.stop(), wall


def bare_loop(argv: list[str], warmup: int, updates: int) -> float:
    """Wall time of `updates` AE updates with uniformly random actions (no agent, no logging)."""
    env, _, _ = build(argv)
    rng = np.random.default_rng(0)
    env.reset(seed=0)

    def run(n: int) -> None:
        for _ in range(n):
            env.reset()
            done = False
            while not done:
                done = env.step(int(rng.integers(9)))[2]

    run(warmup)
    cuda = env.device.type == "cuda"
    if cuda:
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    run(updates)
    if cuda:
        torch.cuda.synchronize()
    return time.perf_counter() - t0


def table(parts: dict[str, tuple[float, int]], wall: float, updates: int) -> list[str]:
    """Markdown rows: part, ms per update, share of the wall time."""
    def row(name: str, seconds: float) -> str:
        return f"| {name} | {1000 * seconds / updates:.1f} | {100 * seconds / wall:.1f} % |"

    get = {k: v[0] for k, v in parts.items()}  # own time: nested sections are charged to themselves
    lines = ["| part | ms / update | share |", "|---|---:|---:|"]
    for name in ENV_PARTS:
        if name in get:
            lines.append(row(f"env: {name}", get[name]))
    lines.append(row("env: rest of env.step (rewards, bookkeeping)", get.get("env.step", 0.0)))
    lines.append(row("env.reset (rest)", get.get("env.reset", 0.0)))
    for name in AGENT_PARTS + LOOP_PARTS:
        if name in get:
            lines.append(row(name, get[name]))
    counted = sum(get.values())
    lines.append(row("agent (rest: rollout bookkeeping, SB3 policy forward and update)", wall - counted))
    lines.append(row("**total**", wall))
    return lines


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--agents", nargs="+", default=["reinforce", "sb3:PPO"])
    p.add_argument("--updates", type=int, default=60, help="measured AE updates per agent")
    p.add_argument("--warmup", type=int, default=10, help="unmeasured AE updates first")
    p.add_argument("--checkpoint-every", type=int, default=50, help="as train.py")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    a, rest = p.parse_known_args()  # the rest goes to train.py's parser: --data-root, --category, --preset, ...
    if a.threads:
        torch.set_num_threads(a.threads)
    print(f"train.py flags: {' '.join(rest) or '(defaults)'}; torch threads {torch.get_num_threads()}; "
          f"{a.updates} measured updates after {a.warmup}\n")
    bare = bare_loop(["--agent", "uniform", *rest], a.warmup, a.updates)
    print(f"bare env loop (random actions): {a.updates / bare:.2f} updates/s\n")
    for agent in a.agents:
        parts, wall = profile_agent(["--agent", agent, *rest], a.warmup, a.updates, a.checkpoint_every)
        print(f"### {agent}: {a.updates / wall:.2f} updates/s = {bare / wall:.2f} of the bare env loop\n")
        print("\n".join(table(parts, wall, a.updates)) + "\n")


if __name__ == "__main__":
    main()
