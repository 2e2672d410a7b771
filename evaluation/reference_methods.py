"""The comparison methods of the papers, trained and scored on the same split as the RL method.

evaluate.py calls `reference_maps` once per run: a U-Net trained supervised on D_l (chu2020's
"U-Net" column) and the MVTec AD paper's unsupervised AE in its L2 and SSIM variants, trained on
the anomaly-free train/good images only. Each comes back as score maps on the scored D_u images,
a binary mask (before any CRF) and a probability map for the dense CRF, so every method goes
through the same CRF and the same metric code.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from data.split import Split
from evaluation.metrics import best_f1_threshold
from models.crf import shift_probability
from models.recon_ae import ReconAEConfig, anomaly_maps, train_recon_ae
from models.unet import UNetConfig, predict_unet, train_unet

METHODS = ("unet", "ae-l2", "ae-ssim")
#: Part of the cache key: bump it when a change to the baselines' code changes their results, so
#: that cached results of older code are never reused.
CACHE_VERSION = 2


@dataclass
class ReferenceConfig:
    """Which comparison methods to run and how long to train them."""

    methods: tuple[str, ...] = METHODS
    unet: UNetConfig = field(default_factory=UNetConfig)
    recon: ReconAEConfig = field(default_factory=ReconAEConfig)


@dataclass
class MethodMaps:
    """One method's output on the scored D_u images."""

    name: str
    family: str | None
    """'method', 'unet' or 'ae': which published numbers it sits beside (None: none)"""
    scores: np.ndarray | None
    """(n, S, S) anomaly scores (higher = more anomalous); None when not applicable"""
    prob: np.ndarray | None = None
    """(n, S, S) in [0, 1], p > 0.5 iff the method calls the pixel anomalous: the CRF's unary"""
    threshold: float | None = None
    """score threshold chosen on D_l (methods whose scores are not probabilities)"""
    note: str = ""
    label: str = ""
    """short name for figure panels (default: name)"""

    def __post_init__(self) -> None:
        self.label = self.label or self.name


def scores_to_probability(scores: np.ndarray, threshold: float, scale: float) -> np.ndarray:
    """Logistic map of scores to [0, 1] with p = 0.5 at the threshold, so that a score-based
    method can feed the same dense CRF as the probability-based ones: p > 0.5 iff score > t, and
    `scale` (the spread of the scores on D_l) sets how confident the unary is away from t."""
    z = (scores.astype(np.float64) - threshold) / max(scale, 1e-12)
    return (1.0 / (1.0 + np.exp(-np.clip(z, -50, 50)))).astype(np.float32)


def _with_threshold(name: str, family: str | None, scores_u: np.ndarray, t: float, scale: float,
                    probabilities: bool, note: str, label: str) -> MethodMaps:
    prob = (shift_probability(scores_u, t) if probabilities else scores_to_probability(scores_u, t, scale))
    return MethodMaps(name, family, scores_u, prob, threshold=t, note=note, label=label)


def thresholded(name: str, family: str | None, scores_l: np.ndarray, masks_l: np.ndarray,
                scores_u: np.ndarray, note: str = "", label: str = "", probabilities: bool = False) -> MethodMaps:
    """A score-map method with its threshold chosen for the best F1 on the labeled images.
    probabilities=True: the scores are probabilities, moved to the threshold by a logit shift."""
    t = best_f1_threshold(scores_l, masks_l)
    return _with_threshold(name, family, scores_u, t, float(scores_l.std()), probabilities, note, label)


def prior_matched(name: str, family: str | None, scores_u: np.ndarray, fraction: float, note: str = "",
                  label: str = "", probabilities: bool = False) -> MethodMaps:
    """A score-map method whose threshold flags the same fraction of the D_u pixels as the
    labeled images' defect fraction (D_l and D_u are drawn from the same set, so that is the best
    estimate of D_u's). It uses no D_u label, only the unlabeled score distribution, and needs no
    held-out labeled image: the decision rule when the predictor's own 0.5 point is meaningless
    (alpha-weighted training puts it far from any calibrated posterior)."""
    t = float(np.quantile(scores_u, 1.0 - float(np.clip(fraction, 0.0, 1.0))))
    return _with_threshold(name, family, scores_u, t, float(scores_u.std()), probabilities, note, label)


def nbs_method(prob_u: np.ndarray, refit: bool, heldout_prob: np.ndarray | None, heldout_gt: np.ndarray | None,
               defect_fraction: float) -> MethodMaps:
    """The NBS method's maps and decision rule on the scored images (predict.py's bundle keeps the
    same threshold):
    - a final predictor (predictor_refit_steps), fit with the U-Net baseline's pos-weighted BCE +
      Dice, decides as the U-Net does: p > 0.5 (threshold None);
    - with held-out maps (heldout_predictors), the best-F1 threshold of the leave-one-out
      predictors' D_l maps, not p > 0.5 of a predictor trained with alpha-weighted BCE (whose 0.5
      point over-predicts by design);
    - otherwise the threshold that flags D_l's defect fraction of the D_u pixels (no D_u label)."""
    if refit:
        return MethodMaps("NBS", "method", prob_u, prob_u, note="final predictor fit on the best D_l profiles")
    if heldout_gt is not None and heldout_gt.any():
        return thresholded("NBS", "method", heldout_prob, heldout_gt, prob_u,
                           note="threshold from held-out D_l maps", probabilities=True)
    return prior_matched("NBS", "method", prob_u, defect_fraction,
                         note="threshold: D_u fraction flagged = D_l defect fraction", probabilities=True)


def cache_key(split: Split, config: ReferenceConfig, seed: int) -> str:
    """What the baselines' results depend on: the images of the split (names and pixels), the
    configuration and the seed. The sampler, preset and agent of a run do not enter."""
    h = hashlib.sha256()
    h.update(json.dumps({"version": CACHE_VERSION, "config": dataclasses.asdict(config), "seed": seed,
                         "labeled": [s.name for s in split.labeled], "unlabeled": [s.name for s in split.unlabeled],
                         "normal": [s.name for s in split.normal]}, sort_keys=True, default=str).encode())
    for s in split.labeled + split.unlabeled + split.normal:
        h.update(s.image.tobytes())
        h.update(np.packbits(s.mask).tobytes())
    return h.hexdigest()[:20]


def reference_maps(split: Split, config: ReferenceConfig | None = None, seed: int = 0,
                   device: str | torch.device = "cpu", cache_dir: str | Path | None = None) -> list[MethodMaps]:
    """Train each configured comparison method on `split` and score its D_u images.

    With `cache_dir`, results are kept there under a key of the split's images, the config and the
    seed, so a sweep over presets and agents trains each seed's baselines once (on CPU the same
    key gives the same numbers anyway; on CUDA it also keeps the baselines identical across cells)."""
    config = config or ReferenceConfig()
    path = None
    if cache_dir is not None:
        path = Path(cache_dir) / f"{cache_key(split, config, seed)}.npz"
        if path.is_file():
            try:
                return load_method_maps(path)
            except (ValueError, OSError, KeyError) as e:  # corrupt: recompute and overwrite it
                print(f"warning: ignoring unreadable baseline cache {path} ({e})")
    out = _train_and_score(split, config, seed, device)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f"{path.stem}.{os.getpid()}.tmp.npz")
        save_method_maps(tmp, out)
        os.replace(tmp, path)  # atomic: parallel cells never read a half-written file
    return out


def save_method_maps(path: Path, methods: list[MethodMaps]) -> None:
    """MethodMaps as an .npz of arrays plus one JSON string: nothing that loading could execute
    (the cache used to be a pickle, which a shared sweep folder could turn into code)."""
    arrays: dict[str, np.ndarray] = {}
    meta = []
    for k, m in enumerate(methods):
        for field_name in ("scores", "prob"):
            value = getattr(m, field_name)
            if value is not None:
                arrays[f"{field_name}_{k}"] = value
        meta.append({"name": m.name, "family": m.family, "threshold": m.threshold, "note": m.note,
                     "label": m.label})
    np.savez(path, meta=np.array(json.dumps(meta)), **arrays)


def load_method_maps(path: Path) -> list[MethodMaps]:
    """Inverse of save_method_maps; refuses pickled content (allow_pickle=False)."""
    with np.load(path, allow_pickle=False) as z:
        meta = json.loads(str(z["meta"]))
        return [MethodMaps(m["name"], m["family"], z[f"scores_{k}"] if f"scores_{k}" in z else None,
                           z[f"prob_{k}"] if f"prob_{k}" in z else None, threshold=m["threshold"],
                           note=m["note"], label=m["label"]) for k, m in enumerate(meta)]


def _train_and_score(split: Split, config: ReferenceConfig, seed: int,
                     device: str | torch.device) -> list[MethodMaps]:
    unknown = set(config.methods) - set(METHODS)
    if unknown:
        raise ValueError(f"unknown reference methods {sorted(unknown)}; choose from {METHODS}")
    images_l = np.stack([s.image for s in split.labeled])
    masks_l = np.stack([s.mask for s in split.labeled])
    images_u = np.stack([s.image for s in split.unlabeled])
    out: list[MethodMaps] = []
    if "unet" in config.methods:
        net, _ = train_unet(images_l, masks_l, config.unet, seed=seed, device=device)
        prob = predict_unet(net, images_u, device=device)
        out.append(MethodMaps(f"U-Net ({len(images_l)} labeled)", "unet", prob, prob, label="U-Net"))
    for kind in ("l2", "ssim"):
        if f"ae-{kind}" not in config.methods:
            continue
        name = f"AE-{kind.upper()} (unsupervised), threshold from D_l"
        if not split.normal:
            out.append(MethodMaps(name, "ae", None, note="not applicable: the dataset has no "
                                  "anomaly-free images to train on", label=f"AE-{kind.upper()}"))
            continue
        normal = np.stack([s.image for s in split.normal])
        side = min(normal.shape[1:3])  # small images: the largest power-of-two patch that fits
        cfg = dataclasses.replace(config.recon, loss=kind,
                                  patch_size=min(config.recon.patch_size, 1 << (side.bit_length() - 1)))
        ae, _ = train_recon_ae(normal, cfg, seed=seed, device=device)
        maps_l = anomaly_maps(ae, images_l, kind, device=device, window=cfg.ssim_window, sigma=cfg.ssim_sigma)
        maps_u = anomaly_maps(ae, images_u, kind, device=device, window=cfg.ssim_window, sigma=cfg.ssim_sigma)
        out.append(thresholded(name, "ae", maps_l, masks_l, maps_u,
                               note=f"trained on {len(normal)} train/good images", label=f"AE-{kind.upper()}"))
    return out
