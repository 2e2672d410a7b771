"""Published pixel-level numbers the reports print beside ours (from ../shared/method.md).

Only what the papers state: chu2020 Table 1 pixel F1 (|D_l| = 5) of the proposed method, a U-Net
on the same labeled images and the MVTec AD paper's unsupervised AE, plus CrackForest and
NanoTWICE; noghredeh2025 F1-max / pixel AUROC of their method and U-Net F1-max. They were measured
at 256 px on the papers' own splits, so they are a reference, not a paired comparison.
"""
from __future__ import annotations

import math

#: chu2020 Table 1 (and text): pixel F1 of (proposed, U-Net, unsupervised AE); None = not reported.
CHU2020_F1: dict[str, tuple[float, float, float | None]] = {
    "bottle": (.80, .31, .34), "cable": (.31, .25, .10), "capsule": (.12, .05, .08),
    "hazelnut": (.50, .29, .22), "metal_nut": (.82, .29, .23), "pill": (.42, .14, .09),
    "screw": (.08, .01, .06), "toothbrush": (.52, .28, .09), "transistor": (.18, .10, .09),
    "zipper": (.68, .26, .13), "carpet": (.62, .43, .08), "grid": (.17, .12, .02),
    "leather": (.36, .20, .02), "tile": (.64, .37, .21), "wood": (.50, .36, .16),
    "crackforest": (.36, .21, None), "nanotwice": (.33, .45, None),
}

#: noghredeh2025: (F1-max, pixel AUROC) of their method and F1-max of the U-Net.
NOGHREDEH2025: dict[str, tuple[float, float, float]] = {
    "cable": (.56, .93, .25), "toothbrush": (.40, .93, .28), "transistor": (.47, .87, .10),
    "grid": (.22, .85, .12), "wood": (.48, .85, .36),
}

#: Which published number family a report row belongs to.
FAMILIES = ("method", "unet", "ae")


def published_numbers(category: str, family: str | None) -> dict[str, float]:
    """{"published F1": ..., "published F1-max": ..., "published pixel AUROC": ...} for a category
    and a row family ('method', 'unet' or 'ae'; None for rows no paper reports); NaN where the
    papers report nothing."""
    if family is not None and family not in FAMILIES:
        raise ValueError(f"family must be one of {FAMILIES} or None, got {family!r}")
    key = category.lower()
    out = {"published F1": math.nan, "published F1-max": math.nan, "published pixel AUROC": math.nan}
    if family is None:
        return out
    chu = CHU2020_F1.get(key)
    if chu is not None:
        value = chu[FAMILIES.index(family)]
        out["published F1"] = math.nan if value is None else value
    nog = NOGHREDEH2025.get(key)
    if nog is not None and family == "method":
        out["published F1-max"], out["published pixel AUROC"] = nog[0], nog[1]
    elif nog is not None and family == "unet":
        out["published F1-max"] = nog[2]
    return out
