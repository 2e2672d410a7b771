"""Shared test helpers: tiny in-memory splits and envs, the tiny CLI arguments and a script runner,
and hand-made dataset trees. Test modules import from here (or use conftest fixtures), never from
each other."""
from __future__ import annotations

import csv
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import scipy.io

from data.mvtec import Sample
from data.split import Split
from common.settings import with_overrides
from envs import BatchSamplingEnv, EnvConfig
from envs.config import FLAT_NAMES, make_env_config

ROOT = Path(__file__).resolve().parents[1]


# ---------------------------------------------------------------- in-memory splits and envs
def toy_split(size: int = 32, n_labeled: int = 3, n_unlabeled: int = 4, seed: int = 0,
              defect_region: str = "random") -> Split:
    """Noise textures with a defect in most images (every 4th image is defect-free).

    defect_region='random': a small bright square anywhere. defect_region='left': the whole left
    half of the image is the defect (a bright band), so a sampler that moves right and stays
    there sees only normal patches: a toy problem with a known optimal policy ("always east")."""
    rng = np.random.default_rng(seed)
    samples = []
    for k in range(n_labeled + n_unlabeled):
        img = (rng.normal(120, 20, (size, size, 3))).clip(0, 255).astype(np.uint8)
        mask = np.zeros((size, size), bool)
        if k % 4 != 3:
            if defect_region == "left":
                mask[:, :size // 2] = True
            else:
                d = max(2, size // 8)
                y, x = rng.integers(0, size - d), rng.integers(0, size - d)
                mask[y:y + d, x:x + d] = True
            img[mask] = (250, 40, 40)
        kind = "defect" if mask.any() else "good"
        samples.append(Sample(name=f"{kind}/{k:03d}", defect_type=kind, image=img, mask=mask,
                              path=Path(f"/toy/{kind}/{k:03d}.png")))
    return Split(category="toy", seed=seed, labeled=samples[:n_labeled],
                 unlabeled=samples[n_labeled:], extra_unlabeled=[])


#: A BatchSamplingEnv config small enough for a CPU test to run dozens of AE updates in seconds.
TINY = make_env_config("chu2020", **{
    "sampler.patch_size": 8, "sampler.patches_per_update": 4, "ae_training.reinit_every": 10,
    "ae_training.warmup_updates": 4, "profiles.length": 4, "predictor.buffer_size": 16, "predictor.batch": 4,
    "predictor.crop": None, "device": "cpu"})


def tiny_config(base: EnvConfig = TINY, **overrides) -> EnvConfig:
    """`base` (TINY) with settings overridden: dotted keys (**{"predictor.width": 8}) or the old
    flat names (patches_per_update=8)."""
    return with_overrides(base, overrides, FLAT_NAMES)


def tiny_env(**overrides) -> BatchSamplingEnv:
    """BatchSamplingEnv on toy_split(32) with TINY (settings overridden as in tiny_config)."""
    return BatchSamplingEnv(split=toy_split(32), config=tiny_config(**overrides))


def run_episodes(env: BatchSamplingEnv, n: int, actions_seed: int = 0) -> list[float]:
    """Play n episodes with uniformly random actions (their own RNG); return the episode returns."""
    rng = np.random.default_rng(actions_seed)
    returns = []
    for _ in range(n):
        env.reset()
        done, total = False, 0.0
        while not done:
            _, r, done, _, _ = env.step(int(rng.integers(9)))
            total += r
        returns.append(total)
    return returns


# ---------------------------------------------------------------- the entry-point scripts
#: train.py arguments for a run that takes seconds on a CPU.
TINY_ARGS = ["--category", "brick", "--image-size", "32", "--n-labeled", "3", "--device", "cpu",
             "--threads", "1", "--set", "sampler.patches_per_update=4", "--set", "profiles.length=4",
             "--set", "ae_training.warmup_updates=4", "--set", "ae_training.reinit_every=20",
             "--set", "predictor.buffer_size=16", "--set", "predictor.batch=4", "--set", "probe.updates=4"]
#: TINY_ARGS under chu2020 (no AE pretraining, no final fits): for tests of the machinery, not the preset.
TINY_CHU = ["--preset", "chu2020", *TINY_ARGS]


def run(script: str, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    """Run one of the repository's scripts in a fresh interpreter; raise with its output if it fails."""
    proc = subprocess.run([sys.executable, "-W", "ignore", str(ROOT / script), *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=600)
    if check and proc.returncode != 0:
        raise AssertionError(f"{script} failed:\n{proc.stdout}\n{proc.stderr}")
    return proc


def log_rows(run_dir: Path) -> list[dict]:
    with open(run_dir / "log.csv") as f:
        return list(csv.DictReader(f))


# ---------------------------------------------------------------- hand-made dataset trees
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


def _write_mat(path: Path, seg: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    scipy.io.savemat(str(path), {"groundTruth": {"Segmentation": seg, "Boundaries": seg == 2}})


def _fake_crackforest(root: Path, n_annotated: int = 3, n_unannotated: int = 2) -> Path:
    """48x32 (w x h) images like CrackForest's 480x320; a 1-px horizontal crack at row 10 + i."""
    rng = np.random.default_rng(0)
    for i in range(1, n_annotated + 1):
        _write(root / "image" / f"{i:03d}.jpg", rng.integers(0, 256, (32, 48, 3), dtype=np.uint8))
        seg = np.ones((32, 48), np.uint8)
        seg[10 + i, :] = 2
        seg[0, 0] = 4  # a label-4 stroke (counted as crack only with crack_labels=(2, 4))
        _write_mat(root / "groundTruth" / f"{i:03d}.mat", seg)
    for i in range(201, 201 + n_unannotated):
        _write(root / "image" / f"{i:03d}.jpg", rng.integers(0, 256, (32, 48, 3), dtype=np.uint8))
    return root


def _mask(size: tuple[int, int], anomalous: bool) -> np.ndarray:
    m = np.zeros(size, np.uint8)
    if anomalous:
        m[4:12, 6:14] = 255
    return m


def _fake_folder(root: Path, subfolders: bool = False) -> Path:
    """images a (anomalous), b (normal, empty mask), c (anomalous, .bmp mask); normal/ x2;
    unannotated/ x1. With ``subfolders``: images/scratch/{a,c} and images/good/b."""
    rng = np.random.default_rng(1)
    img = lambda: rng.integers(0, 256, (20, 30, 3), dtype=np.uint8)  # noqa: E731
    for stem, anomalous, ext in (("a", True, ".png"), ("b", False, ".png"), ("c", True, ".bmp")):
        sub = ("scratch/" if anomalous else "good/") if subfolders else ""
        _write(root / "images" / f"{sub}{stem}.png", img())
        _write(root / "masks" / f"{sub}{stem}{ext}", _mask((20, 30), anomalous))
    for name in ("n0.png", "n1.jpg"):
        _write(root / "normal" / name, img())
    _write(root / "unannotated" / "u0.png", img())
    return root
