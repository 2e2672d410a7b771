"""A trained run as a portable model: the bundle file, and the Segmenter that applies it to images
it has never seen.

The method is transductive (the papers score the D_u images the AE trained on), but the decision
itself only needs what the best moment left behind: the T AE snapshots whose loss maps form the
best profiles, the predictor that reads them, the calibrated threshold and the CRF settings. The
bundle holds exactly that, as tensors plus one JSON string, so it loads weights-only (nothing in
it can execute code) and needs neither the training data nor the run folder.

    seg = Segmenter.load("runs/<run>/bundle.pt")      # or the run folder
    result = seg.predict(images)                      # uint8 RGB arrays of any size
    result.masks, result.scores, result.decisions
"""
from __future__ import annotations

import dataclasses
import json
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import cv2
import numpy as np
import torch

from common.device import resolve_device
from common.settings import ConfigError, check_fields, setting
from data.config import MAX_IMAGE_SIZE
from evaluation.choice import IMAGE_SCORES, image_scores
from models.autoencoder import LOSS_ERRORS, AEConfig, ConvAutoencoder, reconstruction_loss_map
from models.crf import CRFConfig, dense_crf, shift_probability
from models.predictor import predictor_from_saved, probability_maps
from common.files import UnsafeFileError, load_weights, save_weights_atomic

BUNDLE_FORMAT = "nbs-bundle/1"
#: Most nets a bundle's predictor may pool (its metadata says how many to build).
MAX_MEMBERS = 64
BUNDLE_NAME = "bundle.pt"


@dataclass
class BundleMeta:
    """Everything besides the weights that turns an image into a mask, as the run decided it.
    Checked when built (common.settings, then _meta_problem): a crafted or damaged bundle.pt is
    refused before it sizes an allocation or reaches a library."""

    image_size: int = setting(ge=8, le=MAX_IMAGE_SIZE)
    """side the images are resized to (INTER_AREA, as the data loaders do)"""
    patch_size: int = setting(ge=8, power_of_two=True)
    ae: dict[str, Any] = setting()
    """the AEConfig of the snapshots"""
    absolute_error: bool = setting()
    loss_map: str = setting(choices=("tiled", "whole"))
    """'tiled' or 'whole' (EnvConfig.loss_map)"""
    loss_map_stride: int | None = setting(ge=1)
    predictor: dict[str, Any] = setting()
    """predictor.pt's fields besides the state dict (profile_length, width, inputs, skip, arch, norm, refit)"""
    threshold: float = setting(ge=0, le=1)
    """pixel probability threshold of the NBS decision (evaluation.decisions.nbs_method)"""
    threshold_rule: str = setting()
    crf: dict[str, Any] | None = setting()
    """CRFConfig fields; None: the decision is the thresholded map, no CRF (chosen on held-out D_l maps)"""
    source: dict[str, Any] = setting(factory=dict)
    """where it came from: run folder, preset, category, seed, best update (informative only)"""
    error: str | None = setting(None, choices=LOSS_ERRORS)
    """the loss maps' per-pixel error (models.autoencoder.loss_map); None in bundles from before it
    (absolute_error then says 'absolute' or 'squared')"""
    image_score: str = setting("max", choices=IMAGE_SCORES)
    """how an image's score is read off its probability map (evaluation.choice.image_scores)"""
    image_threshold: float | None = setting(None, ge=0)
    """an image is defective when its score is at least this (chosen on D_l,
    evaluation.choice.choose_image_threshold); None: when its mask has any defect pixel"""

    def __post_init__(self) -> None:
        try:
            check_fields(self)
        except ConfigError as e:
            raise ValueError(f"its metadata is not a bundle's: {e}") from None
        problem = _meta_problem(self)
        if problem:
            raise ValueError(f"its metadata is not a bundle's: {problem}")

    @property
    def loss_error(self) -> str:
        return self.error or ("absolute" if self.absolute_error else "squared")


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _meta_problem(m: BundleMeta) -> str | None:
    """What check_fields leaves to check in a bundle's metadata: the sizes against each other and
    the nested settings (the AE's and the CRF's by their own configs), or None."""
    if m.patch_size > m.image_size:
        return f"patch_size={m.patch_size!r}: must be at most image_size ({m.image_size})"
    if m.loss_map_stride is not None and m.loss_map_stride > m.patch_size:
        return f"loss_map_stride={m.loss_map_stride!r}: must be null or a whole number in 1..patch_size ({m.patch_size})"
    try:
        AEConfig(**{**m.ae, "skip_levels": tuple(m.ae.get("skip_levels", ()))})
    except (TypeError, ValueError) as e:  # ConfigError included: it names the field
        return f"ae: {e}"
    if m.crf is not None:
        try:
            CRFConfig(**m.crf)
        except (TypeError, ValueError) as e:
            return f"crf: {e}"
    p = m.predictor
    if not _is_int(p.get("profile_length")) or not 1 <= p["profile_length"] <= 1000:
        return f"predictor.profile_length={p.get('profile_length')!r}: must be a whole number in 1..1000"
    if not _is_int(p.get("width")) or not 1 <= p["width"] <= 512:
        return f"predictor.width={p.get('width')!r}: must be a whole number in 1..512"
    for count in ("ensemble", "image_members", "profile_nets", "image_nets"):  # nets built before any weight is read
        if count in p and (not _is_int(p[count]) or not 0 <= p[count] <= MAX_MEMBERS):
            return f"predictor.{count}={p[count]!r}: must be a whole number in 0..{MAX_MEMBERS}"
    return None


def save_bundle(path: str | Path, meta: BundleMeta, ae_snapshots: Sequence[dict[str, torch.Tensor]],
                predictor_state: dict[str, torch.Tensor]) -> None:
    """Write a bundle atomically: tensors on the CPU and the metadata as one JSON string."""
    if len(ae_snapshots) != meta.predictor["profile_length"]:
        raise ValueError(f"{len(ae_snapshots)} AE snapshots for a profile of length "
                         f"{meta.predictor['profile_length']}")
    save_weights_atomic({"format": BUNDLE_FORMAT, "meta": json.dumps(dataclasses.asdict(meta)),
                         "ae": [{k: t.detach().cpu() for k, t in s.items()} for s in ae_snapshots],
                         "predictor": {k: t.detach().cpu() for k, t in predictor_state.items()}}, path)


@dataclass
class Prediction:
    """Segmenter output, one entry per input image, at each image's own resolution."""

    probabilities: list[np.ndarray]
    """float32 (H, W) anomaly probability maps"""
    masks: list[np.ndarray]
    """bool (H, W) defect masks (threshold, then the dense CRF)"""
    scores: np.ndarray
    """image-level anomaly score: by default the maximum of the probability map (the MVTec AD
    convention); a run that chose another image score on D_l (BundleMeta.image_score) uses that"""
    decisions: np.ndarray
    """bool: the image is called defective when its score reaches the run's image threshold
    (BundleMeta.image_threshold, chosen on D_l), or, without one, when its mask has a defect pixel"""


class Segmenter:
    """Applies a bundle to new images: AE snapshots -> loss profile -> predictor -> threshold -> CRF."""

    def __init__(self, meta: BundleMeta, ae_snapshots: Sequence[dict[str, torch.Tensor]],
                 predictor_state: dict[str, torch.Tensor], device: str | torch.device = "cpu") -> None:
        self.meta = meta
        self.device = resolve_device(device)
        ae_config = AEConfig(**{**meta.ae, "skip_levels": tuple(meta.ae.get("skip_levels", ()))})
        length = meta.predictor["profile_length"]
        if not isinstance(ae_snapshots, (list, tuple)) or len(ae_snapshots) != length:
            n = len(ae_snapshots) if isinstance(ae_snapshots, (list, tuple)) else type(ae_snapshots).__name__
            raise ValueError(f"it holds {n} AE snapshots for profiles of length {length} (predictor.profile_length)")
        self.aes = []
        for k, state in enumerate(ae_snapshots):
            # Built first on the meta device (no memory): the metadata's shapes must be the weights'
            # before a net of the size the metadata asks for is allocated.
            _load_state(lambda d: ConvAutoencoder(meta.patch_size, ae_config).to(d), state, f"AE snapshot {k}")
            ae = ConvAutoencoder(meta.patch_size, ae_config)
            ae.load_state_dict(state)
            self.aes.append(ae.to(self.device).eval())
        if not isinstance(predictor_state, dict) or not predictor_state:
            raise ValueError("its predictor holds no weights")
        build = lambda d: predictor_from_saved({**meta.predictor, "state_dict": predictor_state}, d)  # noqa: E731
        _load_state(build, predictor_state, "predictor")
        self.predictor = build(self.device)
        self.crf = None if meta.crf is None else CRFConfig(**meta.crf)

    @classmethod
    def load(cls, path: str | Path, device: str | torch.device = "auto") -> "Segmenter":
        """A bundle file, or a run folder holding one (bundle.pt, written by train.py).

        Raises FileNotFoundError or ValueError (UnsafeFileError for a file that is not a bundle
        or could execute code) naming the file."""
        path = Path(path)
        if path.is_dir():
            path = path / BUNDLE_NAME
        device = resolve_device(device)  # DeviceError (a ValueError) for one this machine lacks
        saved = load_weights(path, map_location="cpu")
        if not isinstance(saved, dict) or saved.get("format") != BUNDLE_FORMAT:
            raise UnsafeFileError(f"{path} is not a model bundle ({BUNDLE_FORMAT}): train.py writes one "
                                  f"as <run>/{BUNDLE_NAME}")
        try:
            meta = json.loads(saved.get("meta"))
            if not isinstance(meta, dict):
                raise ValueError(f"its metadata is a JSON {type(meta).__name__}, not an object")
            return cls(BundleMeta(**meta), saved.get("ae"), saved.get("predictor"), device)
        except (TypeError, ValueError) as e:  # json's errors included
            raise ValueError(f"{path}: {e}") from None

    def resize(self, image: np.ndarray) -> np.ndarray:
        """An RGB uint8 image at the bundle's square size, resized as the data loaders do."""
        size = self.meta.image_size
        if image.shape[:2] == (size, size):
            return np.ascontiguousarray(image)
        return cv2.resize(image, (size, size), interpolation=cv2.INTER_AREA)

    @torch.no_grad()
    def probability_maps(self, images: np.ndarray) -> np.ndarray:
        """Probability maps (n, S, S) of images already at the bundle's size (n, S, S, 3) uint8."""
        x = torch.as_tensor(images, device=self.device).permute(0, 3, 1, 2).float() / 255.0
        m = self.meta
        profiles = torch.stack([reconstruction_loss_map(ae, x, m.loss_error, stride=m.loss_map_stride,
                                                        whole_image=m.loss_map == "whole") for ae in self.aes], dim=1)
        rgb = x if m.predictor.get("inputs", "profile") == "profile+rgb" else None
        return probability_maps(self.predictor, profiles, rgb).float().cpu().numpy()

    def masks(self, images: np.ndarray, prob: np.ndarray) -> np.ndarray:
        """Decision masks (n, S, S) of images at the bundle's size: the threshold, moved to 0.5 by
        a logit shift, then the dense CRF unless the run's held-out D_l maps dropped it (the masks
        of evaluate.py's headline row, evaluation.decisions.choose_crf)."""
        if self.crf is None:
            return prob >= self.meta.threshold
        return np.stack([dense_crf(img, shift_probability(p, self.meta.threshold), self.crf)
                         for img, p in zip(images, prob)])

    def predict(self, images: Sequence[np.ndarray], batch: int = 8) -> Prediction:
        """Segment RGB uint8 images (H, W, 3) of any size; maps and masks come back at each image's size."""
        out = Prediction([], [], np.zeros(len(images), np.float32), np.zeros(len(images), bool))
        for start in range(0, len(images), batch):
            originals = images[start:start + batch]
            small = np.stack([self.resize(validate_rgb(img, f"images[{start + k}]")) for k, img in enumerate(originals)])
            prob = self.probability_maps(small)
            masks = self.masks(small, prob)
            for k, (img, p, mask) in enumerate(zip(originals, prob, masks)):
                h, w = img.shape[:2]
                out.probabilities.append(cv2.resize(p, (w, h), interpolation=cv2.INTER_LINEAR))
                out.masks.append(cv2.resize(mask.astype(np.uint8), (w, h), interpolation=cv2.INTER_NEAREST) > 0)
                out.scores[start + k] = image_scores(p[None], self.meta.image_score, self.meta.threshold)[0]
                out.decisions[start + k] = (bool(mask.any()) if self.meta.image_threshold is None
                                            else bool(out.scores[start + k] >= self.meta.image_threshold))
        return out


def _load_state(build: Callable[[torch.device], torch.nn.Module], state: Any, what: str) -> None:
    """Check that the weights `state` fit the net `build(device)` makes, building it on the meta
    device (shapes only, no memory); ValueError saying that `what` does not fit otherwise."""
    if not isinstance(state, dict) or not all(isinstance(t, torch.Tensor) for t in state.values()):
        raise ValueError(f"its {what} is not a mapping of tensors")
    meta = torch.device("meta")
    try:
        with warnings.catch_warnings(), meta:
            warnings.simplefilter("ignore")  # "copying ... to a meta parameter is a no-op": intended
            net = build(meta)
            net.load_state_dict(state)
    except (KeyError, TypeError, ValueError, RuntimeError, AttributeError, NotImplementedError) as e:
        why = f"no {e}" if isinstance(e, KeyError) else " ".join(str(e).split())[:300]
        raise ValueError(f"its {what} does not fit the net its metadata describes ({why})") from None


def validate_rgb(image: np.ndarray, name: str = "image") -> np.ndarray:
    """Check that `image` is a uint8 RGB array (H, W, 3); the message names it otherwise."""
    image = np.asarray(image)
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8 or min(image.shape[:2]) < 1:
        raise ValueError(f"{name} must be a uint8 RGB array (H, W, 3), got {image.dtype} {image.shape}")
    return image
