"""Loading the package's weight and checkpoint files without executing code from them.

A run folder is something users hand to each other. `torch.load(..., weights_only=False)` unpickles
arbitrary objects, so a crafted `predictor.pt` or `checkpoint.pt` could run any command on
`python evaluate.py <run>`. Every file the package writes holds only tensors and plain containers
(dicts, lists, numbers, strings, None), so every load here is weights-only and refuses anything else.
"""
from __future__ import annotations

import pickle
import re
from pathlib import Path
from typing import Any

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
