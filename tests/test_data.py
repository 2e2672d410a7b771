"""Tests for data/: MVTec-layout, CrackForest and folder loaders, semi-supervised split, synthetic
generator."""

from __future__ import annotations

import re
from pathlib import Path

import cv2
import numpy as np
import pytest
import scipy.io

from data import (
    DATASETS,
    CategoryData,
    DatasetError,
    Sample,
    default_data_root,
    generate_synthetic_mvtec,
    list_categories,
    load_crackforest,
    load_dataset,
    load_folder_dataset,
    load_mvtec_category,
    make_split,
)
from data import synthetic
from data.synthetic import CATEGORIES, MARKER, MAX_AREA, MIN_AREA, render_sample
from tests.helpers import _fake_crackforest, _fake_folder, _hand_tree, _mask, _write, _write_mat

REAL_ROOT = Path(__file__).resolve().parents[2] / "shared" / "datasets" / "mvtec_ad"
CRACKFOREST_ROOT = Path(__file__).resolve().parents[2] / "shared" / "datasets" / "crackforest"
SMALL = dict(image_size=64, n_train_good=3, n_test_good=2, n_per_defect=2)


@pytest.fixture(scope="module")
def synth_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return generate_synthetic_mvtec(tmp_path_factory.mktemp("synth"), seed=0, **SMALL)


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
    altered, mask = synthetic.apply_defect(clean, region, "stain", rng)
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


@pytest.mark.skipif(not (CRACKFOREST_ROOT / "groundTruth").is_dir(),
                    reason=f"real CrackForest not found at {CRACKFOREST_ROOT} (image/, groundTruth/)")
def test_real_crackforest() -> None:
    stems = {p.stem for p in (CRACKFOREST_ROOT / "image").glob("*.jpg")}
    annotated = {p.stem for p in (CRACKFOREST_ROOT / "groundTruth").glob("*.mat")}
    n_unannotated = len(stems - annotated)
    data = load_crackforest(CRACKFOREST_ROOT, image_size=64)
    assert len(data.test) == len(annotated) == 118
    assert len(data.unannotated) == n_unannotated == 37
    assert data.train_good == [] and data.category == "crackforest"
    assert [s.name for s in data.test] == sorted(f"crack/{x}" for x in annotated)
    assert all(s.defect_type == "crack" and s.mask.any() for s in data.test)
    assert all(s.defect_type == "unannotated" and not s.mask.any() for s in data.unannotated)
    for s in data.test[:3] + data.unannotated[:3]:
        assert s.image.shape == (64, 64, 3) and s.image.dtype == np.uint8
        assert s.mask.shape == (64, 64) and s.mask.dtype == bool
    summary = data.summary()
    assert "test=118" in summary and "crack=118" in summary
    assert f"unannotated={n_unannotated}" in summary and "train/good=0" in summary
    # Any-coverage resize keeps every crack pixel nearest-neighbour sampling would keep.
    seg = scipy.io.loadmat(str(CRACKFOREST_ROOT / "groundTruth" / "001.mat"))["groundTruth"][0, 0]
    nearest = cv2.resize((seg["Segmentation"] == 2).astype(np.uint8), (64, 64),
                         interpolation=cv2.INTER_NEAREST) > 0
    assert (data.test[0].mask >= nearest).all() and data.test[0].mask.sum() > nearest.sum()


# -------------------------------------------------------------------------------- crackforest
def test_crackforest_fake_counts_and_thin_masks(tmp_path: Path) -> None:
    root = _fake_crackforest(tmp_path / "cfd")
    data = load_crackforest(root, image_size=16)
    assert [s.name for s in data.test] == ["crack/001", "crack/002", "crack/003"]
    assert [s.name for s in data.unannotated] == ["unannotated/201", "unannotated/202"]
    assert data.train_good == [] and "unannotated=2" in data.summary()
    for s in data.test:
        assert s.image.shape == (16, 16, 3) and s.mask.shape == (16, 16)
        # A 1-px crack stays one unbroken row after the 3x / 2x downscale, and nothing else.
        rows = np.flatnonzero(s.mask.any(axis=1))
        assert len(rows) == 1 and s.mask[rows[0]].all() and s.mask.sum() == 16
    with_4 = load_crackforest(root, image_size=16, crack_labels=(2, 4)).test[0].mask
    assert with_4[0, 0] and with_4.sum() == 17
    assert all(not s.mask.any() for s in data.unannotated)


def test_crackforest_error_missing_folders(tmp_path: Path) -> None:
    missing = tmp_path / "nope"
    with pytest.raises(DatasetError, match=re.escape(str(missing))):
        load_crackforest(missing)
    root = _fake_crackforest(tmp_path / "cfd")
    for folder in ("groundTruth", "image"):
        moved = root / folder
        moved.rename(tmp_path / "aside")
        with pytest.raises(DatasetError, match=re.escape(str(moved))):
            load_crackforest(root, 16)
        (tmp_path / "aside").rename(moved)


def test_crackforest_error_mat_without_image(tmp_path: Path) -> None:
    root = _fake_crackforest(tmp_path / "cfd")
    (root / "image" / "002.jpg").unlink()
    with pytest.raises(DatasetError) as err:
        load_crackforest(root, 16)
    assert str(root / "groundTruth" / "002.mat") in str(err.value)
    assert str(root / "image" / "002.jpg") in str(err.value)


def test_crackforest_error_wrong_segmentation_size(tmp_path: Path) -> None:
    root = _fake_crackforest(tmp_path / "cfd")
    _write_mat(root / "groundTruth" / "003.mat", np.ones((48, 32), np.uint8))  # transposed
    with pytest.raises(DatasetError) as err:
        load_crackforest(root, 16)
    msg = str(err.value)
    assert str(root / "groundTruth" / "003.mat") in msg and str(root / "image" / "003.jpg") in msg
    assert "32x48" in msg and "48x32" in msg


@pytest.mark.parametrize("content", ["corrupt", "no_key", "no_field", "not_2d"])
def test_crackforest_error_bad_mat(tmp_path: Path, content: str) -> None:
    root = _fake_crackforest(tmp_path / "cfd")
    bad = root / "groundTruth" / "001.mat"
    if content == "corrupt":
        bad.write_bytes(b"MATLAB 5.0 MAT-file, this is not one")
    elif content == "no_key":
        scipy.io.savemat(str(bad), {"other": np.ones((32, 48))})
    elif content == "no_field":
        scipy.io.savemat(str(bad), {"groundTruth": {"Boundaries": np.ones((32, 48))}})
    else:
        scipy.io.savemat(str(bad), {"groundTruth": {"Segmentation": np.ones((2, 32, 48))}})
    with pytest.raises(DatasetError, match=re.escape(str(bad))):
        load_crackforest(root, 16)


# ------------------------------------------------------------------------------------- folder
@pytest.mark.parametrize("subfolders", [False, True])
def test_folder_dataset_counts_and_masks(tmp_path: Path, subfolders: bool) -> None:
    root = _fake_folder(tmp_path / "mine", subfolders)
    data = load_folder_dataset(root, image_size=16)
    kind = "scratch" if subfolders else "anomalous"
    assert data.category == "mine"
    assert [s.name for s in data.test] == sorted([f"{kind}/a", f"{kind}/c", "good/b"])
    by_stem = {s.path.stem: s for s in data.test}
    assert [by_stem[x].defect_type for x in "abc"] == [kind, "good", kind]
    assert [by_stem[x].mask.any() for x in "abc"] == [True, False, True]
    expected = cv2.resize(_mask((20, 30), True), (16, 16), interpolation=cv2.INTER_NEAREST) > 0
    np.testing.assert_array_equal(by_stem["c"].mask, expected)  # .bmp mask read like .png
    assert all(s.image.shape == (16, 16, 3) for s in data.test + data.train_good + data.unannotated)
    assert [s.name for s in data.train_good] == ["good/n0", "good/n1"]
    assert [s.name for s in data.unannotated] == ["unannotated/u0"]
    assert not data.unannotated[0].mask.any()
    summary = data.summary()
    assert "test=3" in summary and "train/good=2" in summary and "unannotated=1" in summary
    assert load_folder_dataset(root, 16, load_train_good=False).train_good == []


def test_folder_dataset_optional_folders_absent(tmp_path: Path) -> None:
    root = _fake_folder(tmp_path / "mine")
    for folder in ("normal", "unannotated"):
        for p in (root / folder).iterdir():
            p.unlink()
        (root / folder).rmdir()
    data = load_folder_dataset(root, 16)
    assert len(data.test) == 3 and data.train_good == [] and data.unannotated == []


def test_folder_error_missing_folders(tmp_path: Path) -> None:
    missing = tmp_path / "nope"
    with pytest.raises(DatasetError, match=re.escape(str(missing))):
        load_folder_dataset(missing)
    (tmp_path / "d").mkdir()
    with pytest.raises(DatasetError, match=re.escape(str(tmp_path / "d" / "images"))):
        load_folder_dataset(tmp_path / "d")
    (tmp_path / "d" / "images").mkdir()
    with pytest.raises(DatasetError, match=re.escape(str(tmp_path / "d" / "masks"))):
        load_folder_dataset(tmp_path / "d")
    (tmp_path / "d" / "masks").mkdir()
    with pytest.raises(DatasetError, match="no images"):
        load_folder_dataset(tmp_path / "d")


@pytest.mark.parametrize("subfolders", [False, True])
def test_folder_error_image_without_mask(tmp_path: Path, subfolders: bool) -> None:
    root = _fake_folder(tmp_path / "mine", subfolders)
    sub = "scratch/" if subfolders else ""
    (root / "masks" / f"{sub}a.png").unlink()
    with pytest.raises(DatasetError) as err:
        load_folder_dataset(root, 16)
    assert str(root / "images" / f"{sub}a.png") in str(err.value)
    assert str(root / "masks" / f"{sub}a.png") in str(err.value)  # the expected mask path


@pytest.mark.parametrize("subfolders", [False, True])
def test_folder_error_mask_without_image(tmp_path: Path, subfolders: bool) -> None:
    root = _fake_folder(tmp_path / "mine", subfolders)
    sub = "scratch/" if subfolders else ""
    orphan = root / "masks" / f"{sub}z.png"
    _write(orphan, _mask((20, 30), True))
    with pytest.raises(DatasetError, match=re.escape(str(orphan))):
        load_folder_dataset(root, 16)


def test_folder_error_stray_mask_in_subfolder_layout(tmp_path: Path) -> None:
    root = _fake_folder(tmp_path / "mine", subfolders=True)
    stray = root / "masks" / "a.png"
    _write(stray, _mask((20, 30), True))
    with pytest.raises(DatasetError, match=re.escape(str(stray))):
        load_folder_dataset(root, 16)
    stray.unlink()
    _write(root / "masks" / "dent" / "a.png", _mask((20, 30), True))
    with pytest.raises(DatasetError, match=re.escape(str(root / "images" / "dent"))):
        load_folder_dataset(root, 16)


def test_folder_error_size_mismatch_and_bad_good_mask(tmp_path: Path) -> None:
    root = _fake_folder(tmp_path / "mine")
    _write(root / "masks" / "b.png", _mask((30, 20), False))
    with pytest.raises(DatasetError) as err:
        load_folder_dataset(root, 16)
    msg = str(err.value)
    assert str(root / "masks" / "b.png") in msg and str(root / "images" / "b.png") in msg
    assert "20x30" in msg and "30x20" in msg

    root = _fake_folder(tmp_path / "sub", subfolders=True)
    _write(root / "masks" / "good" / "b.png", _mask((20, 30), True))
    with pytest.raises(DatasetError, match=re.escape(str(root / "masks" / "good" / "b.png"))):
        load_folder_dataset(root, 16)


def test_folder_error_mixed_layout_and_duplicate_names(tmp_path: Path) -> None:
    root = _fake_folder(tmp_path / "mine")
    (root / "images" / "extra").mkdir()
    with pytest.raises(DatasetError, match="mixes"):
        load_folder_dataset(root, 16)
    (root / "images" / "extra").rmdir()
    _write(root / "images" / "a.jpg", np.zeros((20, 30, 3), np.uint8))
    with pytest.raises(DatasetError, match=re.escape(str(root / "images" / "a.jpg"))):
        load_folder_dataset(root, 16)


# ----------------------------------------------------------------------------------- dispatch
def test_load_dataset_dispatch(tmp_path: Path) -> None:
    assert DATASETS == ("mvtec", "crackforest", "folder")
    mv = load_dataset("mvtec", _hand_tree(tmp_path / "mv"), "toy", image_size=16,
                      load_train_good=False)
    assert mv.category == "toy" and len(mv.test) == 4 and mv.train_good == []
    cf = load_dataset("crackforest", _fake_crackforest(tmp_path / "cf"), "brick", 16)
    assert cf.category == "crackforest" and len(cf.test) == 3 and len(cf.unannotated) == 2
    fo = load_dataset("folder", _fake_folder(tmp_path / "fo"), image_size=16, load_train_good=False)
    assert fo.category == "fo" and len(fo.test) == 3 and fo.train_good == []
    with pytest.raises(ValueError, match="category"):
        load_dataset("mvtec", tmp_path / "mv")
    with pytest.raises(ValueError, match="mvtec, crackforest, folder"):
        load_dataset("kitti", tmp_path)


# ------------------------------------------------------------------------- per-type split
def _fake_data(n_good: int = 6, types: tuple[tuple[str, int], ...] = (
        ("crack", 3), ("dent", 4), ("hole", 2)), n_unannotated: int = 0) -> CategoryData:
    """In-memory category: masks 4x4 with one anomalous pixel for every non-good image."""
    def sample(kind: str, i: int) -> Sample:
        mask = np.zeros((4, 4), bool)
        mask[0, 0] = kind not in ("good", "unannotated")
        return Sample(f"{kind}/{i:03d}", kind, np.zeros((4, 4, 3), np.uint8), mask, Path(kind))
    test = [sample(t, i) for t, n in (("good", n_good),) + types for i in range(n)]
    return CategoryData("toy", Path("toy"), 4, sorted(test, key=lambda s: s.name),
                        train_good=[sample("good", 100 + i) for i in range(2)],
                        unannotated=[sample("unannotated", i) for i in range(n_unannotated)])


def test_default_split_draws_unchanged() -> None:
    # Recorded with make_split before per_defect_type existed: recorded results depend on them.
    recorded = {
        0: ["crack/000", "crack/001", "hole/001"],
        1: ["dent/003", "good/000", "good/004"],
        2: ["crack/001", "dent/000", "good/003"],
        3: ["crack/001", "crack/002", "good/003"],
        4: ["good/002", "hole/000", "hole/001"],
    }
    data = _fake_data(n_unannotated=2)
    for seed, names in recorded.items():
        split = make_split(data, 3, seed=seed)
        assert [s.name for s in split.labeled] == names
        explicit = make_split(data, 3, seed, False, per_defect_type=None, include_unannotated=False)
        assert explicit.describe() == split.describe()
        assert split.extra_unlabeled == []


def test_per_defect_type_split() -> None:
    data = _fake_data()
    test_names = [s.name for s in data.test]
    for seed in range(8):
        split = make_split(data, n_labeled=999, seed=seed, per_defect_type=1)  # n_labeled ignored
        assert split.describe() == make_split(data, seed=seed, per_defect_type=1).describe()
        d = split.describe()
        assert d["labeled_per_defect_type"] == {"crack": 1, "dent": 1, "hole": 1}
        assert not set(d["labeled"]) & set(d["unlabeled"])
        assert sorted(d["labeled"] + d["unlabeled"]) == test_names
        assert [s.name for s in split.unlabeled] == [n for n in test_names if n not in d["labeled"]]
        assert d["labeled"] == sorted(d["labeled"])
    draws = {tuple(make_split(data, seed=s, per_defect_type=1).describe()["labeled"])
             for s in range(8)}
    assert len(draws) > 1
    split = make_split(data, seed=3, per_defect_type=1)
    assert split.describe()["unlabeled_per_defect_type"] == {"crack": 2, "dent": 3, "good": 6,
                                                             "hole": 1}


def test_per_defect_type_validation() -> None:
    data = _fake_data()
    for k in (0, -1):
        with pytest.raises(ValueError, match="per_defect_type"):
            make_split(data, per_defect_type=k)
    with pytest.raises(ValueError, match=r"too few: hole=2") as err:
        make_split(data, per_defect_type=2)  # hole has 2 images: none would remain to score
    assert "crack" not in str(err.value)
    with pytest.raises(ValueError, match="crack=3, hole=2"):
        make_split(data, per_defect_type=3)
    with pytest.raises(DatasetError, match="no anomalous defect type"):
        make_split(_fake_data(types=()), per_defect_type=1)


def test_split_include_unannotated() -> None:
    data = _fake_data(n_unannotated=3)
    unannotated = [s.name for s in data.unannotated]
    for kwargs in ({}, {"per_defect_type": 1}):
        split = make_split(data, 3, seed=0, include_unannotated=True, **kwargs)
        assert [s.name for s in split.extra_unlabeled] == unannotated
        scored = {s.name for s in split.labeled + split.unlabeled}
        assert not scored & set(unannotated)
        both = make_split(data, 3, seed=0, include_train_good=True, include_unannotated=True,
                          **kwargs)
        assert [s.name for s in both.extra_unlabeled] == ["good/100", "good/101"] + unannotated
        assert both.describe()["extra_unlabeled_per_defect_type"] == {"good": 2, "unannotated": 3}
        assert both.describe()["labeled"] == split.describe()["labeled"]
