"""Train the neural batch sampler (and with it the AE and the predictor) on one category.

    python train.py                                   # built-in synthetic data, CPU-sized defaults
    python train.py --data-root /data/mvtec_anomaly_detection --category bottle --image-size 256
    python train.py --set patches_per_update=16 --set ae.bottleneck=32    # any EnvConfig field
    python train.py --resume runs/<run>               # continue after Ctrl-C or a crash

Writes a run folder: config.json, split.json, log.csv, checkpoint.pt (latest, for --resume),
best_profiles.npz (D_l and D_u loss profiles of the lowest prediction loss), predictor.pt and
summary.json. Evaluate it with `python evaluate.py <run folder>`.
"""
from __future__ import annotations

from pathlib import Path

from common.errors import run_main
from runner.training import train


def main(argv: list[str] | None = None) -> Path:
    """Train one run (runner.training.train: arguments in runner.spec.Args); returns its folder."""
    return train(argv)


if __name__ == "__main__":
    run_main(main)  # a full disk, a read-only folder, a bad setting: one line naming it, not a traceback
