"""Generic folder dataset, for users' own images and masks.

Layout::

    <root>/images/<stem>.<ext>             images to segment (the pool D_l / D_u are drawn from)
    <root>/masks/<stem>.<any image ext>    one binary mask per image, same size as the image
    <root>/normal/*                        optional: anomaly-free images -> ``train_good``
    <root>/unannotated/*                   optional: images without masks -> ``unannotated``

or, to keep defect types apart, one subfolder per type, mirrored under ``masks/``::

    <root>/images/<defect_type>/<stem>.<ext>
    <root>/masks/<defect_type>/<stem>.<any image ext>

Any non-zero mask pixel is anomalous. In the flat layout an all-zero mask marks an annotated
normal image (defect type ``"good"``), any other mask defect type ``"anomalous"``; in the
subfolder layout the subfolder names the type (and a ``good/`` subfolder must have empty masks).
Every image needs its mask and every mask its image: a missing file is far more often a typo or
an incomplete copy than an intent, and silently dropping it would change the split.
"""

from __future__ import annotations

from pathlib import Path

from data.mvtec import (
    GOOD,
    IMAGE_EXTENSIONS,
    UNANNOTATED,
    CategoryData,
    DatasetError,
    Sample,
    _image_files,
    _load_image,
    _load_sample,
    _read_mask,
    _resize_mask,
    _warn,
    names_unreadable_paths,
)

ANOMALOUS = "anomalous"


def _visible_dirs(folder: Path) -> list[Path]:
    """Subfolders, sorted, without hidden ones (``.ipynb_checkpoints``, ``.git``...)."""
    return sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))


def _by_stem(folder: Path) -> dict[str, Path]:
    """Image files of ``folder`` keyed by stem; two files with one stem would be ambiguous."""
    files: dict[str, Path] = {}
    for path in _image_files(folder, skip_masks=False):
        if path.stem in files:
            raise DatasetError(
                f"two files share the name {path.stem!r}: {files[path.stem]} and {path}: "
                "expected one file per name"
            )
        files[path.stem] = path
    return files


def _annotated_sample(
    image_path: Path, mask_path: Path, defect_type: str | None, size: int
) -> Sample:
    """Image + mask; ``defect_type=None`` (flat layout) derives it from the mask's content."""
    image, image_hw = _load_image(image_path, size)
    raw_mask = _read_mask(mask_path, image_path, image_hw)
    has_anomaly = bool(raw_mask.any())
    if defect_type is None:
        defect_type = ANOMALOUS if has_anomaly else GOOD
    elif defect_type == GOOD and has_anomaly:
        raise DatasetError(
            f"mask {mask_path} has anomalous (non-zero) pixels but its image {image_path} is in a "
            f"'{GOOD}' folder: expected an all-zero mask, or move the image to a defect folder"
        )
    elif defect_type != GOOD and not has_anomaly:
        _warn(f"mask {mask_path} is empty: image {image_path} of defect type {defect_type!r} has no "
              "anomalous pixel and counts as anomaly-free")
    return Sample(
        name=f"{defect_type}/{image_path.stem}",
        defect_type=defect_type,
        image=image,
        mask=_resize_mask(raw_mask, size),
        path=image_path,
    )


def _load_group(
    image_dir: Path, mask_dir: Path, defect_type: str | None, size: int
) -> list[Sample]:
    """One folder of images with its mirror folder of masks, matched by stem both ways."""
    images = _by_stem(image_dir)
    masks = _by_stem(mask_dir) if mask_dir.is_dir() else {}
    samples = []
    for stem, image_path in images.items():
        mask_path = masks.get(stem)
        if mask_path is None:
            raise DatasetError(
                f"image {image_path} has no mask: expected {mask_dir / stem}.png (or another of "
                f"{', '.join(IMAGE_EXTENSIONS)}); an all-zero mask marks a normal image"
            )
        samples.append(_annotated_sample(image_path, mask_path, defect_type, size))
    orphans = sorted(masks.keys() - images.keys())
    if orphans:
        raise DatasetError(
            f"mask {masks[orphans[0]]} has no image: expected {image_dir / orphans[0]}.<ext> "
            f"with one of {', '.join(IMAGE_EXTENSIONS)}"
        )
    return samples


@names_unreadable_paths
def load_folder_dataset(
    root: str | Path, image_size: int = 128, load_train_good: bool = True
) -> CategoryData:
    """Load a user's folder dataset (layout in the module docstring); category = folder name.

    Masks are resized with nearest neighbour, as for MVTec; for masks of 1-3 px wide structures
    see the any-coverage resize of ``data.crackforest`` instead. ``load_train_good=False`` skips
    ``normal/``.
    """
    if image_size < 1:
        raise ValueError(f"image_size must be >= 1, got {image_size}")
    root = Path(root).expanduser()
    if not root.is_dir():
        raise DatasetError(f"dataset root {root} does not exist or is not a directory")
    image_dir, mask_dir = root / "images", root / "masks"
    if not image_dir.is_dir():
        raise DatasetError(
            f"image folder {image_dir} does not exist: expected {root}/images/<name>.<ext>"
        )
    if not mask_dir.is_dir():
        raise DatasetError(
            f"mask folder {mask_dir} does not exist: expected {root}/masks/<name>.<ext>, one "
            "binary mask per image"
        )

    subdirs = _visible_dirs(image_dir)
    if subdirs and _image_files(image_dir, skip_masks=False):
        raise DatasetError(
            f"image folder {image_dir} mixes image files and subfolders: expected either "
            "images/<name>.<ext> or images/<defect_type>/<name>.<ext>"
        )
    if subdirs:
        test = []
        for sub in subdirs:
            test += _load_group(sub, mask_dir / sub.name, sub.name, image_size)
        stray_files = _image_files(mask_dir, skip_masks=False)
        if stray_files:
            raise DatasetError(
                f"mask {stray_files[0]} has no image: with defect-type subfolders in "
                f"{image_dir}, masks must be at {mask_dir}/<defect_type>/<name>.<ext>"
            )
        stray_dirs = [d for d in _visible_dirs(mask_dir) if not (image_dir / d.name).is_dir()]
        if stray_dirs:
            raise DatasetError(
                f"mask folder {stray_dirs[0]} has no image folder: expected "
                f"{image_dir / stray_dirs[0].name} (defect-type subfolders must mirror each other)"
            )
    else:
        test = _load_group(image_dir, mask_dir, None, image_size)
    if not test:
        raise DatasetError(
            f"image folder {image_dir} holds no images: expected files with one of "
            f"{', '.join(IMAGE_EXTENSIONS)}"
        )
    test.sort(key=lambda s: s.name)

    train_good: list[Sample] = []
    normal_dir = root / "normal"
    if load_train_good and normal_dir.is_dir():
        train_good = [
            _load_sample(p, GOOD, None, image_size)
            for p in _image_files(normal_dir, skip_masks=False)
        ]
    unannotated: list[Sample] = []
    unannotated_dir = root / UNANNOTATED
    if unannotated_dir.is_dir():
        unannotated = [
            _load_sample(p, UNANNOTATED, None, image_size)
            for p in _image_files(unannotated_dir, skip_masks=False)
        ]
    return CategoryData(
        category=root.resolve().name or str(root),
        root=root,
        image_size=image_size,
        test=test,
        train_good=train_good,
        unannotated=unannotated,
    )
