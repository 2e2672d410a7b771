"""Measure BatchSamplingEnv throughput: env steps/s and AE updates/s, for both ways of keeping the
unlabeled (D_u) loss profiles.

    python scripts/benchmark_env.py                               # built-in data, 128 px, CPU/CUDA auto
    python scripts/benchmark_env.py --data-root /data/mvtec --category bottle --image-size 256 \
        --include-train-good --updates 30 --device cuda

Actions are uniformly random (the agent's cost is not counted). 'snapshots' (the default) keeps the
last T AE weights and computes D_u profiles only when asked; 'eager' evaluates D_u after every AE
update. The script prints both, and the cost of rebuilding the D_u profiles from the snapshots once.
"""
from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from data.config import DataConfig  # noqa: E402
from data.loading import load_split  # noqa: E402
from envs.batch_sampling_env import BatchSamplingEnv  # noqa: E402
from envs.config import EnvConfig  # noqa: E402


def measure(env: BatchSamplingEnv, updates: int) -> dict[str, float]:
    rng = np.random.default_rng(0)
    env.reset(seed=0)
    steps = 0
    if env.device.type == "cuda":
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(updates):
        env.reset()
        done = False
        while not done:
            _, _, done, _, _ = env.step(int(rng.integers(9)))
            steps += 1
    if env.device.type == "cuda":
        torch.cuda.synchronize()
    dt = time.perf_counter() - t0
    t1 = time.perf_counter()
    env.best_profiles()
    export = time.perf_counter() - t1
    return {"steps_per_s": steps / dt, "updates_per_s": updates / dt, "export_s": export}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data-root", default=None)
    p.add_argument("--category", default="brick")
    p.add_argument("--image-size", type=int, default=128)
    p.add_argument("--include-train-good", action="store_true")
    p.add_argument("--updates", type=int, default=40, help="AE updates timed per mode")
    p.add_argument("--device", default="auto")
    p.add_argument("--threads", type=int, default=0)
    a = p.parse_args()
    if a.threads:
        torch.set_num_threads(a.threads)
    split = load_split(DataConfig(a.data_root, a.category, a.image_size, include_train_good=a.include_train_good))
    base = EnvConfig(device=a.device, reinit_every=10**9)  # no re-init inside the timed window
    print(f"{a.category}: {a.image_size}px, |D_l|={len(split.labeled)}, "
          f"|D_u|={len(split.unlabeled) + len(split.extra_unlabeled)}, torch threads {torch.get_num_threads()}")
    for mode in ("snapshots", "eager"):
        env = BatchSamplingEnv(split=split, config=dataclasses.replace(base, unlabeled_profiles=mode))
        r = measure(env, a.updates)
        print(f"  {mode:9s} on {env.device}: {r['steps_per_s']:8.1f} env steps/s  "
              f"{r['updates_per_s']:6.2f} AE updates/s  (D_u profiles on demand: {r['export_s']:.2f} s)")


if __name__ == "__main__":
    main()
