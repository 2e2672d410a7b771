"""Ablation sweep: agents × seeds × categories × presets, one train.py + evaluate.py run per cell.

    python ablate.py                                          # 6 agents × 3 seeds on brick
    python ablate.py --categories all --updates 300 --workers 2
    python ablate.py --agents reinforce sb3:PPO heuristic --seeds 0 1 --out sweeps/mine
    python ablate.py --ray-address auto                       # on an existing Ray cluster
    python ablate.py --agents sb3:DQN --agent-kwargs '{"sb3:DQN": {"learning_starts": 50}}'

Each cell is an ordinary run folder, <out>/<category>/<preset>/<agent>/seed<k>, written by
train.py and evaluated by evaluate.py in their own processes (pinned threads, device and seed;
logs in train.log / evaluate.log). Re-running the same command skips finished cells, resumes
interrupted ones from their checkpoint and only evaluates what is not evaluated yet, so a sweep
stopped half way (Ctrl-C, crash, lost node) continues where it was. At the end it writes, from the
evaluated folders alone: cells.csv (one row per run), summary.csv and summary.md (mean ± std over
seeds of the method's pixel F1 (evaluate.py's headline row), F1-max and pixel AUROC per category,
preset and agent, then what each sampler did: its profiles' pixel AUROC, return, prediction term,
jump rate and action entropy, so that learned and non-learning samplers compare on what they feed
the AE), summary.png,
curves_<category>.png (return, l_pred and AE loss vs. episode of every agent), and methods.md /
methods.csv: every method of evaluate.py's table (NBS per preset and agent, the U-Net and
unsupervised-AE baselines, before and after the CRF) x every metric, with the published numbers.

Locally, at most --workers cells run at once, each with --threads torch threads (default: the
cores divided among the workers), on the devices of --devices in turn. With --ray-address each
cell is a Ray task asking for --threads CPUs (and --ray-gpus GPUs); --out and --data-root must
then be on a filesystem that all nodes see, and the package installed on each of them.
"""
from __future__ import annotations

import argparse
from typing import Any

from common.errors import run_main
from runner.ablation import DEFAULT_AGENTS, sweep
from runner.presets import DEFAULT_PRESET


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--agents", nargs="+", default=DEFAULT_AGENTS, help="agents as train.py --agent names them")
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    p.add_argument("--categories", nargs="+", default=["brick"], help="category names, or 'all' (every "
                   "category of the data root)")
    p.add_argument("--presets", nargs="+", default=[DEFAULT_PRESET], help=f"presets (default: {DEFAULT_PRESET})")
    p.add_argument("--updates", type=int, default=None, help="AE updates per run (default: train.py's)")
    p.add_argument("--out", default="sweeps/default", help="sweep folder (re-use it to resume)")
    p.add_argument("--dataset", default=None, help="as train.py: mvtec (default), crackforest or folder")
    p.add_argument("--data-root", default=None, help="as train.py; default: the built-in data")
    p.add_argument("--image-size", type=int, default=None)
    p.add_argument("--n-labeled", type=int, default=None)
    p.add_argument("--per-defect-type", type=int, default=None)
    p.add_argument("--policy-input-size", type=int, default=None, help="as train.py")
    p.add_argument("--include-train-good", action="store_true")
    p.add_argument("--include-unannotated", action="store_true")
    p.add_argument("--baselines", nargs="+", default=None, help="as evaluate.py (default: all)")
    p.add_argument("--unet-steps", type=int, default=None, help="as evaluate.py")
    p.add_argument("--ae-steps", type=int, default=None, help="as evaluate.py")
    p.add_argument("--crf-iterations", type=int, default=None, help="as evaluate.py")
    p.add_argument("--baseline-rate", type=float, default=None, help="as train.py, for the reinforce cells "
                   "(the other agents do not use it)")
    p.add_argument("--agent-kwargs", default=None, metavar="JSON|FILE", help="hyperparameters per agent, as "
                   "train.py's --agent-kwargs: a JSON object (or .json / .yaml file) keyed by agent, e.g. "
                   "'{\"sb3:DQN\": {\"learning_starts\": 50}}'")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="EnvConfig override for all cells")
    p.add_argument("--workers", type=int, default=1, help="cells run at once (local mode)")
    p.add_argument("--threads", type=int, default=0, help="torch threads per cell (0: cores / workers)")
    p.add_argument("--devices", default="auto", help="comma-separated devices for the worker slots, "
                   "e.g. cuda:0,cuda:1 (auto: cuda when present, else cpu)")
    p.add_argument("--overlays", type=int, default=0, help="overlay PNGs per cell")
    p.add_argument("--ray-address", default=None, help="run cells as Ray tasks on this cluster "
                   "('auto', 'ray://host:10001', or 'local' for a private one-machine instance)")
    p.add_argument("--ray-gpus", type=float, default=0.0, help="GPUs per cell with --ray-address")
    args = p.parse_args(argv)
    if args.workers < 1:
        p.error("--workers must be at least 1")
    for flag, value, low in (("--threads", args.threads, 0), ("--overlays", args.overlays, -1),
                             ("--updates", args.updates, 0), ("--ray-gpus", args.ray_gpus, 0),
                             *(("--seeds", seed, 0) for seed in args.seeds)):
        if value is not None and value < low:
            p.error(f"{flag} must be >= {low}, got {value}")
    if args.baseline_rate is not None:
        if not 0.0 <= args.baseline_rate <= 1.0:
            p.error(f"--baseline-rate must be in [0, 1] (0: plain REINFORCE), got {args.baseline_rate}")
        if "reinforce" not in args.agents:
            p.error("--baseline-rate is REINFORCE's; add reinforce to --agents or drop it")
    return args


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    return sweep(parse_args(argv))


if __name__ == "__main__":
    run_main(main)  # a full disk, a read-only folder, a bad setting: one line naming it, not a traceback
