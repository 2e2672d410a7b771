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
from data.synthetic_defects import MAX_AREA, MIN_AREA, Image, Region, _scale, apply_defect  # noqa: F401

try:
    import fcntl
except ImportError:  # Windows: concurrent generators are not serialised there
    fcntl = None  # type: ignore[assignment]

GENERATOR_VERSION = "synthetic-v1"
MARKER = ".complete"
OWNER_MARKER = ".nbs-synthetic"
"""Written into every category folder the generator makes: only such a folder is ever replaced."""
LOCK = ".nbs-synthetic.lock"
NOISE_SIGMA = 2.5


# ----------------------------------------------------------------------------------- helpers
def _rng(seed: int, *keys: str | int) -> np.random.Generator:
    """A generator independent for each (seed, keys) tuple; strings hashed stably with CRC32."""
    words = [seed] + [zlib.crc32(k.encode()) if isinstance(k, str) else int(k) for k in keys]
    return np.random.default_rng(np.random.SeedSequence(words))


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
    altered, mask = apply_defect(clean, region, defect, rng)
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
