"""Build a run's env and agent from its arguments, through one small description per env kind.

`ENV_KINDS` says, for each env train.py can run, what differs between them: its default episode
count and config, how its config is read back from config.json, how its data is loaded, how it is
described to the user, what training leaves in the summary, and which evaluation it gets
("segmentation" or "image-level"). Adding an env means adding an entry, not `isinstance` branches.
"""
from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import gymnasium as gym
import torch

from agents.baselines import BASELINES, ORACLES
from agents.reinforce import REINFORCE, ReinforceConfig
from common.device import resolve_device
from common.seeding import seed_everything
from data.config import DataConfig
from data.loading import load_split, load_split_and_summary
from data.mvtec import DatasetError
from common.settings import ConfigError, leaf_keys, parse_value, to_dict, with_overrides
from envs.batch_sampling_env import BatchSamplingEnv
from envs.residual_classifier_env import (ClassifierConfig, ResidualClassifierEnv, classifier_config_from_dict,
                                          load_classifier_data)
from runner.ae_probe import choose_ae
from runner.ae_probe import describe as describe_probe
from runner.presets import MethodConfig, canonical_key, method_config, method_config_from_saved, parse_set
from runner.spec import Args


@dataclass(frozen=True)
class EnvKind:
    """What the run layer needs to know about one env (see the module docstring). A kind's
    `config` is what --preset / --set make and config.json records (a MethodConfig for the batch
    sampler: env, final predictor, probe; a ClassifierConfig for the classifier)."""

    name: str
    default_updates: int
    task: str  # "segmentation" (pixel masks: evaluate.py's method x metric table) or "image-level"
    default_config: Callable[[Args], Any]
    from_saved: Callable[[dict[str, Any], str], Any]
    """the config of a run's config.json (its sections, e.g. "env", "final", "probe"); the str names the file"""
    to_saved: Callable[[Any, Any], dict[str, Any]]
    """inverse of from_saved: the config.json sections of a config, with the env's own config as
    the env resolved it (patch size, stride, ...) when an env is given"""
    with_sets: Callable[[Any, list[str]], Any]
    """the config with --set KEY=VALUE items applied (ConfigError on a bad key or value)"""
    env_config: Callable[[Any], Any]
    """the part of the config the env itself takes"""
    with_device: Callable[[Any, str], Any]
    """the config with the env's device setting ('auto', 'cpu', 'cuda:0') replaced"""
    build: Callable[[DataConfig, Any], gym.Env]
    describe: Callable[[Any], str]
    summary: Callable[[Any], dict[str, Any]]
    prepare: Callable[[DataConfig, Any, int, torch.device], tuple[Any, list[dict[str, Any]]]] = \
        lambda data, config, seed, device: (config, [])
    """before a fresh run: the config to train with and a record of how it was chosen (the
    batch-sampling env probes its candidate AEs on D_l: runner.ae_probe)"""


def _build_batch_sampling(data: DataConfig, config: MethodConfig) -> BatchSamplingEnv:
    split, found = load_split_and_summary(data)
    print(f"data: {found}")
    return BatchSamplingEnv(split=split, data=data, config=config.env, render_mode="rgb_array")  # rendered on demand only


def _describe_batch_sampling(env: BatchSamplingEnv) -> str:
    p = env.process
    text = (f"device: {env.device}  |D_l|={p.n_labeled}  |D_u|={p.n_images - p.n_labeled} "
            f"image {env.image_size}px  patch {env.config.sampler.patch_size}px  alpha={p.alpha:.4f}")
    if env.config.predictor.heldout:
        text += (f"\nheld-out predictors for D_l images {p.heldout_images}" if p.heldout_images else
                 "\nheld-out predictors: none (D_l needs two defect images for one to be judged on unseen "
                 "defects); the best moment is chosen on l_pred")
    return text


def _summary_batch_sampling(env: BatchSamplingEnv) -> dict[str, Any]:
    p = env.process
    return {"ae_updates": p.updates, "reinits": p.reinits, "best_l_pred": p.best_l_pred,
            "best_update": None if p.best is None else p.best.update}


def _prepare_batch_sampling(data: DataConfig, config: MethodConfig, seed: int,
                            device: torch.device) -> tuple[MethodConfig, list[dict[str, Any]]]:
    if not config.probe.candidates:
        return config, []
    env, results = choose_ae(load_split(data), config.env, config.probe, seed, device)
    rows = describe_probe(results)
    print(f"AE probe ({config.probe.updates} updates of random patches per candidate; "
          "mean D_l profile's pixel AUROC over the second half):")
    for row in rows:
        print(f"  {'chosen' if row['chosen'] else '      '}  AUROC {row['dl_profile_auroc']:.3f}  "
              f"(loss maps {row['dl_loss_auroc']:.3f}, AE / mean-colour loss {row['ae_vs_mean_colour']:.2f}, "
              f"{row['seconds']:.0f} s)  {row['label']}")
    return dataclasses.replace(config, env=env), rows


def apply_sets(config: Any, items: list[str], parse: Callable[[Any, list[str]], dict[str, Any]],
               key: Callable[[str], str] = lambda k: k) -> Any:
    """`config` with --set items applied together; the ConfigError names the item whose setting
    (`key` of its KEY, the setting's dotted name) the error is about, or all of them."""
    try:
        return with_overrides(config, parse(config, items))
    except ConfigError as e:
        for item in reversed(items):  # the last item of a key is the one applied
            name = key(item.partition("=")[0].strip())
            if name and (f"{name}=" in str(e) or str(e).startswith(f"--set {item}")):
                raise ConfigError(str(e) if str(e).startswith("--set ") else f"--set {item}: {e}") from None
        raise ConfigError(f"--set {' '.join(items)}: {e}") from None


def _classifier_keys(config: ClassifierConfig, items: list[str]) -> dict[str, Any]:
    known = leaf_keys(config)
    overrides = {}
    for item in items:
        key, sep, text = item.partition("=")
        if not sep or key not in known:
            raise ConfigError(f"--set {item}: expected KEY=VALUE with KEY one of {', '.join(sorted(known))}")
        overrides[key] = parse_value(text, known[key])
    return overrides


def _build_classifier(data: DataConfig, config: Any) -> ResidualClassifierEnv:
    split, train_good = load_classifier_data(data)
    return ResidualClassifierEnv(split, train_good, data, config)


def _describe_classifier(env: ResidualClassifierEnv) -> str:
    n_anom = int(env.pool_labels.sum())
    return (f"device: {env.device}  labeled pool {len(env.pool)} ({n_anom} anomalous, {len(env.pool) - n_anom} "
            f"normal, of which {len(env.normal_holdout)} held-out train/good)  |D_u|={len(env.split.unlabeled)}  "
            f"AE on {len(env.ae_train)} train/good images, {env.config.ae_steps} steps  inputs: {env.config.inputs}")


ENV_KINDS: dict[str, EnvKind] = {
    "batch-sampling": EnvKind(
        "batch-sampling", 600, "segmentation", lambda args: method_config(args.preset),
        lambda saved, where: method_config_from_saved(saved, where),
        lambda config, env: {"env": to_dict(config.env if env is None else env.config), "final": to_dict(config.final),
                             "probe": to_dict(config.probe)},
        lambda config, items: apply_sets(config, items, parse_set, lambda k: canonical_key(k).removeprefix("env.")),
        lambda config: config.env,
        lambda config, device: dataclasses.replace(config, env=dataclasses.replace(config.env, device=device)),
        _build_batch_sampling, _describe_batch_sampling,
        _summary_batch_sampling, _prepare_batch_sampling),
    # 3000 decisions: the classifier's AE trains once, at the start.
    "residual-classifier": EnvKind(
        "residual-classifier", 3000, "image-level", lambda args: ClassifierConfig(),
        lambda saved, where: classifier_config_from_dict(saved["env"], where),
        lambda config, env: {"env": to_dict(config if env is None else env.config)},
        lambda config, items: apply_sets(config, items, _classifier_keys), lambda config: config,
        lambda config, device: dataclasses.replace(config, device=device),
        _build_classifier, _describe_classifier, lambda env: {}),
}


def env_kind(name: str) -> EnvKind:
    """The EnvKind of --env `name`, or SystemExit listing the known ones."""
    if name not in ENV_KINDS:
        raise SystemExit(f"--env {name}: expected one of {', '.join(ENV_KINDS)}")
    return ENV_KINDS[name]


def make_env(kind: EnvKind, data: DataConfig, config: Any) -> gym.Env:
    """The env of `kind` on `data`; bad data or settings exit with a message."""
    try:
        return kind.build(data, config)
    except DatasetError as e:
        raise SystemExit(f"dataset error: {e}") from None
    except ValueError as e:
        raise SystemExit(f"configuration error: {e}") from None


def prepare_config(kind: EnvKind, data: DataConfig, config: Any, seed: int) -> tuple[Any, list[dict[str, Any]]]:
    """kind.prepare with bad data or settings turned into a message; the global RNGs are re-seeded
    afterwards, so that a run whose probe keeps the preset's AE trains exactly as without one."""
    try:
        out = kind.prepare(data, config, seed, resolve_device(kind.env_config(config).device))
    except DatasetError as e:
        raise SystemExit(f"dataset error: {e}") from None
    except ValueError as e:
        raise SystemExit(f"configuration error: {e}") from None
    seed_everything(seed)
    return out


def make_agent(args: Args, env: gym.Env, device: torch.device) -> Any:
    """The agent named by --agent, with --agent-kwargs; every agent has learn / state_dict /
    load_state_dict. A bad --agent-kwargs key raises ValueError naming the accepted ones."""
    extra = dict(args.agent_kwargs or {})
    if args.agent == "reinforce":
        known = [f.name for f in dataclasses.fields(ReinforceConfig)]
        unknown = sorted(set(extra) - set(known))
        if unknown:
            raise ValueError(f"--agent-kwargs: unknown setting(s) {', '.join(unknown)} for reinforce; it accepts: "
                             f"{', '.join(known)}")
        config = ReinforceConfig(**{"learning_rate": args.learning_rate, "gamma": args.gamma, "ent_coef": args.ent_coef,
                                    "policy_input_size": args.policy_input_size, "baseline_rate": args.baseline_rate,
                                    **extra})
        return REINFORCE(env, config, device=device, seed=args.seed)
    if args.agent.startswith("sb3:"):
        from agents.sb3 import SB3Agent, algorithm_class, algorithm_settings

        name = args.agent[4:]
        cls = algorithm_class(name)
        kwargs: dict[str, Any] = {"learning_rate": args.learning_rate, "gamma": args.gamma}
        if "ent_coef" in inspect.signature(cls).parameters:
            kwargs["ent_coef"] = args.ent_coef
        try:
            algorithm_settings(cls, extra)
        except ValueError as e:
            raise ValueError(f"--agent-kwargs: {e}") from None
        return SB3Agent(env, name, device=device, seed=args.seed, policy_input_size=args.policy_input_size,
                        **{**kwargs, **extra})
    if args.agent in BASELINES:
        if extra:
            raise ValueError(f"--agent-kwargs: {args.agent} is a fixed sampler and takes no settings")
        return BASELINES[args.agent](env, seed=args.seed)
    if args.agent in ORACLES:  # diagnostics: they read D_u's masks (agents.baselines.OracleSampler)
        return ORACLES[args.agent](env, seed=args.seed)
    raise ValueError(f"expected 'reinforce', 'sb3:<ALGO>' (e.g. sb3:PPO), one of {sorted(BASELINES)} or a "
                     f"diagnostic oracle ({', '.join(sorted(ORACLES))})")


def too_short_warning(args: Args, agent: Any) -> str | None:
    """Why a run of args.updates episodes cannot train the agent's policy at all (an SB3
    algorithm's first gradient step comes later: DQN's learning_starts, PPO's n_steps), or None."""
    if not hasattr(agent, "first_update") or args.updates is None:
        return None
    steps, why = agent.first_update()
    total = args.updates * agent.episode_steps
    if steps <= total:
        return None
    return (f"--agent {args.agent} makes its first gradient step after {steps} env steps ({why}), but this run "
            f"has {args.updates} updates x {agent.episode_steps} steps = {total}: the policy will not train. "
            f"Raise --updates to at least {-(-steps // agent.episode_steps)}, or lower it with --agent-kwargs")


def build_run(args: Args) -> tuple[gym.Env, Any]:
    """The env and agent of a fresh run with these arguments, built exactly as train.py builds them
    (for tools that drive a run's env and agent themselves, e.g. scripts/profile_update.py)."""
    from runner.spec import data_config

    kind = env_kind(args.env)
    try:
        config = kind.with_sets(kind.default_config(args), args.set or [])
    except ConfigError as e:
        raise SystemExit(str(e)) from None
    env = make_env(kind, data_config(args), kind.with_device(config, args.device))
    try:
        return env, make_agent(args, env, resolve_device(args.device))
    except ValueError as e:
        raise SystemExit(f"--agent {args.agent}: {e}") from None
