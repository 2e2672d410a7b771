"""Run folders that can be trusted: the data a run trained on is verified on resume and evaluation,
the built-in generator never deletes foreign data, a folder is trained in by one process at a time,
a sweep's children die with it, and bad folders or files stop a command with one clear line."""
from __future__ import annotations

import fcntl
import json
import os
import re
import shlex
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

import ablate
import evaluate
import train
from data import DatasetError, load_crackforest, load_folder_dataset, load_mvtec_category
from data import synthetic
from data.synthetic import MARKER, OWNER_MARKER, generate_synthetic_mvtec
from common.files import load_weights, save_weights_atomic
from runner import ablation
from runner.folder import CHECKPOINTS, LOCK_FILE
from tests.helpers import _fake_crackforest, _fake_folder, _hand_tree, _mask, _write, _write_mat

ROOT = Path(__file__).resolve().parents[1]
SMALL = dict(seed=0, image_size=64, n_train_good=2, n_test_good=2, n_per_defect=2)
TINY = ["--preset", "chu2020", "--category", "brick", "--image-size", "32", "--n-labeled", "3", "--device", "cpu", "--no-tensorboard",
        "--set", "patches_per_update=4", "--set", "profile_length=4", "--set", "warmup_updates=4",
        "--set", "reinit_every=20", "--set", "buffer_size=16", "--set", "predictor_batch=4"]
NO_BASELINES = ["--overlays", "0", "--baselines", "none"]


def tiny_run(tmp_path: Path, updates: int = 6, *extra: str) -> tuple[Path, Path]:
    """A fresh tiny dataset and a run trained on it in-process: (data root, run folder)."""
    data = generate_synthetic_mvtec(tmp_path / "data", **SMALL)
    run = train.main(["--data-root", str(data), "--run-dir", str(tmp_path / "run"), "--updates", str(updates),
                      *TINY, *extra])
    return data, run


# ------------------------------------------------------------------ 1. the data a run trained on
def test_resume_and_evaluate_refuse_data_that_changed(tmp_path, capsys):
    data, run = tiny_run(tmp_path)
    recorded = json.loads((run / "split.json").read_text())["fingerprint"]
    assert len(recorded["labeled"]) == 3 and len(recorded["unlabeled"]) == 5 and len(recorded["normal"]) == 2
    evaluate.main([str(run), *NO_BASELINES])  # unchanged data: fine

    d_u = recorded["unlabeled"]
    name = next(n for n in d_u if not n.startswith("good/"))
    image = data / "brick" / "test" / f"{name}.png"
    original = image.read_bytes()
    pixels = cv2.imread(str(image))
    pixels[0, 0] = 255 - pixels[0, 0]
    cv2.imwrite(str(image), pixels)
    expected = f"file {image} changed (D_u image {name})"
    with pytest.raises(SystemExit) as e:
        train.main(["--resume", str(run), "--updates", "7"])
    assert expected in str(e.value) and str(run) in str(e.value)
    with pytest.raises(SystemExit) as e:
        evaluate.main([str(run), *NO_BASELINES])
    assert expected in str(e.value)
    image.write_bytes(original)

    mask = data / "brick" / "ground_truth" / name.split("/")[0] / f"{name.split('/')[1]}_mask.png"
    original_mask = mask.read_bytes()
    m = cv2.imread(str(mask), cv2.IMREAD_GRAYSCALE)
    m[:8, :8] = 255
    cv2.imwrite(str(mask), m)
    with pytest.raises(SystemExit, match=re.escape(f"mask of D_u image {name} changed")):
        evaluate.main([str(run), *NO_BASELINES])
    mask.write_bytes(original_mask)

    (data / "brick" / "train" / "good" / "000.png").unlink()
    with pytest.raises(SystemExit, match="image good/000 removed from the normal"):
        train.main(["--resume", str(run), "--updates", "7"])
    generate_synthetic_mvtec(data, **SMALL, overwrite=True)  # the same data again
    added = data / "brick" / "test" / "good" / "005.png"
    added.write_bytes((data / "brick" / "test" / "good" / "000.png").read_bytes())
    with pytest.raises(SystemExit, match=r"image good/005 added to D_\w"):
        train.main(["--resume", str(run), "--updates", "7"])
    added.unlink()

    # Runs recorded before the fingerprint: the names are checked, and it says so.
    split = json.loads((run / "split.json").read_text())
    del split["fingerprint"]
    (run / "split.json").write_text(json.dumps(split))
    capsys.readouterr()
    train.main(["--resume", str(run), "--updates", "7"])
    assert "predates file fingerprints" in capsys.readouterr().out
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["evaluation"] == ablation.wanted_evaluation(ablation.Plan("x", 6, [], 1, 0, ("--baselines", "none")))


# --------------------------------------------------------------------- 2. the built-in generator
def test_generator_never_touches_a_folder_it_did_not_write(tmp_path, monkeypatch):
    root = tmp_path / "mvtec"  # NBS_DATA_DIR pointing at a real MVTec AD root
    real = root / "pill" / "test" / "good" / "000.png"
    real.parent.mkdir(parents=True)
    real.write_bytes(b"a real image")
    with pytest.raises(DatasetError, match=re.escape(f"{root / 'pill'} exists and was not written")):
        generate_synthetic_mvtec(root, **SMALL)
    assert real.read_bytes() == b"a real image"
    assert not (root / "brick").exists() and not (root / MARKER).exists()  # refused before writing anything

    monkeypatch.setenv("NBS_DATA_DIR", str(root))
    with pytest.raises(SystemExit, match="not written by the built-in data generator"):
        train.main(["--updates", "0", "--run-dir", str(tmp_path / "run"), *TINY])
    assert real.read_bytes() == b"a real image"


def test_generator_replaces_only_its_own_folders_and_serialises(tmp_path, monkeypatch):
    root = tmp_path / "d"
    calls = []
    render = synthetic.render_sample
    monkeypatch.setattr(synthetic, "render_sample", lambda *a, **k: calls.append(a) or render(*a, **k))
    threads = [threading.Thread(target=generate_synthetic_mvtec, args=(root,), kwargs=SMALL) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    per_generation = len(calls)
    assert per_generation == sum(2 + 2 + 2 * len(k) for _, k in synthetic.CATEGORIES.values())  # once, not twice
    assert all((root / c / OWNER_MARKER).is_file() for c in synthetic.CATEGORIES)

    # A generator killed half way left a partial folder: it is cleared, the rest regenerated.
    (root / ".brick.partial" / "train").mkdir(parents=True)
    (root / ".brick.partial" / OWNER_MARKER).write_text("{}")
    generate_synthetic_mvtec(root, **{**SMALL, "n_test_good": 1})
    assert sorted(p.name for p in root.iterdir()) == sorted([*synthetic.CATEGORIES, MARKER, synthetic.LOCK])
    assert not (root / "pill" / "test" / "good" / "001.png").exists()
    assert len(calls) == 2 * per_generation - 3


# ----------------------------------------------------------------------------------- 3. ablate.py
def test_a_cell_evaluated_with_other_settings_is_evaluated_again(tmp_path):
    folder = tmp_path / "cell"
    folder.mkdir()
    (folder / "checkpoint.pt").write_bytes(b"")
    (folder / "config.json").write_text(json.dumps({"args": {"updates": 6}}))
    (folder / "summary.json").write_text(json.dumps({"finished": True, "episodes": 6}))
    plan = ablation.Plan(str(tmp_path), 6, [], 1, 0, ("--unet-steps", "5", "--ae-steps", "5"))
    time.sleep(0.01)
    (folder / "metrics.json").write_text(json.dumps({"evaluation": ablation.wanted_evaluation(plan)}))
    assert ablation.cell_status(folder, 6, ablation.wanted_evaluation(plan)) == "done"
    for other in [("--unet-steps", "7", "--ae-steps", "5"), ("--unet-steps", "5", "--ae-steps", "5", "--crf-iterations", "2"),
                  ("--baselines", "unet", "--unet-steps", "5", "--ae-steps", "5")]:
        wanted = ablation.wanted_evaluation(ablation.Plan(str(tmp_path), 6, [], 1, 0, other))
        assert ablation.cell_status(folder, 6, wanted) == "evaluate", other
    (folder / "metrics.json").write_text(json.dumps({"rows": []}))  # evaluated before settings were recorded
    assert ablation.cell_status(folder, 6, ablation.wanted_evaluation(plan)) == "evaluate"
    (folder / "metrics.json").write_text("")  # a 0-byte file (a full disk under an older version)
    assert ablation.cell_status(folder, 6, ablation.wanted_evaluation(plan)) == "evaluate"
    assert ablation.cell_status(folder, 6, None) == "evaluate"
    (folder / "summary.json").write_text("{")  # cut short: train again from the checkpoint
    assert ablation.cell_status(folder, 6, None) == "resume"


def _process_state(pid: int) -> str:
    """'Z' (zombie: dead, not reaped), 'gone', or the live state letter of /proc/<pid>/stat."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return "gone"


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux's")
def test_a_sweeps_child_dies_with_it(tmp_path):
    pid_file = tmp_path / "child.pid"
    child = f"import os, time; open({str(pid_file)!r}, 'w').write(str(os.getpid())); time.sleep(300)"
    parent = (f"import os, sys\nfrom runner import children\nwith open({str(tmp_path / 'log')!r}, 'w') as log:\n"
              f"    children.run_child([sys.executable, '-c', {child!r}], log, dict(os.environ))\n")
    proc = subprocess.Popen([sys.executable, "-c", parent], cwd=ROOT)
    deadline = time.time() + 60
    while not (pid_file.is_file() and pid_file.read_text()) and time.time() < deadline:
        time.sleep(0.1)
    pid = int(pid_file.read_text())
    assert _process_state(pid) not in ("Z", "gone")
    proc.send_signal(signal.SIGKILL)  # no atexit, no handler: only the kernel can stop the child
    proc.wait()
    deadline = time.time() + 10
    while _process_state(pid) not in ("Z", "gone") and time.time() < deadline:
        time.sleep(0.1)
    state = _process_state(pid)
    if state not in ("Z", "gone"):
        os.kill(pid, signal.SIGKILL)
    assert state in ("Z", "gone")


def test_a_run_folder_is_trained_in_by_one_process_at_a_time(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "checkpoint.pt").write_bytes(b"")
    with open(run / LOCK_FILE, "a+") as held:  # another train.py holds the folder
        fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
        for argv in (["--resume", str(run)], ["--run-dir", str(run), "--updates", "0", *TINY]):
            with pytest.raises(SystemExit, match=re.escape(f"{run} is in use: another process") + ".*is training there"):
                train.main(argv)
    assert (run / "checkpoint.pt").read_bytes() == b""  # nothing was touched


# ---------------------------------------------------------------------------- 4. clear errors
def test_unwritable_output_folders_are_named(tmp_path, monkeypatch):
    a_file = tmp_path / "file"
    a_file.write_text("")
    with pytest.raises(SystemExit, match=re.escape(f"--run-dir {a_file / 'run'}: cannot write there")):
        train.main(["--run-dir", str(a_file / "run"), "--updates", "0", *TINY])
    with pytest.raises(SystemExit, match=re.escape(f"--out {a_file / 'sweep'}: cannot write there")):
        ablate.main(["--out", str(a_file / "sweep"), "--agents", "heuristic", "--seeds", "0"])

    import common.files

    def read_only(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(common.files.tempfile, "TemporaryFile", read_only)  # root ignores chmod
    with pytest.raises(SystemExit, match=re.escape(f"--run-dir {tmp_path / 'r'}: cannot write there (Permission denied)")):
        train.main(["--run-dir", str(tmp_path / "r"), "--updates", "0", *TINY])
    with pytest.raises(SystemExit, match=re.escape(f"--out {tmp_path / 's'}: cannot write there (Permission denied)")):
        ablate.main(["--out", str(tmp_path / "s"), "--agents", "heuristic", "--seeds", "0"])


def test_resume_of_an_older_checkpoint_format_says_so(tmp_path):
    """A checkpoint whose replay buffer holds whole profiles (written before the buffer kept raw
    loss maps) stops --resume with one line, not a traceback from deep inside."""
    data, run = tiny_run(tmp_path)
    ckpt = load_weights(run / CHECKPOINTS[0])
    ckpt["env"]["buffer"] = {"profiles": torch.zeros(2, 4, 32, 32, dtype=torch.float16),
                             "masks": torch.zeros(2, 32, 32, dtype=torch.bool), "next": 2, "size": 2}
    save_weights_atomic(ckpt, run / CHECKPOINTS[0])
    with pytest.raises(SystemExit, match=re.escape(f"--resume {run}: the checkpoint's replay buffer holds whole "
                                                   "profiles, the format of an older version")):
        train.main(["--resume", str(run), "--updates", "8"])


def test_evaluate_rejects_negative_threads(tmp_path):
    threads = torch.get_num_threads()
    with pytest.raises(SystemExit, match=re.escape("--threads must be >= 0 (0: torch's default), got -1")):
        evaluate.main([str(tmp_path), "--threads", "-1"])
    assert torch.get_num_threads() == threads


def test_unreadable_data_folders_are_named(tmp_path, monkeypatch):
    data = generate_synthetic_mvtec(tmp_path / "data", **SMALL)
    cf = _fake_crackforest(tmp_path / "cfd")
    locked = {data / "brick" / "test", cf / "image"}
    iterdir = Path.iterdir

    def guarded(self):
        if self in locked:
            raise PermissionError(13, "Permission denied", str(self))
        return iterdir(self)

    monkeypatch.setattr(Path, "iterdir", guarded)
    with pytest.raises(SystemExit, match=re.escape(f"cannot read {data / 'brick' / 'test'}: Permission denied")):
        train.main(["--data-root", str(data), "--run-dir", str(tmp_path / "run"), "--updates", "0", *TINY])
    with pytest.raises(DatasetError, match=re.escape(f"cannot read {cf / 'image'}: Permission denied")):
        load_crackforest(cf)


@pytest.mark.parametrize("content, message", [
    (None, "config.json not found"),
    ("{\"args\": {\"seed\": 0", "config.json is not valid JSON"),
    ("{\"args\": {}}", "config.json has no 'env', 'data'"),
    ("{\"args\": {\"no_such_arg\": 1}, \"env\": {}, \"data\": {}}", "config.json does not hold train.py's settings"),
])
def test_a_missing_or_malformed_config_json_is_named(tmp_path, content, message):
    run = tmp_path / "run"
    run.mkdir()
    (run / "checkpoint.pt").write_bytes(b"")
    if content is not None:
        (run / "config.json").write_text(content)
    with pytest.raises(SystemExit) as e:
        train.main(["--resume", str(run)])
    assert f"--resume {run}" in str(e.value) and message in str(e.value)
    if content is not None and "no_such_arg" not in content:
        with pytest.raises(SystemExit, match=re.escape(message)):
            evaluate.main([str(run)])


# ------------------------------------------------ 5, 7. absolute data root, --threads on resume
def test_data_root_is_recorded_absolute_and_thread_changes_warn(tmp_path, monkeypatch, capsys):
    generate_synthetic_mvtec(tmp_path / "data", **SMALL)
    monkeypatch.chdir(tmp_path)
    run = train.main(["--data-root", "data", "--run-dir", "run", "--updates", "2", *TINY])
    config = json.loads((run / "config.json").read_text())
    assert config["args"]["data_root"] == config["data"]["data_root"] == str(tmp_path / "data")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    capsys.readouterr()
    train.main(["--resume", str(tmp_path / "run"), "--updates", "3"])
    assert "warning: --threads" not in capsys.readouterr().out  # same threads: no warning
    train.main(["--resume", str(tmp_path / "run"), "--updates", "4", "--threads", "1"])
    out = capsys.readouterr().out
    assert "warning: --threads 1 differs from the run's 0" in out and "uninterrupted run" in out

    # A run recorded with a relative data root before this change still resumes from its folder.
    monkeypatch.chdir(tmp_path)
    config["args"]["data_root"] = config["data"]["data_root"] = "data"
    (run / "config.json").write_text(json.dumps(config))
    train.main(["--resume", "run", "--updates", "5"])
    assert json.loads((run / "summary.json").read_text())["episodes"] == 5


# ------------------------------------------------------------------------------ 6. load warnings
def test_loaders_warn_about_what_they_skip_or_find_unlabeled(tmp_path, capsys):
    root = _hand_tree(tmp_path / "mvtec")
    toy = root / "toy"
    os.symlink(toy / "nowhere.png", toy / "test" / "good" / "009.png")
    _write(toy / "ground_truth" / "dent" / "007_mask.png", _mask((40, 40), True))
    _write(toy / "ground_truth" / "dent" / "001_mask.png", _mask((40, 40), False))
    data = load_mvtec_category(root, "toy", 40)
    err = capsys.readouterr().err
    assert f"warning: {toy / 'test' / 'good'}: skipping 1 broken symbolic link(s)" in err and "009.png" in err
    assert f"warning: mask {toy / 'ground_truth' / 'dent' / '007_mask.png'} has no image" in err
    assert f"warning: mask {toy / 'ground_truth' / 'dent' / '001_mask.png'} is empty" in err
    assert len(data.test) == 4

    cf = _fake_crackforest(tmp_path / "cfd")
    _write_mat(cf / "groundTruth" / "002.mat", np.ones((32, 48), np.uint8))
    load_crackforest(cf, 16)
    assert f"warning: {cf / 'groundTruth' / '002.mat'} has no crack pixel (no label 2" in capsys.readouterr().err

    folder = _fake_folder(tmp_path / "mine", subfolders=True)
    _write(folder / "masks" / "scratch" / "a.png", _mask((20, 30), False))
    load_folder_dataset(folder, 16)
    assert f"warning: mask {folder / 'masks' / 'scratch' / 'a.png'} is empty" in capsys.readouterr().err
    load_folder_dataset(_fake_folder(tmp_path / "flat"), 16)  # flat layout: an empty mask means normal
    assert "warning" not in capsys.readouterr().err


# ------------------------------------------- 8. evaluating a run that stopped before its results
def test_advice_for_a_run_without_results_works(tmp_path):
    data, run = tiny_run(tmp_path, 0)
    (run / "best_profiles.npz").unlink()  # as if the run had finished before its predictor's best moment
    with pytest.raises(SystemExit, match=r"ended before its predictor had a best moment.*--resume .* --updates"):
        evaluate.main([str(run), *NO_BASELINES])
    for name in CHECKPOINTS:  # as if killed before the first checkpoint
        (run / name).unlink(missing_ok=True)
    for command in (lambda: evaluate.main([str(run), *NO_BASELINES]), lambda: train.main(["--resume", str(run)])):
        with pytest.raises(SystemExit) as e:
            command()
        assert "remove the folder" in str(e.value) and "--resume" not in str(e.value).split("no checkpoint")[-1]
    advised = re.search(r"start it again with `([^`]*)`", str(e.value)).group(1)
    assert f"--run-dir {run}" in advised
    words = shlex.split(advised)
    assert words[:2] == ["python", "train.py"]
    train.main(words[2:])  # the advice works: the folder is trained again
    assert (run / "checkpoint.pt").is_file()
