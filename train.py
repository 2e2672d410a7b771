"""Train the neural batch sampler (and with it the AE and the predictor) on one category.

    python train.py                                   # built-in synthetic data, CPU-sized defaults
    python train.py --data-root /data/mvtec_anomaly_detection --category bottle --image-size 256
    python train.py --set patches_per_update=16 --set ae.bottleneck=32    # any EnvConfig field
    python train.py --resume runs/<run>               # continue after Ctrl-C or a crash

Writes a run folder: config.json, split.json, log.csv, checkpoint.pt (latest, for --resume),
best_profiles.npz (D_l and D_u loss profiles of the lowest prediction loss), predictor.pt and
summary.json. Evaluate it with `python evaluate.py <run folder>`.
"""
from __future__ import annotations

import argparse
import csv
import dataclasses
import inspect
import json
import math
import os
import random
import shlex
import signal
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from agents.baselines import BASELINES
from agents.reinforce import REINFORCE, ReinforceConfig
from data.mvtec import DatasetError
from data.split import Split, describe_changes, split_changes
from envs.batch_sampling_env import BatchSamplingEnv, load_split_and_summary, resolve_device
from envs.config import DataConfig, config_to_dict, env_config_from_dict, make_env_config
from envs.refit import final_predictor
from evaluation.reference_methods import nbs_method
from envs.residual_classifier_env import (ClassifierConfig, ResidualClassifierEnv, classifier_config_from_dict,
                                          load_classifier_data)
from models.crf import CRFConfig
from models.predictor import predictor_from_saved, probability_maps
from models.segmenter import BUNDLE_NAME, BundleMeta, save_bundle
from models.serialization import (RunFileError, UnsafeFileError, load_weights, make_writable_folder, read_json,
                                  save_weights_atomic, write_atomic, write_json_atomic)

try:
    import fcntl
except ImportError:  # Windows: no advisory locks; run folders are not locked there
    fcntl = None  # type: ignore[assignment]


#: Default episodes per env: 600 AE updates (~5 minutes on 2 CPU cores with the default config);
#: 3000 decisions of the residual classifier (its AE trains once, at the start).
DEFAULT_UPDATES = {"batch-sampling": 600, "residual-classifier": 3000}
ENVS = tuple(DEFAULT_UPDATES)


def arg(default: Any, help: str) -> Any:  # noqa: A002 - mirrors argparse
    return field(default=default, metadata={"help": help})


@dataclass
class Args:
    """Command-line arguments of train.py."""

    dataset: str = arg("mvtec", "layout of --data-root: mvtec (MVTec AD: <root>/<category>/...), "
                                "crackforest (image/, groundTruth/*.mat) or folder (images/, masks/)")
    data_root: str | None = arg(None, "dataset folder; default: the built-in synthetic data (mvtec layout)")
    category: str = arg("brick", "category to train on (mvtec layout; the others name themselves)")
    image_size: int = arg(128, "images are resized to this side (paper: 256)")
    n_labeled: int = arg(5, "|D_l|: labeled images drawn from the test set")
    per_defect_type: int | None = arg(None, "draw D_l as this many images per defect type instead "
                                            "(noghredeh2025's MVTec protocol); overrides --n-labeled")
    include_train_good: bool = arg(False, "add train/good images to D_u")
    include_unannotated: bool = arg(False, "add the dataset's unannotated images (CrackForest 201-...) "
                                           "to D_u; they are never scored")
    holdout_fraction: float = arg(0.0, "keep this fraction of the non-labeled test images out of D_u "
                                       "(unseen images for scripts/inductive.py and predict.py)")
    env: str = arg("batch-sampling", "batch-sampling (the neural batch sampler: segmentation) or "
                                     "residual-classifier (image-level decisions from AE residual maps)")
    preset: str = arg("chu2020", "env preset (batch-sampling)")
    seed: int = arg(0, "seed of the split, the env and the agent")
    updates: int | None = arg(None, "agent episodes (batch-sampling: one AE update each); default 600 "
                                    "(residual-classifier: 3000), or with --resume the run's own")
    agent: str = arg("reinforce", "reinforce; sb3:<ALGO> for any Stable-Baselines3 (or sb3-contrib) "
                                  "algorithm with Discrete actions, e.g. sb3:PPO, sb3:A2C, sb3:DQN; or a "
                                  "non-learning baseline: uniform, random-walk, heuristic")
    learning_rate: float = arg(1e-4, "policy learning rate")
    gamma: float = arg(0.99, "discount")
    ent_coef: float = arg(0.01, "entropy bonus (REINFORCE, PPO, A2C)")
    device: str = arg("auto", "auto | cpu | cuda[:i]")
    threads: int = arg(0, "torch CPU threads (0: torch's default)")
    run_dir: str | None = arg(None, "run folder; default runs/<category>-<agent>-seed<seed>-<time>")
    checkpoint_every: int = arg(50, "episodes between checkpoints")
    no_tensorboard: bool = arg(False, "do not log to <run>/tensorboard even if tensorboard is installed")
    resume: str | None = arg(None, "run folder to continue from its last checkpoint")
    set: list[str] = arg(None, "EnvConfig overrides KEY=VALUE (e.g. profile_length=10, ae.width=16)")


def build_parser(defaults: bool = True) -> argparse.ArgumentParser:
    """The CLI of Args; with defaults=False, absent flags stay absent (to see what was given)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter,
                                     argument_default=None if defaults else argparse.SUPPRESS)
    for f in dataclasses.fields(Args):
        flag = "--" + f.name.replace("_", "-")
        default = {} if not defaults else {"default": [] if f.name == "set" else f.default}
        if f.type == "bool":
            parser.add_argument(flag, action="store_true", help=f.metadata["help"], **default)
        elif f.name == "set":
            parser.add_argument(flag, action="append", metavar="KEY=VALUE", help=f.metadata["help"], **default)
        else:
            typ = {"int": int, "float": float, "int | None": int}.get(str(f.type), str)
            parser.add_argument(flag, type=typ, help=f.metadata["help"], **default)
    return parser


def parse_args(argv: list[str] | None = None) -> tuple[Args, set[str]]:
    """The arguments, and the names of those given on the command line (for --resume)."""
    parser = build_parser()
    args = Args(**vars(parser.parse_args(argv)))
    given = set(vars(build_parser(defaults=False).parse_args(argv))) - {"resume"}
    if args.resume is not None and given - RESUME_OVERRIDES:
        # Only runtime settings may change on resume; the rest comes from the run's config.json.
        flags = lambda names: ", ".join("--" + k.replace("_", "-") for k in sorted(names))  # noqa: E731
        parser.error(f"with --resume only {flags(RESUME_OVERRIDES)} can be given; the run's "
                     f"config.json fixes the rest (got {flags(given - RESUME_OVERRIDES)})")
    return args, given


#: Arguments that may differ when a run is resumed (none of them changes what is computed).
RESUME_OVERRIDES = {"updates", "device", "threads", "checkpoint_every", "no_tensorboard"}


def apply_overrides(config: Any, overrides: list[str]) -> Any:
    """Set config fields (EnvConfig or ClassifierConfig) from KEY=VALUE strings, converting VALUE
    to the field's type."""
    d = config_to_dict(config)
    for item in overrides:
        key, sep, value = item.partition("=")
        if not sep:
            raise SystemExit(f"--set expects KEY=VALUE, got {item!r}")
        target, parts = d, key.split(".")
        for p in parts[:-1]:
            if not isinstance(target.get(p), dict):
                raise SystemExit(f"--set {key}: {p!r} is not a config section")
            target = target[p]
        if parts[-1] not in target:
            raise SystemExit(f"--set {key}: unknown field; fields: {sorted(target)}")
        old = target[parts[-1]]
        try:
            new = json.loads(value) if not isinstance(old, str) else value
        except json.JSONDecodeError:
            new = value
        owner = config
        for part in parts[:-1]:
            owner = getattr(owner, part)
        expected = {f.name: str(f.type) for f in dataclasses.fields(owner)}[parts[-1]]
        problem = value_problem(new, expected)
        if problem:
            raise SystemExit(f"--set {key}={value}: {problem} (the field is {expected})")
        target[parts[-1]] = new
    try:
        return config_from_dict(type(config), d)
    except TypeError as e:
        raise SystemExit(f"--set: {e}") from None


def value_problem(value: Any, expected: str) -> str | None:
    """Why `value` (parsed from --set) does not fit a config field annotated `expected`, or None.

    Catches what dataclasses do not check: --set profile_length=abc, =2.5 or =true, NaN rates."""
    options = [t.strip() for t in expected.split("|")]
    if value is None:
        return None if "None" in options else "a value is required"
    problems = []
    for t in (o for o in options if o != "None"):
        if t == "bool":
            if isinstance(value, bool):
                return None
            problems.append("expected true or false")
        elif t == "int":
            if isinstance(value, int) and not isinstance(value, bool):
                return None
            problems.append("expected a whole number")
        elif t == "float":
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                return None if math.isfinite(value) else "expected a finite number"
            problems.append("expected a number")
        elif t == "str":
            if isinstance(value, str):
                return None
            problems.append("expected text")
        elif t.startswith("tuple"):
            if isinstance(value, (list, tuple)) and all(
                    isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in value):
                return None
            problems.append("expected a list of numbers, e.g. [1, 2]")
        else:  # a nested config section or an unknown annotation: let the dataclass decide
            return None
    return problems[0] if problems else None


def config_from_dict(kind: type, d: dict[str, Any]) -> Any:
    return classifier_config_from_dict(d) if kind is ClassifierConfig else env_config_from_dict(d)


def default_config(args: Args) -> Any:
    if args.env == "residual-classifier":
        return ClassifierConfig()
    return make_env_config(args.preset)


def make_env(args: Args, config: Any, data: DataConfig) -> BatchSamplingEnv | ResidualClassifierEnv:
    """The env named by --env on the data of `data`; bad data or settings exit with a message."""
    try:
        if args.env == "residual-classifier":
            split, train_good = load_classifier_data(data)
            return ResidualClassifierEnv(split, train_good, data, config)
        split, found = load_split_and_summary(data)
        print(f"data: {found}")
        return BatchSamplingEnv(split=split, data=data, config=config)
    except DatasetError as e:
        raise SystemExit(f"dataset error: {e}") from None
    except ValueError as e:
        raise SystemExit(f"configuration error: {e}") from None


def describe(env: BatchSamplingEnv | ResidualClassifierEnv) -> str:
    if isinstance(env, ResidualClassifierEnv):
        n_anom = int(env.pool_labels.sum())
        return (f"device: {env.device}  labeled pool {len(env.pool)} ({n_anom} anomalous, {len(env.pool) - n_anom} "
                f"normal, of which {len(env.normal_holdout)} held-out train/good)  |D_u|={len(env.split.unlabeled)}  "
                f"AE on {len(env.ae_train)} train/good images, {env.config.ae_steps} steps  inputs: {env.config.inputs}")
    text = (f"device: {env.device}  |D_l|={env.n_labeled}  |D_u|={env.n_images - env.n_labeled} "
            f"image {env.image_size}px  patch {env.config.patch_size}px  alpha={env.alpha:.4f}")
    if env.config.heldout_predictors:
        text += (f"\nheld-out predictors for D_l images {env.heldout_images}" if env.heldout_images else
                 "\nheld-out predictors: none (D_l needs two defect images for one to be judged on unseen "
                 "defects); the best moment is chosen on l_pred")
    return text


def make_agent(args: Args, env: BatchSamplingEnv, device: torch.device) -> Any:
    """The agent named by --agent; every agent has learn / state_dict / load_state_dict."""
    if args.agent == "reinforce":
        return REINFORCE(env, ReinforceConfig(args.learning_rate, args.gamma, args.ent_coef),
                         device=device, seed=args.seed)
    if args.agent.startswith("sb3:"):
        from agents.sb3 import SB3Agent, algorithm_class

        name = args.agent[4:]
        kwargs: dict[str, Any] = {"learning_rate": args.learning_rate, "gamma": args.gamma}
        if "ent_coef" in inspect.signature(algorithm_class(name)).parameters:
            kwargs["ent_coef"] = args.ent_coef
        return SB3Agent(env, name, device=device, seed=args.seed, **kwargs)
    if args.agent in BASELINES:
        return BASELINES[args.agent](env, seed=args.seed)
    raise ValueError(f"expected 'reinforce', 'sb3:<ALGO>' (e.g. sb3:PPO) or one of {sorted(BASELINES)}")


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    torch.backends.cudnn.deterministic = True
    torch.backends.cudnn.benchmark = False


def save_checkpoint(obj: Any, run: Path) -> None:
    """checkpoint.pt, atomically, keeping the one before as checkpoint.prev.pt: if the latest is
    ever unreadable, a resume costs one checkpoint interval, not the run."""
    latest = run / "checkpoint.pt"
    tmp = run / ".checkpoint.next.pt"
    save_weights_atomic(obj, tmp)
    if latest.exists():
        os.replace(latest, run / "checkpoint.prev.pt")
    os.replace(tmp, latest)


def load_checkpoint(run: Path, device: torch.device) -> dict[str, Any]:
    """The latest readable checkpoint of a run: checkpoint.pt, or checkpoint.prev.pt (with a
    warning) when the latest is corrupt. Never executes code from the files (weights-only)."""
    try:
        return load_weights(run / "checkpoint.pt", map_location=device)
    except (UnsafeFileError, FileNotFoundError) as e:  # missing: a crash between the two renames
        prev = run / "checkpoint.prev.pt"
        if "refusing" in str(e) or not prev.is_file():
            raise SystemExit(f"--resume {run}: {e}") from None
        print(f"warning: {e}; resuming from the checkpoint before it, {prev}")
        try:
            return load_weights(prev, map_location=device)
        except UnsafeFileError as e2:
            raise SystemExit(f"--resume {run}: {e}; and {e2}") from None


CHECKPOINTS = ("checkpoint.pt", "checkpoint.prev.pt")
LOCK_FILE = ".train.lock"
_held_locks: dict[Path, Any] = {}


def lock_run_folder(run: Path, flag: str) -> None:
    """Hold an exclusive lock on <run>/.train.lock until this process ends.

    Two train.py in one folder (a second terminal, a sweep started twice) would interleave log rows
    and overwrite each other's checkpoints; the second one stops here instead, naming the folder.
    The kernel drops the lock when the process ends, however it ends, so a crash never leaves a
    stale lock behind. A lock this process already holds is kept (main() may run twice in-process)."""
    key = run.resolve()
    if key in _held_locks:
        return
    path = run / LOCK_FILE
    try:
        handle = open(path, "a+")
    except OSError as e:
        raise SystemExit(f"{flag} {run}: cannot write there ({e.strerror or e})") from None
    if fcntl is not None:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip()
            handle.close()
            raise SystemExit(f"{run} is in use: another process{f' (pid {holder})' if holder else ''} is training "
                             f"there (it holds {path}); wait for it to finish or stop it") from None
    handle.seek(0)
    handle.truncate()
    handle.write(str(os.getpid()))
    handle.flush()
    _held_locks[key] = handle


def read_run_config(run: Path, flag: str) -> dict[str, Any]:
    """<run>/config.json, or SystemExit naming the flag and the file when it is missing or malformed."""
    try:
        return read_json(run / "config.json", keys=("args", "env", "data"))
    except RunFileError as e:
        raise SystemExit(f"{flag} {run}: {e.strerror}") from None


def train_command(saved_args: dict[str, Any]) -> str:
    """The train.py command line that gives these Args (config.json's "args"), for advice that can be
    pasted: the flags that differ from the defaults, --run-dir included."""
    words = ["python", "train.py"]
    for f in dataclasses.fields(Args):
        value = saved_args.get(f.name, f.default)
        if f.name == "resume" or value == f.default or (f.name == "set" and not value):
            continue
        flag = "--" + f.name.replace("_", "-")
        if f.type == "bool":
            words += [flag] if value else []
        elif f.name == "set":
            words += [w for item in value for w in ("--set", item)]
        else:
            words += [flag, str(value)]
    return shlex.join(words)


def no_checkpoint_advice(run: Path) -> str:
    """What to do with a run folder that has no checkpoint: its training stopped before the first
    one was written, so --resume has nothing to continue from; starting it again in the same folder
    does work (train.py refuses only folders that hold a checkpoint)."""
    try:
        again = f"start it again with `{train_command(read_json(run / 'config.json', keys=('args',))['args'])}`"
    except RunFileError:
        again = f"start it again with `python train.py --run-dir {shlex.quote(str(run))}` and its other arguments"
    return (f"its training stopped before the first checkpoint was written, so there is nothing to resume or "
            f"evaluate; {again}, or remove the folder")


def verify_run_data(run: Path, split: Split, data_root: str | None, flag: str) -> None:
    """Stop unless `split` is the data the run was trained on: the same images in D_l, D_u, the
    unscored D_u images and train/good, with the same file contents and masks (split.json's
    fingerprint). Resuming or scoring a run on changed data would mix two datasets in one result."""
    try:
        recorded = read_json(run / "split.json", keys=("labeled", "unlabeled"))
    except RunFileError as e:
        raise SystemExit(f"{flag} {run}: {e.strerror}") from None
    changes = split_changes(recorded, split)
    if changes:
        raise SystemExit(f"{flag} {run}: the data under {data_root or 'the built-in dataset'} is not what this run "
                         f"was trained on: {describe_changes(changes)}. Restore the data, or train a new run on it")
    if "fingerprint" not in recorded:
        print(f"note: {run / 'split.json'} predates file fingerprints: only the D_l and D_u image names were checked")


def export_results(env: BatchSamplingEnv, run: Path, seed: int) -> None:
    """best_profiles.npz and predictor.pt (the predictor of the best moment, or with
    predictor_refit_steps the final predictor fit on the best labeled profiles, seeded by `seed`):
    what evaluate.py needs, nothing of the agent."""
    profiles = env.best_profiles()
    extra = {k: profiles[k] for k in ("labeled_heldout_prob", "labeled_heldout_index") if k in profiles}
    scale = float(np.mean(profiles["labeled"])) or 1.0  # float16 storage of loss/scale keeps precision
    split = env.split
    arrays = dict(scale=np.float32(scale),
                  **{k: (profiles[k] / scale).astype(np.float16) for k in ("labeled", "unlabeled", "extra")},
                  labeled_names=np.array([s.name for s in split.labeled]),
                  unlabeled_names=np.array([s.name for s in split.unlabeled]),
                  extra_names=np.array([s.name for s in split.extra_unlabeled]),
                  best_update=np.int64(env.best["update"]), best_l_pred=np.float32(env.best_l_pred), **extra)
    def write(tmp: Path) -> None:
        with open(tmp, "wb") as f:  # a file object: np.savez would append .npz to the temporary name
            np.savez(f, **arrays)

    write_atomic(run / "best_profiles.npz", write)
    c = env.config
    state_dict, norm, refit, members = env.best["predictor"], "group", c.predictor_refit_steps > 0, 1
    if refit:  # ours: fresh predictors fit on the best labeled profiles with the U-Net's recipe
        members = c.predictor_refit_members
        print(f"fitting the final predictor on the best labeled profiles ({members} x {c.predictor_refit_steps} steps)")
        net = final_predictor(profiles["labeled"], np.stack([s.image for s in split.labeled]),
                              np.stack([s.mask for s in split.labeled]), c, seed, env.device)
        state_dict = net.state_dict()
        norm = getattr(net.members[0] if members > 1 else net, "norm", "group")
    fields = {"profile_length": c.profile_length, "width": c.predictor_width, "inputs": c.predictor_inputs,
              "skip": c.predictor_skip, "arch": c.predictor_arch, "norm": norm, "refit": refit, "ensemble": members}
    save_weights_atomic({"state_dict": state_dict, "alpha": env.alpha, **fields}, run / "predictor.pt")
    export_bundle(env, run, fields, state_dict, profiles, seed)


def export_bundle(env: BatchSamplingEnv, run: Path, fields: dict[str, Any], state_dict: dict[str, torch.Tensor],
                  profiles: dict[str, np.ndarray], seed: int) -> None:
    """<run>/bundle.pt: the best moment's AE snapshots, the exported predictor and evaluate.py's
    decision rule (threshold, CRF), so that predict.py can segment images the run never saw."""
    c, split = env.config, env.split
    rgb = None
    if c.predictor_inputs == "profile+rgb":
        rgb = torch.as_tensor(np.stack([s.image for s in split.unlabeled])).permute(0, 3, 1, 2).float() / 255.0
    prob_u = probability_maps(predictor_from_saved({**fields, "state_dict": state_dict}, env.device),
                              torch.as_tensor(profiles["unlabeled"]), rgb).cpu().numpy()
    masks_l = np.stack([s.mask for s in split.labeled])
    heldout = profiles.get("labeled_heldout_index")
    nbs = nbs_method(prob_u, fields["refit"], profiles.get("labeled_heldout_prob"),
                     None if heldout is None else masks_l[heldout], float(masks_l.mean()))
    meta = BundleMeta(image_size=env.image_size, patch_size=c.patch_size, ae=dataclasses.asdict(c.ae),
                      absolute_error=c.absolute_error, loss_map=c.loss_map, loss_map_stride=c.loss_map_stride,
                      predictor=fields, threshold=0.5 if nbs.threshold is None else float(nbs.threshold),
                      threshold_rule=nbs.note, crf=dataclasses.asdict(CRFConfig()),
                      source={"run": str(run.resolve()), "category": split.category, "seed": seed,
                              "best_update": int(env.best["update"])})
    save_bundle(run / BUNDLE_NAME, meta, env.best["snapshots"], state_dict)


def tensorboard_writer(run: Path, episodes: int) -> Any:
    """A SummaryWriter on <run>/tensorboard when tensorboard is installed, else None. On resume,
    `purge_step` hides the events written after the checkpoint, like truncate_log does for the CSV."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:  # torch raises this when the tensorboard package is missing
        return None
    # purge_step: events of steps >= it (episodes after the checkpoint) are dropped from display.
    return SummaryWriter(str(run / "tensorboard"), purge_step=episodes + 1 if episodes > 0 else None)


def truncate_log(path: Path, episodes: int) -> None:
    """Drop log rows written after the checkpoint being resumed: those episodes are redone."""
    if not path.exists():
        return
    with open(path, newline="") as f:
        rows = [r for r in csv.DictReader(f) if int(r["episode"]) <= episodes]
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, LOG_COLUMNS, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)


#: Per-update diagnostics of the env (envs/diagnostics.py): pixel AUROC against the D_l masks of
#: the current D_l loss maps, of the mean D_l profile and of the held-out predictors; the AE's
#: loss over that of each image's mean colour and its output's spread over the images' (a
#: collapsed AE: >= 1 and near 0). Then the fraction of each action in the episode.
DIAGNOSTIC_COLUMNS = ["dl_loss_auroc", "dl_profile_auroc", "dl_heldout_auroc", "ae_vs_mean_colour", "ae_output_spread"]
ACTION_COLUMNS = [f"action_{a}" for a in range(9)]
LOG_COLUMNS = ["episode", "ae_updates", "return", "ae_loss", "l_pred", "heldout_l_pred", "best_l_pred", "beta",
               "policy_loss", "entropy", "jump_rate", *DIAGNOSTIC_COLUMNS, *ACTION_COLUMNS, "wall_s"]


class TrainingWatch:
    """Warns once per problem, in the log and summary.json (hence the report), when the AE's
    loss maps cannot carry defect signal:

    - collapse: the AE is no better than predicting each image's mean colour *and* its output is
      nearly flat (spread < `min_spread` of the images'). Seen on dark images: the AE output black
      and its loss maps were the image's own squared intensity (correlation 0.99999998);
    - no separation: the current D_l loss maps rank the labeled defects no better than
      `min_auroc` (pixel AUROC), so no predictor or sampler downstream can find them.

    Judged on medians of the last `window` updates, from update `after` on, so the first steps of
    a fresh AE do not count. (A textured category can have an AE worse than the mean colour whose
    maps still separate defects, which is why the ratio alone does not warn: on the built-in brick
    a working AE had a ratio of 1.5-2.5 and an output spread of 0.11-1.7, median 0.26.)"""

    def __init__(self, window: int = 50, after: int = 100, min_spread: float = 0.05,
                 min_auroc: float = 0.55) -> None:
        self.window, self.after, self.min_spread, self.min_auroc = window, after, min_spread, min_auroc
        self.history: dict[str, list[float]] = {}
        self.warnings: dict[str, str] = {}

    def _median(self, key: str, value: Any) -> float:
        values = self.history.setdefault(key, [])
        if isinstance(value, (int, float)) and math.isfinite(value):
            values.append(float(value))
            del values[:-self.window]
        return float(np.median(values)) if values else math.nan

    def update(self, stats: dict[str, Any]) -> list[str]:
        """Record one update's diagnostics; returns the warnings that apply for the first time."""
        ratio = self._median("ratio", stats.get("ae_vs_mean_colour"))
        spread = self._median("spread", stats.get("ae_output_spread"))
        auroc = self._median("auroc", stats.get("dl_loss_auroc"))
        if stats["episode"] < self.after:
            return []
        new = {}
        if "collapse" not in self.warnings and ratio >= 1.0 and spread < self.min_spread:
            new["collapse"] = (f"the AE has collapsed: its loss is {ratio:.2f}x that of predicting each image's "
                               f"mean colour and its output varies {spread:.3f}x as much as the images (medians "
                               f"of the last {self.window} updates, at update {stats['episode']}); its loss maps "
                               "are the images' own intensity. Try another ae_lr or AE shape (--set), or check "
                               "the images (very dark or flat?)")
        if "separation" not in self.warnings and auroc < self.min_auroc:
            new["separation"] = (f"the AE's loss maps do not separate the labeled defects: pixel AUROC "
                                 f"{auroc:.3f} on D_l (median of the last {self.window} updates, at update "
                                 f"{stats['episode']}); nothing downstream can find them. Look at "
                                 "dl_loss_auroc in log.csv and try --set loss_map_stride, ae.* or patch_size")
        self.warnings.update(new)
        return list(new.values())


def main(argv: list[str] | None = None) -> Path:
    args, given = parse_args(argv)
    resume = args.resume is not None
    if resume:
        run = Path(args.resume)
        if not run.is_dir():
            raise SystemExit(f"--resume {run}: no such folder")
        if not any((run / f).is_file() for f in CHECKPOINTS):
            raise SystemExit(f"--resume {run}: no checkpoint.pt there: {no_checkpoint_advice(run)}")
        lock_run_folder(run, "--resume")
        saved = read_run_config(run, "--resume")
        try:
            args = Args(**{**saved["args"], **{k: getattr(args, k) for k in given}, "resume": str(run)})
            env_config = config_from_dict(type(default_config(args)), saved["env"])
        except (TypeError, ValueError) as e:
            raise SystemExit(f"--resume {run}: {run / 'config.json'} does not hold train.py's settings ({e})") from None
        if "threads" in given and args.threads != saved["args"].get("threads"):
            print(f"warning: --threads {args.threads} differs from the run's {saved['args'].get('threads')}: torch's "
                  "results depend on the number of threads, so from here on the numbers will differ from those "
                  "of an uninterrupted run")
    else:
        if args.env not in ENVS:
            raise SystemExit(f"--env {args.env}: expected one of {', '.join(ENVS)}")
        if args.data_root is not None:  # absolute: --resume and evaluate.py may run from another folder
            args.data_root = str(Path(args.data_root).expanduser().resolve())
        try:
            env_config = apply_overrides(default_config(args), args.set or [])
        except ValueError as e:
            raise SystemExit(f"--preset {args.preset}: {e}") from None
        args.updates = DEFAULT_UPDATES[args.env] if args.updates is None else args.updates
    if args.updates is not None and args.updates < 0:
        raise SystemExit(f"--updates must be >= 0, got {args.updates}")
    if args.checkpoint_every < 1:
        raise SystemExit(f"--checkpoint-every must be >= 1 episode, got {args.checkpoint_every}")
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    seed_everything(args.seed)

    data = DataConfig(dataset=args.dataset, data_root=args.data_root, category=args.category,
                      image_size=args.image_size, n_labeled=args.n_labeled, split_seed=args.seed,
                      per_defect_type=args.per_defect_type, include_train_good=args.include_train_good,
                      include_unannotated=args.include_unannotated, holdout_fraction=args.holdout_fraction)
    env = make_env(args, dataclasses.replace(env_config, device=args.device), data)
    split = env.split
    if resume:
        verify_run_data(run, split, args.data_root, "--resume")
    try:
        agent = make_agent(args, env, resolve_device(args.device))
    except ValueError as e:
        raise SystemExit(f"--agent {args.agent}: {e}") from None

    if resume:
        ckpt = load_checkpoint(run, env.device)
        env.load_state_dict(ckpt["env"])
        agent.load_state_dict(ckpt["agent"])
        wall0 = float(ckpt["wall_s"])
        truncate_log(run / "log.csv", agent.episodes)
        print(f"resuming {run} at episode {agent.episodes}/{args.updates}")
    else:
        run = Path(args.run_dir or f"runs/{split.category}-{args.agent.replace(':', '-')}-seed{args.seed}-{time.strftime('%Y%m%d-%H%M%S')}")
        try:
            make_writable_folder(run, "--run-dir")
        except RunFileError as e:
            raise SystemExit(e.strerror) from None
        lock_run_folder(run, "--run-dir")
        if any((run / f).exists() for f in CHECKPOINTS):
            raise SystemExit(f"{run} already holds a run: use --resume {run} or another --run-dir")
        truncate_log(run / "log.csv", 0)  # rows of an attempt that stopped before its first checkpoint
        write_json_atomic(run / "config.json", {"args": dataclasses.asdict(args), "env": config_to_dict(env.config),
                                                "data": dataclasses.asdict(data)})
        write_json_atomic(run / "split.json", {**split.describe(), "fingerprint": split.fingerprint()})
        env.reset(seed=args.seed)
        wall0 = 0.0
    print(f"run folder: {run}\n{describe(env)}")

    stop = {"requested": False}

    def on_sigint(signum: int, frame: Any) -> None:
        # First Ctrl-C: finish this episode, checkpoint, exit. Second: stop at once.
        stop["requested"] = True
        signal.signal(signal.SIGINT, signal.default_int_handler)
        tqdm.write("interrupt: saving a checkpoint after this episode (Ctrl-C again to abort)")

    signal.signal(signal.SIGINT, on_sigint)
    t0 = time.time()

    def checkpoint() -> None:
        save_checkpoint({"env": env.state_dict(), "agent": agent.state_dict(),
                         "wall_s": wall0 + time.time() - t0}, run)

    if not resume:
        checkpoint()  # from here on, --resume always has something to continue from
    log_path = run / "log.csv"
    new_log = not log_path.exists()
    writer = None if args.no_tensorboard else tensorboard_writer(run, agent.episodes)
    watch = TrainingWatch()
    with open(log_path, "a", newline="") as log_file, \
            tqdm(total=args.updates, initial=agent.episodes, desc="updates", dynamic_ncols=True,
                 mininterval=1.0 if sys.stderr.isatty() else 30.0) as bar:
        log = csv.DictWriter(log_file, LOG_COLUMNS, extrasaction="ignore")
        if new_log:
            log.writeheader()

        def callback(stats: dict[str, Any]) -> bool:
            stats["wall_s"] = round(wall0 + time.time() - t0, 2)
            stats.update(zip(ACTION_COLUMNS, stats.pop("action_hist", ())))
            for warning in watch.update(stats):
                tqdm.write(f"WARNING: {warning}")
            log.writerow(stats)
            if writer is not None:
                for key in LOG_COLUMNS[1:]:
                    value = stats.get(key)
                    if isinstance(value, (int, float)) and math.isfinite(value):
                        writer.add_scalar(f"train/{key}", value, stats["episode"])
            bar.update(1)
            shown = {"ae": ("ae_loss", "{:.4f}"), "pred": ("l_pred", "{:.4f}"), "R": ("return", "{:.3f}"),
                     "beta": ("beta", "{:.2f}")}
            bar.set_postfix({k: f.format(stats[c]) for k, (c, f) in shown.items() if c in stats}, refresh=False)
            if stats["episode"] % args.checkpoint_every == 0 or stop["requested"]:
                log_file.flush()
                checkpoint()
            return not stop["requested"]

        agent.learn(args.updates, callback)
    if writer is not None:
        writer.close()
    signal.signal(signal.SIGINT, signal.default_int_handler)
    checkpoint()
    summary: dict[str, Any] = {"episodes": agent.episodes}
    if isinstance(env, BatchSamplingEnv):
        if env.best is not None:
            export_results(env, run, args.seed)
        summary.update(ae_updates=env.updates, reinits=env.reinits, best_l_pred=env.best_l_pred,
                       best_update=None if env.best is None else env.best["update"])
    summary.update(wall_s=round(wall0 + time.time() - t0, 1), device=str(env.device),
                   finished=agent.episodes >= args.updates,
                   warnings=list(watch.warnings.values()))
    write_json_atomic(run / "summary.json", summary)
    if summary["finished"]:
        print(f"done in {summary['wall_s']} s. Evaluate with:  python evaluate.py {run}")
    else:
        print(f"stopped at episode {agent.episodes}. Continue with:  python train.py --resume {run}")
    return run


if __name__ == "__main__":
    try:
        main()
    except RunFileError as e:  # a full disk or a read-only folder: one line, not a traceback
        raise SystemExit(f"error: {e.strerror}") from None
