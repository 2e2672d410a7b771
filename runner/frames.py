"""What the sampler did, in pictures: a strip of frames of one episode per phase of training.

train.py hands its agent the env wrapped in `EpisodeFrames`, which keeps env.render() after each
step of the first, the middle and the last episode of the run (early, middle, late) and writes
`<run>/frames_<phase>.png` when that episode ends: a few of its frames (image with the patch, AE
loss map, visit history; envs/rendering.py) tiled with their step numbers. evaluate.py's report
shows them. Only those three episodes are rendered, so training pays a few milliseconds in all.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import cv2
import gymnasium as gym
import numpy as np

from common.files import write_atomic
from envs.rendering import frame_strip

PHASES = ("early", "middle", "late")
#: Frames per strip, evenly spaced over the episode's steps (the last step always among them).
FRAMES_PER_STRIP = 8


def frames_file(phase: str) -> str:
    return f"frames_{phase}.png"


def phase_episodes(updates: int) -> dict[int, str]:
    """{episode number (1-based): phase} of a run of `updates` episodes: the first, the middle and
    the last (fewer when they coincide; the later phase names a shared episode)."""
    return {episode: phase for episode, phase in zip((1, max(1, (updates + 1) // 2), updates), PHASES)
            if episode >= 1}


class EpisodeFrames(gym.Wrapper):
    """Records the frames of the episodes `attach` names and writes their strips; inert until then
    (and for envs without render_mode 'rgb_array')."""

    def __init__(self, env: gym.Env) -> None:
        super().__init__(env)
        self.folder: Path | None = None
        self.phases: dict[int, str] = {}
        self.episodes = 0
        self.frames: list[np.ndarray] = []

    def attach(self, folder: str | Path, updates: int, episodes_done: int) -> None:
        """Write strips into `folder` for the phase episodes of a run of `updates` episodes, of
        which `episodes_done` have run (a resumed run records only the phases still ahead)."""
        self.folder, self.episodes = Path(folder), episodes_done
        self.phases = phase_episodes(updates) if self.env.render_mode == "rgb_array" else {}

    def step(self, action: Any) -> tuple[Any, ...]:
        out = self.env.step(action)
        if self.episodes + 1 in self.phases:
            self.frames.append(self.env.render())
        if out[2] or out[3]:
            self.episodes += 1
            if self.episodes in self.phases and self.frames:
                self._write(self.phases[self.episodes])
            self.frames = []
        return out

    def _write(self, phase: str) -> None:
        n = len(self.frames)
        picks = sorted(set(np.linspace(0, n - 1, min(FRAMES_PER_STRIP, n)).round().astype(int).tolist()))
        strip = frame_strip([self.frames[i] for i in picks],
                            [f"{phase}: episode {self.episodes}, step {i + 1}/{n}" for i in picks])
        ok, png = cv2.imencode(".png", cv2.cvtColor(strip, cv2.COLOR_RGB2BGR))
        if ok:
            write_atomic(self.folder / frames_file(phase), lambda tmp: tmp.write_bytes(png.tobytes()))
