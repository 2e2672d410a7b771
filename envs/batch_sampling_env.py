"""BatchSamplingEnv: the neural batch sampler's world, as a Gymnasium environment.

The env owns the whole training process the sampler serves (envs/training_process.py: the
autoencoder (AE), the loss profiles, the replay buffer and the predictor) and is its Gymnasium
shell: spaces, patch positions, rewards and observations. An agent only picks patches. That is
what lets any RL algorithm (our REINFORCE, any SB3 algorithm with Discrete actions) train against
it unchanged.
"""
from __future__ import annotations

import math
import warnings
from collections.abc import Mapping
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from common.device import resolve_device
from data.config import DataConfig, data_config_from_kwargs
from data.loading import load_split
from data.split import Split
from envs.actions import JUMP, MOVES, N_ACTIONS, checked_action
from envs.config import EnvConfig
from envs.env_kwargs import env_config_from_kwargs, preset_of
from common.profiling import section
from envs.rendering import render_frame
from envs.rewards import balance_cover_reward, beta_schedule, clone_reward, cover_reward, frequency_cover_reward
from envs.runs import RunSeeds
from envs.state_maps import fuse_maps, local_variance, minmax, sobel_magnitude
from envs.training_process import TrainingProcess


class BatchSamplingEnv(gym.Env):
    """Pick the N patches of each AE update; get rewarded for patches that make anomalies findable.

    Observation (`spaces.Dict`, float32, channel-first, side V = image_size, or crop_size when
    config.sampler.observation == 'crop', the crop centred on the patch and zero-padded). config.sampler.state
    'chu2020':
      - "rgb"     (3, V, V) in [0, 1]: the current image
      - "loss"    (1, V, V) in [0, loss_obs_clip]: the AE's current per-pixel reconstruction loss
                  of that image divided by its mean
      - "history" (1, V, V) in {0, 1}: pixels of that image covered by patches this episode (with
                  cover_reward 'balance', in both states: each pixel's visit count since the AE's
                  last re-init / (2 x the dataset's mean count), clipped to [0, 1])
      - "patch"   (1, V, V) in {0, 1}: where the current patch is
    config.sampler.state 'noghredeh2025' (6 channels):
      - "rgb"     as above
      - "fused"   (1, V, V) in [0, 1]: min-max normalised w . (ARE, local variance, Sobel magnitude),
                  each term min-max normalised per image
      - "history" (1, V, V) in [0, 1]: visits of each pixel this episode / patches_per_update
      - "previous_loss" (1, V, V) in [0, loss_obs_clip]: the "loss" map of the AE before its last update
    Actions (`Discrete(9)`): 0-7 move the patch centre by `stride` to N, NE, E, SE, S, SW, W, NW
    (clipped to the image); 8 jumps to a random image at a random centre. `action_masks()` tells
    which actions lead to a patch free of labeled anomalies (for heuristic samplers, MaskablePPO).
    Episode: `patches_per_update` steps, each sampling the patch at the new position. The last step
    trains the AE one step on those patches, appends every labeled image's loss map to its profile,
    pushes augmented (profile, mask) pairs to the replay buffer, trains the predictor one step and
    re-initialises the AE every `reinit_every` updates (followed by `warmup_updates` updates on
    random patches done here, unseen by the agent).
    Reward: beta * (R_clone + R_cover) per step, plus (1 - beta) * R_pred on the last step, R_pred
    = -l_pred of the predictor on the current labeled profiles (0 before rl_feedback_after
    updates). R_clone: +-1 for a patch free of / touching labeled anomalies (D_l only; 'mask') or
    its mean Sobel magnitude ('sobel'); R_cover: a bonus for new pixels ('bonus'), -mean visit
    count under the patch ('frequency') or a bonus for pixels the AE has trained on less than
    average since its last re-init ('balance'). `info` carries the terms and the training figures.
    `info` values that do not exist yet (l_pred before the profiles are full, diagnostics D_l
    cannot give) are None, never NaN: infos of identically seeded envs compare equal.
    Seeding: `reset(seed=s)` starts the training process afresh from s (AE, predictor, buffer,
    profiles); `reset()` without a seed starts the next episode of the running process. Once the
    run of seed s is under way (an episode has trained the AE), `reset(seed=s)` again continues it,
    with a warning: that is what SB3's `load(path, env=env)` does to the env it is given, and it
    must not wipe the world the model was trained in. `options={"restart": True}` restarts anyway,
    `{"restart": False}` never does; a seed other than the run's restarts (with a warning); envs/runs.py.
    Rendering: `render_mode="rgb_array"`: render() gives image | loss map | visit history with the
    current patch outlined (envs/rendering.py).
    """

    metadata = {"render_modes": ["rgb_array"], "render_fps": 4}

    def __init__(self, split: Split | None = None, data: DataConfig | Mapping[str, Any] | None = None,
                 config: EnvConfig | Mapping[str, Any] | None = None, preset: str | None = None,
                 render_mode: str | None = None, **data_fields: Any) -> None:
        """`data`: a DataConfig or a dict of its fields, with DataConfig fields also accepted as plain
        keywords (image_size=64); `preset`: a name of envs.config.ENV_PRESETS; `config`: an
        EnvConfig, or a dict of settings applied on top of the preset (envs.env_kwargs).
        Plain values all, so that `gymnasium.make(spec)` of a spec read back from JSON builds the
        same env. Bad values raise ConfigError (a ValueError) naming the argument."""
        super().__init__()
        self.data_config = data_config_from_kwargs(data, data_fields, "BatchSamplingEnv")
        config = env_config_from_kwargs(preset, config)
        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            raise ValueError(f"render_mode={render_mode!r}: expected None or 'rgb_array'")
        self.render_mode = render_mode
        self.preset = preset or preset_of(config)
        """the ENV_PRESETS name the config is (None: none of them), for tools that need the rest of
        the preset (runner.scoring: its final predictor)"""
        self.split = split if split is not None else load_split(self.data_config)
        images = self.split.labeled + self.split.unlabeled + self.split.extra_unlabeled
        if not self.split.labeled:
            raise ValueError("the split has no labeled image: BatchSamplingEnv needs D_l")
        size = images[0].image.shape[0]
        for s in images:
            if s.image.shape != (size, size, 3):
                raise ValueError(f"image {s.name} has shape {s.image.shape}; expected ({size}, {size}, 3)")
        self.image_size = size
        self.config = config.resolved(size)
        c = self.config
        if c.sampler.observation == "crop" and c.sampler.crop_size > size:
            warnings.warn(f"sampler.crop_size={c.sampler.crop_size} is larger than the images ({size} px): the "
                          f"observations are {c.sampler.crop_size} px, mostly zero padding; set sampler.crop_size "
                          f"<= {size} (noghredeh2025's 128 px crop is meant for 256 px images)", UserWarning, stacklevel=2)
        self.device = resolve_device(c.device)
        self.process = TrainingProcess(self.split, c, self.device)
        self.n_labeled, self.n_images = self.process.n_labeled, self.process.n_images
        self._rgb, self._masks = self.process.rgb, self.process.masks  # host copies, read every step
        # Per-image maps that do not change with the AE (noghredeh2025's state and clone reward).
        needs_static = c.sampler.state == "noghredeh2025" or c.rewards.clone == "sobel"
        self._sobel = np.stack([sobel_magnitude(x) for x in self._rgb]) if needs_static else None
        self._variance = (np.stack([minmax(local_variance(x, c.sampler.variance_sigma)) for x in self._rgb])
                          if c.sampler.state == "noghredeh2025" else None)

        v = c.sampler.crop_size if c.sampler.observation == "crop" else size
        unit = spaces.Box(0.0, 1.0, (1, v, v), np.float32)
        loss_box = spaces.Box(0.0, c.sampler.loss_obs_clip, (1, v, v), np.float32)
        rgb_box = spaces.Box(0.0, 1.0, (3, v, v), np.float32)
        if c.sampler.state == "chu2020":
            maps = {"rgb": rgb_box, "loss": loss_box, "history": unit, "patch": unit}
        else:
            maps = {"rgb": rgb_box, "fused": unit, "history": unit, "previous_loss": loss_box}
        self.observation_space = spaces.Dict(maps)
        self.action_space = spaces.Discrete(N_ACTIONS)
        self._half = c.sampler.patch_size // 2
        self._t = 0
        self.runs = RunSeeds(self.process, c.sampler.patches_per_update)  # which reset() restarts (envs/runs.py)

    @property
    def episode_steps(self) -> int:
        """Steps per episode (patches per AE update), for agents that budget in steps."""
        return self.config.sampler.patches_per_update

    # ------------------------------------------------------------------ gym API
    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        restart = self.runs.restart_wanted(seed, options)
        self.runs.check_cut_episode(restart, self._t)
        super().reset(seed=seed if restart else None)
        if restart:
            self.runs.start(seed, self.np_random)
        self._t = 0
        self._patches: list[tuple[int, int, int]] = []
        self._action_counts = np.zeros(N_ACTIONS, np.int64)
        self._history: dict[int, np.ndarray] = {}
        self._loss_cache: dict[tuple[str, int], np.ndarray] = {}
        self._next_jump = self.process.random_patches(1)[0]
        self._jump()
        return self._observation(), self._info()

    def step(self, action):
        if not self.process.started:
            raise RuntimeError("call reset() before step()")
        if self._t >= self.config.sampler.patches_per_update:
            raise RuntimeError("episode is over: call reset()")
        a = checked_action(action, N_ACTIONS)
        self._action_counts[a] += 1
        if a == JUMP:
            self._jump()
        else:
            _, self._cy, self._cx = self._destination(a)
        i, cy, cx, h = self._img, self._cy, self._cx, self._half
        self._patches.append((i, cy, cx))
        hist = self._history.get(i)
        if hist is None:  # allocated once per image and episode, not on every step
            hist = self._history[i] = np.zeros((self.image_size, self.image_size), np.float32)
        c = self.config
        process = self.process
        beta = beta_schedule(process.updates, c.rewards.beta_horizon, c.rewards.beta_min)
        window = (slice(cy - h, cy + h), slice(cx - h, cx + h))
        if c.rewards.clone == "sobel":
            r_clone = float(self._sobel[i][window].mean())
        else:
            r_clone = clone_reward(self._masks[i][window]) if i < self.n_labeled else 0.0
        if c.rewards.cover == "frequency":
            r_cover = frequency_cover_reward(hist[window])
        elif c.rewards.cover == "balance":
            r_cover = balance_cover_reward(process.visits[i][window] + hist[window], self._mean_visits(), c.rewards.cover_bonus)
        else:
            r_cover = cover_reward(hist[window], c.rewards.cover_bonus)
        hist[window] += 1.0  # visit counts: binary (> 0) in the chu2020 state, frequency in noghredeh2025
        reward = beta * (r_clone + r_cover)
        self._t += 1
        terminated = self._t == self.config.sampler.patches_per_update
        info = {"r_clone": r_clone, "r_cover": r_cover, "beta": beta, "jump": a == JUMP}
        if terminated:
            reinit_before = process.reinits
            l_pred = process.train_iteration(self._patches)
            r_pred = 0.0 if math.isnan(l_pred) or process.updates <= c.rewards.rl_feedback_after else -l_pred
            if c.rewards.pred == "improvement":
                gain = process.pred_improvement
                r_pred = 0.0 if math.isnan(gain) or process.updates <= c.rewards.rl_feedback_after else \
                    c.sampler.patches_per_update * min(1.0, max(-1.0, gain))
            reward += (1.0 - beta) * r_pred
            self._loss_cache = {}
            info.update(r_pred=r_pred, reinit=process.reinits != reinit_before, **process.diagnostics,
                        jump_rate=float(self._action_counts[JUMP] / self._t),
                        action_hist=(self._action_counts / self._t).tolist())
            if process.fold_predictors:
                info["heldout_l_pred"] = process.last_heldout_l_pred
            self.runs.trained()
        info.update(self._info())
        with section("observation"):
            obs = self._observation()
        return obs, float(reward), terminated, False, _none_for_nan(info)

    # ------------------------------------------------------------------ observation
    def _jump(self) -> None:
        # The destination of every jump is drawn one jump ahead, so that action_masks() can tell
        # whether the next jump lands on a known anomaly; it is still uniform and agent-independent.
        self._img, self._cy, self._cx = self._next_jump
        self._next_jump = self.process.random_patches(1)[0]

    def _destination(self, action: int) -> tuple[int, int, int]:
        """(image, cy, cx) of the patch that `action` would sample next."""
        if action == JUMP:
            return self._next_jump
        dy, dx = MOVES[action]
        lo, hi = self._half, self.image_size - self._half
        return (self._img, int(np.clip(self._cy + dy * self.config.sampler.stride, lo, hi)),
                int(np.clip(self._cx + dx * self.config.sampler.stride, lo, hi)))

    def clean_actions(self) -> np.ndarray:
        """bool (9,): True for the actions whose next patch holds no *labeled* anomalous pixel.

        Uses only what R_clone uses (the masks of D_l); on unlabeled images every move is clean.
        This is the knowledge of the paper's heuristic sampler."""
        h = self._half
        clean = np.ones(N_ACTIONS, bool)
        for a in range(N_ACTIONS):
            i, cy, cx = self._destination(a)
            if i < self.n_labeled:
                clean[a] = not self._masks[i, cy - h:cy + h, cx - h:cx + h].any()
        return clean

    def action_masks(self) -> np.ndarray:
        """clean_actions(), or all True when no action is clean: the form sb3-contrib's
        MaskablePPO expects from `env.action_masks()` (at least one valid action)."""
        clean = self.clean_actions()
        return clean if clean.any() else np.ones(N_ACTIONS, bool)

    def oracle_action_masks(self, kind: str) -> np.ndarray:
        """DIAGNOSTIC ONLY: bool (9,) per action, whether its next patch touches an anomalous pixel
        of ANY image, D_u included ('defect'), or touches none ('normal'). It reads the masks of
        the unlabeled images, which no method may see: it exists so that the oracle samplers
        (agents.baselines.ORACLES) can measure how much choosing patches could win or lose
        (docs/results/sampler-headroom.md). Never used by training, rewards or observations."""
        if kind not in ("normal", "defect"):
            raise ValueError(f"kind must be 'normal' or 'defect', got {kind!r}")
        h, masks = self._half, self.process.all_masks
        touches = np.array([masks[i, cy - h:cy + h, cx - h:cx + h].any()
                            for i, cy, cx in (self._destination(a) for a in range(N_ACTIONS))])
        return touches if kind == "defect" else ~touches

    def redraw_jump(self) -> None:
        """DIAGNOSTIC ONLY (oracle samplers): draw the next jump's destination again, so that an
        oracle samples uniformly over the patches its masks allow, by rejection. Without it a
        sampler whose next jump lands on a patch it must avoid can only move (the heuristic's
        case): a walk, not uniform patches. Never used by training, rewards or the other samplers."""
        self._next_jump = self.process.random_patches(1)[0]

    def image_has_anomaly(self) -> bool:
        """DIAGNOSTIC ONLY (oracle samplers): whether the current image holds an anomalous pixel."""
        return bool(self.process.all_masks[self._img].any())

    def _loss_map(self, which: str = "current") -> np.ndarray:
        """The current image's relative loss map under the current AE ('current') or the one
        before its last update ('previous'); cached until the AE changes."""
        key = (which, self._img)
        if key not in self._loss_cache:
            self._loss_cache[key] = self.process.relative_loss_map(self._img, previous=which == "previous")
        return self._loss_cache[key]

    def _pending(self) -> bool:
        """Whether this episode's patches are not yet in the process's visit counts (they are
        added by the AE update of its last step)."""
        return self._t < self.config.sampler.patches_per_update

    def _mean_visits(self) -> float:
        """Mean visit count per pixel of the dataset since the AE's last re-init, this episode's
        patches included (cover_reward 'balance')."""
        pending = len(self._patches) if self._pending() else 0
        total = self.process.visit_total + (2 * self._half) ** 2 * pending
        return total / (self.n_images * self.image_size ** 2)

    def _observation(self) -> dict[str, np.ndarray]:
        s, h, i = self.image_size, self._half, self._img
        hist = self._history.get(i)
        if hist is None:
            hist = np.zeros((s, s), np.float32)
        if self.config.rewards.cover == "balance":  # what the reward reads: counts / (2 x mean), 0.5 = average
            mean = self._mean_visits()
            counts = self.process.visits[i] + hist if self._pending() else self.process.visits[i]
            seen = np.clip(counts / (2.0 * mean), 0.0, 1.0) if mean > 0 else np.zeros_like(counts)
        else:
            seen = hist / self.config.sampler.patches_per_update if self.config.sampler.state == "noghredeh2025" else hist > 0
        if self.config.sampler.state == "chu2020":
            patch = np.zeros((s, s), np.float32)
            patch[self._cy - h:self._cy + h, self._cx - h:self._cx + h] = 1.0
            maps = {"rgb": self._rgb[i], "loss": self._loss_map()[None],
                    "history": seen.astype(np.float32)[None], "patch": patch[None]}
        else:
            fused = fuse_maps(self._loss_map(), self._variance[i], self._sobel[i], self.config.sampler.fused_weights)
            maps = {"rgb": self._rgb[i], "fused": fused[None],
                    "history": seen.astype(np.float32)[None],
                    "previous_loss": self._loss_map("previous")[None]}
        if self.config.sampler.observation == "crop":
            return {k: self._crop(v) for k, v in maps.items()}  # _crop returns new arrays
        # Fresh arrays every call: users (and replay buffers) keep what they are given.
        return {k: np.array(v, dtype=np.float32, copy=True) for k, v in maps.items()}

    def _crop(self, x: np.ndarray) -> np.ndarray:
        v = self.config.sampler.crop_size
        out = np.zeros((x.shape[0], v, v), np.float32)
        y0, x0 = self._cy - v // 2, self._cx - v // 2
        sy0, sx0 = max(0, y0), max(0, x0)
        sy1, sx1 = min(self.image_size, y0 + v), min(self.image_size, x0 + v)
        out[:, sy0 - y0:sy1 - y0, sx0 - x0:sx1 - x0] = x[:, sy0:sy1, sx0:sx1]
        return out

    def _info(self) -> dict[str, Any]:
        p = self.process
        return _none_for_nan({
            "ae_updates": p.updates, "ae_loss": p.last_ae_loss, "l_pred": p.last_l_pred, "best_l_pred": p.best_l_pred,
            "beta": beta_schedule(p.updates, self.config.rewards.beta_horizon, self.config.rewards.beta_min),
            "image": self._img, "centre": (self._cy, self._cx)})

    # ------------------------------------------------------------------ rendering
    def render(self) -> np.ndarray | None:
        """With render_mode 'rgb_array': (H, W, 3) uint8, the current image with the current patch
        outlined | its AE loss map | its visit history this episode (envs/rendering.py)."""
        if self.render_mode is None:
            gym.logger.warn("render() without a render mode: make the env with render_mode='rgb_array'")
            return None
        if not self.process.started:
            raise RuntimeError("call reset() before render()")
        hist = self._history.get(self._img)
        seen = np.zeros((self.image_size,) * 2, np.float32) if hist is None else hist / max(1.0, float(hist.max()))
        return render_frame(self._rgb[self._img], self._loss_map(), seen, (self._cy, self._cx), self._half)

    # ------------------------------------------------------------------ results and checkpoints
    def best_profiles(self, error: str | None = None) -> dict[str, np.ndarray]:
        """The loss profiles of the best moment (TrainingProcess.best_profiles): raw float32
        (n, T, S, S) "labeled", "unlabeled" (the scored D_u) and "extra" (train/good in D_u); with
        `error`, of that loss-map error (recomputed from the best moment's AE snapshots)."""
        return self.process.best_profiles(error)

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to resume training exactly (take it between episodes); like
        `nn.Module.state_dict`, it references live tensors: save it before stepping again."""
        return {**self.process.state_dict(), "run_seed": self.runs.run_seed}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore a state_dict(); the next reset() without a seed, or with the run's own seed,
        continues the same run."""
        if not self.process.started:
            self.process.start(self.np_random, warmup=False)  # everything is overwritten next
        self.process.load_state_dict(state)
        self.runs.loaded(state.get("run_seed"))


def _none_for_nan(info: dict[str, Any]) -> dict[str, Any]:
    """`info` with NaN values (a figure that does not exist yet) as None: NaN != NaN, so two equal
    infos holding one would compare unequal (gymnasium's check_env compares them)."""
    return {k: None if isinstance(v, float) and math.isnan(v) else v for k, v in info.items()}
