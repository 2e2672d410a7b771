"""Built-in default dataset: a small, deterministic MVTec-AD-layout set, generated locally.

MVTec AD cannot be redistributed with the package, yet a user (and CI) must be able to run
``train.py`` with no arguments. So we synthesise three categories in the same folder layout:

* ``brick``  – skimage's brick-wall photograph, tinted red; defects: crack, hole, stain.
* ``gravel`` – skimage's gravel photograph, tinted grey-brown; defects: scratch, stain,
  contamination.
* ``pill``   – a shaded cream capsule with red speckles and a printed mark on a dark, slightly
  textured background; defects: crack, scratch, stain, contamination.

The textures are real photographs (shipped with scikit-image, no download), so they keep natural
high-frequency content; stains and some scratches are deliberately low-contrast compared with the
texture's own variation, so thresholding a reconstruction error alone does poorly, as on MVTec.

Masks are exact: a defect is rendered on the clean (noise-free) image, every pixel whose value
changes by more than ``ALTERATION_THRESHOLD`` grey levels is labelled, and smaller changes are
undone, so the mask is precisely the set of altered pixels. Sensor noise is added afterwards.
Each image draws from its own generator seeded from (seed, category, split, defect, index), so
regenerating or resizing one category never changes another.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import zlib
from collections.abc import Callable, Iterator
from functools import lru_cache
from pathlib import Path

import cv2
import numpy as np

from data.mvtec import DatasetError

try:
    import fcntl
except ImportError:  # Windows: concurrent generators are not serialised there
    fcntl = None  # type: ignore[assignment]

GENERATOR_VERSION = "synthetic-v1"
MARKER = ".complete"
OWNER_MARKER = ".nbs-synthetic"
"""Written into every category folder the generator makes: only such a folder is ever replaced."""
LOCK = ".nbs-synthetic.lock"
ALTERATION_THRESHOLD = 3.0
"""Grey levels (max over channels) a pixel must change by to count as defective."""
MIN_AREA, MAX_AREA = 0.005, 0.05
"""Defect area as a fraction of the image, the range typical of MVTec AD."""
NOISE_SIGMA = 2.5
MAX_DEFECT_TRIES = 40

Image = np.ndarray  # float32 (S, S, 3), RGB, 0..255
Region = np.ndarray  # float32 (S, S) in [0, 1]: where a defect may be placed (the object)


# ----------------------------------------------------------------------------------- helpers
def _rng(seed: int, *keys: str | int) -> np.random.Generator:
    """A generator independent for each (seed, keys) tuple; strings hashed stably with CRC32."""
    words = [seed] + [zlib.crc32(k.encode()) if isinstance(k, str) else int(k) for k in keys]
    return np.random.default_rng(np.random.SeedSequence(words))


def _scale(size: int) -> float:
    """Pixel lengths below are specified at 256 px and scaled with the image."""
    return size / 256.0


def _lighting(img: Image, rng: np.random.Generator) -> Image:
    """Brightness/contrast gain of ±10 % and a smooth linear illumination gradient."""
    size = img.shape[0]
    mean = img.mean()
    contrast = rng.uniform(0.9, 1.1)
    brightness = rng.uniform(0.9, 1.1)
    img = (img - mean) * contrast + mean * brightness
    theta = rng.uniform(0, 2 * np.pi)
    amp = rng.uniform(0.0, 0.08)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / max(size - 1, 1) - 0.5
    ramp = 1.0 + amp * 2.0 * (np.cos(theta) * xx + np.sin(theta) * yy)
    return img * ramp[:, :, None]


def _finish(img: Image, rng: np.random.Generator) -> np.ndarray:
    """Sensor noise and quantisation to uint8."""
    img = img + rng.normal(0.0, NOISE_SIGMA, img.shape)
    return np.clip(np.rint(img), 0, 255).astype(np.uint8)


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


def _apply_defect(clean: Image, region: Region, kind: str,
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


# ---------------------------------------------------------------------------------- classes
@lru_cache(maxsize=None)
def _texture_source(name: str) -> np.ndarray:
    import skimage.data

    gray = getattr(skimage.data, name)()
    if gray.ndim == 3:
        gray = cv2.cvtColor(gray, cv2.COLOR_RGB2GRAY)
    return gray.astype(np.float32) / 255.0


def _texture(name: str, low: tuple[float, float, float], high: tuple[float, float, float],
             max_rotation: float, flips: tuple[bool, bool]) -> Callable[..., tuple[Image, Region]]:
    """A texture class: random rotated crop of 60–80 % of the photograph, tinted low→high."""
    lo, hi = np.array(low, np.float32), np.array(high, np.float32)

    def render(rng: np.random.Generator, size: int) -> tuple[Image, Region]:
        src = _texture_source(name)
        n = src.shape[0]
        crop = int(n * rng.uniform(0.6, 0.8))
        angle = rng.uniform(-max_rotation, max_rotation)
        half = 0.5 * crop * (abs(np.cos(np.radians(angle))) + abs(np.sin(np.radians(angle))))
        cx, cy = rng.uniform(half, n - half, 2) if half < n / 2 else (n / 2, n / 2)
        m = cv2.getRotationMatrix2D((cx, cy), angle, 1.0)
        m[:, 2] += (crop / 2 - cx, crop / 2 - cy)
        patch = cv2.warpAffine(src, m, (crop, crop), flags=cv2.INTER_LINEAR,
                               borderMode=cv2.BORDER_REFLECT)
        if flips[0] and rng.random() < 0.5:
            patch = patch[:, ::-1]
        if flips[1] and rng.random() < 0.5:
            patch = patch[::-1, :]
        patch = cv2.resize(np.ascontiguousarray(patch), (size, size), interpolation=cv2.INTER_AREA)
        img = lo + patch[:, :, None] * (hi - lo)
        return _lighting(img, rng).astype(np.float32), np.ones((size, size), np.float32)

    return render


def _pill(rng: np.random.Generator, size: int) -> tuple[Image, Region]:
    """A shaded cream capsule with red speckles and a printed mark on a dark textured ground."""
    s = _scale(size)
    # Background: dark grey with smooth blotches and fine grain.
    low_freq = cv2.GaussianBlur(rng.normal(0, 1, (size, size)).astype(np.float32), (0, 0), 12 * s)
    low_freq /= max(float(np.abs(low_freq).max()), 1e-6)
    bg = np.array([52, 55, 58], np.float32) + (6 * low_freq + rng.normal(0, 2.0, (size, size)))[:, :, None]
    # Object frame: shift ±4 % of the size, rotation ±10°.
    c = size / 2 + rng.uniform(-0.04, 0.04, 2) * size
    theta = np.radians(rng.uniform(-10, 10))
    a, b = size * rng.uniform(0.36, 0.39), size * rng.uniform(0.19, 0.21)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) + 0.5
    u = (xx - c[0]) * np.cos(theta) + (yy - c[1]) * np.sin(theta)
    v = -(xx - c[0]) * np.sin(theta) + (yy - c[1]) * np.cos(theta)
    r = np.sqrt((u / a) ** 2 + (v / b) ** 2)
    alpha = np.clip((1.0 - r) * b + 0.5, 0.0, 1.0)  # ~1 px anti-aliased edge
    z = np.sqrt(np.clip(1.0 - r ** 2, 0, 1))  # height of an ellipsoid: Lambertian-like shading
    light = np.array([-0.4, -0.5])
    nx, ny = u / a * z, v / b * z
    shade = 0.72 + 0.28 * z - 0.12 * (nx * light[0] + ny * light[1])
    spec = 35 * np.exp(-(((u / a + 0.3) ** 2 + (v / b + 0.4) ** 2) / 0.02))
    body = np.array([228, 220, 200], np.float32) * shade[:, :, None] + spec[:, :, None]
    # Red speckles (natural variation, so a red-ish contaminant is not trivially separable).
    speck = np.zeros((size, size), np.float32)
    for _ in range(int(rng.integers(20, 40))):
        pu, pv = rng.uniform(-0.85, 0.85) * a, rng.uniform(-0.8, 0.8) * b
        if (pu / a) ** 2 + (pv / b) ** 2 > 0.8:
            continue
        px = c[0] + pu * np.cos(theta) - pv * np.sin(theta)
        py = c[1] + pu * np.sin(theta) + pv * np.cos(theta)
        cv2.circle(speck, (int(px * 16), int(py * 16)), int(rng.uniform(0.8, 1.8) * s * 16),
                   float(rng.uniform(0.4, 0.9)), -1, cv2.LINE_AA, 4)
    speck = np.clip(speck, 0, 1)[:, :, None]
    body = body * (1 - speck) + np.array([180, 60, 50], np.float32) * shade[:, :, None] * speck
    # Printed mark, rotated with the pill.
    text = np.zeros((size, size), np.uint8)  # putText draws on 8-bit images only
    scale = 1.1 * s
    (tw, th), _ = cv2.getTextSize("NB", cv2.FONT_HERSHEY_SIMPLEX, scale, max(1, int(3 * s)))
    cv2.putText(text, "NB", (int(size / 2 - tw / 2), int(size / 2 + th / 2)),
                cv2.FONT_HERSHEY_SIMPLEX, scale, 255, max(1, int(3 * s)), cv2.LINE_AA)
    m = cv2.getRotationMatrix2D((size / 2, size / 2), -np.degrees(theta), 1.0)
    m[:, 2] += c - size / 2
    text = cv2.warpAffine(text.astype(np.float32) / 255.0, m, (size, size))[:, :, None] * 0.8
    body = body * (1 - text) + np.array([110, 40, 35], np.float32) * text
    a3 = alpha[:, :, None]
    img = bg * (1 - a3) + body * a3
    region = np.clip((1.0 - r) * b - 2 * s, 0.0, 1.0)  # keep defects off the anti-aliased rim
    return _lighting(img, rng).astype(np.float32), region.astype(np.float32)


CATEGORIES: dict[str, tuple[Callable[[np.random.Generator, int], tuple[Image, Region]], list[str]]] = {
    "brick": (
        _texture("brick", (55, 22, 18), (220, 125, 100), max_rotation=3, flips=(True, False)),
        ["crack", "hole", "stain"],
    ),
    "gravel": (
        _texture("gravel", (40, 34, 28), (205, 190, 168), max_rotation=20, flips=(True, True)),
        ["contamination", "scratch", "stain"],
    ),
    "pill": (_pill, ["contamination", "crack", "scratch", "stain"]),
}
"""Category name → (renderer of a defect-free image and its placement region, defect kinds)."""


# ---------------------------------------------------------------------------------- writing
def render_sample(category: str, split: str, defect: str, index: int, seed: int = 0,
                  image_size: int = 256) -> tuple[np.ndarray, np.ndarray | None]:
    """One image (uint8 RGB) and, for a defect, its bool mask; deterministic in all arguments."""
    render, kinds = CATEGORIES[category]
    if defect != "good" and defect not in kinds:
        raise ValueError(f"category {category!r} has no defect {defect!r}; it has {kinds}")
    rng = _rng(seed, category, split, defect, index)
    clean, region = render(rng, image_size)
    if defect == "good":
        return _finish(clean, rng), None
    altered, mask = _apply_defect(clean, region, defect, rng)
    return _finish(altered, rng), mask


def _write_png(path: Path, array: np.ndarray) -> None:
    ok, buf = cv2.imencode(".png", array)
    if not ok:  # pragma: no cover - cv2 only fails on unsupported arrays
        raise OSError(f"could not encode PNG for {path}")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(buf.tobytes())


def _marker_content(**params: int) -> str:
    return json.dumps({"version": GENERATOR_VERSION, **params}, sort_keys=True)


def is_complete(root: str | Path, **params: int) -> bool:
    """True when ``root`` holds a finished generation (with the given parameters, if any)."""
    marker = Path(root) / MARKER
    if not marker.is_file():
        return False
    if not params:
        return True
    try:
        recorded = json.loads(marker.read_text())
    except (OSError, json.JSONDecodeError):
        return False
    return all(recorded.get(k) == v for k, v in params.items()) and (
        recorded.get("version") == GENERATOR_VERSION
    )


@contextlib.contextmanager
def _generator_lock(root: Path) -> Iterator[None]:
    """Hold <root>/.nbs-synthetic.lock: two processes that find the data missing at once (two
    train.py, a sweep's workers) take turns; the second finds the first's data complete."""
    with open(root / LOCK, "a") as handle:
        if fcntl is not None:
            fcntl.flock(handle, fcntl.LOCK_EX)
        yield


def _check_ours(folder: Path) -> bool:
    """Whether `folder` exists; raises DatasetError naming it when it exists but this generator did
    not write it (no marker file in it), because NBS_DATA_DIR may point at real data: an MVTec AD
    root has a pill/ of its own."""
    if not folder.exists() and not folder.is_symlink():
        return False
    if folder.is_symlink() or not (folder / OWNER_MARKER).is_file():
        raise DatasetError(f"{folder} exists and was not written by the built-in data generator (no "
                           f"{OWNER_MARKER} file in it): refusing to replace it. Point NBS_DATA_DIR (or the "
                           f"generator's root) at an empty folder, or move {folder} away")
    return True


def _remove_ours(folder: Path) -> None:
    """Delete `folder` if this generator wrote it (see _check_ours)."""
    if _check_ours(folder):
        shutil.rmtree(folder)


def generate_synthetic_mvtec(
    root: str | Path,
    seed: int = 0,
    image_size: int = 256,
    n_train_good: int = 24,
    n_test_good: int = 8,
    n_per_defect: int = 5,
    overwrite: bool = False,
) -> Path:
    """Write the synthetic dataset under ``root`` in the MVTec AD layout and return ``root``.

    The ``.complete`` marker (recording the parameters) is written last, so an interrupted run
    leaves no marker and is redone on the next call; a complete tree with the same parameters is
    left untouched unless ``overwrite``. Each category is written into a temporary folder beside
    its target and renamed into place, so a reader never sees a half-written category, and
    concurrent generators take turns on a lock file. Only folders this generator wrote (marked
    with ``.nbs-synthetic``) are ever replaced: a foreign ``<root>/pill`` (e.g. NBS_DATA_DIR set to
    an MVTec AD root) raises DatasetError before anything is written, and nothing else under
    ``root`` is touched.
    """
    root = Path(root).expanduser()
    params = dict(seed=seed, image_size=image_size, n_train_good=n_train_good,
                  n_test_good=n_test_good, n_per_defect=n_per_defect)
    if not overwrite and is_complete(root, **params):
        return root
    try:
        root.mkdir(parents=True, exist_ok=True)
        with _generator_lock(root):
            if not overwrite and is_complete(root, **params):  # another process finished it meanwhile
                return root
            for category in CATEGORIES:  # refuse a foreign folder before writing anything
                _check_ours(root / category)
            (root / MARKER).unlink(missing_ok=True)  # until all categories are rewritten
            for category, (_, kinds) in CATEGORIES.items():
                _write_category(root, category, kinds, seed, image_size, n_train_good, n_test_good, n_per_defect)
            tmp = root / f".{MARKER}.partial"
            tmp.write_text(_marker_content(**params))
            os.replace(tmp, root / MARKER)
    except OSError as e:
        raise DatasetError(f"cannot write the built-in dataset under {root}: {e.strerror or e} ({e.filename or root}); "
                           "set NBS_DATA_DIR to a writable folder") from None
    return root


def _write_category(root: Path, category: str, kinds: list[str], seed: int, image_size: int,
                    n_train_good: int, n_test_good: int, n_per_defect: int) -> None:
    """One category into <root>/.<category>.partial (marked as ours first), then renamed over
    <root>/<category>: the old one is moved aside and removed only after the new one is in place."""
    target, partial, old = root / category, root / f".{category}.partial", root / f".{category}.old"
    _remove_ours(partial)  # left by a generator that was killed
    _remove_ours(old)
    partial.mkdir()
    (partial / OWNER_MARKER).write_text(_marker_content(seed=seed, image_size=image_size))
    jobs = [("train", "good", i) for i in range(n_train_good)]
    jobs += [("test", "good", i) for i in range(n_test_good)]
    jobs += [("test", k, i) for k in kinds for i in range(n_per_defect)]
    for split, defect, i in jobs:
        image, mask = render_sample(category, split, defect, i, seed, image_size)
        stem = f"{i:03d}"
        _write_png(partial / split / defect / f"{stem}.png", cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
        if mask is not None:
            _write_png(partial / "ground_truth" / defect / f"{stem}_mask.png", mask.astype(np.uint8) * 255)
    if _check_ours(target):
        os.replace(target, old)
    os.replace(partial, target)
    _remove_ours(old)


def default_data_root() -> Path:
    """``$NBS_DATA_DIR`` if set, else ``~/.cache/neural-batch-sampling/synthetic-v1``."""
    env = os.environ.get("NBS_DATA_DIR")
    if env:
        return Path(env).expanduser()
    return Path.home() / ".cache" / "neural-batch-sampling" / GENERATOR_VERSION


def ensure_default_dataset() -> Path:
    """Generate the default dataset on first use (or after an interrupted run); return its root."""
    return generate_synthetic_mvtec(default_data_root())
