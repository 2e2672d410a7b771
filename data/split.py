"""The paper's semi-supervised split: a few labeled test images (D_l), the rest unlabeled (D_u).

Chu & Kitani (2020) and Noghredeh et al. (2025) draw D_l at random from a class's MVTec AD *test*
set, so it contains anomalies; the remaining test images form the scored D_u. ``train/good``
images may be added to D_u to give the autoencoder more normal data, but they are never scored
(they have no defects, and the papers report metrics on the test images only).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from data.mvtec import CategoryData, DatasetError, Sample

MAX_REDRAWS = 1000


@dataclass
class Split:
    """Labeled / unlabeled partition of one category, reproducible from ``seed``."""

    category: str
    seed: int
    labeled: list[Sample]
    """D_l: ``n_labeled`` test images drawn with ``seed``; at least one has anomalous pixels."""
    unlabeled: list[Sample]
    """D_u scored: the rest of the test set, in the test set's (sorted) order."""
    extra_unlabeled: list[Sample] = field(default_factory=list)
    """train/good images added to D_u when ``include_train_good``; never scored."""

    def describe(self) -> dict[str, Any]:
        """JSON-able record of the split, written next to results so a run can be audited."""

        def counts(samples: list[Sample]) -> dict[str, int]:
            return dict(sorted(Counter(s.defect_type for s in samples).items()))

        return {
            "category": self.category,
            "seed": self.seed,
            "labeled": [s.name for s in self.labeled],
            "unlabeled": [s.name for s in self.unlabeled],
            "n_labeled": len(self.labeled),
            "n_unlabeled": len(self.unlabeled),
            "n_extra_unlabeled": len(self.extra_unlabeled),
            "labeled_per_defect_type": counts(self.labeled),
            "unlabeled_per_defect_type": counts(self.unlabeled),
        }


def make_split(
    data: CategoryData,
    n_labeled: int = 5,
    seed: int = 0,
    include_train_good: bool = False,
) -> Split:
    """Draw D_l from ``data.test`` with ``numpy.random.default_rng(seed)``.

    A D_l without a single anomalous pixel gives the predictor no positive label to learn from,
    so such a draw is rejected and redrawn from the same generator (deterministic for a seed).
    """
    n_test = len(data.test)
    if not 1 <= n_labeled < n_test:
        raise ValueError(
            f"n_labeled must be >= 1 and < the number of test images ({n_test}) of "
            f"{data.category!r}, got n_labeled={n_labeled}"
        )
    anomalous = np.array([s.is_anomalous for s in data.test])
    if not anomalous.any():
        raise DatasetError(
            f"test set of {data.root} has no image with an anomalous pixel: the semi-supervised "
            "split needs at least one defect mask for D_l"
        )
    rng = np.random.default_rng(seed)
    for _ in range(MAX_REDRAWS):
        chosen = rng.choice(n_test, size=n_labeled, replace=False)
        if anomalous[chosen].any():
            break
    else:  # pragma: no cover - only with a vanishing anomaly fraction; force one in
        # No chosen index is anomalous here, so the replacement cannot duplicate one.
        chosen[0] = int(rng.choice(np.flatnonzero(anomalous)))
    chosen_set = set(int(i) for i in chosen)
    labeled = [data.test[i] for i in sorted(chosen_set)]
    unlabeled = [s for i, s in enumerate(data.test) if i not in chosen_set]
    return Split(
        category=data.category,
        seed=seed,
        labeled=labeled,
        unlabeled=unlabeled,
        extra_unlabeled=list(data.train_good) if include_train_good else [],
    )
