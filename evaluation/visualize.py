"""Qualitative figures: image, ground truth, prediction (and heatmap) side by side, as PNG.

Only OpenCV is used, so figures can be written on headless machines without matplotlib. Images
are taken as RGB (the package's convention) and converted to BGR only when writing.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from common.files import write_atomic

__all__ = ["save_overlay", "save_side_by_side", "overlay_mask", "heatmap"]

_GREEN = (0, 200, 0)  # RGB
_RED = (230, 0, 0)
_LABEL_HEIGHT = 22  # px of white band above each panel for its label
_GAP = 4  # px between panels
_TINT_ALPHA = 0.35


def _to_rgb_uint8(image: np.ndarray) -> np.ndarray:
    """uint8 (H, W, 3) RGB from uint8/float[0,1] RGB or grayscale input."""
    image = np.asarray(image)
    if image.ndim == 3 and image.shape[2] == 1:
        image = image[..., 0]
    if image.ndim == 2:
        image = np.stack([image] * 3, axis=-1)
    if image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"`image` must have shape (H, W, 3) or (H, W), got {image.shape}.")
    if image.dtype != np.uint8:
        if np.issubdtype(image.dtype, np.floating):
            if image.size and (image.min() < 0.0 or image.max() > 1.0):
                raise ValueError("`image` of float dtype must be in [0, 1].")
            image = np.round(image * 255.0)
        image = np.clip(image, 0, 255).astype(np.uint8)
    return np.ascontiguousarray(image)


def _to_mask(mask: np.ndarray, name: str, shape: tuple[int, int]) -> np.ndarray:
    mask = np.asarray(mask)
    if mask.ndim == 3 and mask.shape[-1] == 1:
        mask = mask[..., 0]
    if mask.shape != shape:
        raise ValueError(f"`{name}` shape {mask.shape} does not match image shape {shape}.")
    return mask.astype(bool)


def overlay_mask(image: np.ndarray, mask: np.ndarray, color: tuple[int, int, int]) -> np.ndarray:
    """Tint ``mask`` in ``color`` (RGB) and draw its contour, so both area and border are visible."""
    rgb = _to_rgb_uint8(image)
    m = _to_mask(mask, "mask", rgb.shape[:2])
    out = rgb.copy()
    tint = np.array(color, dtype=np.float32)
    out[m] = np.round((1 - _TINT_ALPHA) * rgb[m] + _TINT_ALPHA * tint).astype(np.uint8)
    contours, _ = cv2.findContours(m.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
    cv2.drawContours(out, contours, -1, color, 1)
    return out


def heatmap(prob: np.ndarray, shape: tuple[int, int] | None = None) -> np.ndarray:
    """Jet colour map of a [0, 1] probability map, as RGB uint8 (values outside are clipped)."""
    p = np.asarray(prob, dtype=np.float32)
    if p.ndim == 3 and p.shape[-1] == 1:
        p = p[..., 0]
    if p.ndim != 2:
        raise ValueError(f"`prob` must have shape (H, W), got {p.shape}.")
    if shape is not None and p.shape != shape:
        raise ValueError(f"`prob` shape {p.shape} does not match image shape {shape}.")
    gray = np.round(np.clip(np.nan_to_num(p), 0.0, 1.0) * 255.0).astype(np.uint8)
    return cv2.cvtColor(cv2.applyColorMap(gray, cv2.COLORMAP_JET), cv2.COLOR_BGR2RGB)


def _labelled(panel: np.ndarray, label: str) -> np.ndarray:
    """Put a white band with ``label`` above ``panel``; text shrinks to fit narrow panels."""
    width = panel.shape[1]
    band = np.full((_LABEL_HEIGHT, width, 3), 255, dtype=np.uint8)
    font, thickness = cv2.FONT_HERSHEY_SIMPLEX, 1
    scale = 0.5
    (text_w, _), _ = cv2.getTextSize(label, font, scale, thickness)
    if text_w > width - 4:
        scale *= max(width - 4, 1) / text_w
    cv2.putText(band, label, (2, _LABEL_HEIGHT - 7), font, scale, (0, 0, 0), thickness, cv2.LINE_AA)
    return np.concatenate([band, panel], axis=0)


def _write_row(path: str | Path, panels: list[tuple[str, np.ndarray]], title: str | None) -> None:
    labelled = [_labelled(p, label) for label, p in panels]
    height = labelled[0].shape[0]
    gap = np.full((height, _GAP, 3), 255, dtype=np.uint8)
    parts: list[np.ndarray] = []
    for i, panel in enumerate(labelled):
        if i:
            parts.append(gap)
        parts.append(panel)
    row = np.concatenate(parts, axis=1)
    if title:
        row = _labelled(row, title)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        ok, buf = cv2.imencode(path.suffix or ".png", cv2.cvtColor(row, cv2.COLOR_RGB2BGR))
    except cv2.error:
        ok = False
    if not ok:
        raise ValueError(f"cannot encode {path} as an image (is the extension .png?)")
    write_atomic(path, lambda tmp: tmp.write_bytes(buf.tobytes()))  # a full disk: RunFileError naming it


def save_overlay(
    path: str | Path,
    image: np.ndarray,
    gt_mask: np.ndarray,
    pred_mask: np.ndarray,
    prob: np.ndarray | None = None,
    title: str | None = None,
) -> None:
    """Write one PNG row: image | ground truth (green) | prediction (red) [| probability heatmap].

    Each panel is the image's size with a label band above it; ``title``, if given, adds one more
    band above the whole row. The output is therefore ``H + 22`` (``+ 22`` more with a title) by
    ``n * W + (n - 1) * 4`` pixels for ``n`` panels.
    """
    rgb = _to_rgb_uint8(image)
    shape = rgb.shape[:2]
    panels = [
        ("image", rgb),
        ("ground truth", overlay_mask(rgb, _to_mask(gt_mask, "gt_mask", shape), _GREEN)),
        ("prediction", overlay_mask(rgb, _to_mask(pred_mask, "pred_mask", shape), _RED)),
    ]
    if prob is not None:
        panels.append(("probability", heatmap(prob, shape)))
    _write_row(path, panels, title)


def save_side_by_side(
    path: str | Path,
    image: np.ndarray,
    gt_mask: np.ndarray,
    predictions: dict[str, np.ndarray],
    title: str | None = None,
    heatmaps: dict[str, np.ndarray] | None = None,
) -> None:
    """Write one PNG row comparing methods: ground truth (green), then each method's mask (red),
    then any ``heatmaps`` (e.g. a probability map).

    ``predictions`` maps a method name (used as the panel label, in insertion order) to its binary
    mask of the image's size; ``heatmaps`` maps a label to a [0, 1] map.
    """
    rgb = _to_rgb_uint8(image)
    shape = rgb.shape[:2]
    panels = [("ground truth", overlay_mask(rgb, _to_mask(gt_mask, "gt_mask", shape), _GREEN))]
    for name, mask in predictions.items():
        panels.append((name, overlay_mask(rgb, _to_mask(mask, f"predictions[{name!r}]", shape), _RED)))
    for name, prob in (heatmaps or {}).items():
        panels.append((name, heatmap(prob, shape)))
    _write_row(path, panels, title)
