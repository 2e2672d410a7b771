"""End to end: train.py -> evaluate.py on a tiny generated dataset, Ctrl-C-style resume, bad input."""
from __future__ import annotations

import json
import signal
import subprocess
import sys
import time

import pytest
import torch

from evaluation.report import CHOSEN_SUFFIX, CRF_SUFFIX, HEADLINE_METHOD
from tests.helpers import ROOT, TINY_ARGS, TINY_CHU, log_rows, run

SHARED = ROOT.parent / "shared" / "datasets" / "mvtec_ad"
TINY_BASELINES = ["--unet-steps", "10", "--ae-steps", "10"]


def test_train_then_evaluate(tiny_root, tmp_path):
    run_dir = tmp_path / "run"
    run("train.py", "--data-root", str(tiny_root), "--updates", "6", "--run-dir", str(run_dir), *TINY_ARGS,
        "--set", "final.steps=20", "--set", "ae_training.pretrain_steps=20")  # the default preset (ours), short
    for name in ("config.json", "split.json", "log.csv", "checkpoint.pt", "best_profiles.npz",
                 "predictor.pt", "summary.json"):
        assert (run_dir / name).is_file(), name
    assert len(log_rows(run_dir)) == 6
    out = run("evaluate.py", str(run_dir), "--overlays", "2", *TINY_BASELINES).stdout
    assert "NBS + CRF" in out and "F1-max" in out
    for method in ("U-Net", "mean of 3 fits", "logit mean of 3 fits", "AE-L2", "AE-SSIM",
                   "Recon. error of the loss profiles"):
        assert f"{method}" in out and "+ CRF" in out
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["seed"] == 0 and metrics["split"]["n_labeled"] == 3
    for row in metrics["rows"]:
        assert 0.0 <= row["pixel AUROC"] <= 1.0 and 0.0 <= row["F1-max"] <= 1.0
    # (NBS, profiles, U-Net, 3-fit U-Net by probability and by logit, AE-L2, AE-SSIM) x (before, after
    # CRF), and the rows whose CRF was chosen on D_l (NBS, the AEs): each the same numbers as one of
    # that method's two rows.
    assert len(metrics["rows"]) == 17
    assert metrics["rows"][0]["method"] == HEADLINE_METHOD
    for chosen in (r for r in metrics["rows"] if r["method"].endswith(CHOSEN_SUFFIX)):
        name = chosen["method"][:-len(CHOSEN_SUFFIX)]
        kept = chosen["note"].split("; ")[-1].startswith("CRF on")
        plain = [r for r in metrics["rows"] if r["method"].startswith(name + ",") and r["method"].endswith("(no CRF)")]
        twin = next(r for r in metrics["rows"] if r["method"] == name + CRF_SUFFIX) if kept else plain[0]
        assert {k: chosen[k] for k in ("F1", "precision", "recall")} == {k: twin[k] for k in ("F1", "precision", "recall")}
    assert len(list((run_dir / "overlays").glob("*.png"))) == 2
    report = (run_dir / "report.md").read_text()
    assert "seed: 0" in report and "Results" in report
    # experiments/shrink_proxy.py trains fresh predictors on the run's D_l profiles; with a penalty this
    # large the convolutions add nothing, so the predictor ranks D_u as the profiles' mean does
    out = run("experiments/shrink_proxy.py", str(run_dir), "--shrink", "0", "1000", "--steps", "5", "--threads", "1").stdout
    rows = [line for line in out.splitlines() if line.startswith("run ")]
    assert len(rows) == 2, out
    mean, huge = float(rows[1].split("profiles' mean ")[1].split()[0]), float(rows[1].split("step 5: ")[1])
    assert huge == pytest.approx(mean, abs=2e-3)


def test_tensorboard_logs_the_same_numbers_as_the_csv(tiny_root, tmp_path):
    pytest.importorskip("tensorboard", reason="TensorBoard logging is optional: pip install -e '.[tensorboard]'")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    run_dir = tmp_path / "run"
    run("train.py", "--data-root", str(tiny_root), "--updates", "4", "--run-dir", str(run_dir), *TINY_CHU)
    run("train.py", "--resume", str(run_dir), "--updates", "6")
    events = EventAccumulator(str(run_dir / "tensorboard"))
    events.Reload()
    logged = {e.step: e.value for e in events.Scalars("train/return")}
    assert logged == pytest.approx({int(r["episode"]): float(r["return"]) for r in log_rows(run_dir)}, rel=1e-6)
    assert {"train/l_pred", "train/ae_loss", "train/policy_loss"} <= set(events.Tags()["scalars"])
    no_tb = tmp_path / "quiet"
    run("train.py", "--data-root", str(tiny_root), "--updates", "1", "--run-dir", str(no_tb),
        "--no-tensorboard", *TINY_CHU)
    assert not (no_tb / "tensorboard").exists()


def test_resume_refuses_settings_fixed_by_the_run(tiny_root, tmp_path):
    run_dir = tmp_path / "run"
    run("train.py", "--data-root", str(tiny_root), "--updates", "1", "--run-dir", str(run_dir), *TINY_CHU)
    proc = run("train.py", "--resume", str(run_dir), "--seed", "3", check=False)
    assert proc.returncode != 0 and "--seed" in proc.stderr and "config.json" in proc.stderr


def test_resume_continues_the_same_run(tiny_root, tmp_path):
    """3 updates, stop, --resume to 6 == 6 updates straight (same seed, CPU)."""
    straight, split_run = tmp_path / "straight", tmp_path / "split"
    run("train.py", "--data-root", str(tiny_root), "--updates", "6", "--run-dir", str(straight), *TINY_CHU)
    run("train.py", "--data-root", str(tiny_root), "--updates", "3", "--run-dir", str(split_run), *TINY_CHU)
    out = run("train.py", "--resume", str(split_run), "--updates", "6").stdout
    assert "resuming" in out
    a, b = log_rows(straight), log_rows(split_run)
    assert [r["return"] for r in a] == [r["return"] for r in b]
    assert [r["l_pred"] for r in a] == [r["l_pred"] for r in b]


@pytest.mark.parametrize("agent", ["sb3:A2C", "sb3:PPO"])
def test_sb3_agent_through_train_py(tiny_root, tmp_path, agent):
    """Any SB3 algorithm through the same entry point, checkpointed and resumed like REINFORCE."""
    run_dir = tmp_path / "run"
    run("train.py", "--data-root", str(tiny_root), "--agent", agent, "--updates", "3",
        "--run-dir", str(run_dir), *TINY_CHU)
    run("train.py", "--resume", str(run_dir), "--updates", "5")
    rows = log_rows(run_dir)
    assert [int(r["episode"]) for r in rows] == [1, 2, 3, 4, 5]
    # the resumed env continued the same training process (no restart from the seed)
    assert [int(r["ae_updates"]) for r in rows] == [5, 6, 7, 8, 9]
    assert json.loads((run_dir / "summary.json").read_text())["episodes"] == 5
    run("evaluate.py", str(run_dir), "--overlays", "0", "--baselines", "none")


def test_unknown_agent_is_reported(tiny_root, tmp_path):
    proc = run("train.py", "--data-root", str(tiny_root), "--agent", "sb3:NOPE", "--run-dir",
               str(tmp_path / "r"), *TINY_CHU, check=False)
    assert proc.returncode != 0 and "NOPE" in proc.stderr and "Traceback" not in proc.stderr


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_ctrl_c_checkpoints_and_resume_finishes(tiny_root, tmp_path, sig):
    """SIGINT (Ctrl-C) or SIGTERM (kill, a stopped sweep) mid-training: the current update
    finishes and a checkpoint is written (exit code 0 after Ctrl-C, 143 after SIGTERM, which skips
    the final exports); --resume then completes the run with one log row per update."""
    run_dir = tmp_path / "run"
    proc = subprocess.Popen([sys.executable, "-W", "ignore", str(ROOT / "train.py"), "--data-root", str(tiny_root),
                             "--updates", "500", "--run-dir", str(run_dir), *TINY_CHU],
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120  # a bound on a hang, not a timing: the signal follows the first log row
    while time.time() < deadline and not ((run_dir / "log.csv").exists() and log_rows(run_dir)):
        time.sleep(0.2)
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == (0 if sig == signal.SIGINT else 128 + signal.SIGTERM), err
    assert "Continue with" in out
    done = len(log_rows(run_dir))
    assert 0 < done < 500
    if sig == signal.SIGINT:
        assert json.loads((run_dir / "summary.json").read_text())["episodes"] == done
    run("train.py", "--resume", str(run_dir), "--updates", str(done + 2))
    assert [int(r["episode"]) for r in log_rows(run_dir)] == list(range(1, done + 3))


def test_existing_run_folder_is_not_overwritten(tiny_root, tmp_path):
    run_dir = tmp_path / "run"
    run("train.py", "--data-root", str(tiny_root), "--updates", "1", "--run-dir", str(run_dir), *TINY_CHU)
    proc = run("train.py", "--data-root", str(tiny_root), "--updates", "1", "--run-dir", str(run_dir),
               *TINY_CHU, check=False)
    assert proc.returncode != 0 and "--resume" in proc.stderr


def test_bad_data_root_names_the_path(tmp_path):
    missing = tmp_path / "nowhere"
    proc = run("train.py", "--data-root", str(missing), "--updates", "1", check=False)
    assert proc.returncode != 0
    assert str(missing) in proc.stderr and "Traceback" not in proc.stderr


def test_bad_override_is_reported(tiny_root, tmp_path):
    proc = run("train.py", "--data-root", str(tiny_root), "--set", "no_such_field=1", check=False)
    assert proc.returncode != 0 and "no_such_field" in proc.stderr and "Traceback" not in proc.stderr


def test_evaluate_rejects_a_non_run_folder(tmp_path):
    proc = run("evaluate.py", str(tmp_path), check=False)
    assert proc.returncode != 0 and "config.json" in proc.stderr and "Traceback" not in proc.stderr


@pytest.mark.slow
@pytest.mark.skipif(not (SHARED / "bottle").is_dir(), reason="../shared/datasets/mvtec_ad/bottle not present")
def test_real_bottle_short_run(tmp_path):
    """A short run on real MVTec AD bottle images through the MVTec loader, evaluated."""
    run_dir = tmp_path / "bottle"
    run("train.py", "--data-root", str(SHARED), "--category", "bottle", "--image-size", "64",
        "--updates", "40", "--run-dir", str(run_dir), "--device", "cpu",
        "--set", "profile_length=10", "--set", "warmup_updates=10", "--set", "buffer_size=64")
    run("evaluate.py", str(run_dir), "--overlays", "1", "--unet-steps", "60", "--ae-steps", "60")
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["category"] == "bottle" and metrics["split"]["n_unlabeled"] == 78
    rows = {r["method"]: r for r in metrics["rows"]}
    assert rows["NBS + CRF"]["published F1"] == 0.80 and rows["U-Net (5 labeled) + CRF"]["published F1"] == 0.31
    assert rows["AE-L2 (unsupervised), threshold from D_l + CRF"]["published F1"] == 0.34
    assert 0.0 <= rows["AE-SSIM (unsupervised), threshold from D_l + CRF"]["pixel AUROC"] <= 1.0


CRACKFOREST = ROOT.parent / "shared" / "datasets" / "crackforest"


@pytest.mark.skipif(not CRACKFOREST.is_dir(), reason="../shared/datasets/crackforest not present")
def test_crackforest_protocol_end_to_end(tmp_path):
    """CrackForest through its loader, the noghredeh2025 preset and the full evaluation table: the
    unsupervised AE is reported as not applicable (no anomaly-free images), as in the paper."""
    run_dir = tmp_path / "cf"
    out = run("train.py", "--dataset", "crackforest", "--data-root", str(CRACKFOREST), "--image-size", "32",
              "--preset", "noghredeh2025", "--include-unannotated", "--updates", "6", "--run-dir", str(run_dir),
              *TINY_ARGS[4:], "--set", "pretrain_steps=5", "--set", "predictor_freeze_updates=2",
              "--set", "stride=4", "--set", "crop_size=32").stdout
    assert "test=118" in out and "unannotated=37" in out
    split = json.loads((run_dir / "split.json").read_text())
    assert split["n_labeled"] == 3 and split["n_unlabeled"] == 115 and split["n_extra_unlabeled"] == 37
    run("evaluate.py", str(run_dir), "--overlays", "1", *TINY_BASELINES)
    metrics = json.loads((run_dir / "metrics.json").read_text())
    rows = {r["method"]: r for r in metrics["rows"]}
    assert metrics["category"] == "crackforest" and rows["NBS + CRF"]["published F1"] == 0.36
    assert rows["U-Net (3 labeled) + CRF"]["published F1"] == 0.21
    na = rows["AE-L2 (unsupervised), threshold from D_l"]
    assert "not applicable" in na["note"] and "F1" not in na
    assert "not applicable" in (run_dir / "report.md").read_text()


HELDOUT_RGB = ["--set", "predictor.heldout=true", "--set", "predictor.arch=unet", "--set", "predictor.inputs=profile+rgb",
               "--set", "profiles.select_on=l_pred"]


def test_heldout_predictors_choose_the_moment_and_threshold_of_an_rgb_predictor(tiny_root, tmp_path):
    """The in-training predictor reads RGB + profile, leave-one-out predictors choose the best
    moment and the threshold, and the report shows the training diagnostics."""
    run_dir = tmp_path / "ours"
    run("train.py", "--data-root", str(tiny_root), "--updates", "8", "--run-dir", str(run_dir),
        "--preset", "ours", *TINY_ARGS, *HELDOUT_RGB, "--set", "final.steps=0")
    rows = log_rows(run_dir)
    assert {"dl_loss_auroc", "dl_profile_auroc", "dl_heldout_auroc", "ae_vs_mean_colour", "heldout_l_pred",
            "action_8", "jump_rate"} <= set(rows[0])
    assert any(r["heldout_l_pred"] for r in rows)
    for r in rows:
        assert float(r["action_8"]) == float(r["jump_rate"])
        assert abs(sum(float(r[f"action_{a}"]) for a in range(9)) - 1.0) < 1e-9
    import numpy as np
    z = np.load(run_dir / "best_profiles.npz")
    assert z["labeled_heldout_prob"].shape == z["labeled"].shape[:1] + z["labeled"].shape[2:]
    run("evaluate.py", str(run_dir), "--overlays", "0", "--baselines", "none")
    metrics = json.loads((run_dir / "metrics.json").read_text())
    nbs = next(r for r in metrics["rows"] if r["method"] == "NBS, score >= t from D_l (no CRF)")
    assert 0.0 < nbs["threshold"] < 1.0
    assert nbs["note"] == "threshold from held-out D_l maps"
    head = metrics["rows"][0]  # the shipped decision: CRF kept or dropped on the same held-out maps
    assert head["method"] == HEADLINE_METHOD and "held-out D_l maps" in head["note"]
    assert set(metrics["diagnostics"]) == {"dl_loss_auroc", "dl_profile_auroc", "dl_heldout_auroc", "ae_vs_mean_colour",
                                           "ae_output_spread"}
    assert (run_dir / "training.png").is_file()
    assert "Training diagnostics" in (run_dir / "report.md").read_text()


def test_a_pooled_final_predictor_decides_at_one_half(tiny_root, tmp_path):
    """A final predictor of fixed members (ours before it chose per run on D_l) refits the exported
    predictor on the best labeled profiles (BatchNorm, as the U-Net baseline); evaluate.py loads it
    and decides at p > 0.5, as for the U-Net."""
    run_dir = tmp_path / "refit"
    out = run("train.py", "--data-root", str(tiny_root), "--updates", "8", "--run-dir", str(run_dir),
              "--preset", "ours", *TINY_ARGS, "--set", "predictor_refit_steps=20", "--set", "final.choose=false",
              "--set", "final.image_members=3", "--set", "final.pool=logit", "--set", "final.profile_member=true").stdout
    assert "fitting the final predictor" in out
    from common.files import load_weights

    saved = load_weights(run_dir / "predictor.pt")
    assert saved["refit"] is True and saved["norm"] == "batch"
    assert saved["ensemble"] == 6 and saved["image_members"] == 3  # late fusion: 3 of the 6 read the image only
    assert saved["pool"] == "logit" and saved["profile_member"] is True  # + the profiles' mean, logits pooled
    assert {"members.6.a", "members.6.b"} <= set(saved["state_dict"])
    assert any(k.endswith("running_mean") for k in saved["state_dict"])
    run("evaluate.py", str(run_dir), "--overlays", "0", "--baselines", "none")
    metrics = json.loads((run_dir / "metrics.json").read_text())
    nbs = next(r for r in metrics["rows"] if r["method"].startswith("NBS,") and r["method"].endswith("(no CRF)"))
    assert nbs["method"] == "NBS, p > 0.5 (no CRF)" and nbs["threshold"] is None
    assert nbs["note"] == "final predictor fit on the best D_l profiles"
    # experiments/refit_variants.py re-pools the saved members: the saved pool (logit + the profiles'
    # mean member) scores what evaluate.py scored, and the probability pool ranks otherwise
    out = run("experiments/refit_variants.py", str(run_dir), "--variant", "saved-logit+profile", "--variant",
              "saved-prob").stdout
    lines = {name: line for line in out.splitlines() for name in ("saved-logit+profile", "saved-prob")
             if line.startswith(f"{run_dir} {name}:")}
    auroc = {name: float(line.split("AUROC ")[1].split()[0]) for name, line in lines.items()}
    assert auroc["saved-logit+profile"] == pytest.approx(nbs["pixel AUROC"], abs=6e-4)
    assert auroc["saved-prob"] != auroc["saved-logit+profile"]
    # --resume with --set of a final-predictor field fits it again, the training untouched (the
    # same seeded fits: only the pool changed), and config.json records it; other fields are refused
    proc = run("train.py", "--resume", str(run_dir), "--set", "predictor_refit_pool=prob", check=False)
    assert proc.returncode == 0, proc.stderr
    again = load_weights(run_dir / "predictor.pt")
    assert again["pool"] == "prob" and set(again["state_dict"]) == set(saved["state_dict"])
    for k, v in saved["state_dict"].items():
        torch.testing.assert_close(again["state_dict"][k], v, rtol=0, atol=0)
    config = json.loads((run_dir / "config.json").read_text())
    assert config["final"]["pool"] == "prob"
    assert config["args"]["set"][-2:] == ["final.profile_member=true", "predictor_refit_pool=prob"]
    refused = run("train.py", "--resume", str(run_dir), "--set", "ae_lr=0.1", check=False)
    assert refused.returncode != 0 and "ae_lr=0.1" in refused.stderr
    bad = run("train.py", "--resume", str(run_dir), "--set", "final.pool=median", check=False)
    assert bad.returncode != 0 and "final.pool=median" in bad.stderr
    assert json.loads((run_dir / "config.json").read_text()) == config  # nothing written


def test_ours_exports_the_best_dl_moment_and_a_final_map_chosen_on_dl(tiny_root, tmp_path):
    """--preset ours: the best moment is the update whose mean D_l profile ranks the labeled pixels
    best (log.csv's dl_profile_auroc, once the profiles are full), and the final predictor, its
    threshold, CRF and image score are chosen on D_l and said in predictor.pt and report.md."""
    run_dir = tmp_path / "ours"
    run("train.py", "--data-root", str(tiny_root), "--updates", "12", "--run-dir", str(run_dir), "--preset", "ours",
        *TINY_ARGS, "--set", "final.steps=10", "--set", "ae_training.pretrain_steps=4")
    rows = log_rows(run_dir)
    full = [r for r in rows if int(r["ae_updates"]) % 20 >= 4 and r["dl_profile_auroc"]]  # ring of 4 maps filled
    best = max(full, key=lambda r: float(r["dl_profile_auroc"]))
    assert json.loads((run_dir / "summary.json").read_text())["best_update"] == int(best["ae_updates"])
    from common.files import load_weights

    saved = load_weights(run_dir / "predictor.pt")
    assert saved["pool"] == "final" and saved["decision"]["choice"]["candidate"]
    run("evaluate.py", str(run_dir), "--overlays", "0", "--baselines", "none")
    report = (run_dir / "report.md").read_text()
    assert "What this run chose on D_l" in report and "profiles:" in report
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["rows"][0]["method"] == HEADLINE_METHOD and metrics["choices"]
