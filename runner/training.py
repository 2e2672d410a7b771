"""Training a run: open (or resume) its folder, env and agent, train, export what evaluation needs.

`train(argv)` is train.py, in three steps:
  - `open_run`: parse the arguments, create or resume the run folder (config.json and split.json
    first), build the env and the agent, restore the checkpoint;
  - `train_loop`: the agent's `learn` loop with log.csv rows, TensorBoard, periodic checkpoints
    and the signals (Ctrl-C finishes the episode and checkpoints);
  - `runner.export.export`: best_profiles.npz, predictor.pt (with its decision) and bundle.pt;
then summary.json.
"""
from __future__ import annotations

import csv
import dataclasses
import math
import signal
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from common.device import check_device, resolve_device
from common.progress import progress
from common.seeding import seed_everything
from common.settings import ConfigError
from runner.export import export
from runner.factory import EnvKind, env_kind, make_agent, make_env, prepare_config, too_short_warning
from runner.folder import ACTION_COLUMNS, LOG, LOG_COLUMNS, RunFolder
from runner.frames import EpisodeFrames
from runner.spec import Args, data_config, parse_args, saved_args
from runner.watch import TrainingWatch


@dataclass
class OpenRun:
    """A run ready to train: its folder, arguments, config (the env kind's), env and agent."""

    run: RunFolder
    args: Args
    kind: EnvKind
    config: Any
    env: Any
    agent: Any
    wall0: float
    """wall time already spent (a resumed run's)"""


def _resume_settings(args: Args, given: set[str]) -> tuple[RunFolder, Args, EnvKind, Any, dict[str, Any]]:
    """The folder, arguments and config of a run to resume; `--set final.*` items (given on this
    command line) are applied to its config and recorded in its config.json."""
    run = RunFolder(args.resume)
    if not run.path.is_dir():
        raise SystemExit(f"--resume {run}: no such folder")
    if not run.has_checkpoint():
        raise SystemExit(f"--resume {run}: no checkpoint.pt there: {run.no_checkpoint_advice()}")
    run.lock("--resume")
    saved = run.read_config("--resume")
    export_sets = list(args.set) if "set" in given else []  # (args.set is otherwise the run's own)
    try:
        args = saved_args(saved["args"], **{k: getattr(args, k) for k in given - {"set"}}, resume=str(run))
        kind = env_kind(args.env)
        config = kind.from_saved(saved, str(run / "config.json"))
        if export_sets:  # final-predictor fields only (parse_args checked)
            config = kind.with_sets(config, export_sets)
            args.set = list(args.set or []) + export_sets
            saved.update(args=dataclasses.asdict(args), **kind.to_saved(config, None))
            saved["args"].pop("resume", None)
    except (TypeError, ValueError) as e:
        raise SystemExit(f"--resume {run}: {run / 'config.json'} does not hold train.py's settings ({e})") from None
    if "threads" in given and args.threads != saved["args"].get("threads"):
        print(f"warning: --threads {args.threads} differs from the run's {saved['args'].get('threads')}: torch's "
              "results depend on the number of threads, so from here on the numbers will differ from those "
              "of an uninterrupted run")
    if export_sets:
        run.write_config(saved)
        print(f"--set {' '.join(export_sets)}: config.json updated; the final predictor is fit with it "
              f"(evaluate the run again afterwards)")
    return run, args, kind, config, saved


def _check_args(args: Args) -> None:
    checks = [(args.updates is not None and args.updates < 0, f"--updates must be >= 0, got {args.updates}"),
              (args.checkpoint_every < 1, f"--checkpoint-every must be >= 1 episode, got {args.checkpoint_every}"),
              (args.threads < 0, f"--threads must be >= 0 (0: torch's default), got {args.threads}"),
              (args.policy_input_size < 0, f"--policy-input-size must be >= 0 (0: the maps at their own size), "
                                           f"got {args.policy_input_size}"),
              (not 0.0 <= args.baseline_rate <= 1.0, f"--baseline-rate must be in [0, 1] (0: plain REINFORCE), "
                                                    f"got {args.baseline_rate}"),
              (args.baseline_rate > 0 and args.agent != "reinforce",
               f"--baseline-rate is REINFORCE's; --agent {args.agent} does not use it")]
    for bad, message in checks:
        if bad:
            raise SystemExit(message)
    check_device(args.device)


def open_run(argv: list[str] | None = None) -> OpenRun:
    """Parse train.py's arguments and open the run they name: a new folder (config.json and
    split.json written, the env reset with the seed, a first checkpoint) or a resumed one (its
    checkpoint restored, log rows after it dropped)."""
    args, given = parse_args(argv)
    resume = args.resume is not None
    if resume:
        run, args, kind, config, saved = _resume_settings(args, given)
    else:
        kind = env_kind(args.env)
        if args.data_root is not None:  # absolute: --resume and evaluate.py may run from another folder
            args.data_root = str(Path(args.data_root).expanduser().resolve())
        try:
            config = kind.with_sets(kind.default_config(args), args.set or [])
        except ConfigError as e:
            raise SystemExit(f"--preset {args.preset}: {e}") from None
        args.updates = kind.default_updates if args.updates is None else args.updates
    _check_args(args)
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    seed_everything(args.seed)
    try:
        data = data_config(args)
    except ConfigError as e:  # e.g. --image-size 100000 (or that value in a resumed run's config.json)
        field = str(e).partition("=")[0].removeprefix("data.")
        flag = "--" + {"split_seed": "seed"}.get(field, field).replace("_", "-")
        raise SystemExit(f"{f'--resume {run}: config.json: ' if resume else flag + ': '}{e}") from None
    config = kind.with_device(config, args.device)
    probe: list[dict[str, Any]] = []
    if not resume:  # a resumed run's config.json holds the AE its probe chose
        config, probe = prepare_config(kind, data, config, args.seed)
    env = make_env(kind, data, config)
    frames = EpisodeFrames(env)  # the agent's view of the env: a strip of frames per phase of training
    try:
        agent = make_agent(args, frames, resolve_device(args.device))
    except ValueError as e:
        raise SystemExit(str(e) if str(e).startswith("--") else f"--agent {args.agent}: {e}") from None
    warning = too_short_warning(args, agent)
    if warning:
        print(f"WARNING: {warning}")
    if resume:
        run.verify_data(env.split, args.data_root, "--resume")
        ckpt = run.load_checkpoint(env.device)
        run.restore_checkpoint(ckpt, env, agent, "--resume")
        frames.attach(run.path, args.updates, agent.episodes)
        run.truncate_log(agent.episodes)
        print(f"resuming {run} at episode {agent.episodes}/{args.updates}")
        return OpenRun(run, args, kind, config, env, agent, float(ckpt["wall_s"]))
    run = RunFolder(args.run_dir or f"runs/{env.split.category}-{args.agent.replace(':', '-')}-seed{args.seed}-"
                                    f"{time.strftime('%Y%m%d-%H%M%S')}")
    if not run.has_checkpoint():
        run.check_new_run_folder("--run-dir")  # never overwrite a user's own files
    run.create("--run-dir")
    run.lock("--run-dir")
    if run.has_checkpoint():
        raise SystemExit(f"{run} already holds a run: use --resume {run} or another --run-dir")
    run.truncate_log(0)  # rows of an attempt that stopped before its first checkpoint
    run.write_config({"args": dataclasses.asdict(args), **kind.to_saved(config, env),
                      "data": dataclasses.asdict(data), **({"ae_probe": probe} if probe else {})})
    run.write_split(env.split)
    frames.attach(run.path, args.updates, 0)
    env.reset(seed=args.seed)
    opened = OpenRun(run, args, kind, config, env, agent, 0.0)
    save_checkpoint(opened, time.time())  # from here on, --resume always has something to continue from
    return opened


def save_checkpoint(r: OpenRun, t0: float) -> None:
    r.run.save_checkpoint({"env": r.env.state_dict(), "agent": r.agent.state_dict(), "wall_s": r.wall0 + time.time() - t0})


def tensorboard_writer(run: RunFolder, episodes: int) -> Any:
    """A SummaryWriter on <run>/tensorboard when tensorboard is installed, else None. On resume,
    `purge_step` hides the events written after the checkpoint, like truncate_log does for the CSV."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:  # torch raises this when the tensorboard package is missing
        return None
    return SummaryWriter(str(run / "tensorboard"), purge_step=episodes + 1 if episodes > 0 else None)


class StopSignals:
    """Ctrl-C: finish this episode, checkpoint, exit (a second Ctrl-C stops at once). SIGTERM (kill,
    a scheduler's stop, a dying ablate.py): the same checkpoint, then exit without the final fits
    (the sender waits seconds, not minutes). Installed for the `with` block only."""

    def __init__(self) -> None:
        self.requested = self.terminated = False

    def __enter__(self) -> "StopSignals":
        def on_sigint(signum: int, frame: Any) -> None:
            self.requested = True
            signal.signal(signal.SIGINT, signal.default_int_handler)
            print("\ninterrupt: saving a checkpoint after this episode (Ctrl-C again to abort)", flush=True)

        def on_sigterm(signum: int, frame: Any) -> None:
            self.requested = self.terminated = True
            print("\nterminated: saving a checkpoint after this episode", flush=True)

        signal.signal(signal.SIGINT, on_sigint)
        self._previous_term = signal.signal(signal.SIGTERM, on_sigterm)
        return self

    def __exit__(self, *exc: Any) -> None:
        signal.signal(signal.SIGINT, signal.default_int_handler)
        signal.signal(signal.SIGTERM, self._previous_term)


def train_loop(r: OpenRun, stop: StopSignals, t0: float) -> TrainingWatch:
    """The agent's learn loop until args.updates episodes (or a stop signal): one log.csv row per
    episode (and TensorBoard scalars), the TrainingWatch's warnings, a checkpoint every
    args.checkpoint_every episodes and at a stop. Returns the watch (its warnings)."""
    args, run = r.args, r.run
    log_path = run / LOG
    new_log = not log_path.exists()
    writer = None if args.no_tensorboard else tensorboard_writer(run, r.agent.episodes)
    watch = TrainingWatch()
    shown = {"ae": ("ae_loss", "{:.4f}"), "pred": ("l_pred", "{:.4f}"), "R": ("return", "{:.3f}"),
             "beta": ("beta", "{:.2f}")}
    with open(log_path, "a", newline="") as log_file, \
            progress(args.updates, "training (AE updates)", initial=r.agent.episodes) as bar:
        log = csv.DictWriter(log_file, LOG_COLUMNS, extrasaction="ignore")
        if new_log:
            log.writeheader()

        def callback(stats: dict[str, Any]) -> bool:
            stats["wall_s"] = round(r.wall0 + time.time() - t0, 2)
            stats.update(zip(ACTION_COLUMNS, stats.pop("action_hist", ())))
            for warning in watch.update(stats):
                bar.write(f"WARNING: {warning}")
            log.writerow(stats)
            if writer is not None:
                for key in LOG_COLUMNS[1:]:
                    value = stats.get(key)
                    if isinstance(value, (int, float)) and math.isfinite(value):
                        writer.add_scalar(f"train/{key}", value, stats["episode"])
            bar.update(1)
            bar.set_postfix({k: f.format(stats[c]) for k, (c, f) in shown.items() if isinstance(stats.get(c), (int, float))},
                            refresh=False)
            if stats["episode"] % args.checkpoint_every == 0 or stop.requested:
                log_file.flush()
                save_checkpoint(r, t0)
            return not stop.requested

        r.agent.learn(args.updates, callback)
    if writer is not None:
        writer.close()
    return watch


def train(argv: list[str] | None = None) -> Path:
    """train.py: open (or resume) the run, train, export; returns the run folder."""
    r = open_run(argv)
    print(f"run folder: {r.run}\n{r.kind.describe(r.env)}")
    t0 = time.time()
    with StopSignals() as stop:
        watch = train_loop(r, stop, t0)
    save_checkpoint(r, t0)
    if stop.terminated:
        print(f"terminated at episode {r.agent.episodes}, checkpoint saved. Continue with:  "
              f"python train.py --resume {r.run}", flush=True)
        raise SystemExit(128 + signal.SIGTERM)
    summary: dict[str, Any] = {"episodes": r.agent.episodes}
    if r.kind.task == "segmentation" and r.env.process.best is not None:
        export(r.env, r.run, r.config.final, r.args.seed)
    summary.update(r.kind.summary(r.env))
    summary.update(wall_s=round(r.wall0 + time.time() - t0, 1), device=str(r.env.device),
                   finished=r.agent.episodes >= r.args.updates, warnings=list(watch.warnings.values()))
    r.run.write_summary(summary)
    if summary["finished"]:
        print(f"done in {summary['wall_s']} s. Evaluate with:  python evaluate.py {r.run}")
    else:
        print(f"stopped at episode {r.agent.episodes}. Continue with:  python train.py --resume {r.run}")
    return r.run.path
