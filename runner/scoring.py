"""Scoring a policy trained outside train.py: let it pick the patches of N AE updates and write the
run folder that evaluate.py and predict.py read.

    from runner.scoring import score_policy

    model = PPO("MultiInputPolicy", env, policy_kwargs=policy_kwargs()).learn(20_000)
    score_policy(model, env, "runs/my-ppo", updates=100)    # env: the one it trained in, continued
    # python evaluate.py runs/my-ppo ; python predict.py runs/my-ppo images/ --out pred/

The policy may be an SB3 model (its `predict`, with a recurrent policy's state carried through
each episode and MaskablePPO's action masks), an agent of this package, or any callable
observation -> action. The folder is written by the code train.py uses (runner.training.train_loop
for log.csv, runner.export.export for best_profiles.npz, predictor.pt and bundle.pt), with the
env preset's final predictor unless `method` says otherwise. It holds no checkpoint: the policy
is not this package's to save, so the folder is for evaluate.py and predict.py, not --resume.
"""
from __future__ import annotations

import dataclasses
import inspect
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np

from agents.rollout import play_episode
from data.loading import load_split
from data.split import Split
from envs.batch_sampling_env import BatchSamplingEnv
from envs.env_kwargs import DEFAULT_ENV_PRESET
from runner.export import export
from runner.factory import ENV_KINDS
from runner.folder import PROFILES, RunFolder
from runner.frames import EpisodeFrames
from runner.presets import MethodConfig, method_config
from runner.spec import Args
from runner.training import OpenRun, StopSignals, train_loop


class PolicyActions:
    """obs -> action of any policy: an SB3 model or an agent of this package (`predict`), or a
    plain callable. `new_episode()` clears a recurrent policy's state."""

    def __init__(self, policy: Any, env: gym.Env, deterministic: bool = False) -> None:
        self.policy, self.env, self.deterministic = policy, env, deterministic
        predict = getattr(policy, "predict", None)
        self.predict = predict if callable(predict) else None
        if self.predict is None and not callable(policy):
            raise ValueError(f"policy {type(policy).__name__}: expected an object with predict(obs) (an SB3 model, "
                             "an agent) or a callable obs -> action")
        self.params = inspect.signature(self.predict).parameters if self.predict is not None else {}
        self.new_episode()

    def new_episode(self) -> None:
        self.state, self.start = None, True

    def __call__(self, obs: dict[str, np.ndarray]) -> Any:
        if self.predict is None:
            action = self.policy(obs)
        else:
            kwargs: dict[str, Any] = {"deterministic": self.deterministic}
            if "state" in self.params:  # SB3: recurrent policies carry a state through the episode
                kwargs.update(state=self.state, episode_start=np.array([self.start]))
            if "action_masks" in self.params:  # sb3-contrib's MaskablePPO
                kwargs["action_masks"] = self.env.get_wrapper_attr("action_masks")()
            action = self.policy.predict(obs, **kwargs)
            if isinstance(action, tuple):
                action, self.state = action
        self.start = False
        if isinstance(action, np.ndarray) and action.size == 1:
            action = action.reshape(())  # the env refuses anything but an integer
        return action


class PolicyAgent:
    """A policy behind the verbs train_loop drives (learn, episodes, state_dict); it does not learn."""

    def __init__(self, env: gym.Env, actions: PolicyActions) -> None:
        self.env, self.actions, self.episodes = env, actions, 0

    def learn(self, total_episodes: int, callback: Callable[[dict[str, Any]], bool] | None = None) -> "PolicyAgent":
        while self.episodes < total_episodes:
            self.actions.new_episode()
            episode = play_episode(self.env, self.actions)
            self.episodes += 1
            if callback is not None and callback(episode.stats(self.episodes)) is False:
                break
        return self

    def state_dict(self) -> dict[str, Any]:
        return {"algorithm": "policy", "episodes": self.episodes}


def score_policy(policy: Any, env: gym.Env | Mapping[str, Any], run_dir: str | Path, updates: int, *,
                 method: MethodConfig | None = None, seed: int = 0, deterministic: bool = False) -> Path:
    """Drive `env` with `policy` for `updates` AE updates and write a scored run folder at `run_dir`.

    `env`: a BatchSamplingEnv (wrapped or not; one that has run continues where it is, a fresh one
    is reset with `seed`), or the keyword arguments to make one. Its data must come from its
    DataConfig, since evaluate.py reloads the images from it. `method`: the final predictor and AE
    probe to record (default: those of the env's preset, runner.presets; chu2020's, gym.make's
    default, when its settings are no preset's). `seed` also seeds the final predictor's fit.
    Returns the folder. ValueError on an env or folder that cannot work."""
    env = BatchSamplingEnv(**env) if isinstance(env, Mapping) else env
    base = env.unwrapped if isinstance(env, gym.Env) else None
    if not isinstance(base, BatchSamplingEnv):
        raise ValueError(f"env: expected a BatchSamplingEnv (or the gymnasium env wrapping one), got {type(env).__name__}")
    if updates < 0:
        raise ValueError(f"updates={updates}: must be >= 0")
    if not _same_images(load_split(base.data_config), base.split):
        raise ValueError("env: its images are not those its DataConfig loads (an env made from an in-memory split?); "
                         "evaluate.py reloads them from the DataConfig: make the env from one")
    method = method or dataclasses.replace(method_config(base.preset or DEFAULT_ENV_PRESET), env=base.config)
    run = _new_run_folder(run_dir)
    args = _scoring_args(base, policy, updates, seed, run)
    kind = ENV_KINDS["batch-sampling"]
    run.write_config({"args": dataclasses.asdict(args), **kind.to_saved(method, base),
                      "data": dataclasses.asdict(base.data_config)})
    run.write_split(base.split)
    if not base.process.started:
        env.reset(seed=seed)
    frames = EpisodeFrames(env)
    frames.attach(run.path, updates, 0)
    agent = PolicyAgent(frames, PolicyActions(policy, env, deterministic))
    t0 = time.time()
    watch = train_loop(OpenRun(run, args, kind, method, base, agent, 0.0), StopSignals(), t0)
    if base.process.best is None:
        raise ValueError(f"no best moment after {base.process.updates} AE updates (it needs full loss profiles, "
                         f"profiles.length={base.config.profiles.length}): score with more updates")
    export(base, run, method.final, seed)
    run.write_summary({"episodes": agent.episodes, **kind.summary(base), "wall_s": round(time.time() - t0, 1),
                       "device": str(base.device), "finished": True, "warnings": list(watch.warnings.values()),
                       "policy": args.agent})
    return run.path


def _same_images(a: Split, b: Split) -> bool:
    """Whether two splits hold the same images (names, pixels, masks) in each part."""
    parts = ("labeled", "unlabeled", "extra_unlabeled")
    pairs = [(x, y) for part in parts for x, y in zip(getattr(a, part), getattr(b, part))]
    return (all(len(getattr(a, part)) == len(getattr(b, part)) for part in parts)
            and all(x.name == y.name and np.array_equal(x.image, y.image) and np.array_equal(x.mask, y.mask)
                    for x, y in pairs))


def _new_run_folder(run_dir: str | Path) -> RunFolder:
    run = RunFolder(run_dir)
    try:
        run.create("run_dir")
        run.lock("run_dir")
    except SystemExit as e:
        raise ValueError(str(e)) from None
    if run.has_checkpoint() or (run / PROFILES).exists():
        raise ValueError(f"run_dir={str(run)!r} already holds a run: choose another folder")
    run.truncate_log(0)
    return run


def _scoring_args(env: BatchSamplingEnv, policy: Any, updates: int, seed: int, run: RunFolder) -> Args:
    """config.json's "args" of a scored run: the env's data, the seed, and the policy as the agent."""
    d = env.data_config
    return Args(dataset=d.dataset, data_root=d.data_root, category=d.category, image_size=d.image_size,
                n_labeled=d.n_labeled, per_defect_type=d.per_defect_type, include_train_good=d.include_train_good,
                include_unannotated=d.include_unannotated, holdout_fraction=d.holdout_fraction,
                preset=env.preset or DEFAULT_ENV_PRESET, seed=seed, updates=updates,
                agent=f"policy:{type(policy).__name__}", run_dir=str(run), checkpoint_every=updates + 1,
                no_tensorboard=True)
