"""DataConfig: which images a run trains on (dataset, category, size and the semi-supervised split)."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass
class DataConfig:
    """Which images the env trains on (the semi-supervised split)."""

    data_root: str | None = None
    """dataset folder; None = the built-in synthetic dataset (generated on first use, mvtec layout)"""
    category: str = "brick"
    """category folder under data_root (mvtec layout only)"""
    image_size: int = 128
    """images are resized to image_size x image_size (paper: 256; CPU default: 128)"""
    n_labeled: int = 5
    """|D_l|: images drawn with the seed from the test set, with their masks"""
    split_seed: int = 0
    """seed of the labeled/unlabeled draw"""
    include_train_good: bool = False
    """add train/good images to D_u (sampled by the AE, never scored)"""
    dataset: str = "mvtec"
    """layout of data_root: 'mvtec', 'crackforest' or 'folder' (see data/)"""
    per_defect_type: int | None = None
    """draw D_l as k images per defect type (noghredeh2025's protocol) instead of n_labeled"""
    include_unannotated: bool = False
    """add the dataset's unannotated images to D_u (sampled by the AE, never scored)"""
    holdout_fraction: float = 0.0
    """fraction of the non-labeled test images kept out of D_u altogether (never sampled, never
    scored in training): unseen images to measure the trained model on (scripts/inductive.py)"""
