"""Progress bars for the long phases of a run (training, the final fits, baselines): tqdm on
stderr, redrawn at most once a second on a terminal and every 30 s in a log file."""
from __future__ import annotations

import sys
from typing import Any

from tqdm import tqdm


def progress(total: int, desc: str, **kwargs: Any) -> tqdm:
    """A tqdm bar of `total` steps labelled `desc` (what the phase is doing)."""
    return tqdm(total=total, desc=desc, dynamic_ncols=True, mininterval=1.0 if sys.stderr.isatty() else 30.0,
                **kwargs)
