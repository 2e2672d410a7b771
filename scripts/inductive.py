"""Inductive vs transductive quality of a trained model, on the same unseen images.

    python scripts/inductive.py --inductive runs/A --transductive runs/B [--inductive runs/C --transductive runs/D ...]

Run A was trained with --holdout-fraction f: its held-back test images were never sampled. Run B
has the same seed, split and settings without the holdout, so those images were in its D_u and
its AE trained on them (the papers' transductive protocol). Both bundles segment the held-back
images (models.segmenter.Segmenter: the run's decision, evaluate.py's headline row); the script prints pixel F1, F1-max, pixel AUROC
and image AUROC of each, per pair and as mean ± std over the pairs, measured here.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from data.config import DataConfig  # noqa: E402
from data.loading import load_split  # noqa: E402
from evaluation.metrics import auroc, binary_scores, f1_max  # noqa: E402
from models.segmenter import Segmenter  # noqa: E402
from common.files import RunFileError, read_json  # noqa: E402

METRICS = ("F1", "F1-max", "pixel AUROC", "image AUROC")


def scores(seg: Segmenter, images: list[np.ndarray], gt: np.ndarray) -> dict[str, float]:
    """The bundle's decision's metrics (evaluate.py's headline row) on images with ground truth masks gt (n, S, S)."""
    result = seg.predict(images)
    prob, masks = np.stack(result.probabilities), np.stack(result.masks)
    labels = gt.reshape(len(gt), -1).any(axis=1)
    return {"F1": binary_scores(masks, gt).f1, "F1-max": f1_max(prob, gt)[0], "pixel AUROC": auroc(prob, gt),
            "image AUROC": auroc(result.scores, labels) if 0 < labels.sum() < len(labels) else float("nan")}


def compare(inductive: Path, transductive: Path) -> tuple[dict[str, float], dict[str, float], int]:
    """Metrics of both runs on the inductive run's held-back images."""
    try:
        cfg_i = read_json(inductive / "config.json", keys=("data",))
        cfg_t = read_json(transductive / "config.json", keys=("data",))
    except RunFileError as e:
        raise SystemExit(e.strerror) from None
    data = DataConfig(**cfg_i["data"])
    split = load_split(data)
    if not split.heldback:
        raise SystemExit(f"--inductive {inductive}: trained without --holdout-fraction, it has no held-back images")
    same = {k: v for k, v in cfg_t["data"].items() if k != "holdout_fraction"} == \
        {k: v for k, v in cfg_i["data"].items() if k != "holdout_fraction"}
    if not same or cfg_t["data"].get("holdout_fraction", 0.0):
        raise SystemExit(f"--transductive {transductive}: must be trained on the same data and split as "
                         f"{inductive}, without a holdout")
    unlabeled_t = json.loads((transductive / "split.json").read_text())["unlabeled"]
    missing = [s.name for s in split.heldback if s.name not in unlabeled_t]
    if missing:
        raise SystemExit(f"--transductive {transductive}: its D_u lacks {missing[:3]}")
    images = [s.image for s in split.heldback]
    gt = np.stack([s.mask for s in split.heldback])
    return (scores(Segmenter.load(inductive), images, gt), scores(Segmenter.load(transductive), images, gt),
            len(images))


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--inductive", action="append", required=True, help="run trained with --holdout-fraction")
    p.add_argument("--transductive", action="append", required=True, help="the same run without it")
    args = p.parse_args(argv)
    if len(args.inductive) != len(args.transductive):
        raise SystemExit("give one --transductive run per --inductive run")
    rows = {"inductive": [], "transductive": []}
    print(f"| pair | images | protocol | {' | '.join(METRICS)} |\n|---|---:|---|{'---:|' * len(METRICS)}")
    for a, b in zip(args.inductive, args.transductive):
        ind, trans, n = compare(Path(a), Path(b))
        for name, r in (("inductive", ind), ("transductive", trans)):
            rows[name].append(r)
            print(f"| {Path(a).name} | {n} | {name} | {' | '.join(f'{r[m]:.3f}' for m in METRICS)} |")
    for name, rs in rows.items():
        cells = [f"{np.nanmean([r[m] for r in rs]):.3f} ± {np.nanstd([r[m] for r in rs], ddof=1) if len(rs) > 1 else 0:.3f}"
                 for m in METRICS]
        print(f"| mean of {len(rs)} | | {name} | {' | '.join(cells)} |")


if __name__ == "__main__":
    main()
