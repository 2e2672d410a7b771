"""Fixtures shared by the test modules (plain helpers live in tests/helpers.py)."""
from __future__ import annotations

from pathlib import Path

import pytest

from data.synthetic import generate_synthetic_mvtec


@pytest.fixture(scope="session")
def tiny_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny generated MVTec-layout dataset (64 px) for the end-to-end tests of the entry points.

    Read-only for its users (runs write to their own folders). Six train/good images, because the
    residual classifier holds a part of them out of AE training as labeled normals."""
    return generate_synthetic_mvtec(tmp_path_factory.mktemp("data"), seed=0, image_size=64,
                                    n_train_good=6, n_test_good=3, n_per_defect=2)
