"""The model bundle and predict.py: a trained run segments images it never saw."""
from __future__ import annotations

import csv
import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

import predict
import train
from data.synthetic import generate_synthetic_mvtec
from envs.batch_sampling_env import load_split
from envs.config import DataConfig
from evaluation.choice import CANDIDATES, image_scores
from runner.evaluation import nbs_maps, predict_probabilities
from runner.prediction import find_images
from runner.folder import RunFolder
from evaluation.decisions import nbs_method, run_heldout_maps
from models.crf import CRFConfig, dense_crf
from models.segmenter import Segmenter
from common.files import UnsafeFileError

TINY = ["--category", "brick", "--image-size", "32", "--n-labeled", "3", "--device", "cpu", "--threads", "1",
        "--updates", "10", "--no-tensorboard", "--set", "patches_per_update=4", "--set", "profile_length=4",
        "--set", "warmup_updates=4", "--set", "reinit_every=20", "--set", "buffer_size=16",
        "--set", "predictor_batch=4"]


@pytest.fixture(scope="module")
def data_root(tmp_path_factory) -> Path:
    return generate_synthetic_mvtec(tmp_path_factory.mktemp("data"), seed=0, image_size=48,
                                    n_train_good=2, n_test_good=2, n_per_defect=2)


@pytest.fixture(scope="module")
def runs(data_root, tmp_path_factory) -> dict[str, Path]:
    """One run per decision rule: ours (a final map, threshold, CRF and image score chosen on D_l),
    the pooled final predictor it had before (p > 0.5, no CRF), the same whose leave-one-out maps
    choose the CRF, and chu2020 (prior-matched, CRF)."""
    base = tmp_path_factory.mktemp("runs")
    ours = ["--data-root", str(data_root), "--preset", "ours", *TINY, "--set", "final.steps=20"]
    pool = [*ours, "--set", "final.choose=false", "--set", "final.image_members=3", "--set", "final.pool=logit",
            "--set", "final.profile_member=true"]
    return {"ours": train.main([*ours, "--run-dir", str(base / "ours")]),
            "pool": train.main([*pool, "--run-dir", str(base / "pool")]),
            "pool-loo": train.main([*pool, "--run-dir", str(base / "pool-loo"), "--set", "final.heldout=true"]),
            "chu2020": train.main(["--data-root", str(data_root), "--run-dir", str(base / "chu"), "--preset", "chu2020", *TINY])}


@pytest.mark.parametrize("preset", ["ours", "pool", "pool-loo", "chu2020"])
def test_bundle_gives_the_masks_of_the_run(runs, preset):
    """Segmenter on the run's own D_u images reproduces the masks of evaluate.py's headline row
    (the NBS decision): same AE snapshots, predictor, threshold and CRF choice. (The maps differ by float16 rounding only: the run
    stores its profiles in float16, the bundle recomputes them.)"""
    run = runs[preset]
    config = json.loads((run / "config.json").read_text())
    split = load_split(DataConfig(**config["data"]))
    images = np.stack([s.image for s in split.unlabeled])
    masks_l = np.stack([s.mask for s in split.labeled])
    prof = RunFolder(run).read_best_profiles()
    prob, refit, record = predict_probabilities(RunFolder(run), prof["unlabeled"], torch.device("cpu"), images=images)
    images_l = np.stack([s.image for s in split.labeled])
    nbs, prob_eval, _ = nbs_maps(RunFolder(run), prof, split, torch.device("cpu"), None)  # what evaluate.py scores
    np.testing.assert_array_equal(prob_eval, prob)
    assert {k: record[k] for k in ("threshold", "crf", "note", "crf_choice")} == {
        "threshold": nbs.threshold, "crf": nbs.crf, "note": nbs.note, "crf_choice": nbs.crf_choice}
    assert nbs.crf_choice.startswith("CRF on" if nbs.crf else "CRF off")
    if preset == "ours":  # chosen on D_l: recorded with why, the image score too
        assert record["choice"]["candidate"] in CANDIDATES and nbs.image_score == record["image_score"]
        assert any("candidates" in n or "too few" in n for n in record["choice"]["notes"])
    else:  # the decision recorded at export is the one the rule gives on the run's maps (up to the
        # float16 rounding of the stored profiles, which can move a threshold in its 4th digit)
        again = nbs_method(prob, refit, run_heldout_maps(prof, refit, masks_l, images_l), float(masks_l.mean()))
        assert again.crf == nbs.crf and (again.threshold is None) == (nbs.threshold is None)
    if preset == "pool":  # no leave-one-out maps: p > 0.5, no CRF
        assert not nbs.crf and nbs.threshold is None and prof.get("labeled_refit_heldout_index") is None
    if preset == "pool-loo":  # the final predictor's leave-one-out maps chose the CRF
        index = prof["labeled_refit_heldout_index"]
        assert prof["labeled_refit_heldout_prob"].shape == (len(index), *masks_l.shape[1:])
        assert all(np.delete(masks_l, k, axis=0).any() for k in index) and "held-out D_l" in nbs.crf_choice
    expected = (np.stack([dense_crf(img, p, CRFConfig()) for img, p in zip(images, nbs.prob)]) if nbs.crf
                else nbs.prob > 0.5)

    seg = Segmenter.load(run / "bundle.pt", "cpu")
    assert (seg.meta.crf is not None) == nbs.crf
    assert seg.meta.threshold == (0.5 if nbs.threshold is None else pytest.approx(nbs.threshold, abs=1e-3))
    result = seg.predict(list(images))
    np.testing.assert_allclose(np.stack(result.probabilities), prob, atol=1e-3)
    got = np.stack(result.masks)
    assert (got == expected).mean() > 0.999
    np.testing.assert_array_equal(result.decisions, got.reshape(len(got), -1).any(axis=1))
    np.testing.assert_allclose(result.scores, image_scores(np.stack(result.probabilities), nbs.image_score,
                                                           seg.meta.threshold), atol=1e-6)


def _write_inputs(folder: Path) -> None:
    rng = np.random.default_rng(0)
    (folder / "sub").mkdir(parents=True)
    cv2.imwrite(str(folder / "wide.png"), rng.integers(0, 256, (40, 90, 3), dtype=np.uint8))
    cv2.imwrite(str(folder / "sub" / "grey.jpg"), rng.integers(0, 256, (70, 50), dtype=np.uint8))
    cv2.imwrite(str(folder / "rgba.png"), rng.integers(0, 256, (33, 33, 4), dtype=np.uint8))
    (folder / "broken.png").write_bytes(b"not an image")
    (folder / "notes.txt").write_text("ignored: not an image suffix")


def test_predict_folder_writes_maps_masks_overlays_and_csv(runs, tmp_path):
    _write_inputs(tmp_path / "in")
    out = tmp_path / "out"
    predict.main([str(runs["ours"]), str(tmp_path / "in"), "--out", str(out), "--device", "cpu", "--batch", "2"])
    with open(out / "predictions.csv") as f:
        rows = {r["name"]: r for r in csv.DictReader(f)}
    assert list(rows) == ["broken", "rgba", "sub__grey", "wide"]  # sorted, the subfolder in the name
    assert "cannot decode image file" in rows["broken"]["error"] and rows["broken"]["score"] == ""
    for name, (h, w) in {"wide": (40, 90), "sub__grey": (70, 50), "rgba": (33, 33)}.items():
        row = rows[name]
        mask = cv2.imread(str(out / f"{name}_mask.png"), cv2.IMREAD_UNCHANGED)
        prob = cv2.imread(str(out / f"{name}_prob.png"), cv2.IMREAD_UNCHANGED)
        overlay = cv2.imread(str(out / f"{name}_overlay.png"))
        assert mask.shape == prob.shape == (h, w) and overlay.shape == (h, w, 3)  # original resolution
        assert row["error"] == "" and 0.0 <= float(row["score"]) <= 1.0
        assert int(row["defect_pixels"]) == int((mask > 0).sum())
        assert float(row["defect_area"]) == pytest.approx((mask > 0).mean(), abs=1e-6)
        assert row["decision"] == ("defective" if int(row["defect_pixels"]) else "good")


def test_predict_single_file_matches_the_api(runs, tmp_path):
    rng = np.random.default_rng(1)
    image = rng.integers(0, 256, (50, 60, 3), dtype=np.uint8)
    cv2.imwrite(str(tmp_path / "part.png"), cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
    rows = predict.main([str(runs["chu2020"] / "bundle.pt"), str(tmp_path / "part.png"), "--out",
                         str(tmp_path / "out"), "--device", "cpu"])
    api = Segmenter.load(runs["chu2020"], "cpu").predict([image])
    assert [r["name"] for r in rows] == ["part"]
    assert rows[0]["score"] == pytest.approx(float(api.scores[0]), abs=1e-6)
    mask = cv2.imread(str(tmp_path / "out" / "part_mask.png"), cv2.IMREAD_UNCHANGED) > 0
    np.testing.assert_array_equal(mask, api.masks[0])


def test_predict_refuses_an_empty_folder_and_a_file_that_is_not_a_bundle(runs, tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(SystemExit, match="no image files in this folder"):
        predict.main([str(runs["ours"]), str(tmp_path / "empty"), "--out", str(tmp_path / "o")])
    with pytest.raises(SystemExit, match="not a usable model bundle"):
        predict.main([str(runs["ours"] / "predictor.pt"), str(tmp_path), "--out", str(tmp_path / "o")])
    with pytest.raises(SystemExit, match="no bundle found"):
        predict.main([str(tmp_path / "empty"), str(tmp_path), "--out", str(tmp_path / "o")])
    with pytest.raises(UnsafeFileError, match="is not a model bundle"):
        Segmenter.load(runs["ours"] / "predictor.pt")


def test_api_rejects_arrays_that_are_not_rgb_uint8(runs):
    seg = Segmenter.load(runs["ours"], "cpu")
    with pytest.raises(ValueError, match=r"images\[0\] must be a uint8 RGB array"):
        seg.predict([np.zeros((10, 10), np.float32)])


def test_holdout_keeps_the_labeled_draw_and_hides_images_from_training(data_root, tmp_path, capsys):
    """--holdout-fraction takes images out of D_u (not sampled, not scored) without changing D_l,
    so the same run without it is their transductive counterpart; scripts/inductive.py compares
    the two bundles on those images."""
    from data.datasets import load_dataset
    from data.split import make_split

    data = load_dataset("mvtec", data_root, "brick", image_size=32, load_train_good=True)
    full, held = make_split(data, 3, seed=2), make_split(data, 3, seed=2, holdout_fraction=0.4)
    assert [s.name for s in held.labeled] == [s.name for s in full.labeled]
    assert len(held.heldback) == round(0.4 * len(full.unlabeled))
    assert {s.name for s in held.heldback}.isdisjoint(s.name for s in held.unlabeled)
    assert sorted(s.name for s in held.heldback + held.unlabeled) == sorted(s.name for s in full.unlabeled)
    with pytest.raises(ValueError, match="holdout_fraction"):
        make_split(data, 3, holdout_fraction=1.0)

    a = train.main(["--data-root", str(data_root), "--run-dir", str(tmp_path / "a"), "--preset", "chu2020", *TINY,
                   "--holdout-fraction", "0.4"])
    b = train.main(["--data-root", str(data_root), "--run-dir", str(tmp_path / "b"), "--preset", "chu2020", *TINY])
    heldback = json.loads((a / "split.json").read_text())["heldback"]
    assert heldback and not set(heldback) & set(json.loads((a / "split.json").read_text())["unlabeled"])
    assert set(heldback) <= set(json.loads((b / "split.json").read_text())["unlabeled"])
    import importlib.util

    spec = importlib.util.spec_from_file_location("inductive", Path(__file__).parents[1] / "scripts" / "inductive.py")
    inductive = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(inductive)
    capsys.readouterr()
    inductive.main(["--inductive", str(a), "--transductive", str(b)])
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("| a |")]
    assert [line.split("|")[3].strip() for line in lines] == ["inductive", "transductive"]
    assert all(line.split("|")[2].strip() == str(len(heldback)) for line in lines)
    with pytest.raises(SystemExit, match="no held-back images"):
        inductive.main(["--inductive", str(b), "--transductive", str(a)])


def test_output_names_never_collide(tmp_path):
    """a.png beside a.jpg keep their suffixes; sub/a.png gets its folder; a clash that is left
    (the same name given twice from two folders) is refused with the names."""
    for rel in ("a.png", "a.jpg", "b.png", "sub/a.png"):
        (tmp_path / "in" / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / "in" / rel).write_bytes(b"")
    names = [n for n, _ in find_images([str(tmp_path / "in")])]
    assert sorted(names) == ["a_jpg", "a_png", "b", "sub__a"]
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "b.png").write_bytes(b"")
    with pytest.raises(SystemExit, match=r"same outputs \(.*in/b.png, .*other/b.png\)"):
        find_images([str(tmp_path / "in" / "b.png"), str(tmp_path / "other" / "b.png")])
