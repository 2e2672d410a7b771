"""Reading and writing run files safely: loads never execute code, writes are atomic.

A run folder is something users hand to each other. A plain `torch.load` (pickle) unpickles
arbitrary objects, so a crafted `predictor.pt` or `checkpoint.pt` could run any command on
`python evaluate.py <run>`. Every file the package writes holds only tensors and plain containers
(dicts, lists, numbers, strings, None), so every load here is weights-only and refuses anything else.
"""
from __future__ import annotations

import errno
import json
import os
import pickle
import re
import shutil
import tempfile
from pathlib import Path
from typing import Any, Callable

import torch


class UnsafeFileError(ValueError):
    """A file holds objects other than tensors and plain containers, or is not a torch file."""


def load_weights(path: str | Path, map_location: str | torch.device | None = None) -> Any:
    """torch.load of `path` restricted to tensors and plain containers (weights_only=True).

    Raises FileNotFoundError for a missing file and UnsafeFileError, naming the file, for one that
    holds anything else (e.g. a pickled object whose __reduce__ would run a command) or that is
    corrupt or truncated."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, OSError) as e:
        # torch reports both cases as an UnpicklingError; only a forbidden object names a global.
        found = re.search(r"(?:[Uu]nsupported global:? GLOBAL|unsupported GLOBAL) (\S+)", str(e))
        if found:
            raise UnsafeFileError(f"refusing to load {path}: it holds a {found.group(1)} object, not only tensors "
                                  "and plain containers, and loading it could execute code") from None
        raise UnsafeFileError(f"cannot read {path}: it is corrupt, truncated or not a file this package "
                              "wrote") from None


class RunFileError(OSError):
    """A run file could not be written (full disk, no permission) or read (missing, malformed);
    the message (`strerror`) names it."""


def write_atomic(path: str | Path, write: Callable[[Path], None]) -> None:
    """Write `path` through `write(tmp)` into a temporary file beside it, then rename it over
    `path`: a crash, Ctrl-C or full disk never leaves a half-written file that a later step (a
    resume, an evaluation, a sweep's table) would read, and the temporary file is removed on
    failure so that it does not fill the disk."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        write(tmp)
        os.replace(tmp, path)
    except OSError as e:
        tmp.unlink(missing_ok=True)
        reason = "no space left on the device" if e.errno == errno.ENOSPC else (e.strerror or str(e))
        raise RunFileError(e.errno or errno.EIO, f"could not write {path}: {reason}") from None
    except RuntimeError as e:  # torch.save reports a full disk or a failed write as a RuntimeError
        tmp.unlink(missing_ok=True)
        raise RunFileError(errno.EIO, f"could not write {path}: {_write_failure(path, e)}") from None
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _write_failure(path: Path, e: RuntimeError) -> str:
    """Why a serialiser's write failed, in a user's words: torch says 'file write failed' whatever
    the cause, so a full disk is recognised by the free space left."""
    try:
        if shutil.disk_usage(path.parent).free < 1 << 20:
            return "no space left on the device"
    except OSError:
        pass
    return str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__


def write_text_atomic(path: str | Path, text: str) -> None:
    """`path.write_text(text)`, atomically (see write_atomic)."""
    write_atomic(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def write_json_atomic(path: str | Path, obj: Any) -> None:
    """JSON of `obj` (floats for numpy scalars), atomically."""
    write_text_atomic(path, json.dumps(obj, indent=2, default=float))


def save_weights_atomic(obj: Any, path: str | Path) -> None:
    """torch.save, atomically. `obj` must hold only tensors and plain containers (load_weights)."""
    write_atomic(path, lambda tmp: torch.save(obj, tmp))


def read_json(path: str | Path, keys: tuple[str, ...] = ()) -> dict[str, Any]:
    """A run's JSON file (config.json, split.json, summary.json, metrics.json) as a dict that holds `keys`.

    A missing, truncated or hand-edited file raises RunFileError naming it, so that a command stops
    with one line saying which file is wrong rather than a KeyError or JSONDecodeError traceback."""
    path = Path(path)
    try:
        obj = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise RunFileError(errno.ENOENT, f"{path} not found") from None
    except json.JSONDecodeError as e:
        raise RunFileError(errno.EINVAL, f"{path} is not valid JSON ({e.msg}, line {e.lineno}): it was "
                                         "cut short or edited by hand") from None
    except (OSError, UnicodeDecodeError) as e:
        raise RunFileError(getattr(e, "errno", None) or errno.EIO, f"cannot read {path}: {e}") from None
    if not isinstance(obj, dict):
        raise RunFileError(errno.EINVAL, f"{path} holds a JSON {type(obj).__name__}, not an object of settings: it is "
                                         "not a file this package wrote, or was edited by hand")
    missing = [k for k in keys if k not in obj]
    if missing:
        raise RunFileError(errno.EINVAL, f"{path} has no {', '.join(map(repr, missing))}: it is not a file "
                                         "train.py wrote, or was edited by hand")
    return obj


def make_writable_folder(path: str | Path, flag: str) -> Path:
    """Create the output folder `path` (with its parents) and check that a file can be created in
    it, so that a read-only or mistyped folder stops the command at once, before any work, with a
    message naming `flag` and the path. Raises RunFileError."""
    path = Path(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=path):
            pass
    except OSError as e:
        raise RunFileError(e.errno, f"{flag} {path}: cannot write there ({e.strerror or e})") from None
    return path
