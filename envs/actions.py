"""The sampler's action set, shared by the env and the agents that need to name an action
(the uniform and heuristic samplers jump; the logs count jumps)."""
from __future__ import annotations

#: (dy, dx) of actions 0-7: N, NE, E, SE, S, SW, W, NW, each a shift of the patch centre by `stride`.
MOVES: tuple[tuple[int, int], ...] = ((-1, 0), (-1, 1), (0, 1), (1, 1), (1, 0), (1, -1), (0, -1), (-1, -1))
#: Action 8: jump to a random image at a random centre.
JUMP = 8
N_ACTIONS = 9
