"""An ablation sweep: agents x seeds x categories x presets, one train.py + evaluate.py run per cell.

ablate.py's docstring says what a sweep does and writes. Each cell is an ordinary run folder,
trained and evaluated by train.py and evaluate.py in their own processes (so a cell's numbers are
exactly those of a standalone run, and a crashed cell cannot take the sweep with it); the tables
are built from the evaluated folders alone.
"""
from __future__ import annotations

import argparse
import itertools
import os
import queue
import signal
import sys
import threading
import time
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import MISSING, asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Callable

from agents.baselines import BASELINES
from common.device import check_device, resolve_device
from envs.actions import JUMP
from evaluation.report import HEADLINE_METHOD
from evaluation.sweep import (PAIRED_REFERENCES, SAMPLER_WINDOW, SWEEP_METRICS, cell_row, labelled_method_rows,
                              markdown_methods, markdown_paired, markdown_sampler_summary, markdown_summary,
                              paired_differences, summarize, summarize_methods, write_csv)
from common.files import RunFileError, make_writable_folder, read_json, write_text_atomic
from runner.agent_kwargs import sweep_agent_args
from runner.checks import check_grid, has_overlays, is_int
from runner.children import run_child, stop_children
from runner.evaluation import build_parser as evaluate_parser
from runner.evaluation import evaluation_settings, settings_from_args
from runner.folder import CHECKPOINTS, CONFIG, METRICS, SUMMARY, RunFolder
from runner.spec import SAVED_WITHOUT, Args
from runner.spec import parse_args as parse_train_args

DEFAULT_AGENTS = ["reinforce", "sb3:PPO", "sb3:A2C", *BASELINES]
#: The folder of train.py and evaluate.py, which every cell runs in its own process.
ROOT = Path(__file__).resolve().parent.parent
#: train.py settings that define a cell's results; a folder run with other values is not reused.
FIXED_SETTINGS = ["category", "preset", "agent", "seed", "dataset", "data_root", "image_size", "n_labeled",
                  "per_defect_type", "include_train_good", "include_unannotated", "set", "policy_input_size",
                  "baseline_rate", "agent_kwargs"]
#: train.py's defaults, for settings that runs saved before the setting existed trained with.
TRAIN_DEFAULTS = {f.name: f.default for f in fields(Args) if f.default is not MISSING}


@dataclass(frozen=True)
class Cell:
    """One run of the grid, and where it lives."""

    category: str
    preset: str
    agent: str
    seed: int

    def folder(self, out: Path) -> Path:
        return out / self.category / self.preset / self.agent.replace(":", "-") / f"seed{self.seed}"


@dataclass
class Plan:
    """What every cell shares: train.py settings and the per-cell resources."""

    out: str
    updates: int | None
    train_args: list[str]  # --data-root/--image-size/... passed through to train.py
    threads: int
    overlays: int
    evaluate_args: tuple[str, ...] = ()  # --baselines/--unet-steps/--ae-steps/--crf-iterations for evaluate.py
    agent_args: dict[str, tuple[str, ...]] = field(default_factory=dict)  # per agent (runner.agent_kwargs)


def cell_train_args(cell: Cell, plan: Plan) -> list[str]:
    args = ["--category", cell.category, "--preset", cell.preset, "--agent", cell.agent,
            "--seed", str(cell.seed), *plan.train_args]
    args += plan.agent_args.get(cell.agent, ())
    return args + (["--updates", str(plan.updates)] if plan.updates is not None else [])


def wanted_evaluation(plan: Plan) -> dict[str, Any]:
    """What evaluate.py records in metrics.json ("evaluation": CRF and baseline settings) when run
    with the plan's flags: the evaluation half of a cell's identity."""
    flags = evaluate_parser().parse_args(["<run>", *plan.evaluate_args])
    return evaluation_settings(*settings_from_args(flags))


def cell_status(folder: Path, updates: int | None, evaluation: dict[str, Any] | None = None,
                overlays: int = 0) -> str:
    """'new', 'resume' (checkpoint, not finished), 'evaluate' (trained, not evaluated, evaluated
    with settings other than `evaluation`, see wanted_evaluation, or with fewer than `overlays`
    overlay images, -1: all) or 'done'."""
    if not (folder / CHECKPOINTS[0]).is_file():
        return "new"
    summary_path = folder / SUMMARY
    if not summary_path.is_file():
        return "resume"
    try:  # written atomically; an unreadable one (an older version, a hand edit) means: do it again
        summary = read_json(summary_path, keys=("episodes",))
        target = updates if updates is not None else read_json(folder / CONFIG, keys=("args",))["args"]["updates"]
    except (RunFileError, TypeError, KeyError):
        return "resume"
    if not is_int(summary["episodes"]) or not isinstance(summary.get("finished", False), bool) or not is_int(target):
        print(f"warning: {summary_path} or {folder / CONFIG} holds values of the wrong type (edited by hand?): "
              "the cell is resumed, which writes them again")
        return "resume"
    if not summary.get("finished") or summary["episodes"] < target:
        return "resume"
    metrics_path = folder / METRICS
    if not metrics_path.is_file() or metrics_path.stat().st_mtime < summary_path.stat().st_mtime:
        return "evaluate"
    try:
        metrics = read_json(metrics_path)
    except RunFileError:
        return "evaluate"
    if evaluation is not None and metrics.get("evaluation") != evaluation:
        return "evaluate"
    if overlays and not has_overlays(metrics, overlays):
        return "evaluate"
    return "done"


def check_reusable(cell: Cell, plan: Plan, out: Path) -> str | None:
    """Why the cell's existing folder cannot be reused for this plan (None if it can)."""
    config_path = cell.folder(out) / CONFIG
    if not (cell.folder(out) / CHECKPOINTS[0]).is_file() or not config_path.is_file():
        return None
    wanted, _ = parse_train_args(cell_train_args(cell, plan))  # as train.py would parse them
    saved = read_json(config_path, keys=("args",))["args"]
    if not isinstance(saved, dict):
        return f"{config_path}: \"args\" is not a mapping of train.py's settings"
    saved = {**TRAIN_DEFAULTS, **SAVED_WITHOUT, **saved}
    diffs = [f"{k}: {saved.get(k)!r} there, {getattr(wanted, k)!r} now" for k in FIXED_SETTINGS
             if saved.get(k) != getattr(wanted, k)]
    return "; ".join(diffs) or None


def run_cell(cell: Cell, plan: Plan, device: str) -> dict[str, Any]:
    """Train (or resume) and evaluate one cell in subprocesses; returns its status and timings.

    Safe to call again on the same folder: it does only what is left to do."""
    out = Path(plan.out)
    folder = cell.folder(out)
    evaluation = wanted_evaluation(plan)
    status = cell_status(folder, plan.updates, evaluation, plan.overlays)
    result: dict[str, Any] = {"cell": asdict(cell), "folder": str(folder), "device": device,
                              "before": status, "train_s": 0.0, "eval_s": 0.0}
    if status == "done":
        return {**result, "status": "skipped"}
    folder.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "OMP_NUM_THREADS": str(plan.threads), "MKL_NUM_THREADS": str(plan.threads)}
    runtime = ["--device", device, "--threads", str(plan.threads)]
    if status in ("new", "resume"):
        if status == "new":
            cmd = [*cell_train_args(cell, plan), "--run-dir", str(folder)]
        else:
            cmd = ["--resume", str(folder)] + (["--updates", str(plan.updates)] if plan.updates else [])
        t0 = time.time()
        with open(folder / "train.log", "a") as log:
            rc = run_child([sys.executable, str(ROOT / "train.py"), *cmd, *runtime], log, env)
        result["train_s"] = round(time.time() - t0, 1)
        if rc != 0:
            return {**result, "status": "failed", "log": str(folder / "train.log")}
        if cell_status(folder, plan.updates, evaluation) != "evaluate":
            return {**result, "status": "interrupted"}
    t0 = time.time()
    with open(folder / "evaluate.log", "w") as log:
        rc = run_child([sys.executable, str(ROOT / "evaluate.py"), str(folder), "--device", device,
                        "--overlays", str(plan.overlays), "--baseline-cache", str(out / "baseline_cache"),
                        *plan.evaluate_args], log, env)
    result["eval_s"] = round(time.time() - t0, 1)
    if rc != 0:
        return {**result, "status": "failed", "log": str(folder / "evaluate.log")}
    return {**result, "status": "done"}


def run_local(cells: list[Cell], plan: Plan, workers: int, devices: list[str],
              report: Callable[[dict[str, Any]], None]) -> None:
    """At most `workers` cells at once; worker slot k runs on devices[k % len(devices)].

    Ctrl-C reaches the running train.py processes too (same process group): they checkpoint and
    stop, no new cell starts, and the next run of the same command resumes them."""
    slots: queue.Queue[int] = queue.Queue()
    for k in range(workers):
        slots.put(k)

    def job(cell: Cell) -> dict[str, Any]:
        slot = slots.get()
        try:
            return run_cell(cell, plan, devices[slot % len(devices)])
        finally:
            slots.put(slot)

    pool = ThreadPoolExecutor(max_workers=workers)
    futures: set[Future] = {pool.submit(job, c) for c in cells}
    try:
        while futures:
            done, futures = wait(futures, return_when=FIRST_COMPLETED)
            for f in done:
                report(f.result())
    except KeyboardInterrupt:
        print("interrupt: letting running cells checkpoint; no new cell starts", flush=True)
        for f in futures:
            f.cancel()
        for f in futures:
            if not f.cancelled():
                try:
                    report(f.result())
                except KeyboardInterrupt:
                    pass
        raise
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def run_ray(cells: list[Cell], plan: Plan, address: str, gpus: float,
            report: Callable[[dict[str, Any]], None]) -> None:
    """Each cell a Ray task with `plan.threads` CPUs and `gpus` GPUs. address='local' starts a
    private single-machine Ray instance (what the tests use), anything else joins that cluster."""
    try:
        import ray
    except ImportError:
        raise SystemExit("--ray-address needs Ray: pip install -e '.[ray]'") from None
    ray.init(address=None if address == "local" else address, include_dashboard=False,
             log_to_driver=False, **({"num_cpus": os.cpu_count()} if address == "local" else {}))
    from runner import ablation  # by reference, so that each node runs its own installed copy

    try:
        task = ray.remote(ablation.run_cell).options(num_cpus=plan.threads, num_gpus=gpus)
        device = "cuda" if gpus > 0 else "cpu"  # Ray sets CUDA_VISIBLE_DEVICES per task
        pending = {task.remote(c, plan, device): c for c in cells}
        while pending:
            ready, _ = ray.wait(list(pending), num_returns=1)
            for ref in ready:
                pending.pop(ref)
                report(ray.get(ref))
    finally:
        ray.shutdown()


def _evaluated(folder: Path, summary: bool = True) -> tuple:
    """(config, summary, metrics, run name) of an evaluated cell folder; without the summary
    when `summary` is False."""
    run = RunFolder(folder)
    config, metrics = run.read_config("ablate.py"), run.read_metrics()
    return (config, run.read_summary(), metrics, str(folder)) if summary else (config, metrics, str(folder))


def write_outputs(out: Path, cells: list[Cell], agents: list[str],
                  evaluation: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """cells.csv, summary.csv/.md/.png and curves_<category>.png from the evaluated folders (those
    evaluated with `evaluation`'s settings, when given)."""
    done, rows = [], []
    for c in cells:
        if cell_status(c.folder(out), None, evaluation) != "done":
            continue
        try:
            rows.append(cell_row(*_evaluated(c.folder(out)), log=RunFolder(c.folder(out)).read_log(), jump_action=JUMP))
            labelled_method_rows(*_evaluated(c.folder(out), summary=False))
            done.append(c)
        except (RunFileError, ValueError, KeyError, TypeError, AttributeError) as e:  # a hand-edited file
            print(f"warning: leaving {c.folder(out)} out of the tables: its metrics.json, summary.json or "
                  f"config.json does not hold what evaluate.py and train.py write ({type(e).__name__}: {e})")
    missing = [str(c.folder(out)) for c in cells if c not in done]
    if not rows:
        return []
    summary = summarize(rows, order=agents)
    write_csv(out / "cells.csv", rows)
    write_csv(out / "summary.csv", summary)
    text = ["# Ablation summary", "",
            "Mean ± sample std over seeds. F1: pixel F1 of the method's decision on the scored D_u images "
            f"(evaluate.py's headline row, {HEADLINE_METHOD!r}); F1-max and pixel AUROC: of the predictor's "
            "probability maps. "
            "Train wall: mean seconds per run.", "", markdown_summary(summary), ""]
    samplers = markdown_sampler_summary(summary)
    if samplers:
        text += ["## What the samplers did", "",
                 "Same cells, mean ± sample std over seeds. Image AUROC: of the NBS decision above. Profiles' pixel "
                 "AUROC: of the mean of each run's own best D_u profiles, no predictor (what the sampler's batches "
                 "gave the AE). Return: mean episode return; prediction term: its (1 - β)·r_pred part per episode, "
                 "the only part that rewards batches for better profiles. Jump rate and action entropy (nats; "
                 f"ln 9 = 2.197 is uniform over the 9 actions): of the actions of the last {SAMPLER_WINDOW} updates.",
                 "", samplers, ""]
    for reference in PAIRED_REFERENCES:
        paired = paired_differences(rows, reference)
        if paired:
            text += [f"## Paired with {reference}", "",
                     f"Per seed, each sampler's number minus {reference}'s on the same split, then mean ± sample std "
                     "over the seeds both ran; in brackets, on how many seeds it was higher. Profiles' pixel AUROC: "
                     "what the batches gave the AE; pixel AUROC, F1, image AUROC: of the NBS decision as shipped."
                     + (" oracle-normal reads every image's mask (a diagnostic): what a sampler could win."
                        if reference == "oracle-normal" else ""), "", markdown_paired(paired), ""]
    if missing:
        text += ["Cells not finished yet (re-run the same command to complete them):", ""]
        text += [f"- `{m}`" for m in missing] + [""]
    write_text_atomic(out / "summary.md", "\n".join(text))
    methods = summarize_methods([r for c in done for r in labelled_method_rows(*_evaluated(c.folder(out), summary=False))])
    write_csv(out / "methods.csv", methods)
    write_text_atomic(out / "methods.md", "\n".join([
        "# Methods × metrics", "", "Mean ± sample std over seeds, on the scored D_u images of each seed's "
        "split. Baselines (U-Net, unsupervised AE) are trained once per seed on the same split; NBS rows "
        "are per preset and agent. Published: ../shared/method.md (256 px, the papers' own splits).", "",
        markdown_methods(methods), ""]))

    from evaluation.plots import plot_sweep_bars, plot_training_curves

    plot_sweep_bars(summary, SWEEP_METRICS, out / "summary.png", title=f"{out.name}: mean ± std over seeds")
    for category in dict.fromkeys(r["category"] for r in rows):
        curves: dict[str, list[dict]] = {}
        for r in rows:
            if r["category"] == category:
                label = r["agent"] if r["preset"] == rows[0]["preset"] else f"{r['agent']} [{r['preset']}]"
                curves.setdefault(label, []).append(RunFolder(r["run"]).read_log())
        plot_training_curves(curves, out / f"curves_{category}.png", title=f"{category}: training curves")
    return summary


def sweep(args: argparse.Namespace) -> list[dict[str, Any]]:
    """ablate.py with its parsed arguments: plan the grid, run what is left, write the tables."""
    out = Path(args.out).resolve()  # absolute: Ray tasks do not share our working directory
    categories = check_grid(args.agents, args.presets, args.categories, args.data_root, args.dataset)
    passthrough = []
    for flag in ("dataset", "data_root", "image_size", "n_labeled", "per_defect_type", "policy_input_size"):
        if getattr(args, flag) is not None:
            value = getattr(args, flag)
            value = Path(value).resolve() if flag == "data_root" else value
            passthrough += ["--" + flag.replace("_", "-"), str(value)]
    passthrough += ["--include-train-good"] if args.include_train_good else []
    passthrough += ["--include-unannotated"] if args.include_unannotated else []
    evaluate_args = (["--baselines", *args.baselines] if args.baselines else [])
    for flag in ("unet_steps", "ae_steps", "crf_iterations"):
        if getattr(args, flag) is not None:
            evaluate_args += ["--" + flag.replace("_", "-"), str(getattr(args, flag))]
    for item in args.set:
        passthrough += ["--set", item]
    threads = args.threads or max(1, (os.cpu_count() or 1) // args.workers)
    agent_args = sweep_agent_args(args.agents, args.agent_kwargs, args.baseline_rate)
    plan = Plan(str(out), args.updates, passthrough, threads, args.overlays, tuple(evaluate_args), agent_args)
    evaluation = wanted_evaluation(plan)  # evaluate.py's flags checked (SystemExit) before anything runs
    devices = [d.strip() for d in args.devices.split(",") if d.strip()]
    for d in devices:
        check_device(d, "--devices")
    cells = [Cell(c, p, a, s) for c, p, a, s in itertools.product(categories, args.presets, args.agents, args.seeds)]

    conflicts = [f"  {c.folder(out)}: {why}" for c in cells if (why := check_reusable(c, plan, out))]
    if conflicts:
        raise SystemExit("these cell folders hold runs with other settings; use another --out or remove them:\n"
                         + "\n".join(conflicts))
    try:
        make_writable_folder(out, "--out")
    except RunFileError as e:
        raise SystemExit(e.strerror) from None
    todo = [c for c in cells if cell_status(c.folder(out), args.updates, evaluation, args.overlays) != "done"]
    print(f"{len(cells)} cells ({len(categories)} categories × {len(args.presets)} presets × "
          f"{len(args.agents)} agents × {len(args.seeds)} seeds); {len(cells) - len(todo)} done, "
          f"{len(todo)} to run; {threads} threads per cell; sweep folder {out}", flush=True)

    failed: list[dict[str, Any]] = []
    finished = [0]
    t0 = time.time()

    def report(r: dict[str, Any]) -> None:
        finished[0] += 1
        c = r["cell"]
        print(f"[{finished[0]}/{len(todo)}] {c['category']} {c['preset']} {c['agent']} seed {c['seed']}: "
              f"{r['status']} (train {r['train_s']} s, evaluate {r['eval_s']} s, {r['device']})"
              + (f" — see {r['log']}" if r["status"] == "failed" else ""), flush=True)
        if r["status"] == "failed":
            failed.append(r)

    interrupted = False
    previous_handler = None
    if threading.current_thread() is threading.main_thread():
        # SIGTERM (kill, a batch scheduler): stop the cells' processes, then leave.
        previous_handler = signal.signal(signal.SIGTERM, lambda signum, frame: (stop_children(), sys.exit(128 + signum)))
    try:
        if args.ray_address:
            run_ray(todo, plan, args.ray_address, args.ray_gpus, report)
        else:
            run_local(todo, plan, args.workers, [str(resolve_device(d)) for d in devices], report)
    except KeyboardInterrupt:
        interrupted = True
    finally:
        if previous_handler is not None:
            signal.signal(signal.SIGTERM, previous_handler)
    summary = write_outputs(out, cells, args.agents, evaluation)
    if summary:
        print("\n" + markdown_summary(summary))
        print(f"\nwrote {out / 'summary.md'}, methods.md, summary.csv, methods.csv, cells.csv, summary.png, curves_*.png "
              f"({time.time() - t0:.0f} s)")
    if interrupted:
        raise SystemExit(f"interrupted: run the same command again to resume the sweep in {out}")
    if failed:
        raise SystemExit(f"{len(failed)} cell(s) failed: " + ", ".join(r["log"] for r in failed))
    return summary


