"""What BatchSamplingEnv.render() draws: where the sampler is, what the AE finds hard, where it has been.

One frame is three panels side by side, each the image's side (scaled up by a whole factor to at
least MIN_SIDE px, so that a 32 px image stays visible): the image with the current patch
outlined; the AE's relative loss map, colour-mapped (dark: reconstructed well, bright: hard); the
visit history of this image. `frame_strip` tiles a few frames of one episode into one picture,
which train.py saves per phase of training (runner/frames.py). numpy and OpenCV only: a frame costs
well under a millisecond at 128 px.
"""
from __future__ import annotations

import cv2
import numpy as np

#: Panels are scaled up by a whole factor to at least this side.
MIN_SIDE = 128
#: Outline of the current patch (RGB) and the gap between panels and frames (px).
PATCH_COLOUR, GAP = (0, 255, 0), 4


def _scaled(panel: np.ndarray, factor: int) -> np.ndarray:
    return panel if factor == 1 else cv2.resize(panel, None, fx=factor, fy=factor, interpolation=cv2.INTER_NEAREST)


def colour_mapped(values: np.ndarray) -> np.ndarray:
    """(S, S) non-negative values -> (S, S, 3) uint8 RGB (inferno), scaled to the map's maximum."""
    top = float(values.max())
    grey = np.zeros(values.shape, np.uint8) if top <= 0 else (np.clip(values / top, 0, 1) * 255).astype(np.uint8)
    return cv2.cvtColor(cv2.applyColorMap(grey, cv2.COLORMAP_INFERNO), cv2.COLOR_BGR2RGB)


def render_frame(rgb: np.ndarray, loss: np.ndarray, history: np.ndarray, centre: tuple[int, int],
                 half: int) -> np.ndarray:
    """One frame (H, W, 3) uint8: image | loss map | visit history, the current patch (centre, half
    side `half`) outlined on the image and on the history.

    rgb (3, S, S) in [0, 1]; loss (S, S) >= 0; history (S, S) in [0, 1] (1: visited most)."""
    side = rgb.shape[-1]
    factor = max(1, -(-MIN_SIDE // side))
    image = (np.clip(rgb.transpose(1, 2, 0), 0, 1) * 255).astype(np.uint8)
    seen = np.repeat((np.clip(history, 0, 1) * 255).astype(np.uint8)[..., None], 3, axis=2)
    panels = [_scaled(p, factor) for p in (image, colour_mapped(loss), seen)]
    (cy, cx), k = centre, factor
    box = ((cx - half) * k, (cy - half) * k), ((cx + half) * k - 1, (cy + half) * k - 1)
    for p in (panels[0], panels[2]):
        cv2.rectangle(p, box[0], box[1], PATCH_COLOUR, max(1, k // 2))
    gap = np.full((side * k, GAP, 3), 255, np.uint8)
    return np.concatenate([panels[0], gap, panels[1], gap, panels[2]], axis=1)


def frame_strip(frames: list[np.ndarray], labels: list[str], columns: int = 2) -> np.ndarray:
    """Frames of equal shape tiled row by row, `columns` per row, each with its label above it."""
    if not frames:
        raise ValueError("frame_strip needs at least one frame")
    h, w = frames[0].shape[:2]
    label_h = 18
    cells = []
    for frame, label in zip(frames, labels):
        cell = np.full((h + label_h, w, 3), 255, np.uint8)
        cell[label_h:] = frame
        cv2.putText(cell, label, (2, label_h - 5), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (0, 0, 0), 1, cv2.LINE_AA)
        cells.append(cell)
    cells += [np.full_like(cells[0], 255)] * (-len(cells) % columns)
    gap_v = np.full((h + label_h, GAP * 2, 3), 255, np.uint8)
    rows = [np.concatenate([x for c in cells[i:i + columns] for x in (c, gap_v)][:-1], axis=1)
            for i in range(0, len(cells), columns)]
    gap_h = np.full((GAP * 2, rows[0].shape[1], 3), 255, np.uint8)
    return np.concatenate([x for r in rows for x in (r, gap_h)][:-1], axis=0)
