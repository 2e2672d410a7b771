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
    on D_l with augmentation, the mean of 3 such fits (seeds s, s+1000, s+2000: the match for
    `ours`, whose final predictor pools fits too) and the same 3 fits pooled by their mean logit
    (as `ours` pools), and the MVTec AD paper's unsupervised AE (L2 and SSIM variants)
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

from pathlib import Path
from typing import Any

import torch

from evaluation.report import COLUMNS, IMAGE_COLUMNS, format_console_table
from common.errors import run_main
from runner.checks import check_runtime_args
from runner.evaluation import build_parser, evaluate_run, settings_from_args


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    args = build_parser().parse_args(argv)
    check_runtime_args(args)
    crf, reference = settings_from_args(args)
    if args.threads:
        torch.set_num_threads(args.threads)
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
    run_main(main)  # a full disk, a read-only folder, a bad setting: one line naming it, not a traceback
