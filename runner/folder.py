"""The run folder: one class that writes and reads every artifact of a run.

    <run>/config.json        train.py's Args, the env config and the DataConfig (and the AE probe's results)
    <run>/split.json         the labeled / unlabeled image names and the data's fingerprint
    <run>/log.csv            one row per episode (LOG_COLUMNS)
    <run>/checkpoint.pt      the latest checkpoint (env + agent), checkpoint.prev.pt the one before
    <run>/best_profiles.npz  the D_l / D_u loss profiles of the best moment
    <run>/predictor.pt       the predictor that scores them
    <run>/bundle.pt          what predict.py needs (models.segmenter)
    <run>/summary.json       updates, re-inits, best l_pred, wall time, device, warnings
    <run>/metrics.json       evaluate.py's table (rows named as in evaluation.report)
    <run>/.train.lock        held while train.py trains there

Everything here is weights-only (no file can execute code when loaded) and written atomically, so a
crash leaves the previous version of a file, never half of one.
"""
from __future__ import annotations

import csv
import errno
import math
import os
import shlex
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from data.split import Split, describe_changes, recorded_split_problem, split_changes
from envs.actions import N_ACTIONS
from models.segmenter import BUNDLE_NAME
from common.files import (RunFileError, UnsafeFileError, load_weights, make_writable_folder, read_json,
                                  save_weights_atomic, write_atomic, write_json_atomic)
from runner.checks import checked_checkpoint, profiles_problem
from runner.spec import train_command

try:
    import fcntl
except ImportError:  # Windows: no advisory locks; run folders are not locked there
    fcntl = None  # type: ignore[assignment]

CONFIG, SPLIT, LOG, SUMMARY, METRICS = "config.json", "split.json", "log.csv", "summary.json", "metrics.json"
CHECKPOINTS = ("checkpoint.pt", "checkpoint.prev.pt")
PROFILES, PREDICTOR, BUNDLE, LOCK_FILE = "best_profiles.npz", "predictor.pt", BUNDLE_NAME, ".train.lock"
#: Optional arrays of best_profiles.npz (None when absent): the held-out predictors' D_l maps and
#: which D_l images they are of (heldout_predictors); the same for the final predictor's
#: leave-one-out fits (final.heldout).
HELDOUT_KEYS = ("labeled_heldout_prob", "labeled_heldout_index", "labeled_refit_heldout_prob",
                "labeled_refit_heldout_index")

#: Per-update diagnostics of the env (envs/diagnostics.py): pixel AUROC against the D_l masks of
#: the current D_l loss maps, of the mean D_l profile and of the held-out predictors; the AE's
#: loss over that of each image's mean colour and its output's spread over the images' (a
#: collapsed AE: >= 1 and near 0). Then the fraction of each action in the episode.
DIAGNOSTIC_COLUMNS = ["dl_loss_auroc", "dl_profile_auroc", "dl_heldout_auroc", "ae_vs_mean_colour", "ae_output_spread"]
ACTION_COLUMNS = [f"action_{a}" for a in range(N_ACTIONS)]
LOG_COLUMNS = ["episode", "ae_updates", "return", "r_pred", "ae_loss", "l_pred", "heldout_l_pred", "best_l_pred", "beta",
               "policy_loss", "entropy", "jump_rate", *DIAGNOSTIC_COLUMNS, *ACTION_COLUMNS, "wall_s"]

_held_locks: dict[Path, Any] = {}


class RunFolder:
    """One run folder. Methods that can fail on a user's folder raise SystemExit with a message
    naming `flag` (the command-line flag or program that named the folder) and the file."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.checkpoint_path = self.path / CHECKPOINTS[0]
        """the checkpoint file load_checkpoint read last (checkpoint.prev.pt after a fallback)"""

    def __truediv__(self, name: str) -> Path:
        return self.path / name

    def __str__(self) -> str:
        return str(self.path)

    # ------------------------------------------------------------------ the folder itself
    def create(self, flag: str) -> None:
        """Make the folder (writable, or SystemExit naming `flag`)."""
        try:
            make_writable_folder(self.path, flag)
        except RunFileError as e:
            raise SystemExit(e.strerror) from None

    def lock(self, flag: str) -> None:
        """Hold an exclusive lock on <run>/.train.lock until this process ends.

        Two train.py in one folder (a second terminal, a sweep started twice) would interleave log
        rows and overwrite each other's checkpoints; the second one stops here instead, naming the
        folder. The kernel drops the lock when the process ends, however it ends, so a crash never
        leaves a stale lock behind. A lock this process already holds is kept (training may run
        twice in one process)."""
        run, key = self.path, self.path.resolve()
        if key in _held_locks:
            return
        path = run / LOCK_FILE
        try:
            handle = open(path, "a+")
        except OSError as e:
            raise SystemExit(f"{flag} {run}: cannot write there ({e.strerror or e})") from None
        if fcntl is not None:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                handle.seek(0)
                holder = handle.read().strip()
                handle.close()
                raise SystemExit(f"{run} is in use: another process{f' (pid {holder})' if holder else ''} is "
                                 f"training there (it holds {path}); wait for it to finish or stop it") from None
        handle.seek(0)
        handle.truncate()
        handle.write(str(os.getpid()))
        handle.flush()
        _held_locks[key] = handle

    def locked_by(self) -> str | None:
        """Whether another process holds <run>/.train.lock (is training there): its pid as text
        ("?" when it did not record one), or None. Takes no lock and creates no file."""
        path = self.path / LOCK_FILE
        if fcntl is None or self.path.resolve() in _held_locks or not path.is_file():
            return None
        try:
            with open(path) as handle:
                try:
                    fcntl.flock(handle, fcntl.LOCK_SH | fcntl.LOCK_NB)
                except BlockingIOError:
                    return handle.read().strip() or "?"
                fcntl.flock(handle, fcntl.LOCK_UN)
        except OSError:
            return None
        return None

    def refuse_if_training(self, flag: str) -> None:
        """SystemExit when a train.py is training in this folder: its model, profiles and bundle
        change under a reader (an evaluation would score one moment and report another, and write
        its report into a folder that is still being written)."""
        holder = self.locked_by()
        if holder is not None:
            raise SystemExit(f"{flag} {self.path}: a training process (pid {holder}) is still writing this run "
                             f"(it holds {self.path / LOCK_FILE}); wait for it to finish, or stop it, and run "
                             "this again")

    def check_new_run_folder(self, flag: str) -> None:
        """Refuse a --run-dir that holds files which are not a run's: train.py would overwrite a
        user's own log.csv or summary.json. Accepted: no folder, an empty one, a run folder of
        this package (config.json with train.py's settings: an attempt stopped before its first
        checkpoint, which is started again), or only the files a sweep or a stopped start leave
        before config.json (.train.lock, train.log, evaluate.log)."""
        if not self.path.is_dir():
            return
        try:
            names = sorted(p.name for p in self.path.iterdir())
        except OSError as e:
            raise SystemExit(f"{flag} {self.path}: cannot read it ({e.strerror or e})") from None
        if not set(names) - {LOCK_FILE, "train.log", "evaluate.log"}:
            return
        if CONFIG in names:
            try:
                read_json(self.path / CONFIG, keys=("args", "env", "data"))
                return
            except RunFileError:
                pass
        shown = ", ".join(names[:8]) + (f", ... ({len(names)} entries)" if len(names) > 8 else "")
        raise SystemExit(f"{flag} {self.path}: the folder holds files that are not a run of this package ({shown}); "
                         "train.py would overwrite them. Give an empty or new folder")

    def has_checkpoint(self) -> bool:
        return any((self.path / f).is_file() for f in CHECKPOINTS)

    def no_checkpoint_advice(self) -> str:
        """What to do with a run folder that has no checkpoint: its training stopped before the
        first one was written, so --resume has nothing to continue from; starting it again in the
        same folder does work (train.py refuses only folders that hold a checkpoint)."""
        try:
            again = f"start it again with `{train_command(read_json(self.path / CONFIG, keys=('args',))['args'])}`"
        except RunFileError:
            again = f"start it again with `python train.py --run-dir {shlex.quote(str(self.path))}` and its other arguments"
        return (f"its training stopped before the first checkpoint was written, so there is nothing to resume or "
                f"evaluate; {again}, or remove the folder")

    # ------------------------------------------------------------------ config and split
    def write_config(self, config: dict[str, Any]) -> None:
        """config.json: "args" (train.py's), the env kind's config sections ("env", and for the
        batch sampler "final" and "probe"), "data", and "ae_probe" (how the AE in "env" was chosen,
        runner.ae_probe) when it was."""
        write_json_atomic(self.path / CONFIG, config)

    def read_config(self, flag: str) -> dict[str, Any]:
        """config.json ("args", "env", "data"), or SystemExit naming the flag and the file."""
        try:
            return read_json(self.path / CONFIG, keys=("args", "env", "data"))
        except RunFileError as e:
            raise SystemExit(f"{flag} {self.path}: {e.strerror}") from None

    def write_split(self, split: Split) -> None:
        write_json_atomic(self.path / SPLIT, {**split.describe(), "fingerprint": split.fingerprint()})

    def verify_data(self, split: Split, data_root: str | None, flag: str) -> None:
        """Stop unless `split` is the data the run was trained on: the same images in D_l, D_u,
        the unscored D_u images and train/good, with the same file contents and masks (split.json's
        fingerprint). Resuming or scoring a run on changed data would mix two datasets in one result."""
        try:
            recorded = read_json(self.path / SPLIT, keys=("labeled", "unlabeled"))
        except RunFileError as e:
            raise SystemExit(f"{flag} {self.path}: {e.strerror}") from None
        problem = recorded_split_problem(recorded)
        if problem:
            raise SystemExit(f"{flag} {self.path}: {self.path / SPLIT} is not what train.py writes ({problem}): it was "
                             "edited by hand; the data of the run cannot be checked")
        changes = split_changes(recorded, split)
        if changes:
            raise SystemExit(f"{flag} {self.path}: the data under {data_root or 'the built-in dataset'} is not what "
                             f"this run was trained on: {describe_changes(changes)}. Restore the data, or train a "
                             "new run on it")
        if "fingerprint" not in recorded:
            print(f"note: {self.path / SPLIT} predates file fingerprints: only the D_l and D_u image names were checked")

    # ------------------------------------------------------------------ checkpoints
    def save_checkpoint(self, obj: Any) -> None:
        """checkpoint.pt, atomically, keeping the one before as checkpoint.prev.pt: if the latest
        is ever unreadable, a resume costs one checkpoint interval, not the run."""
        latest, tmp = self.path / CHECKPOINTS[0], self.path / ".checkpoint.next.pt"
        try:
            save_weights_atomic(obj, tmp)  # a full disk fails here: both checkpoints are untouched
            if latest.exists():
                os.replace(latest, self.path / CHECKPOINTS[1])
            os.replace(tmp, latest)
        except OSError as e:  # RunFileError included
            tmp.unlink(missing_ok=True)
            kept = [n for n in CHECKPOINTS if (self.path / n).is_file()]
            why = (e.strerror or str(e)).removeprefix(f"could not write {tmp}: ")
            raise RunFileError(e.errno or errno.EIO, f"could not write {latest}: {why}; the checkpoint"
                                                     f"{'s' if len(kept) > 1 else ''} already there "
                                                     f"({', '.join(kept) or 'none'}) kept") from None

    def load_checkpoint(self, device: torch.device, flag: str = "--resume") -> dict[str, Any]:
        """The latest readable checkpoint: checkpoint.pt, or checkpoint.prev.pt (with a warning)
        when the latest is corrupt or missing. Never executes code from the files (weights-only)."""
        try:
            return checked_checkpoint(self.path / CHECKPOINTS[0], device)
        except (UnsafeFileError, FileNotFoundError) as e:  # missing: a crash between the two renames
            prev = self.path / CHECKPOINTS[1]
            if "refusing" in str(e) or not prev.is_file():
                raise SystemExit(f"{flag} {self.path}: {e}") from None
            print(f"warning: {e}; using the checkpoint before it, {prev}")
            self.checkpoint_path = prev
            try:
                return checked_checkpoint(prev, device)
            except UnsafeFileError as e2:
                raise SystemExit(f"{flag} {self.path}: {e}; and {e2}") from None

    def restore_checkpoint(self, ckpt: dict[str, Any], env: Any, agent: Any, flag: str) -> None:
        """Load a checkpoint's env and agent states; one that does not fit this run's env or agent
        (another run's, an older format, edited) stops with a message naming the file."""
        for part, target in (("env", env), ("agent", agent)):
            try:
                target.load_state_dict(ckpt[part])
            except ValueError as e:  # the env's and agents' own explanations (e.g. an older format)
                raise SystemExit(f"{flag} {self.path}: {e}") from None
            except (KeyError, TypeError, IndexError, AttributeError, RuntimeError) as e:
                why = f"no {e}" if isinstance(e, KeyError) else " ".join(str(e).split())[:300]
                raise SystemExit(f"{flag} {self.path}: the {part} state in {self.checkpoint_path} does not fit "
                                 f"this run ({why}): it is another run's, of an older version, or was edited") from None

    # ------------------------------------------------------------------ the training log
    def truncate_log(self, episodes: int) -> None:
        """Drop log rows written after the checkpoint being resumed: those episodes are redone."""
        path = self.path / LOG
        if not path.exists():
            return
        with open(path, newline="") as f:
            rows = [r for r in csv.DictReader(f) if int(r["episode"]) <= episodes]
        with open(path, "w", newline="") as f:
            writer = csv.DictWriter(f, LOG_COLUMNS, extrasaction="ignore")
            writer.writeheader()
            writer.writerows(rows)

    def read_log(self) -> dict[str, np.ndarray]:
        """log.csv as float columns (blank cells -> nan); {} when there is none or it is empty."""
        path = self.path / LOG
        if not path.is_file():
            return {}
        with open(path, newline="") as f:
            rows = list(csv.DictReader(f))
        if not rows:
            return {}
        return {k: np.array([float(r[k]) if r[k] not in ("", None) else math.nan for r in rows])
                for k in rows[0]}

    # ------------------------------------------------------------------ results of training
    def write_best_profiles(self, profiles: dict[str, np.ndarray], split: Split, best_update: int,
                            best_l_pred: float, error: str | None = None) -> None:
        """best_profiles.npz: the raw profiles (float16 of loss / mean D_l loss, which keeps the
        precision), the image names, the best moment, the held-out D_l maps if any, and the
        loss-map error of the profiles when it is not the run's own (a final predictor chose it)."""
        extra = {k: profiles[k] for k in HELDOUT_KEYS if k in profiles}
        scale = float(np.mean(profiles["labeled"])) or 1.0
        arrays = dict(scale=np.float32(scale),
                      **{k: (profiles[k] / scale).astype(np.float16) for k in ("labeled", "unlabeled", "extra")},
                      labeled_names=np.array([s.name for s in split.labeled]),
                      unlabeled_names=np.array([s.name for s in split.unlabeled]),
                      extra_names=np.array([s.name for s in split.extra_unlabeled]),
                      best_update=np.int64(best_update), best_l_pred=np.float32(best_l_pred), **extra,
                      **({"error": np.array(error)} if error else {}))

        def write(tmp: Path) -> None:
            with open(tmp, "wb") as f:  # a file object: np.savez would append .npz to the temporary name
                np.savez(f, **arrays)

        write_atomic(self.path / PROFILES, write)

    def read_best_profiles(self) -> dict[str, Any]:
        """best_profiles.npz as float32 raw loss profiles plus the image names and best moment."""
        path = self.path / PROFILES
        if not path.is_file():
            raise SystemExit(f"{path} not found: {self.missing_profiles_advice()}")
        try:
            with np.load(path, allow_pickle=False) as npz:
                z = {k: npz[k] for k in npz.files}
        except (ValueError, OSError, EOFError, zipfile.BadZipFile) as e:
            raise SystemExit(f"cannot read {path}: it is truncated, holds pickled objects or is not a file "
                             f"train.py wrote ({str(e).splitlines()[0] if str(e) else type(e).__name__})") from None
        problem = profiles_problem(z)
        if problem:
            raise SystemExit(f"{path} is not a best_profiles.npz train.py wrote: {problem}")
        scale = float(z["scale"])
        return {"labeled": z["labeled"].astype(np.float32) * scale,
                "unlabeled": z["unlabeled"].astype(np.float32) * scale,
                "labeled_names": [str(n) for n in z["labeled_names"]],
                "unlabeled_names": [str(n) for n in z["unlabeled_names"]],
                "best_update": int(z["best_update"]), "best_l_pred": float(z["best_l_pred"]),
                "error": str(z["error"]) if "error" in z else None,
                **{k: z.get(k) for k in HELDOUT_KEYS}}

    def missing_profiles_advice(self) -> str:
        """How to get best_profiles.npz (written when training ends): --resume needs a checkpoint,
        so a run killed before its first one must be started again instead; a finished run that
        never had a best moment (fewer updates than profile_length) needs more updates."""
        if not self.has_checkpoint():
            return self.no_checkpoint_advice()
        run = shlex.quote(str(self.path))
        if self.read_summary().get("finished"):
            return (f"the run ended before its predictor had a best moment (fewer updates than profile_length?); "
                    f"train it longer: python train.py --resume {run} --updates <more>")
        return f"its training did not finish; continue it with: python train.py --resume {run}"

    def write_predictor(self, saved: dict[str, Any]) -> None:
        save_weights_atomic(saved, self.path / PREDICTOR)

    def load_file(self, name: str, device: torch.device) -> Any:
        """A weights-only file of the run (predictor.pt, checkpoint.pt): one that would execute
        code, a corrupt or a missing one ends the program with a message naming it."""
        try:
            return load_weights(self.path / name, map_location=device)
        except (UnsafeFileError, FileNotFoundError) as e:
            raise SystemExit(str(e)) from None

    # ------------------------------------------------------------------ summary and metrics
    def write_summary(self, summary: dict[str, Any]) -> None:
        write_json_atomic(self.path / SUMMARY, summary)

    def read_summary(self) -> dict[str, Any]:
        """summary.json, or {} when it is missing or unreadable (a run still training)."""
        try:
            return read_json(self.path / SUMMARY)
        except RunFileError:
            return {}

    def write_metrics(self, metrics: dict[str, Any]) -> None:
        write_json_atomic(self.path / METRICS, metrics)

    def read_metrics(self) -> dict[str, Any]:
        """metrics.json, checked to hold a list of rows (RunFileError naming it otherwise)."""
        path = self.path / METRICS
        metrics = read_json(path, keys=("rows",))
        if not isinstance(metrics["rows"], list) or not all(isinstance(r, dict) for r in metrics["rows"]):
            raise RunFileError(errno.EINVAL, f"{path}: \"rows\" is not a list of table rows: it was edited by hand")
        return metrics
