"""The paper's semi-supervised split: a few labeled test images (D_l), the rest unlabeled (D_u).

Chu & Kitani (2020) draw D_l at random from a class's MVTec AD *test* set, so it contains
anomalies; Noghredeh et al. (2025) draw k images from *each* anomalous defect type instead
(``per_defect_type=k``). The remaining test images form the scored D_u. ``train/good`` and
unannotated images may be added to D_u to give the autoencoder more data, but they are never
scored (train/good has no defects, unannotated images have no ground truth, and the papers
report metrics on the annotated test images only).
"""

from __future__ import annotations

import hashlib
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from data.mvtec import GOOD, CategoryData, DatasetError, Sample

MAX_REDRAWS = 1000
PARTS: dict[str, str] = {"labeled": "D_l", "unlabeled": "D_u", "extra_unlabeled": "the unscored D_u images",
                         "normal": "the normal (train/good) images", "heldback": "the held-back test images"}
"""Split attribute -> how messages name it."""
MAX_CHANGES_SHOWN = 10


@dataclass
class Split:
    """Labeled / unlabeled partition of one category, reproducible from ``seed``."""

    category: str
    seed: int
    labeled: list[Sample]
    """D_l: test images drawn with ``seed`` (``n_labeled`` of them, or ``per_defect_type`` per
    anomalous type), in the test set's order; at least one has anomalous pixels."""
    unlabeled: list[Sample]
    """D_u scored: the rest of the test set, in the test set's (sorted) order."""
    extra_unlabeled: list[Sample] = field(default_factory=list)
    """Added to D_u, never scored: train/good images (``include_train_good``), then
    unannotated ones (``include_unannotated``)."""
    normal: list[Sample] = field(default_factory=list)
    """The dataset's anomaly-free training images (train/good), whether or not they join D_u:
    what AE pretraining (noghredeh2025) and the unsupervised baseline train on. Empty when the
    dataset has none (CrackForest) or they were not loaded."""
    heldback: list[Sample] = field(default_factory=list)
    """Test images kept out of D_u altogether (``holdout_fraction``): never sampled, never scored
    by evaluate.py; images the trained model has not seen, to measure it inductively
    (scripts/inductive.py, predict.py)."""

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
            "n_normal": len(self.normal),
            "labeled_per_defect_type": counts(self.labeled),
            "unlabeled_per_defect_type": counts(self.unlabeled),
            "extra_unlabeled_per_defect_type": counts(self.extra_unlabeled),
            "heldback": [s.name for s in self.heldback],
        }

    def fingerprint(self) -> dict[str, dict[str, dict[str, str]]]:
        """Per part (labeled, unlabeled, extra_unlabeled, normal): image name -> sha1 of its image
        file's bytes and of its mask at this image size.

        Recorded in split.json by train.py, so that a resume or an evaluation on data that changed
        since (an image added or removed, a file replaced, a mask redrawn) is refused instead of
        silently mixing two datasets. The mask is hashed as loaded because its file is not kept
        (it may be a PNG or a CrackForest .mat). Cheap: one read of files the loader just read."""
        def digest(s: Sample) -> dict[str, str]:
            return {"file": hashlib.sha1(s.path.read_bytes()).hexdigest(),
                    "mask": hashlib.sha1(np.packbits(s.mask).tobytes()).hexdigest()}

        return {part: {s.name: digest(s) for s in getattr(self, part)} for part in PARTS}


def recorded_split_problem(recorded: Any) -> str | None:
    """What is wrong with the structure of a split.json (None when it is what train.py writes):
    "labeled" and "unlabeled" lists of image names, and a "fingerprint", when there is one, of
    part -> image name -> {"file": sha1, "mask": sha1}."""
    if not isinstance(recorded, dict):
        return "it is not a mapping"
    for part in ("labeled", "unlabeled"):
        names = recorded.get(part)
        if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
            return f"{part!r} is not a list of image names"
    fingerprint = recorded.get("fingerprint")
    if fingerprint is None:
        return None
    if not isinstance(fingerprint, dict) or not set(fingerprint) <= set(PARTS):
        return f"its fingerprint is not a mapping of {', '.join(PARTS)} to image hashes"
    for part, images in fingerprint.items():
        if not isinstance(images, dict) or not all(
                isinstance(d, dict) and isinstance(d.get("file"), str) and isinstance(d.get("mask"), str)
                for d in images.values()):
            return f"its fingerprint of {part!r} is not a mapping of image names to {{\"file\": sha1, \"mask\": sha1}}"
    return None


def split_changes(recorded: dict[str, Any], split: Split) -> list[str]:
    """How `split` differs from the split.json a run recorded, one phrase per change ("image
    crack/003 added to D_u", "file /data/x/003.png changed (D_l image crack/003)"); [] if none.

    Runs older than the fingerprint recorded only the D_l and D_u names: only those are compared."""
    fingerprint = recorded.get("fingerprint")
    now = split.fingerprint() if fingerprint is not None else None
    changes = []
    for part, label in PARTS.items():
        samples = {s.name: s for s in getattr(split, part)}
        if fingerprint is not None:
            before, after = fingerprint.get(part, {}), now[part]
        elif part in recorded:
            before, after = dict.fromkeys(recorded[part]), dict.fromkeys(samples)
        else:
            continue
        changes += [f"image {n} added to {label}" for n in after if n not in before]
        changes += [f"image {n} removed from {label}" for n in before if n not in after]
        kept = [n for n in before if n in after]
        if kept != [n for n in after if n in before]:
            changes.append(f"the order of the images of {label} changed")
        for n in kept:
            if before[n] is None or before[n] == after[n]:
                continue
            if before[n].get("file") != after[n]["file"]:
                changes.append(f"file {samples[n].path} changed ({label} image {n})")
            else:
                changes.append(f"mask of {label} image {n} changed")
    return changes


def describe_changes(changes: list[str]) -> str:
    """The first MAX_CHANGES_SHOWN changes, joined, and how many more there are."""
    more = len(changes) - MAX_CHANGES_SHOWN
    return "; ".join(changes[:MAX_CHANGES_SHOWN]) + (f"; and {more} more" if more > 0 else "")


def make_split(
    data: CategoryData,
    n_labeled: int = 5,
    seed: int = 0,
    include_train_good: bool = False,
    *,
    per_defect_type: int | None = None,
    include_unannotated: bool = False,
    holdout_fraction: float = 0.0,
) -> Split:
    """Draw D_l from ``data.test`` with ``numpy.random.default_rng(seed)``.

    Default (Chu & Kitani 2020): ``n_labeled`` images from the whole test set. A D_l without a
    single anomalous pixel gives the predictor no positive label to learn from, so such a draw is
    rejected and redrawn from the same generator (deterministic for a seed).

    ``per_defect_type=k`` (Noghredeh et al. 2025): k images from each anomalous defect type
    (every type but ``"good"``), drawn type by type in sorted type order; ``n_labeled`` is then
    ignored. Each type must keep at least one image for D_u, so that every type is scored.

    ``include_train_good`` / ``include_unannotated`` add ``data.train_good`` /
    ``data.unannotated`` (in that order) to ``extra_unlabeled``: sampled, never scored.

    ``holdout_fraction`` moves that fraction of the non-labeled test images (rounded) out of D_u
    into ``heldback``, drawn from a generator of its own, so D_l and the rest of the split's draws
    are those of the same seed without a holdout: a run with it and one without have the same D_l,
    and the held-back images are in the second run's D_u (the transductive comparison).
    """
    if not 0.0 <= holdout_fraction < 1.0:
        raise ValueError(f"holdout_fraction must be in [0, 1), got {holdout_fraction}")
    if per_defect_type is None:
        chosen_set = _draw_any(data, n_labeled, seed)
    else:
        chosen_set = _draw_per_defect_type(data, per_defect_type, seed)
    labeled = [data.test[i] for i in sorted(chosen_set)]
    unlabeled = [s for i, s in enumerate(data.test) if i not in chosen_set]
    n_held = int(round(holdout_fraction * len(unlabeled)))
    held = set(np.random.default_rng([seed, 1]).choice(len(unlabeled), n_held, replace=False).tolist()) if n_held else set()
    heldback = [s for i, s in enumerate(unlabeled) if i in held]
    unlabeled = [s for i, s in enumerate(unlabeled) if i not in held]
    extra = list(data.train_good) if include_train_good else []
    if include_unannotated:
        extra += data.unannotated
    return Split(
        category=data.category,
        seed=seed,
        labeled=labeled,
        unlabeled=unlabeled,
        extra_unlabeled=extra,
        normal=list(data.train_good),
        heldback=heldback,
    )


def _anomalous_flags(data: CategoryData) -> np.ndarray:
    """Which test images have anomalous pixels; refuses a test set with none."""
    anomalous = np.array([s.is_anomalous for s in data.test])
    if not anomalous.any():
        raise DatasetError(
            f"test set of {data.root} has no image with an anomalous pixel: the semi-supervised "
            "split needs at least one defect mask for D_l"
        )
    return anomalous


def _draw_any(data: CategoryData, n_labeled: int, seed: int) -> set[int]:
    """Indices of ``n_labeled`` test images; the draws are those of the original make_split, so
    splits (and results) recorded with a seed stay the same."""
    n_test = len(data.test)
    if not 1 <= n_labeled < n_test:
        raise ValueError(
            f"n_labeled must be >= 1 and < the number of test images ({n_test}) of "
            f"{data.category!r}, got n_labeled={n_labeled}"
        )
    anomalous = _anomalous_flags(data)
    rng = np.random.default_rng(seed)
    for _ in range(MAX_REDRAWS):
        chosen = rng.choice(n_test, size=n_labeled, replace=False)
        if anomalous[chosen].any():
            break
    else:  # pragma: no cover - only with a vanishing anomaly fraction; force one in
        # No chosen index is anomalous here, so the replacement cannot duplicate one.
        chosen[0] = int(rng.choice(np.flatnonzero(anomalous)))
    return set(int(i) for i in chosen)


def _draw_per_defect_type(data: CategoryData, k: int, seed: int) -> set[int]:
    """Indices of k test images of each anomalous defect type."""
    if k < 1:
        raise ValueError(f"per_defect_type must be >= 1 (images per defect type), got {k}")
    by_type: dict[str, list[int]] = {}
    for i, s in enumerate(data.test):
        if s.defect_type != GOOD:
            by_type.setdefault(s.defect_type, []).append(i)
    if not by_type:
        raise DatasetError(
            f"test set of {data.root} has no anomalous defect type (only {GOOD!r}): "
            "per_defect_type needs defect images for D_l"
        )
    too_small = {t: len(idx) for t, idx in sorted(by_type.items()) if len(idx) <= k}
    if too_small:
        listed = ", ".join(f"{t}={n}" for t, n in too_small.items())
        raise ValueError(
            f"per_defect_type={k} needs more than {k} test images of each defect type of "
            f"{data.category!r}, so that some remain to score; too few: {listed}"
        )
    anomalous = _anomalous_flags(data)
    rng = np.random.default_rng(seed)
    for _ in range(MAX_REDRAWS):
        chosen = [int(i) for t in sorted(by_type) for i in rng.choice(by_type[t], k, replace=False)]
        if anomalous[chosen].any():
            return set(chosen)
    raise DatasetError(  # pragma: no cover - needs defect types whose masks all vanished
        f"no draw of per_defect_type={k} from {data.root} has an anomalous pixel after "
        f"{MAX_REDRAWS} tries: the defect masks are (nearly) empty at this image size"
    )
