"""Evaluating a run folder on its scored D_u images: predictor -> dense CRF -> metrics -> report.

`evaluate_run` is what evaluate.py does per folder (its docstring says what is measured); the
residual classifier's runs get `evaluate_classifier_run`'s image-level table instead.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import math
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from baselines.reference import METHODS, ReferenceConfig, reference_maps
from common.device import resolve_device
from common.settings import ConfigError
from data.config import DataConfig
from data.loading import load_split
from data.mvtec import DatasetError
from evaluation.classification import (decision_metrics, largest_region_areas, tune_threshold,
                                       tune_threshold_min_area)
from evaluation.decisions import MethodMaps, nbs_from_record, nbs_method, run_heldout_maps, thresholded
from evaluation.choice import image_scores
from evaluation.metrics import aupro, auroc, binary_scores, f1_max
from evaluation.plots import plot_run_diagnostics
from evaluation.published import published_numbers
from evaluation.report import (CHOSEN_SUFFIX, CRF_SUFFIX, HEADLINE_METHOD, IMAGE_COLUMNS, PROFILES_METHOD,
                               format_markdown_table, run_report_sections, write_report)
from evaluation.visualize import save_side_by_side
from models.crf import CRFConfig, dense_crf
from models.predictor import predictor_from_saved, probability_maps
from runner.checks import saved_data_config, saved_run_args
from runner.factory import env_kind, make_agent, make_env
from runner.folder import CHECKPOINTS, CONFIG, PREDICTOR, PROFILES, RunFolder
from runner.frames import PHASES, frames_file

#: Bumped when evaluate_run's rows change for the same run and settings (2: the NBS decision's CRF
#: chosen on held-out D_l maps), so that a sweep re-evaluates runs scored by older code.
ROWS_VERSION = 2
#: evaluate.py's one-line description (its --help).
DESCRIPTION = "Evaluate trained run folders on their unlabeled split (D_u): predictor -> dense CRF -> metrics."


def evaluation_settings(crf: CRFConfig | None, reference: ReferenceConfig | None) -> dict[str, Any]:
    """Everything besides the run folder that decides evaluate_run's numbers (CRF, baselines and
    their training), as JSON: recorded in metrics.json, so that a sweep re-evaluates a run whose
    metrics were made with other settings instead of reusing them."""
    return json.loads(json.dumps({"rows_version": ROWS_VERSION, "crf": dataclasses.asdict(crf or CRFConfig()),
                                  "baselines": dataclasses.asdict(reference or ReferenceConfig())}))


def predict_probabilities(run: RunFolder, profiles: np.ndarray, device: torch.device, batch: int = 8,
                          images: np.ndarray | None = None) -> tuple[np.ndarray, bool, dict[str, Any] | None]:
    """Anomaly probability maps (n, S, S) of the run's predictor on raw profiles (n, T, S, S),
    whether that predictor is a final one (final.steps), and the decision recorded with it at
    export (None for runs saved before decisions were recorded).

    `images` (n, S, S, 3) uint8: the same images, needed when the predictor also reads RGB
    (predictor_inputs 'profile+rgb')."""
    saved = run.load_file(PREDICTOR, device)
    if not isinstance(saved, dict) or not isinstance(saved.get("state_dict"), dict) or not saved["state_dict"]:
        raise SystemExit(f"{run / PREDICTOR} is not a predictor train.py wrote (no weights in it)")
    if saved.get("profile_length") != profiles.shape[1]:
        raise SystemExit(f"{run / PREDICTOR} reads profiles of length {saved.get('profile_length')!r}, but "
                         f"{run / PROFILES} holds profiles of length {profiles.shape[1]}: one of them is another run's")
    rgb = None
    if saved.get("inputs", "profile") == "profile+rgb":
        if images is None:
            raise ValueError(f"{run / PREDICTOR} reads the images as well as the profiles: pass `images`")
        rgb = torch.as_tensor(images).permute(0, 3, 1, 2).float() / 255.0
    try:
        net = predictor_from_saved(saved, device)
    except (KeyError, TypeError, ValueError, RuntimeError) as e:
        why = f"no {e}" if isinstance(e, KeyError) else " ".join(str(e).split())[:300]
        raise SystemExit(f"{run / PREDICTOR} does not hold a predictor this package can build ({why}): it is of "
                         "another version or was edited") from None
    prob = probability_maps(net, torch.as_tensor(profiles), rgb, batch)
    return prob.cpu().numpy(), bool(saved.get("refit", False)), saved.get("decision")


def score_row(method: str, pred: np.ndarray | None, scores: np.ndarray, gt: np.ndarray,
              image_score: str = "max", threshold: float = 0.5) -> dict[str, Any]:
    """One table row: binary metrics of `pred` (if any), threshold-free metrics of `scores`; the
    image AUROC of the image scores `image_score` reads off the maps (evaluation.choice)."""
    row: dict[str, Any] = {"method": method}
    if pred is not None:
        b = binary_scores(pred, gt)
        row.update(precision=b.precision, recall=b.recall, F1=b.f1)
    row["F1-max"] = f1_max(scores, gt)[0]
    row["pixel AUROC"] = auroc(scores, gt)
    row["AUPRO"] = aupro(scores, gt)
    labels = gt.reshape(len(gt), -1).any(axis=1)
    row["image AUROC"] = (auroc(image_scores(scores, image_score, threshold), labels)
                          if 0 < labels.sum() < len(labels) else math.nan)
    return row


def method_rows(m: MethodMaps, images: list[np.ndarray], gt: np.ndarray, category: str,
                crf: CRFConfig | None) -> tuple[list[dict[str, Any]], np.ndarray | None]:
    """The before- and after-CRF rows of one method (one 'not applicable' row without scores),
    and, when its CRF was chosen on D_l (m.crf_choice), the row of that decision; with the
    published numbers of its family. Also returns its decision's masks (after the CRF if m.crf)."""
    published = published_numbers(category, m.family)
    if m.scores is None:
        return [{"method": m.name, "note": m.note, **published}], None
    crf_masks = np.stack([dense_crf(img, p, crf) for img, p in zip(images, m.prob)])
    # The threshold's value goes in its own field, not the name: a sweep groups rows by name.
    before = "p > 0.5" if m.threshold is None else "score >= t from D_l"
    t = 0.5 if m.threshold is None else m.threshold
    rows = [score_row(f"{m.name}, {before} (no CRF)", m.prob > 0.5, m.scores, gt, m.image_score, t),
            score_row(m.name + CRF_SUFFIX, crf_masks, m.scores, gt, m.image_score, t)]
    for r in rows:
        r.update(published, family=m.family, note=m.note, threshold=m.threshold)
    decision = crf_masks if m.crf else m.prob > 0.5
    if m.crf_choice:
        chosen = {**rows[1 if m.crf else 0], "method": m.name + CHOSEN_SUFFIX, "note": f"{m.note}; {m.crf_choice}"}
        rows.insert(0, chosen)
    return rows, decision


def nbs_maps(run: RunFolder, prof: dict[str, Any], split: Any, device: torch.device,
             crf: CRFConfig | None) -> tuple[MethodMaps, np.ndarray, list[str]]:
    """The NBS method on the scored images: its predictor's maps, with the decision recorded at
    export (predictor.pt "decision"), or, for runs saved before it was recorded, chosen here the
    same way on their held-out D_l maps. Also returns the probability maps and, for a run that
    chose its final map on D_l, what it chose and why."""
    images_u = np.stack([s.image for s in split.unlabeled])
    prob, refit, record = predict_probabilities(run, prof["unlabeled"], device, images=images_u)
    if record is not None:
        return nbs_from_record(prob, record), prob, list((record.get("choice") or {}).get("notes", []))
    gt_l = np.stack([s.mask for s in split.labeled])
    heldout = run_heldout_maps(prof, refit, gt_l, np.stack([s.image for s in split.labeled]))
    return nbs_method(prob, refit, heldout, float(gt_l.mean()), crf), prob, []


def load_run_split(run: RunFolder, config: dict[str, Any], prof: dict[str, Any]) -> tuple[DataConfig, Any]:
    """The run's data and split, reloaded and checked to be what it trained on (and what its
    best_profiles.npz holds)."""
    data = saved_data_config(config, run / CONFIG)
    try:
        split = load_split(data)
    except DatasetError as e:
        raise SystemExit(f"dataset error while reloading the run's data: {e}") from None
    run.verify_data(split, data.data_root, "evaluate.py")
    if [s.name for s in split.unlabeled] != prof["unlabeled_names"]:
        raise SystemExit(f"the data under {data.data_root or 'the built-in dataset'} no longer gives the "
                         f"split this run was trained on (image names differ)")
    expected = {"labeled": (len(split.labeled), data.image_size), "unlabeled": (len(split.unlabeled), data.image_size)}
    for part, (n, size) in expected.items():
        shape = prof[part].shape
        if shape[0] != n or shape[2:] != (size, size):
            raise SystemExit(f"{run / PROFILES}: its {part} profiles are {shape}, but the run's split has {n} "
                             f"{part} images of {size} px: the file is another run's or was edited")
    if not any(s.mask.any() for s in split.unlabeled):
        raise SystemExit(f"{run}: no anomalous pixel in the unlabeled split: pixel metrics undefined")
    return data, split


def score_methods(methods: list[MethodMaps], split: Any, crf: CRFConfig | None) -> tuple[list[dict], dict]:
    """Every method's rows (before and after the CRF, and its chosen decision), the headline row
    first, and each method's decision masks by label (for the overlays)."""
    gt, images = np.stack([s.mask for s in split.unlabeled]), [s.image for s in split.unlabeled]
    rows, masks = [], {}
    for m in methods:
        m_rows, m_masks = method_rows(m, images, gt, split.category, crf)
        rows += m_rows
        if m_masks is not None:
            masks[m.label + (CRF_SUFFIX if m.crf else ", no CRF")] = m_masks
    rows.sort(key=lambda r: 0 if r["method"] == HEADLINE_METHOD else 1)  # the headline row first (sweeps read it)
    return rows, masks


def write_overlays(run: RunFolder, split: Any, masks: dict[str, np.ndarray], prob: np.ndarray, overlays: int) -> list[str]:
    """overlays/<image>.png for the first `overlays` scored images (-1: all): ground truth and every
    method's decision side by side, with the NBS probability map."""
    out_dir = run / "overlays"
    out_dir.mkdir(exist_ok=True)
    written = []
    for k, s in enumerate(split.unlabeled[:overlays] if overlays >= 0 else split.unlabeled):
        path = out_dir / f"{s.name.replace('/', '_')}.png"
        save_side_by_side(path, s.image, s.mask, {name: mk[k] for name, mk in masks.items()},
                          title=s.name, heatmaps={"NBS probability": prob[k]})
        written.append(path.name)
    return written


def evaluate_run(run: Path, overlays: int = 16, device: str = "auto",
                 crf: CRFConfig | None = None, segmentation_run: str | Path | None = None,
                 reference: ReferenceConfig | None = None, reference_cache: str | Path | None = None) -> dict[str, Any]:
    """Score one run folder; writes report.md, metrics.json and overlays/ into it.

    `reference` says which baselines to train on the run's split (default: all; pass
    ReferenceConfig(methods=()) for none). Residual-classifier runs go to evaluate_classifier_run
    (with `segmentation_run`, if given). `reference_cache`: a folder where baseline results are
    kept per split, config and seed, to train them once per seed across a sweep."""
    run = RunFolder(run)
    if not (run / CONFIG).is_file():
        raise SystemExit(f"{run} is not a run folder (no config.json)")
    config = run.read_config("evaluate.py")
    run.refuse_if_training("evaluate.py")
    args = saved_run_args(config, run / CONFIG)
    run.create("evaluate.py")
    if env_kind(args.env).task == "image-level":
        return evaluate_classifier_run(run, config, device, segmentation_run)
    prof = run.read_best_profiles()
    data, split = load_run_split(run, config, prof)
    dev = resolve_device(device)
    seed = args.seed
    # The method, then the same loss profiles without the predictor (mean reconstruction error
    # over the profile, threshold from D_l), then the papers' baselines trained on this split.
    nbs, prob, choices = nbs_maps(run, prof, split, dev, crf)
    methods = [nbs, thresholded(PROFILES_METHOD, None, prof["labeled"].mean(axis=1),
                                np.stack([s.mask for s in split.labeled]), prof["unlabeled"].mean(axis=1),
                                note="the run's own AE, no predictor", label="profile recon.")]
    t_ref = time.time()
    methods += reference_maps(split, reference, seed=seed, device=dev, cache_dir=reference_cache)
    reference_s = round(time.time() - t_ref, 1)
    rows, masks = score_methods(methods, split, crf)
    written = write_overlays(run, split, masks, prob, overlays)
    summary = run.read_summary()
    diagnostics = training_diagnostics(run, prof["labeled"], np.stack([s.mask for s in split.labeled]), split.category)
    result = {"run": str(run), "category": split.category, "seed": config["args"]["seed"],
              "split": split.describe(), "rows": rows, "baseline_threshold": methods[1].threshold,
              "best_update": prof["best_update"], "best_l_pred": prof["best_l_pred"],
              "training": summary, "overlays": written, "reference_s": reference_s,
              "diagnostics": diagnostics, "evaluation": evaluation_settings(crf, reference),
              **({"choices": choices} if choices else {})}
    run.write_metrics(result)
    sd = split.describe()
    setup = {"category": split.category, "image_size": data.image_size, "data_root": data.data_root,
             "seed": config["args"]["seed"], "labeled": sd["labeled"], "n_unlabeled": sd["n_unlabeled"],
             "per_type": sd["unlabeled_per_defect_type"], "n_extra": sd["n_extra_unlabeled"],
             "best_update": prof["best_update"], "best_l_pred": prof["best_l_pred"],
             "ae_updates": summary.get("ae_updates", "?"), "wall_s": summary.get("wall_s", "?"),
             "device": summary.get("device", "?")}
    thresholds = ", ".join(f"{m.name} {m.threshold:.4g}" for m in methods if m.threshold is not None)
    write_report(run / "report.md", f"Evaluation: {split.category}", run_report_sections(
        str(run), setup, rows, diagnostics, thresholds, probe_text(config.get("ae_probe")),
        summary.get("warnings", []), written, choices,
        [(phase, frames_file(phase)) for phase in PHASES if (run / frames_file(phase)).is_file()]))
    return result


def probe_text(rows: list[dict[str, Any]] | None) -> str:
    """The AE probe's account for the report (envs.ae_probe), or "" when the run had none."""
    if not rows:
        return ""
    parts = [f"{'**chosen**: ' if r['chosen'] else ''}{r['label']}: {r['dl_profile_auroc']:.3f}" for r in rows]
    return ("\n\nAE probe before training (mean D_l profile's pixel AUROC after a short run of uniformly random "
            "patches per candidate AE; the preset's AE first, kept unless another beats it by the margin): "
            + "; ".join(parts) + ".")


def training_diagnostics(run: RunFolder, labeled_profiles: np.ndarray, labeled_masks: np.ndarray,
                         category: str) -> dict[str, float]:
    """training.png (evaluation.plots.plot_run_diagnostics) from the run's log.csv and best D_l
    profiles, and the diagnostics' means over the last 10 % of updates."""
    log = run.read_log()
    out = {}
    for col in ("dl_loss_auroc", "dl_profile_auroc", "dl_heldout_auroc", "ae_vs_mean_colour", "ae_output_spread"):
        values = log.get(col, np.array([math.nan]))
        tail = values[-max(1, len(values) // 10):]
        out[col] = float(np.nanmean(tail)) if np.isfinite(tail).any() else math.nan
    if log:
        plot_run_diagnostics(log, labeled_profiles, labeled_masks, run / "training.png",
                             title=f"{category}: {run.path.name}")
    return out


def segmentation_image_scores(seg_run: Path, unlabeled: list[Any], device: torch.device) -> np.ndarray:
    """Max of a batch-sampling run's predicted map per D_u image, checked to be the same split."""
    prof = RunFolder(seg_run).read_best_profiles()
    if prof["unlabeled_names"] != [s.name for s in unlabeled]:
        raise SystemExit(f"--segmentation-run {seg_run}: its unlabeled images differ from the classifier "
                         f"run's (train both with the same --category, --seed, --n-labeled, --image-size)")
    prob, _, _ = predict_probabilities(RunFolder(seg_run), prof["unlabeled"], device,
                                       images=np.stack([s.image for s in unlabeled]))
    return prob.max(axis=(1, 2))


def evaluate_classifier_run(run: RunFolder, config: dict[str, Any], device: str = "auto",
                            segmentation_run: Path | None = None) -> dict[str, Any]:
    """Image-level table of a residual-classifier run on D_u; writes report.md and metrics.json."""
    args = saved_run_args(config, run / CONFIG)
    kind = env_kind(args.env)
    data = saved_data_config(config, run / CONFIG)
    dev = resolve_device(device)
    if not run.has_checkpoint():
        raise SystemExit(f"{run / CHECKPOINTS[0]} not found: {run.no_checkpoint_advice()}")
    try:
        config_env = kind.from_saved(config, str(run / CONFIG))
    except (ConfigError, TypeError) as e:
        raise SystemExit(f"evaluate.py {run}: {e}") from None
    env = make_env(kind, data, kind.with_device(config_env, str(dev)))
    run.verify_data(env.split, data.data_root, "evaluate.py")
    ckpt = run.load_checkpoint(env.device, "evaluate.py")
    try:
        agent = make_agent(args, env, env.device)
    except ValueError as e:
        raise SystemExit(f"evaluate.py {run}: {run / CONFIG}: --agent {args.agent}: {e}") from None
    run.restore_checkpoint(ckpt, env, agent, "evaluate.py")

    unlabeled = env.split.unlabeled
    labels = np.array([s.mask.any() for s in unlabeled])
    probs = np.stack([agent.action_probabilities(env.observation("unlabeled", k)) for k in range(len(unlabeled))])
    pool_r, pool_y, res_u = env.residual_maps("pool"), env.pool_labels, env.residual_maps("unlabeled")
    t_max = tune_threshold(pool_r.max(axis=(1, 2)), pool_y)
    t_area, min_area = tune_threshold_min_area(pool_r, pool_y)
    areas_u = largest_region_areas(res_u, t_area)
    rows = [{"method": f"RL policy ({args.agent}; inputs {env.config.inputs})",
             **decision_metrics(probs.argmax(1) == 1, labels, probs[:, 1])},
            {"method": "max residual >= threshold tuned on labeled",
             **decision_metrics(res_u.max(axis=(1, 2)) >= t_max, labels, res_u.max(axis=(1, 2)))},
            {"method": "threshold + min. defect area (MVTec AD paper)",
             **decision_metrics(areas_u >= min_area, labels, areas_u)}]
    if segmentation_run is not None:
        m = segmentation_image_scores(Path(segmentation_run), unlabeled, dev)
        rows.append({"method": f"NBS segmentation ({Path(segmentation_run).name}): max p > 0.5",
                     **decision_metrics(m > 0.5, labels, m)})
    sd = env.split.describe()
    result = {"run": str(run), "category": env.split.category, "seed": args.seed, "task": "image-level",
              "split": sd, "rows": rows, "max_residual_threshold": t_max, "area_rule": {"threshold": t_area,
              "min_area": min_area}, "labeled_pool": {"anomalous": int(pool_y.sum()), "normal": int((pool_y == 0).sum())},
              "training": run.read_summary()}
    run.write_metrics(result)
    meta = (f"- run: `{run}`; category **{env.split.category}**, image size {data.image_size}, seed {args.seed}\n"
            f"- labeled pool: D_l ({sd['n_labeled']}: {', '.join(sd['labeled'])}) + {len(env.normal_holdout)} "
            f"held-out train/good = {int(pool_y.sum())} anomalous, {int((pool_y == 0).sum())} normal\n"
            f"- scored: D_u, {len(unlabeled)} images ({int(labels.sum())} anomalous); AE trained on "
            f"{len(env.ae_train)} train/good images")
    notes = (f"Anomalous = positive. The policy decides argmax pi(a | residual map); its AUROC ranks by "
             f"pi(anomalous). Max-residual threshold {t_max:.4g}; area rule: residual >= {t_area:.4g} over a "
             f"connected region of >= {min_area} px (AUROC ranks by the largest such region). Both tuned for "
             f"balanced accuracy on the labeled pool.")
    write_report(run / "report.md", f"Image-level evaluation: {env.split.category}", [
        ("Setup", meta), ("Results", format_markdown_table(rows, IMAGE_COLUMNS)), ("Definitions", notes)])
    return result


def reference_config(names: list[str], unet_steps: int | None, ae_steps: int | None) -> ReferenceConfig:
    """ReferenceConfig from the CLI's --baselines / --unet-steps / --ae-steps."""
    methods = () if names == ["none"] else tuple(names)
    bad = [m for m in methods if m not in METHODS]
    if bad:
        raise SystemExit(f"--baselines: unknown {bad}; choose from {list(METHODS)} or 'none'")
    ref = ReferenceConfig(methods=methods)
    if unet_steps is not None:
        ref.unet = _from_flag("--unet-steps", unet_steps, lambda: dataclasses.replace(ref.unet, steps=unet_steps))
    if ae_steps is not None:
        ref.recon = _from_flag("--ae-steps", ae_steps, lambda: dataclasses.replace(ref.recon, steps=ae_steps))
    return ref


def _from_flag(flag: str, value: Any, build: Callable[[], Any]) -> Any:
    """`build()`, a config holding a flag's value, whose own range check (common.settings) becomes
    SystemExit naming the flag, e.g. "--unet-steps 0: unet.steps=0: must be >= 1"."""
    try:
        return build()
    except ValueError as e:  # ConfigError included
        raise SystemExit(f"{flag} {value}: {e}") from None


def build_parser() -> argparse.ArgumentParser:
    """evaluate.py's command line (ablate.py parses the flags it passes with it too)."""
    parser = argparse.ArgumentParser(description=DESCRIPTION)
    parser.add_argument("runs", nargs="+", help="run folders written by train.py")
    parser.add_argument("--overlays", type=int, default=16, help="overlay PNGs per run (-1: all)")
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default), as train.py's")
    parser.add_argument("--crf-iterations", type=int, default=CRFConfig().iterations)
    parser.add_argument("--baselines", nargs="+", default=list(METHODS), help="comparison methods trained on "
                        "the run's split, or 'none'")
    parser.add_argument("--unet-steps", type=int, default=None, help="U-Net training steps (default: UNetConfig's)")
    parser.add_argument("--ae-steps", type=int, default=None, help="unsupervised AE training steps "
                        "(default: ReconAEConfig's)")
    parser.add_argument("--baseline-cache", default=None, help="folder to keep baseline results in, keyed by "
                        "split, settings and seed (ablate.py uses <sweep>/baseline_cache)")
    parser.add_argument("--segmentation-run", default=None, help="for residual-classifier runs: a batch-sampling "
                        "run on the same split whose image-level decisions join the table")
    return parser


def settings_from_args(args: argparse.Namespace) -> tuple[CRFConfig, ReferenceConfig]:
    """The CRF and baseline settings that parsed flags ask for; SystemExit naming the flag when
    one is out of the range its config allows (0 U-Net steps would report an untrained U-Net)."""
    if args.overlays < -1:
        raise SystemExit(f"--overlays must be >= -1 (-1: all), got {args.overlays}")
    crf = _from_flag("--crf-iterations", args.crf_iterations, lambda: CRFConfig(iterations=args.crf_iterations))
    return crf, reference_config(args.baselines, args.unet_steps, args.ae_steps)
