"""Load the semi-supervised split a DataConfig describes, from any supported layout."""
from __future__ import annotations

from data.config import DataConfig
from data.datasets import load_dataset
from data.mvtec import DatasetError
from data.split import Split, make_split
from data.synthetic import ensure_default_dataset


def load_split(data: DataConfig) -> Split:
    """The semi-supervised split a DataConfig describes (the built-in data when data_root is None)."""
    return load_split_and_summary(data)[0]


def load_split_and_summary(data: DataConfig) -> tuple[Split, str]:
    """load_split, plus the loader's account of what it found (counts per split and defect type).

    train/good is always loaded: the AE pretraining of noghredeh2025, the unsupervised baseline and
    the residual classifier's AE train on it (Split.normal), whether or not it also joins D_u."""
    if data.data_root is None and data.dataset != "mvtec":
        raise DatasetError(f"dataset {data.dataset!r} needs a data root (--data-root): the built-in "
                           "data is in the mvtec layout")
    root = data.data_root if data.data_root is not None else ensure_default_dataset()
    category = load_dataset(data.dataset, root, data.category, image_size=data.image_size,
                            load_train_good=True)
    split = make_split(category, n_labeled=data.n_labeled, seed=data.split_seed,
                       include_train_good=data.include_train_good, per_defect_type=data.per_defect_type,
                       include_unannotated=data.include_unannotated, holdout_fraction=data.holdout_fraction)
    return split, category.summary()
