"""Tests for data/: MVTec-layout loader, semi-supervised split, synthetic generator."""

from __future__ import annotations

import re
from pathlib import Path

import cv2
import numpy as np
import pytest

from data import (
    DatasetError,
    default_data_root,
    generate_synthetic_mvtec,
    list_categories,
    load_mvtec_category,
    make_split,
)
from data import synthetic
from data.synthetic import CATEGORIES, MARKER, MAX_AREA, MIN_AREA, render_sample

REAL_ROOT = Path(__file__).resolve().parents[2] / "shared" / "datasets" / "mvtec_ad"
SMALL = dict(image_size=64, n_train_good=3, n_test_good=2, n_per_defect=2)


@pytest.fixture(scope="module")
def synth_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return generate_synthetic_mvtec(tmp_path_factory.mktemp("synth"), seed=0, **SMALL)


def _write(path: Path, array: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), array)


def _hand_tree(root: Path, size: int = 40, mask_size: int | None = None, gray: bool = False) -> Path:
    """One category 'toy': 2 train/good, 2 test/good, 2 test/dent with masks."""
    rng = np.random.default_rng(0)
    shape = (size, size) if gray else (size, size, 3)
    for split, defect in [("train", "good"), ("test", "good"), ("test", "dent")]:
        for i in range(2):
            _write(root / "toy" / split / defect / f"{i:03d}.png",
                   rng.integers(0, 256, shape, dtype=np.uint8))
            if defect == "dent":
                m = np.zeros((mask_size or size,) * 2, np.uint8)
                m[5:15, 5:15] = 255
                _write(root / "toy" / "ground_truth" / defect / f"{i:03d}_mask.png", m)
    return root


# ------------------------------------------------------------------------------------ loader
def test_loader_counts_shapes_dtypes(synth_root: Path) -> None:
    assert list_categories(synth_root) == sorted(CATEGORIES)
    for category, (_, kinds) in CATEGORIES.items():
        data = load_mvtec_category(synth_root, category, image_size=32)
        assert len(data.train_good) == 3
        assert len(data.test) == 2 + 2 * len(kinds)
        assert [s.name for s in data.test] == sorted(s.name for s in data.test)
        for s in data.test + data.train_good:
            assert s.image.shape == (32, 32, 3) and s.image.dtype == np.uint8
            assert s.mask.shape == (32, 32) and s.mask.dtype == bool
            assert s.mask.any() == (s.defect_type != "good")
        assert category in data.summary()
        assert not load_mvtec_category(synth_root, category, 32, load_train_good=False).train_good


def test_loader_masks_match_generator(synth_root: Path) -> None:
    data = load_mvtec_category(synth_root, "brick", image_size=64)
    sample = next(s for s in data.test if s.defect_type == "crack")
    image, mask = render_sample("brick", "test", "crack", int(sample.path.stem), 0, 64)
    np.testing.assert_array_equal(sample.mask, mask)
    np.testing.assert_array_equal(sample.image, image)  # RGB order preserved through BGR PNG


def test_grayscale_and_rgba_become_rgb(tmp_path: Path) -> None:
    root = _hand_tree(tmp_path, gray=True)
    data = load_mvtec_category(root, "toy", image_size=16)
    assert all(s.image.shape == (16, 16, 3) for s in data.test)
    s = data.test[0]
    assert (s.image[..., 0] == s.image[..., 1]).all()
    rgba = np.zeros((40, 40, 4), np.uint8)
    rgba[..., 2] = 200  # red in BGRA
    _write(root / "toy" / "test" / "good" / "000.png", rgba)
    img = load_mvtec_category(root, "toy", 40).test[-2].image  # good/000
    assert img.shape == (40, 40, 3) and (img[..., 0] == 200).all() and (img[..., 2] == 0).all()


def test_error_missing_root(tmp_path: Path) -> None:
    missing = tmp_path / "nope"
    with pytest.raises(DatasetError, match=re.escape(str(missing))):
        load_mvtec_category(missing, "toy")


def test_error_missing_category_lists_available(tmp_path: Path) -> None:
    _hand_tree(tmp_path)
    with pytest.raises(DatasetError) as err:
        load_mvtec_category(tmp_path, "bottle")
    assert str(tmp_path / "bottle") in str(err.value) and "toy" in str(err.value)


def test_error_missing_or_empty_test(tmp_path: Path) -> None:
    (tmp_path / "toy" / "train" / "good").mkdir(parents=True)
    with pytest.raises(DatasetError, match=re.escape(str(tmp_path / "toy" / "test"))):
        load_mvtec_category(tmp_path, "toy")
    (tmp_path / "toy" / "test" / "good").mkdir(parents=True)
    with pytest.raises(DatasetError, match="no images"):
        load_mvtec_category(tmp_path, "toy")


def test_error_missing_mask(tmp_path: Path) -> None:
    _hand_tree(tmp_path)
    expected = tmp_path / "toy" / "ground_truth" / "dent" / "001_mask.png"
    expected.unlink()
    with pytest.raises(DatasetError, match=re.escape(str(expected))):
        load_mvtec_category(tmp_path, "toy")


def test_error_wrong_size_mask(tmp_path: Path) -> None:
    _hand_tree(tmp_path, size=40, mask_size=30)
    with pytest.raises(DatasetError) as err:
        load_mvtec_category(tmp_path, "toy")
    msg = str(err.value)
    assert "000_mask.png" in msg and str(tmp_path / "toy" / "test" / "dent" / "000.png") in msg
    assert "30x30" in msg and "40x40" in msg


def test_error_unreadable_image(tmp_path: Path) -> None:
    _hand_tree(tmp_path)
    bad = tmp_path / "toy" / "test" / "good" / "000.png"
    bad.write_bytes(b"not a png")
    with pytest.raises(DatasetError, match=re.escape(str(bad))):
        load_mvtec_category(tmp_path, "toy")


# ------------------------------------------------------------------------------------- split
def test_split_determinism_and_anomaly(synth_root: Path) -> None:
    data = load_mvtec_category(synth_root, "pill", image_size=32)
    a, b = make_split(data, 3, seed=1), make_split(data, 3, seed=1)
    assert a.describe() == b.describe()
    names = {tuple(make_split(data, 3, seed=s).describe()["labeled"]) for s in range(6)}
    assert len(names) > 1
    for s in range(20):
        split = make_split(data, 3, seed=s)
        assert any(x.mask.any() for x in split.labeled)
        assert len(split.labeled) == 3 and len(split.unlabeled) == len(data.test) - 3
        assert not {x.name for x in split.labeled} & {x.name for x in split.unlabeled}
        assert split.extra_unlabeled == []


def test_split_redraws_until_anomalous(tmp_path: Path) -> None:
    _hand_tree(tmp_path)
    data = load_mvtec_category(tmp_path, "toy", 16)
    data.test = [data.test[0]] + data.test[2:]  # dent/000, good/000, good/001
    for s in range(10):
        assert make_split(data, 1, seed=s).labeled[0].defect_type == "dent"


def test_split_validation_and_train_good(synth_root: Path) -> None:
    data = load_mvtec_category(synth_root, "gravel", image_size=32)
    for bad in (0, len(data.test)):
        with pytest.raises(ValueError, match="n_labeled"):
            make_split(data, bad)
    split = make_split(data, 2, include_train_good=True)
    assert len(split.extra_unlabeled) == 3
    assert split.describe()["n_extra_unlabeled"] == 3
    data.test = [s for s in data.test if s.defect_type == "good"]
    with pytest.raises(DatasetError, match="anomalous"):
        make_split(data, 1)


# --------------------------------------------------------------------------------- generator
def test_generator_deterministic_bytes(tmp_path: Path, synth_root: Path) -> None:
    other = generate_synthetic_mvtec(tmp_path / "again", seed=0, **SMALL)
    files = sorted(p.relative_to(synth_root) for p in synth_root.rglob("*.png"))
    assert files == sorted(p.relative_to(other) for p in other.rglob("*.png"))
    for rel in files:
        assert (synth_root / rel).read_bytes() == (other / rel).read_bytes(), rel
    a, _ = render_sample("brick", "test", "good", 0, seed=0, image_size=64)
    b, _ = render_sample("brick", "test", "good", 0, seed=1, image_size=64)
    assert not np.array_equal(a, b)


@pytest.mark.parametrize("category", sorted(CATEGORIES))
def test_defect_area_fraction(category: str) -> None:
    fractions = []
    for kind in CATEGORIES[category][1]:
        for i in range(4):
            image, mask = render_sample(category, "test", kind, i, seed=0, image_size=128)
            assert mask is not None and mask.dtype == bool and image.dtype == np.uint8
            fractions.append(mask.mean())
    fractions = np.array(fractions)
    assert MIN_AREA <= np.median(fractions) <= MAX_AREA
    assert fractions.min() >= MIN_AREA * 0.6 and fractions.max() <= MAX_AREA * 1.2


def test_mask_is_exactly_the_altered_pixels() -> None:
    # Same generator state up to the defect: the clean render equals the "good" path's clean image.
    rng = synthetic._rng(0, "x")
    clean, region = CATEGORIES["gravel"][0](rng, 64)
    altered, mask = synthetic._apply_defect(clean, region, "stain", rng)
    np.testing.assert_array_equal(np.any(altered != clean, axis=2), mask)


def test_complete_marker(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = generate_synthetic_mvtec(tmp_path / "d", **SMALL)
    assert (root / MARKER).is_file()
    calls = []
    monkeypatch.setattr(synthetic, "render_sample",
                        lambda *a, **k: calls.append(a) or render_sample(*a, **k))
    generate_synthetic_mvtec(root, **SMALL)  # complete: nothing regenerated
    assert not calls
    (root / MARKER).unlink()  # simulate an interrupted run
    (root / "pill" / "test" / "good" / "000.png").unlink()
    generate_synthetic_mvtec(root, **SMALL)
    assert calls and (root / MARKER).is_file()
    assert (root / "pill" / "test" / "good" / "000.png").is_file()
    calls.clear()
    generate_synthetic_mvtec(root, **{**SMALL, "n_test_good": 1})  # other parameters: redone
    assert calls and not (root / "pill" / "test" / "good" / "001.png").exists()


def test_default_root_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("NBS_DATA_DIR", str(tmp_path / "x"))
    assert default_data_root() == tmp_path / "x"
    monkeypatch.delenv("NBS_DATA_DIR")
    assert default_data_root() == Path.home() / ".cache" / "neural-batch-sampling" / "synthetic-v1"


# ------------------------------------------------------------------------------------ real data
@pytest.mark.skipif(not (REAL_ROOT / "bottle").is_dir(),
                    reason=f"real MVTec AD bottle not found at {REAL_ROOT / 'bottle'}")
def test_real_mvtec_bottle() -> None:
    data = load_mvtec_category(REAL_ROOT, "bottle", image_size=64)
    defective = [s for s in data.test if s.defect_type != "good"]
    assert len(defective) == 63 and len(data.test) - len(defective) == 20
    assert len(data.train_good) == 209
    assert all(s.mask.any() for s in defective)
    assert data.test[0].image.shape == (64, 64, 3)
