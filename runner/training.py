"""Training a run: build (or resume) its env and agent, train, checkpoint, export what evaluation needs.

`train(argv)` is train.py. Around the agent's `learn` loop it owns the run folder's training
artifacts: config and split first, then log.csv rows and periodic checkpoints (Ctrl-C finishes
the episode and checkpoints), then best_profiles.npz, predictor.pt, bundle.pt and summary.json.
"""
from __future__ import annotations

import csv
import dataclasses
import math
import signal
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from common.device import resolve_device
from common.seeding import seed_everything
from envs.batch_sampling_env import BatchSamplingEnv
from envs.config import config_to_dict
from envs.refit import final_predictor, heldout_final_maps
from evaluation.decisions import nbs_method, run_heldout_maps
from models.crf import CRFConfig
from models.predictor import PredictorEnsemble, predictor_from_saved, probability_maps
from models.segmenter import BundleMeta, save_bundle
from runner.factory import env_kind, make_agent, make_env, prepare_config
from runner.folder import ACTION_COLUMNS, BUNDLE, LOG, LOG_COLUMNS, RunFolder
from runner.spec import apply_overrides, data_config, parse_args, saved_args


def export_results(env: BatchSamplingEnv, run: RunFolder, seed: int) -> None:
    """best_profiles.npz and predictor.pt (the predictor of the best moment, or with
    predictor_refit_steps the final predictor fit on the best labeled profiles, seeded by `seed`):
    what evaluate.py needs, nothing of the agent."""
    profiles, process, split, c = env.best_profiles(), env.process, env.split, env.config
    images_l, masks_l = np.stack([s.image for s in split.labeled]), np.stack([s.mask for s in split.labeled])
    if c.predictor_refit_heldout and c.predictor_refit_steps > 0:  # its recipe on D_l images it does not see
        kinds = 2 if c.predictor_refit_image_members else 1
        print(f"leave-one-out fits of the final predictor ({kinds * len(images_l)} x {c.predictor_refit_steps} steps)")
        profiles["labeled_refit_heldout_prob"], profiles["labeled_refit_heldout_index"] = heldout_final_maps(
            profiles["labeled"], images_l, masks_l, c, seed, env.device)
    run.write_best_profiles(profiles, split, process.best["update"], process.best_l_pred)
    state_dict, norm, refit, members = process.best["predictor"], "group", c.predictor_refit_steps > 0, 1
    image_members = 0
    if refit:  # ours: fresh predictors fit on the best labeled profiles with the U-Net's recipe
        members = c.predictor_refit_members + c.predictor_refit_image_members
        image_members = c.predictor_refit_image_members
        print(f"fitting the final predictor on the best labeled profiles ({members} x {c.predictor_refit_steps} steps"
              + (f", {image_members} of them on the image only)" if image_members else ")"))
        net = final_predictor(profiles["labeled"], images_l, masks_l, c, seed, env.device)
        state_dict = net.state_dict()
        norm = getattr(net.members[0] if isinstance(net, PredictorEnsemble) else net, "norm", "group")
    fields = {"profile_length": c.profile_length, "width": c.predictor_width, "inputs": c.predictor_inputs,
              "skip": c.predictor_skip, "arch": c.predictor_arch, "norm": norm, "refit": refit, "ensemble": members,
              "image_members": image_members, "pool": c.predictor_refit_pool if refit else "prob",
              "profile_member": bool(refit and c.predictor_refit_profile_member)}
    run.write_predictor({"state_dict": state_dict, "alpha": process.alpha, **fields})
    export_bundle(env, run, fields, state_dict, profiles, seed)


def export_bundle(env: BatchSamplingEnv, run: RunFolder, fields: dict[str, Any], state_dict: dict[str, torch.Tensor],
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
    heldout = run_heldout_maps(profiles, fields["refit"], masks_l, np.stack([s.image for s in split.labeled]))
    nbs = nbs_method(prob_u, fields["refit"], heldout, float(masks_l.mean()))
    meta = BundleMeta(image_size=env.image_size, patch_size=c.patch_size, ae=dataclasses.asdict(c.ae),
                      absolute_error=c.absolute_error, loss_map=c.loss_map, loss_map_stride=c.loss_map_stride,
                      predictor=fields, threshold=0.5 if nbs.threshold is None else float(nbs.threshold),
                      threshold_rule=f"{nbs.note}; {nbs.crf_choice}",
                      crf=dataclasses.asdict(CRFConfig()) if nbs.crf else None,
                      source={"run": str(run.path.resolve()), "category": split.category, "seed": seed,
                              "best_update": int(env.process.best["update"])})
    save_bundle(run / BUNDLE, meta, env.process.best["snapshots"], state_dict)


def tensorboard_writer(run: RunFolder, episodes: int) -> Any:
    """A SummaryWriter on <run>/tensorboard when tensorboard is installed, else None. On resume,
    `purge_step` hides the events written after the checkpoint, like truncate_log does for the CSV."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:  # torch raises this when the tensorboard package is missing
        return None
    # purge_step: events of steps >= it (episodes after the checkpoint) are dropped from display.
    return SummaryWriter(str(run / "tensorboard"), purge_step=episodes + 1 if episodes > 0 else None)


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


def train(argv: list[str] | None = None) -> Path:
    """train.py: parse the arguments, build (or resume) the run, train, export; returns the run folder."""
    args, given = parse_args(argv)
    resume = args.resume is not None
    if resume:
        run = RunFolder(args.resume)
        if not run.path.is_dir():
            raise SystemExit(f"--resume {run}: no such folder")
        if not run.has_checkpoint():
            raise SystemExit(f"--resume {run}: no checkpoint.pt there: {run.no_checkpoint_advice()}")
        run.lock("--resume")
        saved = run.read_config("--resume")
        try:
            args = saved_args(saved["args"], **{k: getattr(args, k) for k in given}, resume=str(run))
            kind = env_kind(args.env)
            env_config = kind.config_from_dict(saved["env"])
        except (TypeError, ValueError) as e:
            raise SystemExit(f"--resume {run}: {run / 'config.json'} does not hold train.py's settings ({e})") from None
        export_sets = list(args.set) if "set" in given else []  # (args.set is otherwise the run's own)
        if export_sets:  # final-predictor fields only (parse_args checked); config.json records them below
            env_config = apply_overrides(env_config, export_sets, kind.config_from_dict)
            try:
                env_config.resolved(int(saved["data"]["image_size"]))
            except ValueError as e:
                raise SystemExit(f"--resume {run} --set: {e}") from None
            saved["env"] = config_to_dict(env_config)
        if "threads" in given and args.threads != saved["args"].get("threads"):
            print(f"warning: --threads {args.threads} differs from the run's {saved['args'].get('threads')}: torch's "
                  "results depend on the number of threads, so from here on the numbers will differ from those "
                  "of an uninterrupted run")
    else:
        kind = env_kind(args.env)
        if args.data_root is not None:  # absolute: --resume and evaluate.py may run from another folder
            args.data_root = str(Path(args.data_root).expanduser().resolve())
        try:
            env_config = apply_overrides(kind.default_config(args), args.set or [], kind.config_from_dict)
        except ValueError as e:
            raise SystemExit(f"--preset {args.preset}: {e}") from None
        args.updates = kind.default_updates if args.updates is None else args.updates
    if args.updates is not None and args.updates < 0:
        raise SystemExit(f"--updates must be >= 0, got {args.updates}")
    if args.checkpoint_every < 1:
        raise SystemExit(f"--checkpoint-every must be >= 1 episode, got {args.checkpoint_every}")
    if args.policy_input_size < 0:
        raise SystemExit(f"--policy-input-size must be >= 0 (0: the maps at their own size), got {args.policy_input_size}")
    if not 0.0 <= args.baseline_rate <= 1.0:
        raise SystemExit(f"--baseline-rate must be in [0, 1] (0: plain REINFORCE), got {args.baseline_rate}")
    if args.baseline_rate > 0 and args.agent != "reinforce":
        raise SystemExit(f"--baseline-rate is REINFORCE's; --agent {args.agent} does not use it")
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    seed_everything(args.seed)

    data = data_config(args)
    env_config = dataclasses.replace(env_config, device=args.device)
    probe: list[dict[str, Any]] = []
    if not resume:  # a resumed run's config.json holds the AE its probe chose
        env_config, probe = prepare_config(kind, data, env_config, args.seed)
    env = make_env(kind, data, env_config)
    split = env.split
    if resume:
        run.verify_data(split, args.data_root, "--resume")
    try:
        agent = make_agent(args, env, resolve_device(args.device))
    except ValueError as e:
        raise SystemExit(f"--agent {args.agent}: {e}") from None

    if resume:
        ckpt = run.load_checkpoint(env.device)
        try:
            env.load_state_dict(ckpt["env"])
        except ValueError as e:  # e.g. a checkpoint of an older format
            raise SystemExit(f"--resume {run}: {e}") from None
        agent.load_state_dict(ckpt["agent"])
        wall0 = float(ckpt["wall_s"])
        run.truncate_log(agent.episodes)
        if export_sets:
            saved["args"]["set"] = list(saved["args"].get("set") or []) + export_sets
            args.set = saved["args"]["set"]
            run.write_config(saved["args"], saved["env"], saved["data"], saved.get("ae_probe"))
            print(f"--set {' '.join(export_sets)}: config.json updated; the final predictor is fit with it "
                  f"(evaluate the run again afterwards)")
        print(f"resuming {run} at episode {agent.episodes}/{args.updates}")
    else:
        run = RunFolder(args.run_dir or f"runs/{split.category}-{args.agent.replace(':', '-')}-seed{args.seed}-"
                                        f"{time.strftime('%Y%m%d-%H%M%S')}")
        run.create("--run-dir")
        run.lock("--run-dir")
        if run.has_checkpoint():
            raise SystemExit(f"{run} already holds a run: use --resume {run} or another --run-dir")
        run.truncate_log(0)  # rows of an attempt that stopped before its first checkpoint
        run.write_config(dataclasses.asdict(args), config_to_dict(env.config), dataclasses.asdict(data), ae_probe=probe)
        run.write_split(split)
        env.reset(seed=args.seed)
        wall0 = 0.0
    print(f"run folder: {run}\n{kind.describe(env)}")

    stop = {"requested": False, "terminated": False}

    def on_sigint(signum: int, frame: Any) -> None:
        # First Ctrl-C: finish this episode, checkpoint, exit. Second: stop at once.
        stop["requested"] = True
        signal.signal(signal.SIGINT, signal.default_int_handler)
        tqdm.write("interrupt: saving a checkpoint after this episode (Ctrl-C again to abort)")

    def on_sigterm(signum: int, frame: Any) -> None:
        # kill, a scheduler's stop, a dying ablate.py: the same checkpoint, then exit at once
        # without the final fits (the sender waits seconds, not minutes).
        stop["requested"] = stop["terminated"] = True
        tqdm.write("terminated: saving a checkpoint after this episode")

    signal.signal(signal.SIGINT, on_sigint)
    previous_sigterm = signal.signal(signal.SIGTERM, on_sigterm)
    t0 = time.time()

    def checkpoint() -> None:
        run.save_checkpoint({"env": env.state_dict(), "agent": agent.state_dict(), "wall_s": wall0 + time.time() - t0})

    if not resume:
        checkpoint()  # from here on, --resume always has something to continue from
    log_path = run / LOG
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
    signal.signal(signal.SIGTERM, previous_sigterm)
    checkpoint()
    if stop["terminated"]:
        print(f"terminated at episode {agent.episodes}, checkpoint saved. Continue with:  "
              f"python train.py --resume {run}", flush=True)
        raise SystemExit(128 + signal.SIGTERM)
    summary: dict[str, Any] = {"episodes": agent.episodes}
    if kind.task == "segmentation" and env.process.best is not None:
        export_results(env, run, args.seed)
    summary.update(kind.summary(env))
    summary.update(wall_s=round(wall0 + time.time() - t0, 1), device=str(env.device),
                   finished=agent.episodes >= args.updates, warnings=list(watch.warnings.values()))
    run.write_summary(summary)
    if summary["finished"]:
        print(f"done in {summary['wall_s']} s. Evaluate with:  python evaluate.py {run}")
    else:
        print(f"stopped at episode {agent.episodes}. Continue with:  python train.py --resume {run}")
    return run.path
