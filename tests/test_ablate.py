"""ablate.py: a tiny grid end to end, its tables against its runs, resume, Ray."""
from __future__ import annotations

import csv
import json
import os
from pathlib import Path

import numpy as np
import pytest

import ablate
from baselines.reference import METHODS
from evaluation.report import HEADLINE_METHOD, PROFILES_METHOD
from evaluation.sweep import SAMPLER_METRICS, SWEEP_METRICS, sampler_metrics
from tests.helpers import log_rows, run

SETS = ["--set", "patches_per_update=4", "--set", "profile_length=4", "--set", "warmup_updates=4",
        "--set", "reinit_every=20", "--set", "buffer_size=16", "--set", "predictor_batch=4"]
TINY_SWEEP = ["--presets", "chu2020", "--categories", "brick", "--image-size", "32", "--n-labeled", "3", "--devices", "cpu",
              "--threads", "1", "--unet-steps", "5", "--ae-steps", "5", *SETS]


def sweep(root: Path, out: Path, *extra: str) -> list[dict]:
    return ablate.main(["--data-root", str(root), "--out", str(out), "--updates", "6", *TINY_SWEEP, *extra])


def read_csv(path: Path) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_grid_tables_equal_the_runs_and_rerun_skips(tiny_root, tmp_path, capsys):
    out = tmp_path / "sweep"
    sweep(tiny_root, out, "--agents", "heuristic", "random-walk", "--seeds", "0", "1", "--workers", "2")
    folders = {(a, s): out / "brick" / "chu2020" / a / f"seed{s}" for a in ("heuristic", "random-walk") for s in (0, 1)}
    for f in folders.values():
        assert (f / "metrics.json").is_file() and (f / "train.log").is_file()
    for name in ("summary.md", "summary.csv", "cells.csv", "summary.png", "curves_brick.png",
                 "methods.md", "methods.csv"):
        assert (out / name).is_file(), name

    # Baselines are trained once per seed (cached, one file per method) and counted once per seed
    # in the method table.
    assert len(list((out / "baseline_cache").glob("*.npz"))) == 2 * len(METHODS)
    for s in (0, 1):
        a, b = (json.loads((folders[(agent, s)] / "metrics.json").read_text())["rows"]
                for agent in ("heuristic", "random-walk"))
        unet = [[r for r in rows if r["method"].startswith("U-Net")] for rows in (a, b)]
        assert unet[0] and unet[0] == unet[1]
    methods = {r["method"]: r for r in read_csv(out / "methods.csv")}
    assert int(methods["U-Net (3 labeled) + CRF"]["n"]) == 2
    assert "NBS + CRF [chu2020, heuristic]" in methods and "NBS + CRF [chu2020, random-walk]" in methods
    f1 = [next(r for r in json.loads((folders[("heuristic", s)] / "metrics.json").read_text())["rows"]
               if r["method"] == "U-Net (3 labeled) + CRF")["F1"] for s in (0, 1)]
    assert float(methods["U-Net (3 labeled) + CRF"]["F1 mean"]) == pytest.approx(np.mean(f1))

    # The table's numbers are those of the runs: recompute them from each metrics.json.
    summary = {r["agent"]: r for r in read_csv(out / "summary.csv")}
    assert list(summary) == ["heuristic", "random-walk"]  # the order of --agents
    md = (out / "summary.md").read_text()
    for agent in ("heuristic", "random-walk"):
        runs = [json.loads((folders[agent, s] / "metrics.json").read_text()) for s in (0, 1)]
        assert summary[agent]["n"] == "2"
        for metric in SWEEP_METRICS:
            values = [next(r for r in m["rows"] if r["method"] == HEADLINE_METHOD)[metric] for m in runs]
            assert float(summary[agent][f"{metric} mean"]) == pytest.approx(np.mean(values), abs=1e-12)
            assert float(summary[agent][f"{metric} std"]) == pytest.approx(np.std(values, ddof=1), abs=1e-12)
            assert f"{np.mean(values):.3f} ± {np.std(values, ddof=1):.3f}" in md
    cells = read_csv(out / "cells.csv")
    assert len(cells) == 4 and {(c["agent"], c["seed"]) for c in cells} == {(a, str(s)) for a, s in folders}

    # What each sampler did, from its own log.csv and metrics.json: the heuristic jumps unless the
    # jump would land on a labeled defect, the random walk 1 time in 9; the return is the log's; the
    # profiles' AUROC is evaluate.py's row.
    assert "## What the samplers did" in md
    for c in cells:
        log = log_rows(Path(c["run"]))
        rows = json.loads((Path(c["run"]) / "metrics.json").read_text())["rows"]
        assert float(c["return"]) == pytest.approx(np.mean([float(r["return"]) for r in log]))
        assert float(c["profiles' pixel AUROC"]) == next(r["pixel AUROC"] for r in rows
                                                         if r["method"].startswith(PROFILES_METHOD))
        jumps = sum(float(r["action_8"]) for r in log) / sum(float(r[f"action_{a}"]) for r in log for a in range(9))
        assert float(c["jump rate"]) == pytest.approx(jumps)
    jump = {(c["agent"], c["seed"]): float(c["jump rate"]) for c in cells}
    assert all(jump["heuristic", s] > jump["random-walk", s] for s in ("0", "1"))
    assert all(f"{m} mean" in summary["heuristic"] for m in SAMPLER_METRICS)

    # Re-running the same command does nothing but rewrite the tables.
    stamps = {k: (f / "checkpoint.pt").stat().st_mtime_ns for k, f in folders.items()}
    capsys.readouterr()
    sweep(tiny_root, out, "--agents", "heuristic", "random-walk", "--seeds", "0", "1")
    assert "4 done, 0 to run" in capsys.readouterr().out
    assert stamps == {k: (f / "checkpoint.pt").stat().st_mtime_ns for k, f in folders.items()}


def test_sampler_metrics_read_the_log_window():
    """Jump rate and action entropy are of the last 100 updates' actions; a log from before a
    column existed gives nan, not an error."""
    metrics = {"rows": [{"method": PROFILES_METHOD + ", score >= t from D_l (no CRF)", "pixel AUROC": 0.7}]}
    n = 150
    actions = np.zeros((n, 9))
    actions[:50, 8] = 1.0          # first 50 updates: always jump ...
    actions[50:] = 1.0 / 9         # ... then uniform over the 9 actions
    log = {"return": np.arange(n, dtype=float), "beta": np.full(n, 0.75), "r_pred": np.full(n, -0.004),
           **{f"action_{a}": actions[:, a] for a in range(9)}}
    got = sampler_metrics(log, metrics, 8)
    assert got["profiles' pixel AUROC"] == 0.7 and got["return"] == pytest.approx((n - 1) / 2)
    assert got["prediction term"] == pytest.approx(-0.001)
    assert got["jump rate"] == pytest.approx(1 / 9) and got["action entropy"] == pytest.approx(np.log(9))
    log["action_8"] = np.ones(n)
    for a in range(8):
        log[f"action_{a}"] = np.zeros(n)
    always_jumps = sampler_metrics(log, metrics, 8)
    assert always_jumps["jump rate"] == 1.0 and always_jumps["action entropy"] == 0.0
    old = sampler_metrics({"return": np.ones(3)}, {"rows": []}, 8)
    assert old["return"] == 1.0 and all(np.isnan(old[k]) for k in SAMPLER_METRICS if k != "return")


def test_interrupted_sweep_resumes_only_what_is_left(tiny_root, tmp_path, capsys):
    out = tmp_path / "sweep"
    partial = out / "brick" / "chu2020" / "heuristic" / "seed0"
    # A cell stopped half way: same settings as the sweep's, 3 of 6 updates done.
    run("train.py", "--data-root", str(tiny_root), "--preset", "chu2020", "--agent", "heuristic", "--seed", "0", "--updates", "3",
        "--run-dir", str(partial), "--category", "brick", "--image-size", "32", "--n-labeled", "3",
        *SETS, "--device", "cpu", "--threads", "1")
    assert len(log_rows(partial)) == 3
    sweep(tiny_root, out, "--agents", "heuristic", "--seeds", "0", "1")
    assert json.loads((partial / "summary.json").read_text())["episodes"] == 6
    assert [int(r["episode"]) for r in log_rows(partial)] == [1, 2, 3, 4, 5, 6]
    assert "resuming" in (partial / "train.log").read_text()

    # A trained cell whose evaluation was lost is evaluated again, not retrained.
    other = out / "brick" / "chu2020" / "heuristic" / "seed1"
    stamp = (other / "checkpoint.pt").stat().st_mtime_ns
    os.remove(other / "metrics.json")
    capsys.readouterr()
    sweep(tiny_root, out, "--agents", "heuristic", "--seeds", "0", "1")
    printed = capsys.readouterr().out
    assert "1 done, 1 to run" in printed and "train 0.0 s" in printed
    assert (other / "metrics.json").is_file() and (other / "checkpoint.pt").stat().st_mtime_ns == stamp

    # A folder trained with other settings is never mixed into the table.
    with pytest.raises(SystemExit, match="other settings"):
        sweep(tiny_root, out, "--agents", "heuristic", "--seeds", "0", "--set", "cover_bonus=0.5")


def test_bad_agent_is_refused_before_anything_runs(tmp_path):
    with pytest.raises(SystemExit, match="unknown agent 'ppo'"):
        ablate.main(["--agents", "ppo", "--out", str(tmp_path / "x")])
    assert not (tmp_path / "x").exists()


def test_baseline_rate_reaches_the_reinforce_cells_only(tmp_path, capsys):
    """--baseline-rate is REINFORCE's: train.py refuses it for other agents, so a mixed sweep passes
    it to the reinforce cells alone, and a folder trained at another rate is not reused."""
    from runner import ablation
    from runner.agent_kwargs import sweep_agent_args
    from runner.folder import CHECKPOINTS, CONFIG
    from runner.spec import parse_args as parse_train_args

    for bad, why in ((["--baseline-rate", "1.5"], "must be in"),
                     (["--baseline-rate", "0.1", "--agents", "sb3:PPO"], "REINFORCE's")):
        with pytest.raises(SystemExit):
            ablate.parse_args(bad)
        assert why in capsys.readouterr().err
    args = ablate.parse_args(["--baseline-rate", "0.1", "--agents", "reinforce", "sb3:PPO"])
    plan = ablation.Plan(str(tmp_path), 6, [], 1, 0, (),
                         sweep_agent_args(args.agents, args.agent_kwargs, args.baseline_rate))
    reinforce, ppo = ablation.Cell("brick", "chu2020", "reinforce", 0), ablation.Cell("brick", "chu2020", "sb3:PPO", 0)
    assert parse_train_args(ablation.cell_train_args(reinforce, plan))[0].baseline_rate == 0.1
    assert parse_train_args(ablation.cell_train_args(ppo, plan))[0].baseline_rate == 0.0

    # A folder of a run saved before --baseline-rate existed trained plain REINFORCE (rate 0).
    folder = reinforce.folder(tmp_path)
    folder.mkdir(parents=True)
    (folder / CHECKPOINTS[0]).write_bytes(b"")
    saved = vars(parse_train_args(ablation.cell_train_args(reinforce, ablation.Plan(str(tmp_path), 6, [], 1, 0)))[0])
    del saved["baseline_rate"]
    (folder / CONFIG).write_text(json.dumps({"args": saved}))
    assert ablation.check_reusable(reinforce, ablation.Plan(str(tmp_path), 6, [], 1, 0), tmp_path) is None
    assert "baseline_rate: 0.0 there, 0.1 now" in ablation.check_reusable(reinforce, plan, tmp_path)


def test_ray_runs_the_cells(tiny_root, tmp_path):
    pytest.importorskip("ray", reason="Ray is optional: pip install -e '.[ray]'")
    out = tmp_path / "sweep"
    summary = sweep(tiny_root, out, "--agents", "uniform", "--seeds", "0", "1", "--ray-address", "local")
    assert [r["n"] for r in summary] == [2]
    assert (out / "brick" / "chu2020" / "uniform" / "seed1" / "metrics.json").is_file()


def test_paired_differences_pair_each_sampler_with_the_reference_on_the_same_seed():
    from evaluation.sweep import markdown_paired, paired_differences

    def cell(agent: str, seed: int, profiles: float, f1: float) -> dict:
        return {"category": "brick", "preset": "ours", "agent": agent, "seed": seed, "profiles' pixel AUROC": profiles,
                "pixel AUROC": 0.8, "F1": f1, "image AUROC": 0.9}

    cells = [cell("uniform", 0, 0.70, 0.5), cell("uniform", 1, 0.80, 0.6), cell("reinforce", 0, 0.75, 0.4),
             cell("reinforce", 1, 0.79, 0.7), cell("reinforce", 2, 0.99, 0.9)]  # seed 2 has no uniform partner
    (row,) = paired_differences(cells, "uniform")
    assert row["agent"] == "reinforce" and row["n"] == 2
    assert row["profiles' pixel AUROC diff mean"] == pytest.approx((0.05 - 0.01) / 2)
    assert row["profiles' pixel AUROC wins"] == "1/2" and row["F1 wins"] == "1/2"
    assert paired_differences(cells, "oracle-normal") == []
    assert "reinforce" in markdown_paired([row]) and "(1/2)" in markdown_paired([row])
