"""The comparison methods of the papers, trained and scored on the same split as the RL method.

evaluate.py calls `reference_maps` once per run: a U-Net trained supervised on D_l (chu2020's
"U-Net" column), the mean of several such fits (the fair match for `ours`, whose final predictor
pools fits of the same recipe too), the same fits pooled by their mean logit (as `ours` pools
them) and the MVTec AD paper's unsupervised AE in its L2 and SSIM
variants, trained on the anomaly-free train/good images only. Each comes back as score maps on the scored D_u images,
a binary mask (before any CRF) and a probability map for the dense CRF, so every method goes
through the same CRF and the same metric code.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

import numpy as np
import torch

from baselines.recon_ae import ReconAEConfig, anomaly_maps, train_recon_ae
from baselines.unet import UNetConfig, predict_unet, train_unet
from common.files import RunFileError, write_atomic
from data.split import Split
from evaluation.decisions import HeldOutMaps, MethodMaps, choose_crf, scores_to_probability, thresholded

METHODS = ("unet", "unet-ensemble", "unet-ensemble-logit", "ae-l2", "ae-ssim")
#: Part of the cache key: bump it when a change to the baselines' code changes their results, so
#: that cached results of older code are never reused.
CACHE_VERSION = 5  # 5: the U-Net trained by models.fit (the final predictor's loop)


@dataclass
class ReferenceConfig:
    """Which comparison methods to run and how long to train them."""

    methods: tuple[str, ...] = METHODS
    unet: UNetConfig = field(default_factory=UNetConfig)
    unet_fits: int = 3
    """fits averaged by 'unet-ensemble' (their mean probability) and 'unet-ensemble-logit' (their
    mean logit, as `ours`' final predictor pools); seeds seed, seed + 1000, ...; the first is 'unet''s own"""
    recon: ReconAEConfig = field(default_factory=ReconAEConfig)


def method_settings(config: ReferenceConfig, method: str) -> dict:
    """The part of `config` that one method's results depend on."""
    if method == "unet":
        return {"unet": dataclasses.asdict(config.unet)}
    if method in ("unet-ensemble", "unet-ensemble-logit"):
        return {"unet": dataclasses.asdict(config.unet), "fits": config.unet_fits}
    return {"recon": dataclasses.asdict(config.recon)}


def cache_key(split: Split, config: ReferenceConfig, seed: int, method: str) -> str:
    """What one baseline's results depend on: the images of the split (names and pixels), that
    method's settings and the seed. The sampler, preset and agent of a run do not enter, nor do
    the other baselines: adding one to a sweep re-uses the results of the others."""
    h = hashlib.sha256()
    h.update(json.dumps({"version": CACHE_VERSION, "method": method, "config": method_settings(config, method),
                         "seed": seed,
                         "labeled": [s.name for s in split.labeled], "unlabeled": [s.name for s in split.unlabeled],
                         "normal": [s.name for s in split.normal]}, sort_keys=True, default=str).encode())
    for s in split.labeled + split.unlabeled + split.normal:
        h.update(s.image.tobytes())
        h.update(np.packbits(s.mask).tobytes())
    return h.hexdigest()[:20]


def reference_maps(split: Split, config: ReferenceConfig | None = None, seed: int = 0,
                   device: str | torch.device = "cpu", cache_dir: str | Path | None = None) -> list[MethodMaps]:
    """Train each configured comparison method on `split` and score its D_u images.

    With `cache_dir`, each method's result is kept there under a key of the split's images, that
    method's settings and the seed, so a sweep over presets and agents trains each seed's
    baselines once (on CPU the same key gives the same numbers anyway; on CUDA it also keeps the
    baselines identical across cells)."""
    config = config or ReferenceConfig()
    unknown = set(config.methods) - set(METHODS)
    if unknown:
        raise ValueError(f"unknown reference methods {sorted(unknown)}; choose from {METHODS}")
    if config.unet_fits < 1:
        raise ValueError(f"unet_fits must be >= 1, got {config.unet_fits}")
    paths: dict[str, Path] = {}
    done: dict[str, MethodMaps] = {}
    if cache_dir is not None:
        for method in config.methods:
            path = paths[method] = Path(cache_dir) / f"{cache_key(split, config, seed, method)}.npz"
            if path.is_file():
                try:
                    maps = load_method_maps(path)[0]
                    _check_cached(maps, split)
                    done[method] = maps
                except (ValueError, OSError, KeyError, IndexError, TypeError, EOFError, zipfile.BadZipFile) as e:
                    # corrupt, truncated, pickled or of another split: recompute and overwrite it
                    print(f"warning: ignoring unreadable baseline cache {path} ({str(e).splitlines()[0] if str(e) else type(e).__name__})")
    missing = tuple(m for m in config.methods if m not in done)
    if missing:
        fresh = _train_and_score(split, dataclasses.replace(config, methods=missing), seed, device)
        for method, maps in fresh.items():
            done[method] = maps
            if method in paths:
                path = paths[method]
                try:
                    path.parent.mkdir(parents=True, exist_ok=True)
                except OSError as e:
                    raise RunFileError(e.errno, f"cannot create the baseline cache {path.parent}: {e.strerror}") from None

                def write(tmp: Path, maps: MethodMaps = maps) -> None:
                    with open(tmp, "wb") as f:  # a file object: np.savez would append .npz to the name
                        save_method_maps(f, [maps])

                write_atomic(path, write)  # atomic: parallel cells never read a half-written file
    return [done[m] for m in config.methods]


def _check_cached(m: MethodMaps, split: Split) -> None:
    """ValueError unless a cached method's maps fit the split: one float map per scored D_u image
    at the split's size, and a finite threshold (or none)."""
    n, (h, w) = len(split.unlabeled), split.unlabeled[0].mask.shape if split.unlabeled else (0, 0)
    for name in ("scores", "prob"):
        a = getattr(m, name)
        if a is not None and (a.dtype.kind != "f" or a.shape != (n, h, w)):
            raise ValueError(f"its {name} are {a.dtype} {a.shape}, expected float ({n}, {h}, {w})")
    if m.threshold is not None and not (isinstance(m.threshold, (int, float)) and math.isfinite(m.threshold)):
        raise ValueError(f"its threshold {m.threshold!r} is not a number")


def save_method_maps(path: Path | BinaryIO, methods: list[MethodMaps]) -> None:
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
                     "label": m.label, "crf": m.crf, "crf_choice": m.crf_choice})
    np.savez(path, meta=np.array(json.dumps(meta)), **arrays)


def load_method_maps(path: Path) -> list[MethodMaps]:
    """Inverse of save_method_maps; refuses pickled content (allow_pickle=False)."""
    with np.load(path, allow_pickle=False) as z:
        meta = json.loads(str(z["meta"]))
        if not isinstance(meta, list) or not all(isinstance(m, dict) for m in meta):
            raise ValueError(f"{path}: its 'meta' is not a list of methods")
        return [MethodMaps(m["name"], m["family"], z[f"scores_{k}"] if f"scores_{k}" in z else None,
                           z[f"prob_{k}"] if f"prob_{k}" in z else None, threshold=m["threshold"],
                           note=m["note"], label=m["label"], crf=m["crf"], crf_choice=m["crf_choice"])
                for k, m in enumerate(meta)]


def _train_and_score(split: Split, config: ReferenceConfig, seed: int,
                     device: str | torch.device) -> dict[str, MethodMaps]:
    images_l = np.stack([s.image for s in split.labeled])
    masks_l = np.stack([s.mask for s in split.labeled])
    images_u = np.stack([s.image for s in split.unlabeled])
    out: dict[str, MethodMaps] = {}
    ensembles = {"unet-ensemble", "unet-ensemble-logit"} & set(config.methods)
    n_fits = config.unet_fits if ensembles else int("unet" in config.methods)
    logits = []
    for k in range(n_fits):  # fit 0 is the single U-Net's: same seed, same net
        net, _ = train_unet(images_l, masks_l, config.unet, seed=seed + 1000 * k, device=device,
                            progress=f"baseline: U-Net fit {k + 1}/{n_fits} on D_l")
        logits.append(torch.from_numpy(predict_unet(net, images_u, device=device, logits=True)))
    probs = [torch.sigmoid(z).numpy() for z in logits]
    if "unet" in config.methods:
        out["unet"] = MethodMaps(f"U-Net ({len(images_l)} labeled)", "unet", probs[0], probs[0], label="U-Net")
    if "unet-ensemble" in config.methods:
        prob = np.mean(probs, axis=0).astype(np.float32)
        out["unet-ensemble"] = MethodMaps(f"U-Net ({len(images_l)} labeled), mean of {n_fits} fits", "unet", prob,
                                          prob, label=f"U-Net x{n_fits}")
    if "unet-ensemble-logit" in config.methods:  # the match for ours' pool (predictor_refit_pool='logit')
        prob = torch.sigmoid(torch.stack(logits).mean(dim=0)).numpy().astype(np.float32)
        out["unet-ensemble-logit"] = MethodMaps(f"U-Net ({len(images_l)} labeled), logit mean of {n_fits} fits",
                                                "unet", prob, prob, label=f"U-Net x{n_fits} logit")
    for kind in ("l2", "ssim"):
        if f"ae-{kind}" not in config.methods:
            continue
        name = f"AE-{kind.upper()} (unsupervised), threshold from D_l"
        if not split.normal:
            out[f"ae-{kind}"] = MethodMaps(name, "ae", None, note="not applicable: the dataset has no "
                                           "anomaly-free images to train on", label=f"AE-{kind.upper()}")
            continue
        normal = np.stack([s.image for s in split.normal])
        side = min(normal.shape[1:3])  # small images: the largest power-of-two patch that fits
        cfg = dataclasses.replace(config.recon, loss=kind,
                                  patch_size=min(config.recon.patch_size, 1 << (side.bit_length() - 1)))
        ae, _ = train_recon_ae(normal, cfg, seed=seed, device=device,
                               progress=f"baseline: AE-{kind.upper()} on {len(normal)} train/good images")
        maps_l = anomaly_maps(ae, images_l, kind, device=device, window=cfg.ssim_window, sigma=cfg.ssim_sigma)
        maps_u = anomaly_maps(ae, images_u, kind, device=device, window=cfg.ssim_window, sigma=cfg.ssim_sigma)
        m = thresholded(name, "ae", maps_l, masks_l, maps_u,
                        note=f"trained on {len(normal)} train/good images", label=f"AE-{kind.upper()}")
        # The AE never saw D_l, so its D_l maps are held-out maps: the CRF is chosen on them too,
        # as the method's is (the threshold is their best-F1 point, the unary that of D_u's maps).
        unary_l = scores_to_probability(maps_l, m.threshold, float(maps_l.std()))
        out[f"ae-{kind}"] = choose_crf(m, unary_l, HeldOutMaps(unary_l, masks_l, images_l))
    return out
