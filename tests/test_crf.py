"""Dense CRF: snaps a noisy, misplaced probability map to the object visible in the image."""

from __future__ import annotations

import numpy as np
import pytest

from models.crf import CRFConfig, dense_crf


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum() / (a | b).sum())


def _square_scene(seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Bright 24x24 square on a dark 64x64 background; prob = the square shifted by 3 px + noise."""
    rng = np.random.default_rng(seed)
    image = np.full((64, 64, 3), 30.0)
    image[20:44, 20:44] = 200.0
    image = np.clip(image + rng.normal(0, 5, image.shape), 0, 255).astype(np.uint8)
    gt = np.zeros((64, 64), dtype=bool)
    gt[20:44, 20:44] = True
    prob = np.full((64, 64), 0.3)
    prob[23:47, 23:47] = 0.7
    prob = np.clip(prob + rng.normal(0, 0.15, prob.shape), 0.0, 1.0)
    return image, prob, gt


@pytest.mark.parametrize("seed", [0, 1])
def test_crf_snaps_to_image_edges(seed: int) -> None:
    image, prob, gt = _square_scene(seed)
    labels = dense_crf(image, prob)
    assert labels.dtype == bool and labels.shape == gt.shape
    baseline = _iou(prob >= 0.5, gt)
    refined = _iou(labels, gt)
    assert refined > baseline + 0.2, (baseline, refined)
    assert refined > 0.85


def test_crf_accepts_float_and_gray_images() -> None:
    image, prob, gt = _square_scene()
    from_float = dense_crf(image.astype(np.float32) / 255.0, prob)
    from_gray = dense_crf(image[..., 0], prob)
    assert _iou(from_float, gt) > 0.85
    assert _iou(from_gray, gt) > 0.85


def test_all_zero_prob_gives_all_false() -> None:
    image, _, _ = _square_scene()
    assert not dense_crf(image, np.zeros((64, 64))).any()
    assert dense_crf(image, np.ones((64, 64))).all()


def test_invalid_inputs() -> None:
    image, prob, _ = _square_scene()
    with pytest.raises(ValueError, match="`prob` shape .* does not match `image`"):
        dense_crf(image, prob[:32])
    with pytest.raises(ValueError, match="`prob` must be a probability map in \\[0, 1\\]"):
        dense_crf(image, prob * 2.0 + 0.1)
    with pytest.raises(ValueError, match="`prob` contains NaN"):
        dense_crf(image, np.full((64, 64), np.nan))
    with pytest.raises(ValueError, match="`image` must have shape"):
        dense_crf(np.zeros((64, 64, 4), np.uint8), prob)
    with pytest.raises(ValueError, match="`image` of float dtype"):
        dense_crf(image.astype(np.float32), prob)  # 0-255 floats are ambiguous
    with pytest.raises(ValueError, match="`iterations`"):
        CRFConfig(iterations=0)
