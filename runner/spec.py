"""What a training run is asked to do: train.py's arguments (Args) and how they are parsed,
overridden (--set KEY=VALUE) and written back as a command line.

config.json stores `dataclasses.asdict(Args)` under "args"; `--resume`, evaluate.py and ablate.py
rebuild the same Args from it, so every front end reads a run's settings the same way."""
from __future__ import annotations

import argparse
import dataclasses
import json
import shlex
from dataclasses import dataclass, field
from typing import Any

from common.settings import check_field_types
from data.config import DataConfig
from runner.agent_kwargs import read_agent_kwargs
from runner.presets import DEFAULT_PRESET, canonical_key

#: train.py's one-line description (its --help).
DESCRIPTION = "Train the neural batch sampler (and with it the AE and the predictor) on one category."


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
    preset: str = arg(DEFAULT_PRESET, "preset (batch-sampling): chu2020, noghredeh2025 or ours (runner/presets.py)")
    seed: int = arg(0, "seed of the split, the env and the agent")
    updates: int | None = arg(None, "agent episodes (batch-sampling: one AE update each); default 600 "
                                    "(residual-classifier: 3000), or with --resume the run's own")
    agent: str = arg("reinforce", "reinforce; sb3:<ALGO> for any Stable-Baselines3 (or sb3-contrib) "
                                  "algorithm with Discrete actions, e.g. sb3:PPO, sb3:A2C, sb3:DQN; or a "
                                  "non-learning baseline: uniform, random-walk, heuristic")
    learning_rate: float = arg(1e-4, "policy learning rate")
    gamma: float = arg(0.99, "discount")
    ent_coef: float = arg(0.01, "entropy bonus (REINFORCE, PPO, A2C)")
    agent_kwargs: dict[str, Any] | None = arg(None, "the agent's hyperparameters as a JSON object, e.g. "
                                              "'{\"learning_starts\": 50}', or a .json / .yaml file (rl-zoo3's "
                                              "form, one section per env id, is read too): any constructor "
                                              "argument of the SB3 algorithm, or a field of REINFORCE's "
                                              "ReinforceConfig; over --learning-rate, --gamma, --ent-coef")
    baseline_rate: float = arg(0.0, "REINFORCE with a baseline: moving-average rate of the per-step return "
                                    "baseline subtracted from the returns (0: plain REINFORCE, as the papers)")
    policy_input_size: int = arg(64, "the policy (REINFORCE's, or an SB3 algorithm's features extractor) sees "
                                     "the observation maps average-pooled to this side; 0: at their own size")
    device: str = arg("auto", "auto | cpu | cuda[:i]")
    threads: int = arg(0, "torch CPU threads (0: torch's default)")
    run_dir: str | None = arg(None, "run folder; default runs/<category>-<agent>-seed<seed>-<time>")
    checkpoint_every: int = arg(50, "episodes between checkpoints")
    no_tensorboard: bool = arg(False, "do not log to <run>/tensorboard even if tensorboard is installed")
    resume: str | None = arg(None, "run folder to continue from its last checkpoint")
    set: list[str] = arg(None, "setting overrides GROUP.NAME=VALUE (e.g. profiles.length=10, ae.width=16, "
                               "final.steps=300; runner/presets.py)")


#: Arguments added after runs were saved without them, with the value those runs trained with
#: (which is not today's default): a resumed or re-evaluated old run keeps computing what it did.
SAVED_WITHOUT = {"policy_input_size": 0}


def saved_args(saved: dict[str, Any], **override: Any) -> Args:
    """Args of a run's config.json ("args"), with `override` on top; raises TypeError on unknown keys
    and ConfigError on a value of the wrong type (a hand-edited file)."""
    args = Args(**{**SAVED_WITHOUT, **saved, **override})
    check_field_types(args)
    return args


def build_parser(defaults: bool = True) -> argparse.ArgumentParser:
    """The CLI of Args; with defaults=False, absent flags stay absent (to see what was given)."""
    parser = argparse.ArgumentParser(description=DESCRIPTION,
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter,
                                     argument_default=None if defaults else argparse.SUPPRESS)
    for f in dataclasses.fields(Args):
        flag = "--" + f.name.replace("_", "-")
        default = {} if not defaults else {"default": [] if f.name == "set" else f.default}
        if f.type == "bool":
            parser.add_argument(flag, action="store_true", help=f.metadata["help"], **default)
        elif f.name == "set":
            parser.add_argument(flag, action="append", metavar="KEY=VALUE", help=f.metadata["help"], **default)
        elif f.name == "agent_kwargs":
            parser.add_argument(flag, metavar="JSON|FILE", help=f.metadata["help"], **default)
        else:
            typ = {"int": int, "float": float, "int | None": int}.get(str(f.type), str)
            parser.add_argument(flag, type=typ, help=f.metadata["help"], **default)
    return parser


def parse_args(argv: list[str] | None = None) -> tuple[Args, set[str]]:
    """The arguments, and the names of those given on the command line (for --resume)."""
    parser = build_parser()
    args = Args(**vars(parser.parse_args(argv)))
    if args.agent_kwargs is not None:
        try:
            args.agent_kwargs = read_agent_kwargs(args.agent_kwargs, args.env)
        except ValueError as e:
            parser.error(f"--agent-kwargs: {e}")
    given = set(vars(build_parser(defaults=False).parse_args(argv))) - {"resume"}
    fixed = given - RESUME_OVERRIDES
    if args.resume is not None and "set" in fixed and all(is_export_setting(item) for item in args.set):
        fixed.discard("set")
    if args.resume is not None and fixed:
        # Only runtime settings (and the final predictor's fields) may change on resume; the rest
        # comes from the run's config.json.
        flags = lambda names: ", ".join("--" + k.replace("_", "-") for k in sorted(names))  # noqa: E731
        parser.error(f"with --resume only {flags(RESUME_OVERRIDES)} and --set final.*=... can be "
                     f"given; the run's config.json fixes the rest (got {flags(fixed)}"
                     + (f": {', '.join(i for i in args.set if not is_export_setting(i))}" if "set" in fixed else "") + ")")
    return args, given


#: Arguments that may differ when a run is resumed (none of them changes what is computed).
RESUME_OVERRIDES = {"updates", "device", "threads", "checkpoint_every", "no_tensorboard"}

def is_export_setting(item: str) -> bool:
    """Whether a --set KEY=VALUE only changes the final predictor (`final.*`, or the old
    `predictor_refit_*` names): `--resume RUN --set final.pool=prob` on a finished run re-fits the
    final predictor with it, the training untouched."""
    return canonical_key(item.partition("=")[0].strip()).startswith("final.")


def data_config(args: Args) -> DataConfig:
    """The DataConfig of a run's arguments (the split is drawn with the run's seed)."""
    return DataConfig(dataset=args.dataset, data_root=args.data_root, category=args.category,
                      image_size=args.image_size, n_labeled=args.n_labeled, split_seed=args.seed,
                      per_defect_type=args.per_defect_type, include_train_good=args.include_train_good,
                      include_unannotated=args.include_unannotated, holdout_fraction=args.holdout_fraction)


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
        elif isinstance(value, dict):
            words += [flag, json.dumps(value)]
        else:
            words += [flag, str(value)]
    return shlex.join(words)


