"""Evaluate trained run folders on their unlabeled split (D_u): predictor -> dense CRF -> metrics.

    python evaluate.py runs/<run>               # one class
    python evaluate.py runs/a runs/b --overlays 8

For each run it prints and writes (into the run folder) one table, method x metric: pixel
precision, recall and F1 of the binary masks, F1-max, pixel AUROC and AUPRO of the score maps, and
image AUROC (max of the map), with the published numbers (../shared/method.md) in their own
columns. Methods, each before and after the same dense CRF:
  - NBS: the run's predictor (of the best moment) on its best D_u loss profiles, thresholded at
    the best-F1 point of its held-out D_l maps, or where it flags D_l's defect fraction of D_u;
  - the reconstruction error of the same profiles, threshold chosen on D_l;
  - the papers' baselines, trained here on the same split (--baselines): a U-Net trained supervised
    on D_l with augmentation, and the MVTec AD paper's unsupervised AE (L2 and SSIM variants)
    trained on train/good only, threshold chosen on D_l (not applicable without anomaly-free
    images, e.g. CrackForest: the table says so).
Outputs: report.md, metrics.json and overlays/*.png (ground truth and every method's mask after the
CRF, side by side, for the same images). Pixel metrics are pooled over every pixel of every scored
D_u image.

Runs of the residual-map classifier (train.py --env residual-classifier) get an image-level table
instead: accuracy, precision, recall, F1 and AUROC of the policy's decisions on D_u, beside the
classical decisions on the same residual maps (max residual with a threshold tuned on the labeled
images; the MVTec AD paper's threshold + minimum defect area) and, with --segmentation-run, the
image-level decisions of a batch-sampling run on the same split (max of its predicted map > 0.5).
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import math
import shlex
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from data.mvtec import DatasetError
from envs.batch_sampling_env import load_split, resolve_device
from envs.config import DataConfig
from evaluation.classification import (decision_metrics, largest_region_areas, tune_threshold,
                                       tune_threshold_min_area)
from evaluation.metrics import aupro, auroc, binary_scores, f1_max, image_scores_from_maps
from evaluation.plots import plot_run_diagnostics
from evaluation.published import published_numbers
from evaluation.reference_methods import (METHODS, MethodMaps, ReferenceConfig, nbs_method, reference_maps,
                                          thresholded)
from evaluation.report import format_console_table, format_markdown_table, write_report
from evaluation.sweep import read_log
from evaluation.visualize import save_side_by_side
from models.crf import CRFConfig, dense_crf
from models.serialization import (RunFileError, UnsafeFileError, load_weights, make_writable_folder, read_json,
                                  write_json_atomic)
from models.predictor import predictor_from_saved, probability_maps

METRIC_COLUMNS = ["precision", "recall", "F1", "F1-max", "pixel AUROC", "AUPRO", "image AUROC"]
PUBLISHED_COLUMNS = ["published F1", "published F1-max"]
COLUMNS = ["method", *METRIC_COLUMNS, *PUBLISHED_COLUMNS]
IMAGE_COLUMNS = ["method", "accuracy", "precision", "recall", "F1", "AUROC"]


def load_profiles(run: Path) -> dict[str, Any]:
    """best_profiles.npz as float32 raw loss profiles plus the image names."""
    path = run / "best_profiles.npz"
    if not path.is_file():
        raise SystemExit(f"{path} not found: {missing_profiles_advice(run)}")
    z = np.load(path)
    scale = float(z["scale"])
    return {"labeled": z["labeled"].astype(np.float32) * scale,
            "unlabeled": z["unlabeled"].astype(np.float32) * scale,
            "labeled_names": [str(n) for n in z["labeled_names"]],
            "unlabeled_names": [str(n) for n in z["unlabeled_names"]],
            "best_update": int(z["best_update"]), "best_l_pred": float(z["best_l_pred"]),
            "labeled_heldout_prob": z["labeled_heldout_prob"] if "labeled_heldout_prob" in z else None,
            "labeled_heldout_index": z["labeled_heldout_index"] if "labeled_heldout_index" in z else None}


def missing_profiles_advice(run: Path) -> str:
    """How to get a run's best_profiles.npz (written when training ends): --resume needs a
    checkpoint, so a run killed before its first one must be started again instead; a finished run
    that never had a best moment (fewer updates than profile_length) needs more updates."""
    import train

    if not any((run / f).is_file() for f in train.CHECKPOINTS):
        return train.no_checkpoint_advice(run)
    try:
        finished = bool(read_json(run / "summary.json").get("finished"))
    except RunFileError:
        finished = False
    if finished:
        return (f"the run ended before its predictor had a best moment (fewer updates than profile_length?); "
                f"train it longer: python train.py --resume {shlex.quote(str(run))} --updates <more>")
    return f"its training did not finish; continue it with: python train.py --resume {shlex.quote(str(run))}"


def evaluation_settings(crf: CRFConfig | None, reference: ReferenceConfig | None) -> dict[str, Any]:
    """Everything besides the run folder that decides evaluate_run's numbers (CRF, baselines and
    their training), as JSON: recorded in metrics.json, so that a sweep re-evaluates a run whose
    metrics were made with other settings instead of reusing them."""
    return json.loads(json.dumps({"crf": dataclasses.asdict(crf or CRFConfig()),
                                  "baselines": dataclasses.asdict(reference or ReferenceConfig())}))


def load_run_file(path: Path, device: torch.device) -> Any:
    """A run folder's predictor.pt or checkpoint.pt, weights-only: a file that would execute code
    (or a corrupt one) ends the program with a message naming it."""
    try:
        return load_weights(path, map_location=device)
    except (UnsafeFileError, FileNotFoundError) as e:
        raise SystemExit(str(e)) from None


def predict_probabilities(run: Path, profiles: np.ndarray, device: torch.device, batch: int = 8,
                          images: np.ndarray | None = None) -> tuple[np.ndarray, bool]:
    """Anomaly probability maps (n, S, S) of the run's predictor on raw profiles (n, T, S, S), and
    whether that predictor is a final one (predictor_refit_steps), whose decision is p > 0.5.

    `images` (n, S, S, 3) uint8: the same images, needed when the predictor also reads RGB
    (predictor_inputs 'profile+rgb')."""
    saved = load_run_file(run / "predictor.pt", device)
    rgb = None
    if saved.get("inputs", "profile") == "profile+rgb":
        if images is None:
            raise ValueError(f"{run / 'predictor.pt'} reads the images as well as the profiles: pass `images`")
        rgb = torch.as_tensor(images).permute(0, 3, 1, 2).float() / 255.0
    prob = probability_maps(predictor_from_saved(saved, device), torch.as_tensor(profiles), rgb, batch)
    return prob.cpu().numpy(), bool(saved.get("refit", False))


def score_row(method: str, pred: np.ndarray | None, scores: np.ndarray, gt: np.ndarray) -> dict[str, Any]:
    """One table row: binary metrics of `pred` (if any), threshold-free metrics of `scores`."""
    row: dict[str, Any] = {"method": method}
    if pred is not None:
        b = binary_scores(pred, gt)
        row.update(precision=b.precision, recall=b.recall, F1=b.f1)
    row["F1-max"] = f1_max(scores, gt)[0]
    row["pixel AUROC"] = auroc(scores, gt)
    row["AUPRO"] = aupro(scores, gt)
    labels = gt.reshape(len(gt), -1).any(axis=1)
    row["image AUROC"] = auroc(image_scores_from_maps(scores), labels) if 0 < labels.sum() < len(labels) else math.nan
    return row


def method_rows(m: MethodMaps, images: list[np.ndarray], gt: np.ndarray, category: str,
                crf: CRFConfig | None) -> tuple[list[dict[str, Any]], np.ndarray | None]:
    """The before- and after-CRF rows of one method (one 'not applicable' row without scores),
    with the published numbers of its family; and its masks after the CRF."""
    published = published_numbers(category, m.family)
    if m.scores is None:
        return [{"method": m.name, "note": m.note, **published}], None
    crf_masks = np.stack([dense_crf(img, p, crf) for img, p in zip(images, m.prob)])
    # The threshold's value goes in its own field, not the name: a sweep groups rows by name.
    before = "p > 0.5" if m.threshold is None else "score >= t from D_l"
    rows = [score_row(f"{m.name}, {before} (no CRF)", m.prob > 0.5, m.scores, gt),
            score_row(f"{m.name} + CRF", crf_masks, m.scores, gt)]
    for r in rows:
        r.update(published, family=m.family, note=m.note, threshold=m.threshold)
    return rows, crf_masks


def evaluate_run(run: Path, overlays: int = 16, device: str = "auto",
                 crf: CRFConfig | None = None, segmentation_run: str | Path | None = None,
                 reference: ReferenceConfig | None = None, reference_cache: str | Path | None = None) -> dict[str, Any]:
    """Score one run folder; writes report.md, metrics.json and overlays/ into it.

    `reference` says which baselines to train on the run's split (default: all; pass
    ReferenceConfig(methods=()) for none). Residual-classifier runs go to evaluate_classifier_run
    (with `segmentation_run`, if given). `reference_cache`: a folder where baseline results are
    kept per split, config and seed, to train them once per seed across a sweep."""
    import train

    run = Path(run)
    cfg_path = run / "config.json"
    if not cfg_path.is_file():
        raise SystemExit(f"{run} is not a run folder (no config.json)")
    config = train.read_run_config(run, "evaluate.py")
    try:
        make_writable_folder(run, "evaluate.py")
    except RunFileError as e:
        raise SystemExit(e.strerror) from None
    if config["args"].get("env") == "residual-classifier":
        return evaluate_classifier_run(run, config, device, segmentation_run)
    data = DataConfig(**config["data"])
    prof = load_profiles(run)
    try:
        split = load_split(data)
    except DatasetError as e:
        raise SystemExit(f"dataset error while reloading the run's data: {e}") from None
    train.verify_run_data(run, split, data.data_root, "evaluate.py")
    if [s.name for s in split.unlabeled] != prof["unlabeled_names"]:
        raise SystemExit(f"the data under {data.data_root or 'the built-in dataset'} no longer gives the "
                         f"split this run was trained on (image names differ)")
    dev = resolve_device(device)
    gt = np.stack([s.mask for s in split.unlabeled])
    images = [s.image for s in split.unlabeled]
    if not gt.any():
        raise SystemExit(f"{run}: no anomalous pixel in the unlabeled split: pixel metrics undefined")

    prob, refit = predict_probabilities(run, prof["unlabeled"], dev, images=np.stack(images))
    gt_l = np.stack([s.mask for s in split.labeled])
    seed = int(config["args"]["seed"])
    # The method, then the same loss profiles without the predictor (mean reconstruction error
    # over the profile, threshold from D_l), then the papers' baselines trained on this split.
    heldout_gt = None if prof["labeled_heldout_index"] is None else gt_l[prof["labeled_heldout_index"]]
    nbs = nbs_method(prob, refit, prof["labeled_heldout_prob"], heldout_gt, float(gt_l.mean()))
    methods = [nbs,
               thresholded("Recon. error of the loss profiles", None, prof["labeled"].mean(axis=1), gt_l,
                           prof["unlabeled"].mean(axis=1), note="the run's own AE, no predictor",
                           label="profile recon.")]
    t_ref = time.time()
    methods += reference_maps(split, reference, seed=seed, device=dev, cache_dir=reference_cache)
    reference_s = round(time.time() - t_ref, 1)
    rows, masks = [], {}
    for m in methods:
        m_rows, m_masks = method_rows(m, images, gt, split.category, crf)
        rows += m_rows
        if m_masks is not None:
            masks[m.label] = m_masks
    rows.sort(key=lambda r: 0 if r["method"] == "NBS + CRF" else 1)  # the headline row first (sweeps read it)
    threshold = methods[1].threshold

    out_dir = run / "overlays"
    out_dir.mkdir(exist_ok=True)
    written = []
    for k, s in enumerate(split.unlabeled[:overlays] if overlays >= 0 else split.unlabeled):
        path = out_dir / f"{s.name.replace('/', '_')}.png"
        save_side_by_side(path, s.image, s.mask, {f"{name} + CRF": mk[k] for name, mk in masks.items()},
                          title=s.name, heatmaps={"NBS probability": prob[k]})
        written.append(path.name)

    summary = json.loads((run / "summary.json").read_text()) if (run / "summary.json").exists() else {}
    diagnostics = training_diagnostics(run, prof["labeled"], gt_l, split.category)
    result = {"run": str(run), "category": split.category, "seed": config["args"]["seed"],
              "split": split.describe(), "rows": rows, "baseline_threshold": threshold,
              "best_update": prof["best_update"], "best_l_pred": prof["best_l_pred"],
              "training": summary, "overlays": written, "reference_s": reference_s,
              "diagnostics": diagnostics, "evaluation": evaluation_settings(crf, reference)}
    write_json_atomic(run / "metrics.json", result)
    sd = split.describe()
    meta = (f"- run: `{run}`\n- category: **{split.category}**, image size {data.image_size}, "
            f"data root: `{data.data_root or 'built-in synthetic dataset'}`\n"
            f"- seed: {config['args']['seed']}; D_l ({sd['n_labeled']}): {', '.join(sd['labeled'])}\n"
            f"- D_u scored: {sd['n_unlabeled']} images {sd['unlabeled_per_defect_type']}; "
            f"extra unlabeled (not scored): {sd['n_extra_unlabeled']}\n"
            f"- best D_u profiles from AE update {prof['best_update']} (l_pred {prof['best_l_pred']:.3g}); "
            f"training: {summary.get('ae_updates', '?')} AE updates, {summary.get('wall_s', '?')} s on "
            f"{summary.get('device', '?')}")
    not_applicable = [f"{r['method']}: {r['note']}" for r in rows if "F1-max" not in r]
    thresholds = ", ".join(f"{m.name} {m.threshold:.4g}" for m in methods if m.threshold is not None)
    notes = ("Pixel metrics pooled over all pixels of the scored D_u images. Precision/recall/F1: "
             "binary masks (CRF labels; or p > 0.5 (U-Net); or score >= a threshold t chosen with D_l: best F1 on "
             "the D_l maps (AE baselines, profiles; NBS on its held-out D_l maps), or, for NBS without "
             "held-out maps, the score above which D_l's defect fraction of the D_u pixels lies). The CRF of "
             "a thresholded method gets the unary sigmoid((score - t) / std of its scores), which is 0.5 at "
             "its threshold (NBS, whose scores are probabilities: sigmoid(logit p - logit t)). F1-max, pixel AUROC, AUPRO and image AUROC "
             "are of the probability (score) maps, so they do not change with the CRF. F1-max: best "
             "F1 over all thresholds. AUPRO: per-region overlap integrated to FPR 0.3, / 0.3. Image "
             "AUROC: max of each map. Published: chu2020 Table 1 pixel F1 (after CRF for their "
             "method) and noghredeh2025 F1-max, measured at 256 px on the papers' own splits."
             + (f" Thresholds t chosen on D_l: {thresholds}." if thresholds else "")
             + "".join(f"\n- {n}" for n in not_applicable))
    warnings = "".join(f"\n\n**Warning:** {w}" for w in summary.get("warnings", []))
    diag_text = (f"Pixel AUROC on D_l at the end of training: current loss maps {diagnostics['dl_loss_auroc']:.3f}, "
                 f"mean profile {diagnostics['dl_profile_auroc']:.3f}, predictor on held-out D_l "
                 f"{diagnostics['dl_heldout_auroc']:.3f} (nan: no held-out predictors); AE loss / image "
                 f"mean-colour loss {diagnostics['ae_vs_mean_colour']:.3f} and AE output spread / image spread "
                 f"{diagnostics['ae_output_spread']:.3f} (>= 1 with a spread near 0: collapsed AE). Means of the "
                 f"last 10 % of updates.{warnings}\n\n![training diagnostics](training.png)")
    write_report(run / "report.md", f"Evaluation: {split.category}", [
        ("Setup", meta), ("Results", format_markdown_table(rows, COLUMNS)),
        ("Training diagnostics", diag_text), ("Definitions", notes),
        ("Overlays", "\n".join(f"![{n}](overlays/{n})" for n in written) or "none")])
    return result


def training_diagnostics(run: Path, labeled_profiles: np.ndarray, labeled_masks: np.ndarray,
                         category: str) -> dict[str, float]:
    """training.png (evaluation.plots.plot_run_diagnostics) from the run's log.csv and best D_l
    profiles, and the diagnostics' means over the last 10 % of updates."""
    log = read_log(run) if (run / "log.csv").is_file() else {}
    out = {}
    for col in ("dl_loss_auroc", "dl_profile_auroc", "dl_heldout_auroc", "ae_vs_mean_colour", "ae_output_spread"):
        values = log.get(col, np.array([math.nan]))
        tail = values[-max(1, len(values) // 10):]
        out[col] = float(np.nanmean(tail)) if np.isfinite(tail).any() else math.nan
    if log:
        plot_run_diagnostics(log, labeled_profiles, labeled_masks, run / "training.png",
                             title=f"{category}: {run.name}")
    return out


def segmentation_image_scores(seg_run: Path, unlabeled: list[Any], device: torch.device) -> np.ndarray:
    """Max of a batch-sampling run's predicted map per D_u image, checked to be the same split."""
    prof = load_profiles(seg_run)
    if prof["unlabeled_names"] != [s.name for s in unlabeled]:
        raise SystemExit(f"--segmentation-run {seg_run}: its unlabeled images differ from the classifier "
                         f"run's (train both with the same --category, --seed, --n-labeled, --image-size)")
    prob, _ = predict_probabilities(seg_run, prof["unlabeled"], device, images=np.stack([s.image for s in unlabeled]))
    return prob.max(axis=(1, 2))


def evaluate_classifier_run(run: Path, config: dict[str, Any], device: str = "auto",
                            segmentation_run: Path | None = None) -> dict[str, Any]:
    """Image-level table of a residual-classifier run on D_u; writes report.md and metrics.json."""
    import train  # builds the run's env and agent exactly as training did
    from envs.residual_classifier_env import classifier_config_from_dict

    args = train.Args(**config["args"])
    data = DataConfig(**config["data"])
    dev = resolve_device(device)
    if not (run / "checkpoint.pt").is_file():
        raise SystemExit(f"{run / 'checkpoint.pt'} not found: "
                         + (train.no_checkpoint_advice(run) if not (run / "checkpoint.prev.pt").is_file() else
                            f"continue the run with: python train.py --resume {shlex.quote(str(run))}"))
    env = train.make_env(args, dataclasses.replace(classifier_config_from_dict(config["env"]), device=str(dev)), data)
    train.verify_run_data(run, env.split, data.data_root, "evaluate.py")
    ckpt = load_run_file(run / "checkpoint.pt", env.device)
    env.load_state_dict(ckpt["env"])
    agent = train.make_agent(args, env, env.device)
    agent.load_state_dict(ckpt["agent"])

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
              "training": json.loads((run / "summary.json").read_text()) if (run / "summary.json").exists() else {}}
    write_json_atomic(run / "metrics.json", result)
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
        ref.unet = dataclasses.replace(ref.unet, steps=unet_steps)
    if ae_steps is not None:
        ref.recon = dataclasses.replace(ref.recon, steps=ae_steps)
    return ref


def build_parser() -> argparse.ArgumentParser:
    """evaluate.py's command line (ablate.py parses the flags it passes with it too)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", nargs="+", help="run folders written by train.py")
    parser.add_argument("--overlays", type=int, default=16, help="overlay PNGs per run (-1: all)")
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda")
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
    """The CRF and baseline settings that parsed flags ask for."""
    return CRFConfig(iterations=args.crf_iterations), reference_config(args.baselines, args.unet_steps, args.ae_steps)


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    args = build_parser().parse_args(argv)
    crf, reference = settings_from_args(args)
    results = []
    for run in args.runs:
        r = evaluate_run(Path(run), args.overlays, args.device, crf, args.segmentation_run, reference,
                         args.baseline_cache)
        print(f"\n{r['category']} (seed {r['seed']}, {r['split']['n_unlabeled']} D_u images) — {run}")
        print(format_console_table(r["rows"], IMAGE_COLUMNS if r.get("task") == "image-level" else COLUMNS))
        print(f"report: {Path(run) / 'report.md'}")
        results.append(r)
    return results


if __name__ == "__main__":
    try:
        main()
    except RunFileError as e:  # a full disk or a read-only folder: one line, not a traceback
        raise SystemExit(f"error: {e.strerror}") from None
