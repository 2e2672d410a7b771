"""DataConfig: which images a run trains on (dataset, category, size and the semi-supervised split)."""
from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

from common.settings import ConfigError, check_fields, from_dict, setting

#: Dataset layouts a data root can have (data.datasets.load_dataset).
LAYOUTS = ("mvtec", "crackforest", "folder")
#: Largest image side: every image is held in memory at this side, with per-pixel maps beside it
#: (at 2048 px a 100-image split already needs several GB).
MAX_IMAGE_SIZE = 2048


@dataclass
class DataConfig:
    """Which images the env trains on (the semi-supervised split)."""

    CONFIG_NAME: ClassVar[str] = "data"
    data_root: str | None = None
    """dataset folder; None = the built-in synthetic dataset (generated on first use, mvtec layout)"""
    category: str = "brick"
    """category folder under data_root (mvtec layout only)"""
    image_size: int = setting(128, ge=8, le=MAX_IMAGE_SIZE)
    """images are resized to image_size x image_size (paper: 256; CPU default: 128)"""
    n_labeled: int = setting(5, ge=1)
    """|D_l|: images drawn with the seed from the test set, with their masks"""
    split_seed: int = setting(0, ge=0)
    """seed of the labeled/unlabeled draw"""
    include_train_good: bool = False
    """add train/good images to D_u (sampled by the AE, never scored)"""
    dataset: str = setting("mvtec", choices=LAYOUTS)
    """layout of data_root: 'mvtec', 'crackforest' or 'folder' (see data/)"""
    per_defect_type: int | None = setting(None, ge=1)
    """draw D_l as k images per defect type (noghredeh2025's protocol) instead of n_labeled"""
    include_unannotated: bool = False
    """add the dataset's unannotated images to D_u (sampled by the AE, never scored)"""
    holdout_fraction: float = setting(0.0, ge=0, lt=1)
    """fraction of the non-labeled test images kept out of D_u altogether (never sampled, never
    scored in training): unseen images to measure the trained model on (scripts/inductive.py)"""

    def __post_init__(self) -> None:
        check_fields(self)
        if self.category in ("", ".", "..") or "/" in self.category or "\\" in self.category:
            raise ConfigError(f"data.category={self.category!r}: must be a folder name, not a path")


def data_config_from_kwargs(data: Any = None, overrides: Mapping[str, Any] | None = None,
                            owner: str = "the env") -> DataConfig:
    """The DataConfig of an env's `data` argument (a DataConfig, a dict of its fields, as a JSON
    spec holds it, or None for the defaults) with `overrides` (DataConfig fields given as plain
    keyword arguments, e.g. image_size=64) on top. Unknown names raise ConfigError listing the
    fields; `owner` names who was given them."""
    known = [f.name for f in dataclasses.fields(DataConfig)]
    unknown = sorted(set(overrides or {}) - set(known))
    if unknown:
        raise ConfigError(f"unknown keyword argument(s) {', '.join(unknown)} for {owner}: besides its own "
                          f"arguments it takes the DataConfig fields {', '.join(known)}")
    if data is None:
        base: dict[str, Any] = {}
    elif isinstance(data, DataConfig):
        base = dataclasses.asdict(data)
    elif isinstance(data, Mapping):
        base = dict(data)
    else:
        raise ConfigError(f"data={data!r}: expected a DataConfig or a dict of its fields, got {type(data).__name__}")
    return from_dict(DataConfig, {**base, **(overrides or {})})
