"""One entry point for every supported dataset layout, so CLIs and configs take a ``kind``."""

from __future__ import annotations

from pathlib import Path

from data.crackforest import load_crackforest
from data.folder import load_folder_dataset
from data.mvtec import CategoryData, load_mvtec_category

DATASETS: tuple[str, ...] = ("mvtec", "crackforest", "folder")
"""``mvtec``: ``root`` holds category folders (MVTec AD layout); ``crackforest``: ``root`` is the
CrackForest folder (image/, groundTruth/); ``folder``: ``root`` is one dataset in the generic
layout of ``data.folder`` (images/, masks/, optional normal/ and unannotated/)."""


def load_dataset(
    kind: str,
    root: str | Path,
    category: str | None = None,
    image_size: int = 128,
    load_train_good: bool = True,
) -> CategoryData:
    """Load ``root`` as a dataset of layout ``kind`` (one of ``DATASETS``).

    ``category`` is required for ``mvtec`` and ignored by the single-category layouts (which
    name themselves), so a config with a default category still works for them.
    ``load_train_good`` is ignored by ``crackforest``, which has no anomaly-free images.
    """
    if kind == "mvtec":
        if not category:
            raise ValueError("category is required for kind='mvtec' (a folder under root)")
        return load_mvtec_category(root, category, image_size, load_train_good)
    if kind == "crackforest":
        return load_crackforest(root, image_size)
    if kind == "folder":
        return load_folder_dataset(root, image_size, load_train_good)
    raise ValueError(f"unknown dataset kind {kind!r}: expected one of {', '.join(DATASETS)}")
