"""Fit variants of the final predictor (models/final_predictor.py) on finished runs' best profiles and score them.

    python experiments/refit_variants.py runs/a runs/b runs/c --variant ours --variant rgb-only ...
    python experiments/refit_variants.py runs/a runs/b runs/c --variant saved-prob --variant saved-logit --variant saved-logit+profile

The `saved-*` variants fit no net: they pool the run's own saved final predictor members another
way (models.predictor.PredictorEnsemble: 'prob' the mean probability, 'logit' the mean logit;
'+profile' adds the profiles' mean member, models.final_predictor.fit_profile_member, which has no randomness),
so they isolate the pool from the fits' seeds; `saved-profile-member` is that member alone. The
member is fit on the saved profiles (float16 in best_profiles.npz), so its two numbers can differ
from those of the run's own in the fifth digit.

The sampler's training is not repeated: each run's best_profiles.npz is refit with every variant
and scored on the run's D_u exactly as evaluate.py scores its NBS row (p > 0.5, then the same
dense CRF; F1-max, pixel AUROC of the probability maps). Prints mean ± std over the runs. A tool to
see what the final predictor gains from the profiles: choose with it on D_l or built-in data only,
never on the scored D_u images of a real dataset.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from data.config import DataConfig  # noqa: E402
from data.loading import load_split  # noqa: E402
from models.final_predictor import fit_profile_member, refit_predictor  # noqa: E402
from evaluation.decisions import MethodMaps  # noqa: E402
from models.predictor import (PredictorEnsemble, ProfileMeanMember, predictor_from_saved,  # noqa: E402
                              probability_maps)
from runner.evaluation import method_rows  # noqa: E402
from runner.folder import PREDICTOR, RunFolder  # noqa: E402
from runner.presets import MethodConfig, method_config_from_saved  # noqa: E402

#: name -> (what the predictor reads, refit keyword overrides)
VARIANTS = {
    "ours": ("profile+rgb", {}),
    "rgb-only": ("rgb", {}),
    "profile-only": ("profile", {}),
    "profile-dropout-0.5": ("profile+rgb", {"profile_dropout": 0.5}),
    "steps-1200": ("profile+rgb", {"steps": 1200}),
    # late fusion: the mean probability of the `ours` members and the `rgb-only` members (reuses
    # their fits when those variants ran first)
    "fused": ("fused", {}),
    # the run's saved final predictor, its members pooled another way (no fit)
    "saved-prob": ("saved", {"pool": "prob"}),
    "saved-logit": ("saved", {"pool": "logit"}),
    "saved-logit+profile": ("saved", {"pool": "logit", "profile": True}),
    "saved-prob+profile": ("saved", {"pool": "prob", "profile": True}),
    "saved-profile-member": ("saved", {"only_profile": True}),
}


class ZeroProfiles(torch.nn.Module):
    """A profile+rgb net fed with its profile channels zeroed: the rgb-only variant inside an
    ensemble whose other members read the profiles."""

    def __init__(self, net: torch.nn.Module, profile_length: int) -> None:
        super().__init__()
        self.net, self.t = net, profile_length

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(torch.cat([torch.zeros_like(x[:, :self.t]), x[:, self.t:]], dim=1))


def fit(profiles: np.ndarray, images: np.ndarray, masks: np.ndarray, config: MethodConfig, reads: str,
        overrides: dict, seed: int, members: int) -> torch.nn.Module:
    """The run's final predictor with one variant (members seeded as models.final_predictor.final_predictor)."""
    if reads == "rgb":  # the same net and recipe, with the profile channels all zero
        profiles, reads = np.zeros_like(profiles), "profile+rgb"
    p = config.env.predictor
    kwargs = dict(steps=config.final.steps, width=p.width, inputs=reads, skip=p.skip, arch=p.arch,
                  colour_jitter=p.colour_jitter)
    kwargs.update(overrides)
    nets = [refit_predictor(profiles, images, masks, seed=seed + 1000 * k, **kwargs)[0] for k in range(members)]
    return nets[0] if members == 1 else PredictorEnsemble(nets)


def repooled(run: RunFolder, profiles_l: np.ndarray, masks_l: np.ndarray, pool: str = "prob", profile: bool = False,
             only_profile: bool = False) -> torch.nn.Module:
    """The run's saved final predictor with its fitted members pooled by `pool`, plus (`profile`)
    or only (`only_profile`) the profiles' mean member fit on the run's best labeled profiles."""
    saved = run.load_file(PREDICTOR, "cpu")
    if not saved.get("refit") or int(saved.get("ensemble", 1)) < 2:
        raise SystemExit(f"{run / PREDICTOR}: not a final predictor with several members (a run of --preset ours)")
    nets = [m for m in predictor_from_saved(saved).members if not isinstance(m, ProfileMeanMember)]
    member = fit_profile_member(profiles_l, masks_l)
    if only_profile:
        return member
    return PredictorEnsemble(nets + ([member] if profile else []), pool).eval()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("runs", nargs="+")
    p.add_argument("--variant", action="append", choices=list(VARIANTS), help="default: all")
    p.add_argument("--members", type=int, default=None, help="ensemble size (default: the run's)")
    a = p.parse_args()
    results: dict[str, list[dict]] = {}
    for path in a.runs:
        run = RunFolder(path)
        config = run.read_config("refit_variants.py")
        method = method_config_from_saved(config, str(run / "config.json"))
        split = load_split(DataConfig(**config["data"]))
        run.verify_data(split, config["data"]["data_root"], "refit_variants.py")
        prof = run.read_best_profiles()
        images_l = np.stack([s.image for s in split.labeled])
        masks_l = np.stack([s.mask for s in split.labeled])
        images_u = [s.image for s in split.unlabeled]
        gt = np.stack([s.mask for s in split.unlabeled])
        rgb_u = torch.as_tensor(np.stack(images_u)).permute(0, 3, 1, 2).float() / 255.0
        seed = int(config["args"]["seed"])
        members = a.members or method.final.members
        fitted: dict[str, torch.nn.Module] = {}
        for name in a.variant or list(VARIANTS):
            reads, overrides = VARIANTS[name]
            t0 = time.time()
            if reads == "fused":
                parts = {v: fitted.get(v) or fit(prof["labeled"], images_l, masks_l, method, *VARIANTS[v],
                                                 seed, members) for v in ("ours", "rgb-only")}
                as_list = {v: list(n.members) if isinstance(n, PredictorEnsemble) else [n] for v, n in parts.items()}
                net = PredictorEnsemble(as_list["ours"] + [ZeroProfiles(n, method.env.profiles.length)
                                                          for n in as_list["rgb-only"]])
                reads = "profile+rgb"
            elif reads == "saved":
                net, reads = repooled(run, prof["labeled"], masks_l, **overrides), "profile+rgb"
            else:
                net = fit(prof["labeled"], images_l, masks_l, method, reads, overrides, seed, members)
            fitted[name] = net
            profiles_u = np.zeros_like(prof["unlabeled"]) if reads == "rgb" else prof["unlabeled"]
            prob = probability_maps(net, torch.as_tensor(profiles_u), None if reads == "profile" else rgb_u).numpy()
            rows, _ = method_rows(MethodMaps("NBS", "method", prob, prob), images_u, gt, split.category, None)
            row = {"F1": rows[1]["F1"], "F1 no CRF": rows[0]["F1"], "F1-max": rows[1]["F1-max"],
                   "AUROC": rows[1]["pixel AUROC"], "image AUROC": rows[1]["image AUROC"]}
            results.setdefault(name, []).append(row)
            print(f"{path} {name}: " + "  ".join(f"{k} {v:.3f}" for k, v in row.items()) + f"  ({time.time() - t0:.0f} s)",
                  flush=True)
    print("\n| variant | n | " + " | ".join(results[next(iter(results))][0]) + " |")
    print("|---|---:|" + "---:|" * len(results[next(iter(results))][0]))
    for name, rows in results.items():
        cells = [f"{np.mean([r[k] for r in rows]):.3f} ± {np.std([r[k] for r in rows], ddof=1) if len(rows) > 1 else 0:.3f}"
                 for k in rows[0]]
        print(f"| {name} | {len(rows)} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
