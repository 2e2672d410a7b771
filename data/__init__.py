"""Datasets: the MVTec AD layout loader, the semi-supervised split, and the built-in generator."""

from data.mvtec import CategoryData, DatasetError, Sample, list_categories, load_mvtec_category
from data.split import Split, make_split
from data.synthetic import (
    default_data_root,
    ensure_default_dataset,
    generate_synthetic_mvtec,
)

__all__ = [
    "CategoryData",
    "DatasetError",
    "Sample",
    "Split",
    "default_data_root",
    "ensure_default_dataset",
    "generate_synthetic_mvtec",
    "list_categories",
    "load_mvtec_category",
    "make_split",
]
