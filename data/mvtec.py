"""Loader for one category of a dataset in the MVTec AD folder layout.

Layout::

    <root>/<category>/train/good/*.png
    <root>/<category>/test/<defect_type>/*.png          ("good" has no masks)
    <root>/<category>/ground_truth/<defect_type>/<stem>_mask.png

Everything downstream (split, env, evaluation) works on in-memory ``Sample``s at one fixed
``image_size``, so the loader resizes once here and never again. Layout problems raise
``DatasetError`` naming the offending path, because a wrong ``--data-root`` is the most common
first-run failure and a bare ``FileNotFoundError`` from deep inside OpenCV does not say what was
expected. The private helpers below (reading, RGB conversion, resizing, mask size check) are
shared by the other layouts (``data.crackforest``, ``data.folder``) so all behave alike.
"""

from __future__ import annotations

import functools
import sys
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

import cv2
import numpy as np

IMAGE_EXTENSIONS: tuple[str, ...] = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")
GOOD = "good"
UNANNOTATED = "unannotated"
"""Defect type of images without any annotation (``CategoryData.unannotated``)."""


class DatasetError(ValueError):
    """Bad dataset layout or file; the message always names the offending path."""


Loader = TypeVar("Loader", bound=Callable)


def names_unreadable_paths(load: Loader) -> Loader:
    """Turn an OSError (a folder or file without read permission, an I/O error) deep inside a loader
    into a DatasetError naming the path, so the CLIs stop with one line instead of a traceback."""
    @functools.wraps(load)
    def wrapper(*args, **kwargs):
        try:
            return load(*args, **kwargs)
        except OSError as e:
            raise DatasetError(f"cannot read {e.filename or 'the dataset'}: {e.strerror or e}"
                               + (" (check the access rights of the data folder)"
                                  if isinstance(e, PermissionError) else "")) from None
    return wrapper  # type: ignore[return-value]


def _warn(message: str) -> None:
    """Loading goes on, but says so: a file skipped or a label missing silently changes the split."""
    print(f"warning: {message}", file=sys.stderr, flush=True)


@dataclass
class Sample:
    """One image with its pixel mask, resized to the category's ``image_size``."""

    name: str
    """``"<defect_type>/<stem>"``, e.g. ``"broken_large/000"``; unique within a split."""
    defect_type: str
    """``"good"`` or the defect folder name."""
    image: np.ndarray
    """uint8 (S, S, 3) RGB."""
    mask: np.ndarray
    """bool (S, S); all False for good images."""
    path: Path
    """The image file it was read from."""

    @property
    def is_anomalous(self) -> bool:
        """True when at least one pixel is labelled anomalous (a resized mask can vanish)."""
        return bool(self.mask.any())


@dataclass
class CategoryData:
    """All images of one category, loaded and resized."""

    category: str
    root: Path
    """The folder the data was loaded from: ``<root>/<category>`` for MVTec, the dataset folder
    for single-category layouts (CrackForest, folder datasets)."""
    image_size: int
    test: list[Sample] = field(default_factory=list)
    """Annotated images (the pool D_l and the scored D_u are drawn from), sorted by name, so
    splits drawn from it are reproducible across file systems."""
    train_good: list[Sample] = field(default_factory=list)
    """Anomaly-free training images (AE pretraining, unsupervised baselines); may be empty."""
    unannotated: list[Sample] = field(default_factory=list)
    """Images with no annotation at all (all-False mask): they may join D_u to give the AE more
    data, but are never scored, since nothing says which of their pixels are anomalous."""

    def summary(self) -> str:
        """Human-readable counts per split and per defect type, for logs and the CLI."""
        counts = Counter(s.defect_type for s in self.test)
        per_type = ", ".join(f"{k}={counts[k]}" for k in sorted(counts))
        n_anom = sum(s.is_anomalous for s in self.test)
        return (
            f"{self.category} ({self.root}, {self.image_size}x{self.image_size}): "
            f"test={len(self.test)} [{per_type}; {n_anom} with anomalous pixels], "
            f"train/good={len(self.train_good)}, unannotated={len(self.unannotated)}"
        )


def _image_files(folder: Path, skip_masks: bool = True) -> list[Path]:
    """Image files directly in ``folder``, sorted by name.

    ``skip_masks`` drops MVTec's ``*_mask`` files; layouts that keep masks in their own folder
    pass False so that an image whose name happens to end in ``_mask`` is not silently lost.
    Broken symbolic links (a dataset copied without its link targets) are skipped with a warning.
    """
    entries = list(folder.iterdir())
    broken = sorted(p.name for p in entries if p.is_symlink() and not p.exists())
    if broken:
        _warn(f"{folder}: skipping {len(broken)} broken symbolic link(s) whose target is missing: "
              f"{', '.join(broken[:5])}{', ...' if len(broken) > 5 else ''}")
    return sorted(
        p
        for p in entries
        if p.is_file()
        and p.suffix.lower() in IMAGE_EXTENSIONS
        and not (skip_masks and p.stem.endswith("_mask"))
    )


def _read(path: Path) -> np.ndarray:
    """Read an image (keeps its channel count) as 8 bit: 16-bit and [0, 1] floating-point images are
    scaled; any other pixel type, or a file that is no image, raises DatasetError naming it."""
    # np.fromfile + imdecode also handles non-ASCII paths, which cv2.imread does not on Windows.
    try:
        buf = np.fromfile(str(path), dtype=np.uint8)
    except OSError as exc:
        raise DatasetError(f"cannot read image file {path}: {exc}") from exc
    try:
        arr = cv2.imdecode(buf, cv2.IMREAD_UNCHANGED) if buf.size else None
    except cv2.error as exc:  # e.g. an image too large for OpenCV's pixel limit
        raise DatasetError(f"cannot decode image file {path}: {str(exc).strip().splitlines()[-1]}") from None
    if arr is None:
        raise DatasetError(f"cannot decode image file {path}: expected a PNG/JPEG/BMP/TIFF image")
    if arr.dtype == np.uint16:  # 16-bit PNG/TIFF: scale to 8 bit
        arr = (arr.astype(np.float64) * (255.0 / np.iinfo(arr.dtype).max)).round().astype(np.uint8)
    elif arr.dtype.kind == "f" and arr.size and np.isfinite(arr).all() and 0 <= arr.min() and arr.max() <= 1:
        arr = (arr.astype(np.float64) * 255.0).round().astype(np.uint8)  # floating point in [0, 1]
    elif arr.dtype != np.uint8:
        what = "floating-point values outside [0, 1]" if arr.dtype.kind == "f" else f"{arr.dtype} pixels"
        raise DatasetError(f"cannot use image file {path}: it holds {what}; expected 8- or 16-bit images "
                           "(or floating point in [0, 1])")
    return arr


def _to_rgb(arr: np.ndarray, path: Path) -> np.ndarray:
    """Grayscale → repeated RGB, BGR(A) → RGB; MVTec mixes 1- and 3-channel classes."""
    if arr.ndim == 2:
        return cv2.cvtColor(arr, cv2.COLOR_GRAY2RGB)
    if arr.ndim == 3 and arr.shape[2] == 1:
        return cv2.cvtColor(arr[:, :, 0], cv2.COLOR_GRAY2RGB)
    if arr.ndim == 3 and arr.shape[2] == 3:
        return cv2.cvtColor(arr, cv2.COLOR_BGR2RGB)
    if arr.ndim == 3 and arr.shape[2] == 4:
        return cv2.cvtColor(arr, cv2.COLOR_BGRA2RGB)
    raise DatasetError(f"unsupported image shape {arr.shape} in {path}: expected 1, 3 or 4 channels")


def read_rgb(path: str | Path) -> np.ndarray:
    """An image file as uint8 RGB (H, W, 3) at its own size: grey is repeated, alpha dropped,
    16-bit scaled to 8. Raises DatasetError naming the file when it cannot be read or decoded."""
    path = Path(path)
    return _to_rgb(_read(path), path)


def _resize_image(img: np.ndarray, size: int) -> np.ndarray:
    if img.shape[:2] == (size, size):
        return img
    # INTER_AREA averages when shrinking (no aliasing); it falls back to bilinear-like when growing.
    return cv2.resize(img, (size, size), interpolation=cv2.INTER_AREA)


def _load_image(image_path: Path, size: int) -> tuple[np.ndarray, tuple[int, int]]:
    """The RGB image resized to ``size``, and the (height, width) it had on disk.

    The original size is returned because masks are checked against it, not the resized one.
    """
    raw = _read(image_path)
    return _resize_image(_to_rgb(raw, image_path), size), (raw.shape[0], raw.shape[1])


def _check_mask_size(
    mask_hw: tuple[int, ...], image_hw: tuple[int, ...], mask_path: Path, image_path: Path
) -> None:
    """Refuse a mask whose (height, width) differs from its image's: resizing both to the same
    square would silently misalign them (e.g. a mask of the wrong image, or a cropped one)."""
    if tuple(mask_hw[:2]) != tuple(image_hw[:2]):
        raise DatasetError(
            f"mask {mask_path} has size {mask_hw[1]}x{mask_hw[0]} but its image "
            f"{image_path} has size {image_hw[1]}x{image_hw[0]}: expected equal sizes"
        )


def _read_mask(mask_path: Path, image_path: Path, image_hw: tuple[int, int]) -> np.ndarray:
    """A mask file as a 2-D array at its original size, checked against its image's size."""
    raw_mask = _read(mask_path)
    if raw_mask.ndim == 3:
        raw_mask = raw_mask.max(axis=2)
    _check_mask_size(raw_mask.shape, image_hw, mask_path, image_path)
    return raw_mask


def _resize_mask(raw_mask: np.ndarray, size: int) -> np.ndarray:
    """Boolean mask at ``size``: nearest keeps it binary; any non-zero label counts as anomalous."""
    return cv2.resize(raw_mask, (size, size), interpolation=cv2.INTER_NEAREST) > 0


def _load_sample(
    image_path: Path, defect_type: str, mask_path: Path | None, size: int
) -> Sample:
    image, image_hw = _load_image(image_path, size)
    if mask_path is None:
        mask = np.zeros((size, size), dtype=bool)
    else:
        raw_mask = _read_mask(mask_path, image_path, image_hw)
        if not raw_mask.any():
            _warn(f"mask {mask_path} is empty: defect image {image_path} has no anomalous pixel and "
                  "counts as anomaly-free")
        mask = _resize_mask(raw_mask, size)
    return Sample(
        name=f"{defect_type}/{image_path.stem}",
        defect_type=defect_type,
        image=image,
        mask=mask,
        path=image_path,
    )


def _mask_path(cat_root: Path, defect_type: str, image_path: Path) -> Path:
    """The mask for a defect image; MVTec names it ``<stem>_mask.png``, other extensions allowed."""
    folder = cat_root / "ground_truth" / defect_type
    expected = folder / f"{image_path.stem}_mask.png"
    if expected.is_file():
        return expected
    for ext in IMAGE_EXTENSIONS:
        alt = folder / f"{image_path.stem}_mask{ext}"
        if alt.is_file():
            return alt
    raise DatasetError(
        f"defect image {image_path} has no mask: expected {expected} "
        f"(only test/{GOOD}/ images may lack a mask)"
    )


def _warn_masks_without_image(cat_root: Path, test: list[Sample]) -> None:
    """Masks under ground_truth/ that no test image uses: usually an image deleted or renamed by
    hand, whose label is then lost without a word."""
    gt_root = cat_root / "ground_truth"
    if not gt_root.is_dir():
        return
    used = {s.name for s in test}
    orphans = [p for d in sorted(gt_root.iterdir()) if d.is_dir() for p in _image_files(d, skip_masks=False)
               if p.stem.endswith("_mask") and f"{d.name}/{p.stem[:-len('_mask')]}" not in used]
    for p in orphans[:5]:
        _warn(f"mask {p} has no image: expected {cat_root / 'test' / p.parent.name / p.stem[:-len('_mask')]}.png; "
              "it is ignored")
    if len(orphans) > 5:
        _warn(f"... and {len(orphans) - 5} more masks without an image under {gt_root}")


@names_unreadable_paths
def list_categories(root: str | Path) -> list[str]:
    """Subfolders of ``root`` that look like categories (contain both ``train/`` and ``test/``)."""
    root = Path(root).expanduser()
    if not root.is_dir():
        raise DatasetError(f"dataset root {root} does not exist or is not a directory")
    return sorted(
        p.name for p in root.iterdir() if (p / "train").is_dir() and (p / "test").is_dir()
    )


@names_unreadable_paths
def load_mvtec_category(
    root: str | Path,
    category: str,
    image_size: int = 128,
    load_train_good: bool = True,
) -> CategoryData:
    """Load and resize one category's test set (with masks) and, optionally, its train/good set.

    ``load_train_good=False`` skips the (usually larger) training folder for runs that use only
    the paper's test-set protocol.
    """
    if image_size < 1:
        raise ValueError(f"image_size must be >= 1, got {image_size}")
    root = Path(root).expanduser()
    if not root.is_dir():
        raise DatasetError(f"dataset root {root} does not exist or is not a directory")
    cat_root = root / category
    if not cat_root.is_dir():
        available = list_categories(root)
        raise DatasetError(
            f"category folder {cat_root} does not exist; available categories in {root}: "
            f"{', '.join(available) if available else '(none: expected <root>/<category>/train and test)'}"
        )
    test_root = cat_root / "test"
    if not test_root.is_dir():
        raise DatasetError(f"test folder {test_root} does not exist: expected test/<defect_type>/*.png")

    test: list[Sample] = []
    for defect_dir in sorted(p for p in test_root.iterdir() if p.is_dir()):
        defect_type = defect_dir.name
        for image_path in _image_files(defect_dir):
            mask_path = None if defect_type == GOOD else _mask_path(cat_root, defect_type, image_path)
            test.append(_load_sample(image_path, defect_type, mask_path, image_size))
    if not test:
        raise DatasetError(
            f"test folder {test_root} holds no images: expected test/<defect_type>/*"
            f"{{{','.join(IMAGE_EXTENSIONS)}}}"
        )
    test.sort(key=lambda s: s.name)
    _warn_masks_without_image(cat_root, test)

    train_good: list[Sample] = []
    if load_train_good:
        good_root = cat_root / "train" / GOOD
        if good_root.is_dir():
            train_good = [_load_sample(p, GOOD, None, image_size) for p in _image_files(good_root)]
    return CategoryData(
        category=category, root=cat_root, image_size=image_size, test=test, train_good=train_good
    )
