"""ResidualClassifierEnv: spaces, reward balance, learnability, and its image-level evaluation."""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env
from stable_baselines3.common.env_checker import check_env as sb3_check_env

from agents.reinforce import REINFORCE, ReinforceConfig
from data.mvtec import Sample
from data.split import Split
from envs import ClassifierConfig, ResidualClassifierEnv
from envs.residual_classifier_env import INPUTS
from evaluation.classification import decision_metrics, largest_region_areas, tune_threshold
from tests.helpers import TINY_ARGS, run

TINY_AE = ClassifierConfig(patch_size=8, ae_steps=60, ae_batch=16, stats_snapshots=3, device="cpu")


def sample(k: int, rng: np.random.Generator, anomalous: bool, size: int = 32) -> Sample:
    """A noise texture; anomalous ones carry a bright 8x8 square the AE never saw."""
    img = rng.normal(120, 15, (size, size, 3)).clip(0, 255).astype(np.uint8)
    mask = np.zeros((size, size), bool)
    if anomalous:
        y, x = rng.integers(0, size - 8, size=2)
        mask[y:y + 8, x:x + 8] = True
        img[mask] = (250, 40, 40)
    kind = "defect" if anomalous else "good"
    return Sample(name=f"{kind}/{k:03d}", defect_type=kind, image=img, mask=mask, path=Path(f"/toy/{k}.png"))


def toy_data(seed: int = 0) -> tuple[Split, list[Sample]]:
    rng = np.random.default_rng(seed)
    train_good = [sample(100 + k, rng, False) for k in range(12)]
    labeled = [sample(k, rng, k % 3 != 0) for k in range(10)]
    unlabeled = [sample(20 + k, rng, k % 2 == 0) for k in range(20)]
    return Split("toy", seed, labeled, unlabeled), train_good


def toy_env(**overrides) -> ResidualClassifierEnv:
    split, good = toy_data()
    env = ResidualClassifierEnv(split, good, config=dataclasses.replace(TINY_AE, **overrides))
    env.reset(seed=0)
    return env


@pytest.mark.parametrize("inputs", INPUTS)
def test_env_checkers_and_spaces(inputs):
    env = toy_env(inputs=inputs)
    check_env(env, skip_render_check=True)
    sb3_check_env(env)
    obs, _ = env.reset()
    assert env.action_space.n == 2
    assert set(obs) == {"residual"} | ({"rgb"} if inputs != "residual" else set()) | \
        ({"residual_stats"} if inputs.endswith("stats") else set())


def test_constant_policies_earn_nothing_on_average():
    env = toy_env()
    assert env.pool_labels.mean() != 0.5  # the labeled pool itself is imbalanced ...
    for action in (0, 1):
        env.reset(seed=1)
        rewards = []
        for _ in range(4000):
            _, reward, done, _, _ = env.step(action)
            rewards.append(reward)
            if done:
                env.reset()
        assert abs(np.mean(rewards)) < 0.06  # ... the draws are not: E[reward] = 0, sd 1/sqrt(4000)


def test_policy_learns_separable_residuals():
    env = toy_env(images_per_episode=4)
    agent = REINFORCE(env, ReinforceConfig(learning_rate=1e-3, gamma=0.0), seed=0)
    agent.learn(250)  # (150 sufficed with whole-image residual maps; the tiled ones need a few more)
    labels = np.array([s.mask.any() for s in env.split.unlabeled])
    probs = np.stack([agent.action_probabilities(env.observation("unlabeled", k)) for k in range(len(labels))])
    assert np.mean((probs.argmax(1) == 1) == labels) > 0.95
    # the classical rule sees the same separation in the same maps
    res = env.residual_maps("unlabeled").max(axis=(1, 2))
    t = tune_threshold(env.residual_maps("pool").max(axis=(1, 2)), env.pool_labels)
    assert np.mean((res >= t) == labels) > 0.95


def test_decision_metrics_equal_scikit_learn():
    metrics = pytest.importorskip("sklearn.metrics")
    rng = np.random.default_rng(0)
    labels = rng.random(200) < 0.3
    scores = labels + rng.normal(0, 0.8, 200)
    decisions = scores > 0.5
    ours = decision_metrics(decisions, labels, scores)
    assert ours["accuracy"] == pytest.approx(metrics.accuracy_score(labels, decisions))
    assert ours["precision"] == pytest.approx(metrics.precision_score(labels, decisions))
    assert ours["recall"] == pytest.approx(metrics.recall_score(labels, decisions))
    assert ours["F1"] == pytest.approx(metrics.f1_score(labels, decisions))
    assert ours["AUROC"] == pytest.approx(metrics.roc_auc_score(labels, scores))


def test_largest_region_area():
    r = np.zeros((1, 10, 10))
    r[0, 1:3, 1:4] = 1.0  # 6 px
    r[0, 6, 6] = 1.0      # 1 px
    assert largest_region_areas(r, 0.5).tolist() == [6]
    assert largest_region_areas(r, 2.0).tolist() == [0]


@pytest.mark.parametrize("agent", ["reinforce", "sb3:PPO", "sb3:DQN"])
def test_train_and_evaluate_through_the_entry_points(tiny_root, tmp_path, agent):
    cls_run, seg_run = tmp_path / "cls", tmp_path / "seg"
    common = ["--data-root", str(tiny_root), "--category", "brick", "--image-size", "32", "--n-labeled", "4",
              "--device", "cpu", "--threads", "1"]
    run("train.py", "--env", "residual-classifier", "--agent", agent, "--updates", "40", "--run-dir", str(cls_run),
        "--set", "patch_size=8", "--set", "ae_steps=20", *common)
    run("train.py", "--updates", "6", "--run-dir", str(seg_run), "--preset", "chu2020", *TINY_ARGS[10:], *common)  # its --set options
    out = run("evaluate.py", str(cls_run), "--segmentation-run", str(seg_run)).stdout
    assert "RL policy" in out and "min. defect area" in out and "NBS segmentation" in out
    result = json.loads((cls_run / "metrics.json").read_text())
    assert len(result["rows"]) == 4 and all(0 <= r["accuracy"] <= 1 for r in result["rows"])
