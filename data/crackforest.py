"""Loader for the CrackForest dataset (CFD), one of the three datasets of the paper.

Layout (the public CrackForest-dataset repository, files unchanged)::

    <root>/image/NNN.jpg          480x320 RGB road photos; 001-118 annotated, 201+ not
    <root>/groundTruth/NNN.mat    MATLAB struct: groundTruth[0, 0]['Segmentation'], 320x480 uint8

Labels of ``Segmentation`` (BSDS-style region map): 1 = background, 2 = crack. 22 of the 118
files also use 3 and 4: 3 marks background regions enclosed by cracks (blobs bordered by label 2),
4 marks a few extra thin crack strokes away from the main crack (files 084, 102, 107, 111, 117,
~1,350 pixels in all). The default ``crack_labels=(2,)`` follows the dataset's README and the
usual conversion in published code (crack = label 2), so results stay comparable;
``crack_labels=(2, 4)`` also counts the label-4 strokes as cracks.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import scipy.io

from data.mvtec import (
    UNANNOTATED,
    CategoryData,
    DatasetError,
    Sample,
    _check_mask_size,
    _image_files,
    _load_image,
    _load_sample,
    _warn,
    names_unreadable_paths,
)

CATEGORY = "crackforest"
CRACK = "crack"


def _read_segmentation(mat_path: Path) -> np.ndarray:
    """``groundTruth[0, 0]['Segmentation']`` of one .mat file, or DatasetError naming it."""
    try:
        mat = scipy.io.loadmat(str(mat_path))
    except Exception as exc:  # scipy raises ValueError, TypeError, OSError, MatReadError, ...
        raise DatasetError(
            f"cannot read MATLAB file {mat_path}: {type(exc).__name__}: {exc}"
        ) from exc
    if "groundTruth" not in mat:
        keys = sorted(k for k in mat if not k.startswith("__"))
        raise DatasetError(
            f"MATLAB file {mat_path} has no 'groundTruth' variable (found: "
            f"{', '.join(keys) if keys else 'none'}): expected the CrackForest groundTruth struct"
        )
    gt = mat["groundTruth"]
    names = (gt.dtype.names or ()) if isinstance(gt, np.ndarray) else ()
    if "Segmentation" not in names or gt.size == 0:
        raise DatasetError(
            f"'groundTruth' in {mat_path} is not a struct with a 'Segmentation' field: expected "
            "groundTruth[0, 0]['Segmentation'] as in the CrackForest repository"
        )
    seg = np.asarray(gt.flat[0]["Segmentation"])
    if seg.ndim != 2 or not np.issubdtype(seg.dtype, np.number):
        raise DatasetError(
            f"'Segmentation' in {mat_path} has shape {seg.shape} and dtype {seg.dtype}: "
            "expected a 2-D numeric label map"
        )
    return seg


def _resize_thin_mask(mask: np.ndarray, size: int) -> np.ndarray:
    """Downscale a mask of thin structures without breaking them: any coverage counts.

    Cracks are 1-3 px wide; nearest-neighbour sampling at 480x320 -> 128x128 (3.75x by 2.5x)
    keeps one source pixel in ~9 and turns a crack into scattered dots (measured on the 118
    masks: 316 8-connected crack pieces become 1,859). INTER_AREA on a float mask gives each
    output pixel the fraction of its footprint covered by crack, and ``> 0`` keeps every pixel a
    crack passes through, so cracks stay connected (165 pieces: close ones merge). The price is
    width: cracks become at least one output pixel wide, so the crack fraction roughly doubles
    (1.6% -> 3.2% of the pixels at 128x128), which is the honest resolution limit of the ground
    truth at that size.
    """
    if mask.shape == (size, size):
        return mask.astype(bool)
    return cv2.resize(mask.astype(np.float32), (size, size), interpolation=cv2.INTER_AREA) > 0


@names_unreadable_paths
def load_crackforest(
    root: str | Path, image_size: int = 128, crack_labels: tuple[int, ...] = (2,)
) -> CategoryData:
    """Load CrackForest: the 118 annotated images as ``test``, the rest as ``unannotated``.

    - ``test``: images with a .mat file, defect type ``"crack"``, names ``"crack/001"``..., sorted.
    - ``train_good`` is empty: CrackForest has no anomaly-free images (every annotated photo has
      a crack), so unsupervised baselines and AE pretraining on normal images do not apply.
    - ``unannotated``: images without a .mat (201+), defect type ``"unannotated"``, all-False
      mask; they may join D_u but are never scored.

    Images are resized to ``image_size`` x ``image_size`` (480x320 -> square, as the paper does);
    masks are resized with any-coverage INTER_AREA (see ``_resize_thin_mask``) because
    nearest-neighbour would break the 1-3 px cracks into dots.
    """
    if image_size < 1:
        raise ValueError(f"image_size must be >= 1, got {image_size}")
    if not crack_labels:
        raise ValueError("crack_labels must name at least one label of 'Segmentation', got ()")
    root = Path(root).expanduser()
    if not root.is_dir():
        raise DatasetError(f"CrackForest root {root} does not exist or is not a directory")
    image_dir, gt_dir = root / "image", root / "groundTruth"
    for folder, what in ((image_dir, "image/NNN.jpg"), (gt_dir, "groundTruth/NNN.mat")):
        if not folder.is_dir():
            raise DatasetError(
                f"CrackForest folder {folder} does not exist: expected {root}/{what}"
            )
    images: dict[str, Path] = {}
    for path in _image_files(image_dir, skip_masks=False):
        if path.stem in images:
            raise DatasetError(
                f"two images share the name {path.stem!r}: {images[path.stem]} and {path}"
            )
        images[path.stem] = path
    if not images:
        raise DatasetError(f"CrackForest folder {image_dir} holds no images: expected NNN.jpg")

    test: list[Sample] = []
    for mat_path in sorted(gt_dir.glob("*.mat")):
        image_path = images.get(mat_path.stem)
        if image_path is None:
            raise DatasetError(
                f"ground truth {mat_path} has no image: expected {image_dir / mat_path.stem}.jpg"
            )
        seg = _read_segmentation(mat_path)
        image, image_hw = _load_image(image_path, image_size)
        _check_mask_size(seg.shape, image_hw, mat_path, image_path)
        crack = np.isin(seg, crack_labels)
        if not crack.any():
            _warn(f"{mat_path} has no crack pixel (no label {', '.join(map(str, crack_labels))} in its "
                  f"Segmentation): image {image_path} is scored as crack-free")
        mask = _resize_thin_mask(crack, image_size)
        test.append(Sample(f"{CRACK}/{image_path.stem}", CRACK, image, mask, image_path))
    if not test:
        raise DatasetError(f"CrackForest folder {gt_dir} holds no .mat files: expected NNN.mat")
    test.sort(key=lambda s: s.name)

    annotated = {s.path.stem for s in test}
    unannotated = [
        _load_sample(path, UNANNOTATED, None, image_size)
        for stem, path in sorted(images.items())
        if stem not in annotated
    ]
    return CategoryData(
        category=CATEGORY, root=root, image_size=image_size, test=test, unannotated=unannotated
    )
