"""How predictor_shrink changes what the papers' predictor learns from a few labeled profiles.

    python experiments/shrink_proxy.py runs/a runs/b runs/c --shrink 0 0.003 0.01 0.03 --steps 600

For each finished run (any preset with the dilated predictor) a fresh predictor is trained on the
run's best D_l profiles (best_profiles.npz) with the env's recipe: batches of 8 labeled profiles
under random dihedral transforms, one random crop of predictor_crop px, Adam at predictor_lr,
alpha-weighted BCE (l_pred), plus predictor_shrink times the mean square of what the
convolutions add to the skip path (models.predictor.ranking_departure), started at 0 or at the
prior level (--prior-bias; EnvConfig.predictor.prior_bias). The profiles stay those of one moment (the
env's replay buffer holds many), so this is a proxy of the run, fast enough to compare values.
Prints, per run and value, the pixel AUROC on the run's D_u profiles after each of --report
steps, beside the AUROC of the profiles' plain mean, and the mean over the runs. Choose with it on
built-in data or D_l only, never on the scored D_u images of a real dataset.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from data.config import DataConfig  # noqa: E402
from data.loading import load_split  # noqa: E402
from envs.buffers import dihedral  # noqa: E402
from envs.config import env_config_from_dict  # noqa: E402
from envs.rewards import alpha_from_masks  # noqa: E402
from evaluation.metrics import auroc  # noqa: E402
from models.fit import predictor_step  # noqa: E402
from models.predictor import build_predictor, predictor_input, prior_logit, set_prior_bias  # noqa: E402
from runner.folder import RunFolder  # noqa: E402


def train_and_score(run: RunFolder, shrink: float, steps: list[int], seed: int,
                    alpha: float | None = None, prior_bias: bool | None = None) -> dict[int, float]:
    """D_u pixel AUROC of a predictor trained on the run's best D_l profiles, after each of `steps`
    (started at the prior level when prior_bias, default: as the run was)."""
    config = run.read_config("shrink_proxy.py")
    env = env_config_from_dict(config["env"], str(run / "config.json"))
    p = env.predictor
    split = load_split(DataConfig(**config["data"]))
    run.verify_data(split, config["data"]["data_root"], "shrink_proxy.py")
    profiles = run.read_best_profiles()
    labeled = predictor_input(torch.as_tensor(profiles["labeled"]).float())
    unlabeled = predictor_input(torch.as_tensor(profiles["unlabeled"]).float())
    masks = torch.as_tensor(np.stack([s.mask for s in split.labeled]).astype(np.float32))
    truth = np.stack([s.mask for s in split.unlabeled]).astype(bool)
    if alpha is None:
        alpha = p.alpha if p.alpha is not None else alpha_from_masks(masks.numpy().astype(bool), p.alpha_floor)
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    net = build_predictor(env.profiles.length, p.width, "profile", True, "dilated")
    level = prior_logit(masks.numpy(), alpha)
    if (p.prior_bias if prior_bias is None else prior_bias) and level is not None:
        set_prior_bias(net, level)
    opt = torch.optim.Adam(net.parameters(), lr=p.lr)
    crop = p.crop if p.crop is not None and p.crop < labeled.shape[-1] else None
    scores = {}
    for step in range(1, max(steps) + 1):
        idx, ks = rng.integers(0, len(labeled), p.batch), rng.integers(0, 8, p.batch)
        x = torch.stack([dihedral(labeled[i], int(k)) for i, k in zip(idx, ks)])
        y = torch.stack([dihedral(masks[i], int(k)) for i, k in zip(idx, ks)])
        predictor_step(net, opt, x, y, rng, alpha=alpha, crop=crop, shrink=shrink)
        if step in steps:
            with torch.no_grad():
                scores[step] = auroc(net(unlabeled)[:, 0].numpy(), truth)
    return scores | {0: auroc(unlabeled[:, :env.profiles.length].mean(dim=1).numpy(), truth)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("runs", nargs="+", help="finished run folders (best_profiles.npz)")
    p.add_argument("--shrink", nargs="+", type=float, default=[0.0, 0.003, 0.01, 0.03])
    p.add_argument("--alpha", type=float, default=None,
                   help="weight of normal pixels (default: the run's alpha, or its D_l pixel ratio; noghredeh2025 "
                        "decays it, so give the value of its best moment)")
    p.add_argument("--prior-bias", choices=("run", "on", "off"), default="run",
                   help="start the predictor at the prior level (predictor.prior_bias): as the run did, or not")
    p.add_argument("--steps", type=int, default=600)
    p.add_argument("--report", nargs="+", type=int, default=[100, 300, 600], help="steps to score at")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    steps = sorted({s for s in args.report if 0 < s <= args.steps} | {args.steps})
    runs = [RunFolder(r) for r in args.runs]
    final = {}
    prior = None if args.prior_bias == "run" else args.prior_bias == "on"
    for shrink in args.shrink:
        for run in runs:
            s = train_and_score(run, shrink, steps, args.seed, args.alpha, prior)
            final.setdefault(shrink, []).append(s[args.steps])
            print(f"{run.path.name:24s} shrink {shrink:<6g} profiles' mean {s[0]:.3f} | "
                  + "  ".join(f"step {t}: {s[t]:.3f}" for t in steps), flush=True)
    for shrink, values in final.items():
        print(f"shrink {shrink:<6g} mean pixel AUROC after {args.steps} steps over {len(values)} runs: {np.mean(values):.3f}")


if __name__ == "__main__":
    main()
