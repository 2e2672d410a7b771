"""Warnings while training: the signs, read from each update's diagnostics, that the AE's loss
maps cannot carry defect signal on the user's data."""
from __future__ import annotations

import math
from typing import Any

import numpy as np


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
                               "are the images' own intensity. Try another ae_training.lr or AE shape (--set ae.*), or check "
                               "the images (very dark or flat?)")
        if "separation" not in self.warnings and auroc < self.min_auroc:
            new["separation"] = (f"the AE's loss maps do not separate the labeled defects: pixel AUROC "
                                 f"{auroc:.3f} on D_l (median of the last {self.window} updates, at update "
                                 f"{stats['episode']}); nothing downstream can find them. Look at "
                                 "dl_loss_auroc in log.csv and try --set profiles.stride, ae.* or sampler.patch_size")
        self.warnings.update(new)
        return list(new.values())
