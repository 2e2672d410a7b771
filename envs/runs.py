"""RunSeeds: which reset() of BatchSamplingEnv restarts its training process, and the warnings
about resets that lose work (see BatchSamplingEnv's docstring, "Seeding")."""
from __future__ import annotations

import copy
import warnings
from typing import Any

import numpy as np

from envs.training_process import TrainingProcess


class RunSeeds:
    """The seed of the running training process, whether it is under way (an episode has trained
    the AE), and the cached start of a seed (nothing has trained since it)."""

    def __init__(self, process: TrainingProcess, patches_per_update: int) -> None:
        self.process, self.patches_per_update = process, patches_per_update
        self.run_seed: int | None = None  # the seed the running process started from
        self.under_way = False
        self._start_cache: tuple[int, dict[str, Any]] | None = None  # (seed, process state right after its start)
        self._warned: set[str] = set()
        self._cut_in_a_row = 0  # episodes ended by reset() before their AE update, in a row

    def restart_wanted(self, seed: int | None, options: dict[str, Any] | None) -> bool:
        """Whether a reset(seed=seed, options=options) starts the training process afresh."""
        choice = (options or {}).get("restart")
        if choice is not None and not isinstance(choice, bool):
            raise ValueError(f"options['restart']={choice!r}: expected True or False")
        if not self.process.started:
            return True
        if choice is not None:
            return choice
        if seed is None or not self.under_way:
            return seed is not None
        updates = self.process.updates
        if seed == self.run_seed:
            self._warn_once("continue", f"reset(seed={seed}): the run of seed {seed} is under way ({updates} AE "
                            "updates); it continues (SB3's load(path, env=env) re-seeds its env). Pass "
                            "options={'restart': True} to start it afresh")
            return False
        self._warn_once("restart", f"reset(seed={seed}) restarts the training process: the AE, predictor and "
                        f"profiles of the running one ({updates} AE updates) are discarded. Pass "
                        "options={'restart': False} to keep them")
        return True

    def start(self, seed: int | None, rng: np.random.Generator) -> None:
        """Start the training process from `rng`, or, when the same seed's start is cached, restore
        it: a seeded restart then costs no AE warm-up (the env checkers reset with the same seed
        again and again)."""
        if seed is not None and self._start_cache is not None and self._start_cache[0] == seed:
            self.process.start(rng, warmup=False)
            self.process.load_state_dict(copy.deepcopy(self._start_cache[1]))
        else:
            self.process.start(rng)
            self._start_cache = None if seed is None else (seed, copy.deepcopy(self.process.state_dict()))
        self.run_seed, self.under_way = seed, False

    def trained(self) -> None:
        """An episode has trained the AE: the run is under way, its start no longer cached."""
        self.under_way, self._start_cache = True, None

    def loaded(self, run_seed: int | None) -> None:
        """A checkpoint of the run of `run_seed` was restored."""
        self.run_seed, self.under_way, self._start_cache = run_seed, True, None

    def check_cut_episode(self, restart: bool, t: int) -> None:
        """Warn (once) when reset() without a restart ends two episodes in a row before their AE
        update (after `t` steps): their patches are lost, and a TimeLimit shorter than an episode
        loses every one. (One cut episode can be a user's own reset; the env checkers make such
        single cuts.)"""
        n = self.patches_per_update
        cut = not restart and 0 < t < n
        self._cut_in_a_row = self._cut_in_a_row + 1 if cut else 0
        if self._cut_in_a_row >= 2:
            self._warn_once("cut", f"reset() after {t} of the episode's {n} steps, twice in a row: those "
                            "patches were dropped without an AE update. A TimeLimit (max_episode_steps) below "
                            "sampler.patches_per_update cuts every episode so and the AE never trains: make the "
                            f"env with max_episode_steps={n}")

    def _warn_once(self, key: str, message: str) -> None:
        if key not in self._warned:
            self._warned.add(key)
            warnings.warn(message, UserWarning, stacklevel=4)
