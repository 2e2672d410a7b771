"""Datasets: loaders (MVTec AD layout, CrackForest, generic folders), the semi-supervised split,
and the built-in synthetic generator."""

from data.crackforest import load_crackforest
from data.datasets import DATASETS, load_dataset
from data.folder import load_folder_dataset
from data.mvtec import CategoryData, DatasetError, Sample, list_categories, load_mvtec_category
from data.split import Split, make_split
from data.synthetic import (
    default_data_root,
    ensure_default_dataset,
    generate_synthetic_mvtec,
)

__all__ = [
    "DATASETS",
    "CategoryData",
    "DatasetError",
    "Sample",
    "Split",
    "default_data_root",
    "ensure_default_dataset",
    "generate_synthetic_mvtec",
    "list_categories",
    "load_crackforest",
    "load_dataset",
    "load_folder_dataset",
    "load_mvtec_category",
    "make_split",
]
