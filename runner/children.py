"""Child processes that never outlive their parent: ablate.py's train.py / evaluate.py cells.

On Linux the kernel stops a child when the thread that started it ends (PR_SET_PDEATHSIG), so a
killed sweep (even by SIGKILL) leaves no train.py running on in its folder; on exit or SIGTERM the
children are terminated (atexit, stop_children)."""
from __future__ import annotations

import atexit
import ctypes
import signal
import subprocess
import sys
import threading
from typing import IO

_children: set[subprocess.Popen] = set()
_children_lock = threading.Lock()
_stopping = threading.Event()
PR_SET_PDEATHSIG = 1
# Looked up here, not in the child: between fork and exec a child of a threaded process must not
# load libraries (another thread may have held the loader's lock at the fork).
_prctl = ctypes.CDLL(None, use_errno=True).prctl if sys.platform.startswith("linux") else None


def _die_with_parent() -> None:  # pragma: no cover - runs in the child, between fork and exec
    """Linux: have the kernel send SIGTERM to this child when the thread that started it ends
    (its process dies, even by SIGKILL), so that a killed sweep leaves no train.py running on in
    its folder."""
    _prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def stop_children() -> None:
    """Terminate the train.py / evaluate.py processes this sweep started, and start no more
    (atexit, SIGTERM)."""
    _stopping.set()
    with _children_lock:
        running = [p for p in _children if p.poll() is None]
    for proc in running:
        proc.terminate()
    for proc in running:
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()


def run_child(cmd: list[str], log: IO[str], env: dict[str, str]) -> int:
    """subprocess.call(cmd) whose child never outlives this process: on Linux the kernel stops it
    when we die (PR_SET_PDEATHSIG), and it is terminated when we exit or get SIGTERM."""
    with _children_lock:
        if _stopping.is_set():
            return -signal.SIGTERM
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env,
                                preexec_fn=_die_with_parent if _prctl is not None else None)
        _children.add(proc)
    try:
        return proc.wait()
    finally:
        with _children_lock:
            _children.discard(proc)
        if proc.poll() is None:  # we are leaving early (an exception): take the child along
            proc.terminate()
            proc.wait()


atexit.register(stop_children)
