"""The defects of the built-in dataset (data.synthetic): scratches, cracks, holes, stains and
contamination drawn onto a clean image, each until its exact mask (the pixels it altered by more
than ALTERATION_THRESHOLD grey levels) covers MIN_AREA..MAX_AREA of the image."""
from __future__ import annotations

from collections.abc import Callable

import cv2
import numpy as np

ALTERATION_THRESHOLD = 3.0
"""Grey levels (max over channels) a pixel must change by to count as defective."""
MIN_AREA, MAX_AREA = 0.005, 0.05
"""Defect area as a fraction of the image, the range typical of MVTec AD."""
MAX_DEFECT_TRIES = 40

Image = np.ndarray  # float32 (S, S, 3), RGB, 0..255
Region = np.ndarray  # float32 (S, S) in [0, 1]: where a defect may be placed (the object)


def _scale(size: int) -> float:
    """Pixel lengths below are specified at 256 px and scaled with the image."""
    return size / 256.0


def _path(rng: np.random.Generator, start: np.ndarray, length: float, step: float,
          curvature: float, jitter: float) -> np.ndarray:
    """A smooth (low jitter) or jagged (high jitter) random polyline of about ``length`` px."""
    n = max(int(length / step), 2)
    angle = rng.uniform(0, 2 * np.pi)
    turn = rng.normal(0, curvature)
    pts = [start.astype(np.float64)]
    for _ in range(n):
        angle += turn + rng.normal(0, jitter)
        pts.append(pts[-1] + step * np.array([np.cos(angle), np.sin(angle)]))
    return np.array(pts)


def _draw_lines(size: int, paths: list[np.ndarray], thickness: int) -> np.ndarray:
    """Anti-aliased polylines on a float canvas in [0, 1] (sub-pixel positions, shift=4)."""
    canvas = np.zeros((size, size), np.float32)
    for p in paths:
        pts = np.rint(p * 16).astype(np.int32).reshape(-1, 1, 2)
        cv2.polylines(canvas, [pts], False, 1.0, thickness=thickness, lineType=cv2.LINE_AA, shift=4)
    return np.clip(canvas, 0, 1)


def _blob(rng: np.random.Generator, size: int, center: np.ndarray, radius: float,
          softness: float) -> np.ndarray:
    """An irregular blob in [0, 1]: a jittered polygon, rounded, with an edge blur of ``softness``."""
    n = int(rng.integers(7, 13))
    angles = np.sort(rng.uniform(0, 2 * np.pi, n))
    aspect = rng.uniform(0.55, 1.0)
    rot = rng.uniform(0, np.pi)
    r = radius * rng.uniform(0.7, 1.3, n)
    x, y = r * np.cos(angles), r * aspect * np.sin(angles)
    xr = center[0] + x * np.cos(rot) - y * np.sin(rot)
    yr = center[1] + x * np.sin(rot) + y * np.cos(rot)
    canvas = np.zeros((size, size), np.float32)
    pts = np.rint(np.stack([xr, yr], 1) * 16).astype(np.int32).reshape(-1, 1, 2)
    cv2.fillPoly(canvas, [pts], 1.0, lineType=cv2.LINE_AA, shift=4)
    k = max(radius * 0.35, 0.5)
    canvas = (cv2.GaussianBlur(canvas, (0, 0), k) > 0.5).astype(np.float32)  # round the corners
    if softness > 0:
        canvas = cv2.GaussianBlur(canvas, (0, 0), softness)
    return canvas


def _pick_center(rng: np.random.Generator, region: Region, margin: float) -> np.ndarray:
    """A random point of ``region`` (eroded by ``margin`` px when that leaves anything)."""
    size = region.shape[0]
    inside = region > 0.99
    m = int(margin)
    if m > 0:
        eroded = cv2.erode(inside.astype(np.uint8), np.ones((2 * m + 1, 2 * m + 1), np.uint8)) > 0
        inside = eroded if eroded.any() else inside
    border = np.zeros_like(inside)
    b = max(int(margin), 1)
    border[b:size - b, b:size - b] = True
    inside &= border
    ys, xs = np.nonzero(inside) if inside.any() else np.nonzero(region > 0.5)
    i = int(rng.integers(len(xs)))
    return np.array([xs[i] + rng.uniform(-0.5, 0.5), ys[i] + rng.uniform(-0.5, 0.5)])


# ----------------------------------------------------------------------------------- defects
# Each defect renders on the clean float image and returns the altered image; the caller
# derives the exact mask from the difference and enforces the area range by redrawing.
DefectFn = Callable[[Image, Region, np.random.Generator], Image]


def _scratch(img: Image, region: Region, rng: np.random.Generator) -> Image:
    """Thin, gently curved bright or dark line, 1–2 px at 256; often low contrast."""
    size = img.shape[0]
    s = _scale(size)
    length = rng.uniform(110, 220) * s
    path = _path(rng, _pick_center(rng, region, 0.2 * size), length, 3 * s, 0.02, 0.01)
    line = _draw_lines(size, [path], max(1, int(round(rng.uniform(1, 2.2) * s))))
    line = cv2.GaussianBlur(line, (0, 0), 0.6 * s + 0.3) * region
    amp = rng.uniform(25, 60) * rng.choice([-1.0, 1.0])
    return img + amp * line[:, :, None]


def _crack(img: Image, region: Region, rng: np.random.Generator) -> Image:
    """Dark, jagged, branching polyline: darkens the material multiplicatively."""
    size = img.shape[0]
    s = _scale(size)
    main = _path(rng, _pick_center(rng, region, 0.15 * size), rng.uniform(60, 130) * s, 4 * s,
                 0.05, 0.45)
    paths = [main]
    for _ in range(int(rng.integers(1, 4))):
        start = main[int(rng.integers(1, len(main)))]
        paths.append(_path(rng, start, rng.uniform(15, 45) * s, 3 * s, 0.1, 0.5))
    line = _draw_lines(size, paths, max(1, int(round(rng.uniform(1.5, 3) * s))))
    line = cv2.GaussianBlur(line, (0, 0), 0.5 * s + 0.2) * region
    depth = rng.uniform(0.45, 0.75)
    return img * (1.0 - depth * line[:, :, None])


def _hole(img: Image, region: Region, rng: np.random.Generator) -> Image:
    """Missing material: a dark cavity keeping a faint trace of the texture, with a soft rim."""
    size = img.shape[0]
    s = _scale(size)
    radius = rng.uniform(12, 22) * s
    blob = _blob(rng, size, _pick_center(rng, region, radius * 1.5), radius, 1.2 * s) * region
    dark = np.array([rng.uniform(15, 35)] * 3, np.float32) * rng.uniform(0.8, 1.2, 3)
    inner = 0.25 * img + dark
    return img * (1 - blob[:, :, None]) + inner * blob[:, :, None]


def _stain(img: Image, region: Region, rng: np.random.Generator) -> Image:
    """Low-contrast smooth colour blotch: shifts colour by only ~8–15 grey levels."""
    size = img.shape[0]
    s = _scale(size)
    radius = rng.uniform(12, 24) * s
    blob = _blob(rng, size, _pick_center(rng, region, radius * 1.5), radius, radius * 0.35) * region
    direction = rng.normal(0, 1, 3) + np.array([0.6, 0.3, -0.5]) * rng.choice([-1.0, 1.0])
    direction /= np.abs(direction).max()
    shift = rng.uniform(8, 15) * direction
    mean = img.mean(axis=(0, 1))
    damp = rng.uniform(0.0, 0.15)  # wet look: slightly less local contrast
    soft = blob[:, :, None]
    return img + soft * (shift - damp * (img - mean))


_FOREIGN = np.array(
    [[60, 90, 170], [70, 130, 60], [235, 235, 225], [25, 25, 30], [170, 140, 40]], np.float32
)


def _contamination(img: Image, region: Region, rng: np.random.Generator) -> Image:
    """A foreign fibre or particle of a colour the material does not have."""
    size = img.shape[0]
    s = _scale(size)
    colour = _FOREIGN[int(rng.integers(len(_FOREIGN)))] * rng.uniform(0.85, 1.1)
    if rng.random() < 0.5:  # curly fibre
        path = _path(rng, _pick_center(rng, region, 0.15 * size), rng.uniform(50, 110) * s,
                     2 * s, 0.12, 0.25)
        shape = _draw_lines(size, [path], max(1, int(round(rng.uniform(2, 3.5) * s))))
        shape = cv2.GaussianBlur(shape, (0, 0), 0.5 * s + 0.2)
    else:  # particle with its own grain
        radius = rng.uniform(8, 14) * s
        shape = _blob(rng, size, _pick_center(rng, region, radius * 1.5), radius, 0.8 * s)
    alpha = rng.uniform(0.6, 0.9) * shape * region
    grain = 1.0 + rng.normal(0, 0.08, (size, size, 1)).astype(np.float32)
    return img * (1 - alpha[:, :, None]) + (colour * grain) * alpha[:, :, None]


DEFECTS: dict[str, DefectFn] = {
    "scratch": _scratch,
    "crack": _crack,
    "hole": _hole,
    "stain": _stain,
    "contamination": _contamination,
}


def apply_defect(clean: Image, region: Region, kind: str,
                  rng: np.random.Generator) -> tuple[Image, np.ndarray]:
    """Render ``kind`` until its exact mask covers MIN_AREA–MAX_AREA of the image."""
    area = clean.shape[0] * clean.shape[1]
    best: tuple[float, Image, np.ndarray] | None = None
    target = np.sqrt(MIN_AREA * MAX_AREA)
    for _ in range(MAX_DEFECT_TRIES):
        altered = DEFECTS[kind](clean, region, rng)
        mask = np.abs(altered - clean).max(axis=2) > ALTERATION_THRESHOLD
        frac = mask.sum() / area
        if MIN_AREA <= frac <= MAX_AREA:
            best = (0.0, altered, mask)
            break
        score = abs(np.log(max(frac, 1e-6) / target))
        if frac > 0 and (best is None or score < best[0]):
            best = (score, altered, mask)
    if best is None:
        raise RuntimeError(f"could not render a visible {kind!r} defect at {clean.shape[0]} px")
    _, altered, mask = best
    # Undo sub-threshold changes so the mask is exactly the set of altered pixels.
    return np.where(mask[:, :, None], altered, clean), mask
