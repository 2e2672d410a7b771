"""The sampler's action set, shared by the env and the agents that need to name an action
(the uniform and heuristic samplers jump; the logs count jumps)."""
from __future__ import annotations

import numpy as np

#: (dy, dx) of actions 0-7: N, NE, E, SE, S, SW, W, NW, each a shift of the patch centre by `stride`.
MOVES: tuple[tuple[int, int], ...] = ((-1, 0), (-1, 1), (0, 1), (1, 1), (1, 0), (1, -1), (0, -1), (-1, -1))
#: Action 8: jump to a random image at a random centre.
JUMP = 8
N_ACTIONS = 9


def checked_action(action: object, n: int) -> int:
    """`action` as a Python int if it is one of the n actions of a `Discrete(n)` space, else a
    ValueError naming it and the range.

    Accepts what `Discrete.contains` accepts, less bools: Python and numpy integers and 0-d integer
    arrays (what SB3 and gymnasium's vector envs pass). Refused: floats (2.7 was silently 2),
    strings ('3' was 3), bools and arrays of another shape; a truncated action would train the
    policy on an action it did not take."""
    integral = isinstance(action, (int, np.integer)) and not isinstance(action, (bool, np.bool_))
    if isinstance(action, np.ndarray) and action.shape == () and np.issubdtype(action.dtype, np.integer):
        action, integral = action.item(), True
    if not integral or not 0 <= int(action) < n:
        raise ValueError(f"action {action!r} ({type(action).__name__}): expected an integer in 0..{n - 1} "
                         f"(the Discrete({n}) action space)")
    return int(action)
