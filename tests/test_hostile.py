"""Hostile inputs (issues 40 and the first round): one row per case, the exact input and the clear
one-line message it must end in, or the correct behaviour it must show instead.

Each row is run as the entry point's `__main__` block runs it (common.errors.run_main around
`main(argv)`), so a traceback fails the row. The rows share one tiny trained run (32 px, 6
updates); each gets its own copy, crafted in tmp_path. Cases with a process of their own are in
tests/test_trust.py (a killed sweep leaves no orphan; two trainers are serialised) and
tests/test_safety.py; integer actions: here and in tests/test_rl_users.py. Then a small hypothesis fuzz of config values and bundle metadata: every
value either works or raises the package's own error.
"""
from __future__ import annotations

import csv
import json
import math
import os
import re
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import cv2
import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import ablate
import evaluate
import predict
import train
from common.errors import run_main
from common.files import UnsafeFileError, load_weights
from common.settings import ConfigError, leaf_keys
from models.segmenter import BundleMeta, Segmenter
from runner import ablation
from runner.folder import LOCK_FILE
from runner.presets import PRESETS, method_config

ROOT = Path(__file__).resolve().parents[1]
ENTRY = {"train": train, "evaluate": evaluate, "predict": predict, "ablate": ablate}
TINY_SETS = ("--set sampler.patches_per_update=4 --set profiles.length=4 --set ae_training.warmup_updates=4 "
             "--set ae_training.reinit_every=20 --set predictor.buffer_size=16 --set predictor.batch=4 "
             "--set probe.updates=4")
TRAIN = (f"--preset chu2020 --data-root {{data}} --category brick --image-size 32 --n-labeled 3 --device cpu --threads 1 "
         f"--no-tensorboard --updates 0 --run-dir {{tmp}}/new {TINY_SETS}")
EVAL = "{run} --baselines none --overlays 0 --device cpu"
PREDICT = "{run} {images} --out {tmp}/out --device cpu"
ABLATE = "--agents heuristic --seeds 0 --data-root {data} --updates 0 --out {tmp}/sweep"
NO_CUDA = not torch.cuda.is_available()


# ------------------------------------------------------------------------------------ the rows
@dataclass
class Ctx:
    """One row's world: its own copy of the trained run, the data, a folder of test images."""

    tmp: Path
    run: Path
    data: Path
    images: Path
    monkeypatch: pytest.MonkeyPatch
    cleanup: list[Callable[[], None]] = field(default_factory=list)

    def fmt(self, text: str) -> list[str]:
        return shlex.split(text.format(tmp=self.tmp, run=self.run, data=self.data, images=self.images))


@dataclass
class Case:
    entry: str
    argv: str
    expect: str | None
    """a regex the one-line message must contain; None: the command must succeed"""
    craft: Callable[[Ctx], None] | None = None
    check: Callable[[Ctx], None] | None = None
    skip: str | None = None


def edit_json(name: str, change: Callable[[Any], Any]) -> Callable[[Ctx], None]:
    def craft(ctx: Ctx) -> None:
        path = ctx.run / name
        value = change(json.loads(path.read_text()))
        path.write_text(json.dumps(value))
    return craft


def set_in(*keys: str, value: Any) -> Callable[[Any], Any]:
    def change(d: Any) -> Any:
        target = d
        for k in keys[:-1]:
            target = target[k]
        target[keys[-1]] = value
        return d
    return change


def edit_checkpoint(change: Callable[[dict], Any]) -> Callable[[Ctx], None]:
    def craft(ctx: Ctx) -> None:
        ckpt = load_weights(ctx.run / "checkpoint.pt")
        torch.save(change(ckpt), ctx.run / "checkpoint.pt")
        (ctx.run / "checkpoint.prev.pt").unlink()
    return craft


def wrong_ae_shape(ckpt: dict) -> dict:
    key = next(iter(ckpt["env"]["ae"]))
    ckpt["env"]["ae"][key] = torch.zeros(33, *ckpt["env"]["ae"][key].shape[1:])
    return ckpt


def edit_profiles(change: Callable[[Path], None]) -> Callable[[Ctx], None]:
    return lambda ctx: change(ctx.run / "best_profiles.npz")


def object_array(path: Path) -> None:
    arrays = dict(np.load(path))
    arrays["labeled"] = np.array([{"x": 1}, {"y": 2}], dtype=object)
    np.savez(path.with_suffix(""), **arrays)  # np.savez adds .npz


def truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def edit_bundle(change: Callable[[dict, dict], Any]) -> Callable[[Ctx], None]:
    """A crafted bundle in <run>: change(bundle, meta) edits either; a str it returns is the raw meta."""
    def craft(ctx: Ctx) -> None:
        saved = load_weights(ctx.run / "bundle.pt")
        meta = json.loads(saved["meta"])
        raw = change(saved, meta)
        saved["meta"] = raw if isinstance(raw, str) else json.dumps(meta)
        torch.save(saved, ctx.run / "bundle.pt")
    return craft


class Exploit:
    """Unpickling this runs a shell command (it creates the marker file)."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def exploit_file(name: str) -> Callable[[Ctx], None]:
    def craft(ctx: Ctx) -> None:
        (ctx.run / "checkpoint.prev.pt").unlink(missing_ok=True)
        torch.save({"env": {}, "agent": Exploit(ctx.tmp / "pwned")}, ctx.run / name)
    return craft


def not_pwned(ctx: Ctx) -> None:
    assert not (ctx.tmp / "pwned").exists()


def hold_lock(ctx: Ctx) -> None:
    """Another process trains in the run folder: it holds <run>/.train.lock (as train.py does)."""
    code = ("import fcntl, os, sys, time\nf = open(sys.argv[1], 'a+'); fcntl.flock(f, fcntl.LOCK_EX)\n"
            "f.seek(0); f.truncate(); f.write(str(os.getpid())); f.flush(); print('held', flush=True); time.sleep(120)")
    proc = subprocess.Popen([sys.executable, "-c", code, str(ctx.run / LOCK_FILE)], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "held"
    ctx.cleanup.append(lambda: (proc.kill(), proc.wait()))


def user_files(ctx: Ctx) -> None:
    (ctx.tmp / "new").mkdir()
    (ctx.tmp / "new" / "log.csv").write_text("my own log")
    (ctx.tmp / "new" / "summary.json").write_text('{"mine": 1}')


def user_files_kept(ctx: Ctx) -> None:
    assert (ctx.tmp / "new" / "log.csv").read_text() == "my own log"
    assert sorted(p.name for p in (ctx.tmp / "new").iterdir()) == ["log.csv", "summary.json"]


def user_prob_png(ctx: Ctx) -> None:
    shutil.copy(ctx.images / "b.png", ctx.images / "a_prob.png")  # the user's own file named like an output


def user_prob_png_kept(ctx: Ctx) -> None:
    assert (ctx.images / "a_prob.png").read_bytes() == (ctx.images / "b.png").read_bytes()
    assert not (ctx.images / "a_mask.png").exists()


def bad_symlinks(ctx: Ctx) -> None:
    os.symlink(ctx.images / "nowhere.png", ctx.images / "dangling.png")
    os.symlink(ctx.images / "loop.png", ctx.images / "loop.png")


def float_tiffs(ctx: Ctx) -> None:
    rng = np.random.default_rng(0)
    assert cv2.imwrite(str(ctx.images / "unit.tiff"), rng.random((24, 24, 3)).astype(np.float32))
    assert cv2.imwrite(str(ctx.images / "wide.tiff"), 5 * rng.random((24, 24, 3)).astype(np.float32))


def csv_rows(ctx: Ctx) -> dict[str, dict[str, str]]:
    with open(ctx.tmp / "out" / "predictions.csv", newline="") as f:
        return {r["name"]: r for r in csv.DictReader(f)}


def symlink_rows(ctx: Ctx) -> None:
    rows = csv_rows(ctx)
    assert rows["a"]["error"] == "" and rows["b"]["error"] == ""
    assert "No such file" in rows["dangling"]["error"] and "symbolic links" in rows["loop"]["error"]


def tiff_rows(ctx: Ctx) -> None:
    rows = csv_rows(ctx)
    assert rows["unit"]["error"] == "" and rows["unit"]["decision"] in ("good", "defective")  # [0, 1]: converted
    assert "floating-point values outside [0, 1]" in rows["wide"]["error"]
    assert rows["a"]["error"] == ""  # the batch went on


def full_disk_on_save(ctx: Ctx) -> None:
    ctx.before = {n: (ctx.run / n).read_bytes() for n in ("checkpoint.pt", "checkpoint.prev.pt")}

    def save(obj, f, *args, **kwargs):
        Path(f).write_bytes(b"half a checkpoint")
        raise RuntimeError("[enforce fail at inline_container.cc:595] . PytorchStreamWriter failed writing file "
                           "data/0: file write failed")

    ctx.monkeypatch.setattr(torch, "save", save)


def checkpoints_kept(ctx: Ctx) -> None:
    for name, data in ctx.before.items():
        assert (ctx.run / name).read_bytes() == data
    assert not [p.name for p in ctx.run.iterdir() if p.name.startswith(".") and p.name != LOCK_FILE]


def full_disk_on_savefig(ctx: Ctx) -> None:
    import matplotlib.figure

    def savefig(self, *args, **kwargs):
        raise OSError(28, "No space left on device")

    ctx.monkeypatch.setattr(matplotlib.figure.Figure, "savefig", savefig)


def no_partial_png(ctx: Ctx) -> None:
    assert not (ctx.run / "training.png").exists() and not list(ctx.run.glob(".training.png*"))


def a_file_in_the_way(ctx: Ctx) -> None:
    (ctx.tmp / "file").write_text("")


def change_an_image(ctx: Ctx) -> None:
    data = ctx.tmp / "data"
    shutil.copytree(ctx.data, data)
    for name in ("config.json",):
        config = json.loads((ctx.run / name).read_text())
        config["args"]["data_root"] = config["data"]["data_root"] = str(data)
        (ctx.run / name).write_text(json.dumps(config))
    image = sorted((data / "brick" / "test" / "crack").glob("*.png"))[0]
    pixels = cv2.imread(str(image))
    pixels[0, 0] = 255 - pixels[0, 0]
    cv2.imwrite(str(image), pixels)


def foreign_data_dir(ctx: Ctx) -> None:
    (ctx.tmp / "mvtec" / "pill" / "test" / "good").mkdir(parents=True)
    (ctx.tmp / "mvtec" / "pill" / "test" / "good" / "000.png").write_bytes(b"a real image")
    ctx.monkeypatch.setenv("NBS_DATA_DIR", str(ctx.tmp / "mvtec"))


def foreign_data_kept(ctx: Ctx) -> None:
    assert (ctx.tmp / "mvtec" / "pill" / "test" / "good" / "000.png").read_bytes() == b"a real image"


def no_file(path: Path) -> None:
    assert not path.exists(), path


def nothing_outside(ctx: Ctx) -> None:
    assert not (ctx.tmp / "etc").exists() and not (ctx.tmp / "sweep").exists()


CASES: dict[str, Case] = {
    # ---------------------------------------------------------------- train.py: settings
    "train --set stride=0": Case("train", TRAIN + " --set stride=0", r"--set stride=0: sampler\.stride=0: must be >= 1"),
    "train --set stride=-4": Case("train", TRAIN + " --set stride=-4", r"sampler\.stride=-4: must be >= 1"),
    "train --set warmup_updates=-1": Case("train", TRAIN + " --set warmup_updates=-1",
                                          r"--set warmup_updates=-1: ae_training\.warmup_updates=-1: must be >= 0"),
    "train --set ae_lr=-1": Case("train", TRAIN + " --set ae_lr=-1", r"ae_training\.lr=-1\.0: must be > 0"),
    "train --set ae.width=0": Case("train", TRAIN + " --set ae.width=0", r"ae\.width=0: must be >= 1"),
    "train --set ae.bottleneck=0": Case("train", TRAIN + " --set ae.bottleneck=0", r"ae\.bottleneck=0: must be >= 1"),
    "train --set predictor_width=0": Case("train", TRAIN + " --set predictor_width=0", r"predictor\.width=0: must be >= 1"),
    "train --set ae.dropout=2": Case("train", TRAIN + " --set ae.dropout=2", r"ae\.dropout=2\.0: must be < 1"),
    "train --set profile_length=abc (1st round)": Case("train", TRAIN + " --set profile_length=abc",
                                                       r"profiles\.length='abc': expected a whole number"),
    "train --set ae_lr=NaN (1st round)": Case("train", TRAIN + " --set ae_lr=NaN", "expected a finite number"),
    "train --image-size 100000": Case("train", TRAIN + " --image-size 100000",
                                      r"--image-size: data\.image_size=100000: must be <= 2048"),
    "train --threads -3": Case("train", TRAIN + " --threads -3", r"--threads must be >= 0 .*got -3"),
    "train --updates -5 (1st round)": Case("train", TRAIN + " --updates -5", "--updates must be >= 0, got -5"),
    "train --checkpoint-every 0 (1st round)": Case("train", TRAIN + " --checkpoint-every 0", "--checkpoint-every must be >= 1"),
    "train --device cuda without CUDA": Case("train", TRAIN + " --device cuda", "--device cuda: no CUDA device is available",
                                             skip=None if NO_CUDA else "this machine has CUDA"),
    "train --device bogus": Case("train", TRAIN + " --device bogus", "--device bogus: not a device name"),
    # ---------------------------------------------------------------- train.py: folders and files
    "train --run-dir holding the user's log.csv": Case("train", TRAIN, r"--run-dir .*/new: the folder holds files that "
                                                       r"are not a run of this package \(log\.csv, summary\.json\)",
                                                       user_files, user_files_kept),
    "train --run-dir under a file (1st round)": Case("train", TRAIN.replace("{tmp}/new", "{tmp}/file/run"),
                                                     r"--run-dir .*/file/run: cannot write there", a_file_in_the_way),
    "train --run-dir of a run being trained (1st round)": Case("train", TRAIN.replace("{tmp}/new", "{run}"),
                                                               r"is in use: another process \(pid \d+\) is training there",
                                                               hold_lock),
    "train, built-in data dir holding foreign data (1st round)": Case(
        "train", TRAIN.replace("--data-root {data} ", ""), "not written by the built-in data generator", foreign_data_dir,
        foreign_data_kept),
    "train --resume, full disk at torch.save": Case("train", "--resume {run} --updates 7",
                                                    r"error: could not write .*/checkpoint\.pt: .*file write failed; the "
                                                    r"checkpoints already there \(checkpoint\.pt, checkpoint\.prev\.pt\) kept",
                                                    full_disk_on_save, checkpoints_kept),
    "train --resume, checkpoint {env:{}, agent:{}}": Case("train", "--resume {run} --updates 7",
                                                          r"checkpoint\.pt is not train\.py's checkpoint",
                                                          edit_checkpoint(lambda c: {"env": {}, "agent": {}, "wall_s": 0.0})),
    "train --resume, checkpoint holding a list": Case("train", "--resume {run} --updates 7",
                                                      r"checkpoint\.pt holds a list, not train\.py's checkpoint",
                                                      edit_checkpoint(lambda c: [1, 2])),
    "train --resume, AE weights of the wrong shape": Case("train", "--resume {run} --updates 7",
                                                          r"the env state in .*checkpoint\.pt does not fit this run "
                                                          r"\(Error\(s\) in loading state_dict for ConvAutoencoder: size mismatch",
                                                          edit_checkpoint(wrong_ae_shape)),
    "train --resume, env state without its AE": Case("train", "--resume {run} --updates 7",
                                                     r"the env state in .*checkpoint\.pt does not fit this run \(no 'ae'\)",
                                                     edit_checkpoint(lambda c: (c["env"].pop("ae"), c)[1])),
    "train --resume, pickled checkpoint (1st round)": Case("train", "--resume {run}",
                                                           r"refusing to load .*checkpoint\.pt: it holds a .*system object",
                                                           exploit_file("checkpoint.pt"), not_pwned),
    "train --resume, corrupt checkpoints (1st round)": Case("train", "--resume {run}",
                                                            r"cannot read .*checkpoint\.pt.*; and cannot read .*checkpoint\.prev\.pt",
                                                            lambda ctx: [(ctx.run / n).write_bytes(b"\0") for n in
                                                                         ("checkpoint.pt", "checkpoint.prev.pt")]),
    "train --resume, config.json profile_length 'x'": Case("train", "--resume {run}",
                                                           r"config\.json does not hold train\.py's settings \(.*config\.json: "
                                                           r"profiles\.length='x': expected a whole number\)",
                                                           edit_json("config.json", set_in("env", "profiles", "length", value="x"))),
    "train --resume, config.json args.image_size 'abc'": Case("train", "--resume {run}",
                                                              r"config\.json does not hold train\.py's settings \(image_size='abc': "
                                                              r"expected a whole number\)",
                                                              edit_json("config.json", set_in("args", "image_size", value="abc"))),
    "train --resume, config.json args.image_size -1": Case("train", "--resume {run}",
                                                           r"--resume .*: config\.json: data\.image_size=-1: must be >= 8",
                                                           edit_json("config.json", set_in("args", "image_size", value=-1))),
    "train --resume, split.json garbage fingerprint": Case("train", "--resume {run}",
                                                           r"split\.json is not what train\.py writes \(its fingerprint is not",
                                                           edit_json("split.json", set_in("fingerprint", value="garbage"))),
    "train --resume, config.json cut short (1st round)": Case("train", "--resume {run}", r"config\.json is not valid JSON",
                                                              lambda ctx: (ctx.run / "config.json").write_text('{"args": {')),
    "train --resume, changed data (1st round)": Case("train", "--resume {run}", r"file .*\.png changed \(D_. image crack/",
                                                     change_an_image),
    # ---------------------------------------------------------------- evaluate.py
    "evaluate --crf-iterations -1": Case("evaluate", EVAL + " --crf-iterations -1", r"--crf-iterations -1: `iterations` must be >= 1"),
    "evaluate --unet-steps 0": Case("evaluate", EVAL + " --unet-steps 0", r"--unet-steps 0: unet\.steps=0: must be >= 1"),
    "evaluate --ae-steps 0": Case("evaluate", EVAL + " --ae-steps 0", r"--ae-steps 0: recon\.steps=0: must be >= 1"),
    "evaluate --threads -1 (1st round)": Case("evaluate", EVAL + " --threads -1", r"--threads must be >= 0 .*got -1"),
    "evaluate --device cuda without CUDA": Case("evaluate", EVAL.replace("cpu", "cuda"),
                                                "--device cuda: no CUDA device is available",
                                                skip=None if NO_CUDA else "this machine has CUDA"),
    "evaluate --device bogus": Case("evaluate", EVAL.replace("cpu", "bogus"), "--device bogus: not a device name"),
    "evaluate a run being trained": Case("evaluate", EVAL, r"a training process \(pid \d+\) is still writing this run",
                                         hold_lock, lambda ctx: no_file(ctx.run / "metrics.json")),
    "evaluate, full disk at matplotlib's savefig": Case("evaluate", EVAL,
                                                        r"error: could not write .*training\.png: no space left on the device",
                                                        full_disk_on_savefig, no_partial_png),
    "evaluate --baseline-cache read-only": Case("evaluate", EVAL + " --baseline-cache {tmp}/file/cache",
                                                r"--baseline-cache .*/file/cache: cannot write there", a_file_in_the_way),
    "evaluate, best_profiles.npz with an object array": Case("evaluate", EVAL,
                                                             r"cannot read .*best_profiles\.npz: .*Object arrays cannot be loaded",
                                                             edit_profiles(object_array)),
    "evaluate, best_profiles.npz truncated": Case("evaluate", EVAL, r"cannot read .*best_profiles\.npz: it is truncated",
                                                  edit_profiles(truncate)),
    "evaluate, config.json data.image_size 'abc'": Case("evaluate", EVAL,
                                                        r"config\.json: data\.image_size='abc': expected a whole number",
                                                        edit_json("config.json", set_in("data", "image_size", value="abc"))),
    "evaluate, config.json data.image_size -1": Case("evaluate", EVAL, r"config\.json: data\.image_size=-1: must be >= 8",
                                                     edit_json("config.json", set_in("data", "image_size", value=-1))),
    "evaluate, config.json unknown dataset": Case("evaluate", EVAL, r"config\.json: data\.dataset='nope': must be one of",
                                                  edit_json("config.json", set_in("data", "dataset", value="nope"))),
    "evaluate, config.json holding []": Case("evaluate", EVAL, r"config\.json holds a JSON list, not an object",
                                             lambda ctx: (ctx.run / "config.json").write_text("[]")),
    "evaluate, split.json garbage fingerprint": Case("evaluate", EVAL, r"split\.json is not what train\.py writes",
                                                     edit_json("split.json", set_in("fingerprint", value={"labeled": 3}))),
    "evaluate, predictor.pt with no weights": Case("evaluate", EVAL, r"predictor\.pt is not a predictor train\.py wrote",
                                                   lambda ctx: torch.save({"profile_length": 4, "state_dict": {}},
                                                                          ctx.run / "predictor.pt")),
    "evaluate, pickled predictor.pt (1st round)": Case("evaluate", EVAL, r"refusing to load .*predictor\.pt",
                                                       exploit_file("predictor.pt"), not_pwned),
    "evaluate a folder without config.json (1st round)": Case("evaluate", EVAL, r"is not a run folder \(no config\.json\)",
                                                              lambda ctx: (ctx.run / "config.json").unlink()),
    "evaluate, changed data (1st round)": Case("evaluate", EVAL, r"file .*\.png changed", change_an_image),
    # ---------------------------------------------------------------- predict.py
    "predict imgs --out imgs": Case("predict", "{run} {images} --out {images} --device cpu",
                                    r"--out .*: it is the input folder", user_prob_png, user_prob_png_kept),
    "predict imgs --out imgs/sub": Case("predict", "{run} {images} --out {images}/sub --device cpu",
                                        r"--out .*/sub: it lies inside the input folder", user_prob_png),
    "predict imgs/a.png --out imgs (a_prob.png is the user's)": Case(
        "predict", "{run} {images}/a.png --out {images} --device cpu",
        r"would overwrite .*/a_prob\.png, which predict\.py did not write", user_prob_png, user_prob_png_kept),
    "predict, dangling and looping symlinks": Case("predict", PREDICT, None, bad_symlinks, symlink_rows),
    "predict, float32 TIFFs": Case("predict", PREDICT, None, float_tiffs, tiff_rows),
    "predict --device cuda without CUDA": Case("predict", PREDICT.replace("cpu", "cuda"),
                                               "--device cuda: no CUDA device is available",
                                               skip=None if NO_CUDA else "this machine has CUDA"),
    "predict --device bogus": Case("predict", PREDICT.replace("cpu", "bogus"), "--device bogus: not a device name"),
    "predict with a run being trained": Case("predict", PREDICT, r"a training process \(pid \d+\) is still writing", hold_lock),
    "predict, bundle image_size 100000": Case("predict", PREDICT, r"image_size=100000: must be <= 2048",
                                              edit_bundle(lambda b, m: m.update(image_size=100000))),
    "predict, bundle image_size 'abc'": Case("predict", PREDICT, r"image_size='abc': expected a whole number",
                                             edit_bundle(lambda b, m: m.update(image_size="abc"))),
    "predict, bundle NaN threshold": Case("predict", PREDICT, r"threshold=nan: expected a finite number",
                                          edit_bundle(lambda b, m: m.update(threshold=math.nan))),
    "predict, bundle wrong profile_length": Case("predict", PREDICT, r"4 AE snapshots for profiles of length 7",
                                                 edit_bundle(lambda b, m: m["predictor"].update(profile_length=7))),
    "predict, bundle with 2 AE snapshots": Case("predict", PREDICT, r"2 AE snapshots for profiles of length 4",
                                                edit_bundle(lambda b, m: b.update(ae=b["ae"][:2]))),
    "predict, bundle with an empty predictor": Case("predict", PREDICT, r"its predictor holds no weights",
                                                    edit_bundle(lambda b, m: b.update(predictor={}))),
    "predict, bundle meta not JSON": Case("predict", PREDICT, r"bundle\.pt: Expecting", edit_bundle(lambda b, m: "{no")),
    "predict, pickled bundle (1st round)": Case("predict", PREDICT, r"refusing to load .*bundle\.pt",
                                                exploit_file("bundle.pt"), not_pwned),
    "predict, predictor.pt as the bundle (1st round)": Case("predict", "{run}/predictor.pt {images} --out {tmp}/out",
                                                            r"not a usable model bundle .*is not a model bundle"),
    # ---------------------------------------------------------------- ablate.py
    "ablate --categories ../../etc": Case("ablate", ABLATE.replace("{tmp}/sweep", "{tmp}/sweep/X") + " --categories ../../etc",
                                          r"--categories: '\.\./\.\./etc' is not a category name", check=nothing_outside),
    "ablate --categories /etc": Case("ablate", ABLATE + " --categories /etc", r"'/etc' is not a category name",
                                     check=nothing_outside),
    "ablate --categories nosuch": Case("ablate", ABLATE + " --categories nosuch", r"no category 'nosuch' under .*; it has brick",
                                       check=nothing_outside),
    "ablate --presets ../x": Case("ablate", ABLATE + " --categories brick --presets ../x", r"--presets: unknown '\.\./x'",
                                  check=nothing_outside),
    "ablate --agents sb3:../../x": Case("ablate", ABLATE.replace("heuristic", "sb3:../../x") + " --categories brick",
                                        r"--agents: unknown agent 'sb3:\.\./\.\./x'", check=nothing_outside),
    "ablate --unet-steps 0": Case("ablate", ABLATE + " --categories brick --unet-steps 0", r"--unet-steps 0: unet\.steps=0: must be >= 1",
                                  check=nothing_outside),
    "ablate --out under a file (1st round)": Case("ablate", ABLATE.replace("{tmp}/sweep", "{tmp}/file/sweep") + " --categories brick",
                                                  r"--out .*/file/sweep: cannot write there", a_file_in_the_way),
}


@pytest.fixture(scope="module")
def trained(tiny_root: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """One tiny run (32 px, 6 updates) on a private copy of the tiny data, and two test images."""
    base = tmp_path_factory.mktemp("hostile")
    data = base / "data"
    shutil.copytree(tiny_root, data)
    argv = shlex.split(TRAIN.format(data=data, tmp=base).replace("--updates 0", "--updates 6"))
    run = train.main(argv)
    images = base / "images"
    images.mkdir()
    crack = sorted((data / "brick" / "test" / "crack").glob("*.png"))
    shutil.copy(crack[0], images / "a.png")
    shutil.copy(crack[1], images / "b.png")
    return {"run": run, "data": data, "images": images}


@pytest.mark.parametrize("name", list(CASES))
def test_hostile_input(name: str, trained: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    case = CASES[name]
    if case.skip:
        pytest.skip(case.skip)
    run, images = tmp_path / "run", tmp_path / "images"
    shutil.copytree(trained["run"], run)
    shutil.copytree(trained["images"], images)
    ctx = Ctx(tmp_path, run, trained["data"], images, monkeypatch)
    try:
        if case.craft:
            case.craft(ctx)
        argv = ctx.fmt(case.argv)
        if case.expect is None:
            run_main(lambda: ENTRY[case.entry].main(argv))
        else:
            with pytest.raises(SystemExit) as e:
                run_main(lambda: ENTRY[case.entry].main(argv))
            message = str(e.value.code)
            assert e.value.code not in (0, None) and "\n" not in message, message
            assert re.search(case.expect, message), f"expected /{case.expect}/ in: {message}"
        monkeypatch.undo()
        if case.check:
            case.check(ctx)
    finally:
        for stop in ctx.cleanup:
            stop()


# ------------------------------------------------------------------ rows below the entry points
def test_ablate_overlays_on_finished_cells_are_written(trained, tmp_path):
    """ablate.py --overlays 1 on a cell evaluated with none: the cell is evaluated again."""
    run = tmp_path / "cell"
    shutil.copytree(trained["run"], run)
    evaluate.main(shlex.split(EVAL.format(run=run)))
    assert ablation.cell_status(run, None, None, overlays=0) == "done"
    assert ablation.cell_status(run, None, None, overlays=1) == "evaluate"
    assert ablation.cell_status(run, None, None, overlays=-1) == "evaluate"


@pytest.mark.parametrize("metrics, summary, status", [
    ([], None, "evaluate"),                                       # metrics.json holding []
    (None, None, "evaluate"),                                     # ... or null
    ({"rows": "x"}, None, "done"),                                # then left out of the tables (below)
    ({"rows": []}, {"episodes": "6", "finished": True}, "resume"),  # summary.json: a string episode count
])
def test_ablate_cells_with_malformed_results(trained, tmp_path, capsys, metrics, summary, status):
    out = tmp_path / "sweep"
    cell = ablation.Cell("brick", "chu2020", "heuristic", 0)
    folder = cell.folder(out)
    shutil.copytree(trained["run"], folder)
    if summary is not None:
        (folder / "summary.json").write_text(json.dumps(summary))
    os.utime(folder / "summary.json", (1, 1))
    (folder / "metrics.json").write_text(json.dumps(metrics))
    assert ablation.cell_status(folder, None, None) == status
    assert ablation.write_outputs(out, [cell], ["heuristic"]) == []  # no traceback, no table from it


def test_env_takes_integer_actions_only():
    """step(2.7) and step('3') are refused in one line naming the action (envs.actions.checked_action);
    more cases in tests/test_rl_users.py."""
    from tests.helpers import tiny_env

    env = tiny_env()
    env.reset(seed=0)
    for bad in (2.7, "3", True, 9):
        with pytest.raises(ValueError, match=r"action .*: expected an integer in 0\.\.8"):
            env.step(bad)


def test_configs_from_every_source_are_range_checked():
    """gymnasium.make kwargs are configs built by the user: the same checks, the same message."""
    from envs.config import make_env_config
    from data.config import DataConfig

    with pytest.raises(ConfigError, match=r"sampler\.stride=0: must be >= 1"):
        make_env_config(**{"sampler.stride": 0})
    with pytest.raises(ConfigError, match=r"data\.image_size=100000: must be <= 2048"):
        DataConfig(image_size=100000)


# ------------------------------------------------------------------------------------- fuzz
VALUES = st.one_of(st.none(), st.booleans(), st.integers(-10**6, 10**6), st.floats(allow_nan=True, allow_infinity=True),
                   st.text(max_size=8), st.lists(st.integers(-5, 50), max_size=4),
                   st.dictionaries(st.text(max_size=4), st.integers(), max_size=2))
KEYS = sorted(leaf_keys(PRESETS["chu2020"]))


@settings(max_examples=60, deadline=None, derandomize=True)
@given(preset=st.sampled_from(sorted(PRESETS)), key=st.sampled_from(KEYS), value=VALUES)
def test_fuzz_config_values_build_or_raise_config_error(preset, key, value):
    """Any value of any setting, as --set, config.json or gymnasium.make would pass it: the config
    builds, or ConfigError says (in one line) which setting is wrong."""
    try:
        config = method_config(preset, {key: value})
    except ConfigError as e:
        assert str(e) and "\n" not in str(e)
        return
    assert leaf_keys(config).keys() == leaf_keys(PRESETS[preset]).keys()


META_KEYS = ["image_size", "patch_size", "absolute_error", "loss_map", "loss_map_stride", "threshold", "threshold_rule",
             "crf", "source", "error", "image_score", "ae", "predictor", "ae.width", "ae.skip_levels", "ae.dropout",
             "predictor.profile_length", "predictor.width", "predictor.inputs", "predictor.arch", "predictor.ensemble",
             "crf.iterations", "crf.prob_clip"]


@settings(max_examples=40, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(key=st.sampled_from(META_KEYS), value=VALUES)
def test_fuzz_bundle_meta_loads_or_raises_value_error(trained, tmp_path, key, value):
    saved = load_weights(trained["run"] / "bundle.pt")
    meta = json.loads(saved["meta"])
    target, parts = meta, key.split(".")
    for part in parts[:-1]:
        if not isinstance(target.get(part), dict):
            target[part] = {}
        target = target[part]
    target[parts[-1]] = value
    saved["meta"] = json.dumps(meta)
    path = tmp_path / "bundle.pt"
    torch.save(saved, path)
    try:
        seg = Segmenter.load(path, "cpu")
    except (ValueError, UnsafeFileError) as e:  # UnsafeFileError is a ValueError; its message names the file
        assert str(path) in str(e), str(e)
        return
    assert isinstance(seg.meta, BundleMeta)
    if seg.meta.image_size <= 64:  # a bundle that loads also segments
        result = seg.predict([np.full((20, 30, 3), 128, np.uint8)])
        assert result.masks[0].shape == (20, 30)


# ------------------------------------------------------------------ the __main__ blocks themselves
@pytest.mark.parametrize("script, argv, message", [
    ("train.py", ["--set", "ae.width=0", "--updates", "0"], "ae.width=0: must be >= 1"),
    ("evaluate.py", ["--unet-steps", "0", "nowhere"], "--unet-steps 0: unet.steps=0: must be >= 1"),
    ("predict.py", ["nowhere", "nowhere", "--out", "x", "--device", "bogus"], "--device bogus: not a device name"),
    ("ablate.py", ["--categories", "../../etc"], "'../../etc' is not a category name"),
])
def test_entry_points_end_in_one_line(tmp_path, script, argv, message):
    proc = subprocess.run([sys.executable, str(ROOT / script), *argv], cwd=tmp_path, capture_output=True, text=True,
                          timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert proc.returncode not in (0, None) and "Traceback" not in proc.stderr, proc.stderr
    assert message in proc.stderr and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
