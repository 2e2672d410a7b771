"""The error boundary of the entry points: what a user's input or machine can make go wrong ends in
one line naming the file or argument, never in a traceback.

    if __name__ == "__main__":
        run_main(main)

Inside, the package raises its own errors with clear messages (SystemExit for command-line
refusals, ConfigError for a setting out of range, RunFileError for a run file that cannot be read
or written, UnsafeFileError for a file that is not what it claims); `run_main` turns the ones that
reach the top, and the OS's (a full disk, a read-only folder, no permission), into `error: ...`
and a non-zero exit code. Ctrl-C exits with 130 (train.py has already checkpointed by then).
Anything else is a bug in the package and keeps its traceback.
"""
from __future__ import annotations

import errno
import os
import sys
import zipfile
from typing import Any, Callable

from common.device import DeviceError
from common.files import RunFileError, UnsafeFileError
from common.settings import ConfigError

#: What an errno means to a user, for the OS errors a run can meet on their disk.
REASONS = {errno.ENOSPC: "no space left on the device", errno.EROFS: "the file system is read-only",
           errno.EACCES: "permission denied", errno.EPERM: "operation not permitted",
           errno.EDQUOT: "disk quota exceeded", errno.ENOENT: "no such file or folder",
           errno.ENOTDIR: "a part of the path is a file, not a folder", errno.EISDIR: "it is a folder",
           errno.ELOOP: "too many levels of symbolic links", errno.EIO: "input/output error"}


def describe_error(e: BaseException) -> str | None:
    """The one-line message of an error a user can cause (None for one that is a bug)."""
    if isinstance(e, RunFileError):
        return e.strerror or str(e)
    if isinstance(e, (ConfigError, UnsafeFileError, DeviceError)):
        return str(e)
    if isinstance(e, OSError):
        reason = REASONS.get(e.errno or -1) or e.strerror or str(e)
        paths = [p for p in (e.filename, e.filename2) if p is not None]
        return f"{' -> '.join(map(os.fsdecode, paths)) + ': ' if paths else ''}{reason}"
    if isinstance(e, zipfile.BadZipFile):
        return f"a file is not a valid .npz / zip archive ({e})"
    if isinstance(e, MemoryError):
        return "out of memory: use a smaller --image-size, --batch or fewer images"
    try:
        import torch

        if isinstance(e, torch.cuda.OutOfMemoryError):
            return f"out of GPU memory ({str(e).splitlines()[0]}): use a smaller --image-size or --batch, or --device cpu"
    except ImportError:  # pragma: no cover - torch is a dependency
        pass
    return None


def run_main(main: Callable[[], Any]) -> None:
    """Call an entry point's `main()`; known errors end the program with `error: <message>` on
    stderr (exit code 1), Ctrl-C with exit code 130."""
    try:
        main()
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        raise SystemExit(130) from None
    except Exception as e:  # noqa: BLE001 - sorted into the user's errors and bugs below
        message = describe_error(e)
        if message is None:
            raise
        raise SystemExit(f"error: {message}") from None
