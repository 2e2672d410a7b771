"""Checks of what a user or a handed-over run folder gives the run layer, each ending in one line
that names the file, flag or field: the structure of checkpoint.pt and best_profiles.npz, the
settings in config.json, evaluate.py's runtime flags, and the names a sweep builds folders from.
"""
from __future__ import annotations

import argparse
import math
import numbers
import re
from pathlib import Path
from typing import Any

import numpy as np
import torch

from agents.baselines import BASELINES, ORACLES
from common.device import check_device
from common.files import RunFileError, UnsafeFileError, load_weights, make_writable_folder
from common.settings import ConfigError
from data.config import DataConfig
from data.mvtec import DatasetError
from data.mvtec import list_categories as categories_in
from runner.presets import PRESETS
from runner.spec import Args, saved_args


# ------------------------------------------------------------------ run files
def checked_checkpoint(path: Path, device: torch.device) -> dict[str, Any]:
    """A checkpoint file, weights-only, checked to be train.py's: a dict of the env's and the
    agent's states and the wall time. UnsafeFileError naming the file otherwise."""
    ckpt = load_weights(path, map_location=device)
    if not isinstance(ckpt, dict):
        raise UnsafeFileError(f"{path} holds a {type(ckpt).__name__}, not train.py's checkpoint (a dict of "
                              "'env', 'agent' and 'wall_s')")
    wrong = [k for k, kind in (("env", dict), ("agent", dict), ("wall_s", numbers.Real))
             if not isinstance(ckpt.get(k), kind) or isinstance(ckpt.get(k), bool)]
    if wrong:
        raise UnsafeFileError(f"{path} is not train.py's checkpoint: {', '.join(map(repr, wrong))} missing or "
                              "of the wrong type")
    if not ckpt["env"] or not ckpt["agent"]:
        raise UnsafeFileError(f"{path} is not train.py's checkpoint: its "
                              f"{'env' if not ckpt['env'] else 'agent'} state is empty")
    return ckpt


def profiles_problem(z: dict[str, np.ndarray]) -> str | None:
    """What is wrong with the arrays of a best_profiles.npz (None when they fit together)."""
    required = ("scale", "labeled", "unlabeled", "labeled_names", "unlabeled_names", "best_update", "best_l_pred")
    missing = [k for k in required if k not in z]
    if missing:
        return f"no {', '.join(missing)}"
    for part in ("labeled", "unlabeled"):
        a, names = z[part], z[f"{part}_names"]
        if a.dtype.kind != "f" or a.ndim != 4 or a.shape[2] != a.shape[3]:
            return f"{part!r} is {a.dtype} {a.shape}, expected float profiles (images, T, S, S)"
        if names.ndim != 1 or names.dtype.kind != "U" or len(names) != len(a):
            return f"{part + '_names'!r} ({names.dtype} {names.shape}) does not name the {len(a)} {part} profiles"
    if z["labeled"].shape[1:] != z["unlabeled"].shape[1:]:
        return f"labeled {z['labeled'].shape[1:]} and unlabeled {z['unlabeled'].shape[1:]} profiles differ in shape"
    for k, kinds in (("scale", "f"), ("best_update", "iu"), ("best_l_pred", "f")):
        if z[k].shape != () or z[k].dtype.kind not in kinds:
            return f"{k!r} is {z[k].dtype} {z[k].shape}, expected one {'number' if kinds == 'f' else 'whole number'}"
    if not math.isfinite(float(z["scale"])) or float(z["scale"]) <= 0:
        return f"'scale' is {float(z['scale'])}, expected a positive number"
    if "error" in z and (z["error"].shape != () or z["error"].dtype.kind != "U"):
        return "'error' is not a name"
    return None


# ------------------------------------------------------------------ config.json and evaluate.py's flags
def saved_data_config(config: dict[str, Any], path: Path) -> DataConfig:
    """The DataConfig of a run's config.json ("data") at `path`, or SystemExit naming the file and
    the field."""
    data = config["data"]
    try:
        if not isinstance(data, dict):
            raise ConfigError(f"\"data\" is a {type(data).__name__}, not a mapping of settings")
        return DataConfig(**data)
    except (ConfigError, TypeError) as e:
        raise SystemExit(f"evaluate.py {path.parent}: {path}: {e}") from None


def saved_run_args(config: dict[str, Any], path: Path) -> Args:
    """train.py's Args of a run's config.json ("args") at `path`, or SystemExit naming the file."""
    try:
        if not isinstance(config["args"], dict):
            raise ConfigError(f"\"args\" is a {type(config['args']).__name__}, not a mapping of settings")
        return saved_args(config["args"])
    except (ConfigError, TypeError) as e:
        raise SystemExit(f"evaluate.py {path.parent}: {path} does not hold train.py's settings ({e})") from None


def check_runtime_args(args: argparse.Namespace) -> None:
    """evaluate.py's flags that only say where and how it runs: --threads, --device and a
    --baseline-cache that must be writable before any baseline is trained for it."""
    if args.threads < 0:
        raise SystemExit(f"--threads must be >= 0 (0: torch's default), got {args.threads}")
    check_device(args.device)
    if args.baseline_cache is not None:
        try:
            make_writable_folder(args.baseline_cache, "--baseline-cache")
        except RunFileError as e:
            raise SystemExit(e.strerror) from None


# ------------------------------------------------------------------ sweeps
def is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def has_overlays(metrics: dict[str, Any], overlays: int) -> bool:
    """Whether an evaluation wrote `overlays` overlay images (-1: one per scored image), or all it could."""
    written, split = metrics.get("overlays"), metrics.get("split")
    n_scored = split.get("n_unlabeled") if isinstance(split, dict) else None
    if not isinstance(written, list) or not is_int(n_scored):
        return False
    return len(written) >= (n_scored if overlays < 0 else min(overlays, n_scored))


def list_categories(data_root: str | None) -> list[str]:
    """The categories of a data root, or of the built-in data (generated on first use)."""
    from data.synthetic import ensure_default_dataset

    try:
        return categories_in(data_root if data_root is not None else ensure_default_dataset())
    except DatasetError as e:
        raise SystemExit(f"--data-root: {e}") from None


#: What a category may be called: it becomes a folder of the sweep (<out>/<category>/...).
SAFE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]*")


def sweep_categories(names: list[str], data_root: str | None, dataset: str | None) -> list[str]:
    """The categories of --categories ('all': every one of the data root), each checked to be a
    plain folder name (no '/', '..' or absolute path: cell folders are built from it) and, for the
    MVTec layout, a category of the data root. SystemExit naming the bad one."""
    if names == ["all"]:
        return list_categories(data_root)
    bad = [n for n in names if not SAFE_NAME.fullmatch(n) or n in (".", "..")]
    if bad:
        raise SystemExit(f"--categories: {', '.join(map(repr, bad))} is not a category name (letters, digits and "
                         "._+- only; no path): each names a folder of the data root and of the sweep")
    if dataset in (None, "mvtec"):
        known = list_categories(data_root)
        missing = [n for n in names if n not in known]
        if missing:
            raise SystemExit(f"--categories: no category {', '.join(map(repr, missing))} under "
                             f"{data_root or 'the built-in dataset'}; it has {', '.join(known) or 'none'}")
    return names


def check_grid(agents: list[str], presets: list[str], categories: list[str], data_root: str | None,
               dataset: str | None) -> list[str]:
    """ablate.py's grid checked before any cell folder is built from it (<out>/<category>/<preset>/
    <agent>/...): known agents (sb3:<ALGO> a name, not a path) and presets, and the categories
    (sweep_categories). Returns the categories; SystemExit naming the bad value."""
    for agent in agents:
        if agent not in ("reinforce", *BASELINES, *ORACLES) and not re.fullmatch(r"sb3:[A-Za-z][A-Za-z0-9_]*", agent):
            raise SystemExit(f"--agents: unknown agent {agent!r}; expected reinforce, sb3:<ALGO>, one of "
                             f"{sorted(BASELINES)} or a diagnostic oracle ({', '.join(sorted(ORACLES))})")
    unknown = [p for p in presets if p not in PRESETS]
    if unknown:
        raise SystemExit(f"--presets: unknown {', '.join(map(repr, unknown))}; choose from {', '.join(PRESETS)}")
    return sweep_categories(categories, data_root, dataset)
