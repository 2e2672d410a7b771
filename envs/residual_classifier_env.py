"""ResidualClassifierEnv: decide "normal" or "anomalous" for an image from its AE residual map.

The third system of the spec (Lee, Kim, Kang 2022): instead of thresholding a reconstruction
residual with a per-class threshold (and a minimum defect area), an RL policy looks at the residual
map and decides. The AE is the package's ConvAutoencoder, trained with the package's
`ae_train_step` on random patches of anomaly-free `train/good` images.

Who is labeled: the few labeled images of the semi-supervised split (D_l: anomalous iff its mask
has a pixel) and, for free, a held-out part of `train/good` (normal; never seen by the AE, so its
residuals look like those of new normal images). The policy is scored on D_u.
"""
from __future__ import annotations

import contextlib
import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import gymnasium as gym
import numpy as np
import torch
from gymnasium import spaces

from common.device import resolve_device
from common.seeding import torch_rng_from
from data.config import DataConfig, data_config_from_kwargs
from data.mvtec import DatasetError, Sample
from data.split import Split
from envs.actions import checked_action
from envs.buffers import dihedral, snapshot
from common.settings import ConfigError, check_fields, from_dict, setting
from envs.config import default_patch_size
from models.autoencoder import AEConfig, ConvAutoencoder, ae_train_step, reconstruction_loss_map

NORMAL, ANOMALOUS = 0, 1
INPUTS = ("residual", "residual+image", "residual+image+stats")
#: Trained AEs kept per env, by seed: reset(seed=s) again restores s's AE instead of training it again.
CACHED_SEEDS = 4


@dataclass
class ClassifierConfig:
    """Everything ResidualClassifierEnv needs besides the data (range-checked when built)."""

    CONFIG_NAME: ClassVar[str] = "classifier"
    inputs: str = setting("residual", choices=INPUTS)
    """what the policy sees: 'residual', 'residual+image', or 'residual+image+stats' (adds the
    per-pixel mean and std of the residual over the last `stats_snapshots` AE checkpoints: a
    loss profile's statistics)"""
    images_per_episode: int = setting(1, ge=1)
    """decisions per episode"""
    patch_size: int | None = setting(None, ge=8, power_of_two=True)
    """AE training patch side (power of two); None = envs.config.default_patch_size(image_size)"""
    ae: AEConfig = setting(factory=AEConfig)
    ae_steps: int = setting(500, ge=1)
    """AE updates on random normal patches, done at reset(seed=...)"""
    ae_batch: int = setting(32, ge=1)
    ae_lr: float = setting(1e-3, gt=0, le=1)
    stats_snapshots: int = setting(5, ge=1)
    """AE checkpoints (evenly spaced over the last half of training) behind the residual stats"""
    normal_holdout: float = setting(0.25, gt=0, lt=1)
    """fraction of train/good kept out of AE training and labeled normal for the policy"""
    residual_clip: float = setting(10.0, gt=0)
    """the observed residual is divided by the mean residual of the AE's training images, clipped"""
    augment: bool = True
    """random flips / 90-degree rotations and circular shifts of the observed maps: with a few
    labeled anomalies the policy must not learn *where* they were, only what they look like"""
    device: str = "auto"

    def __post_init__(self) -> None:
        check_fields(self)


def classifier_config_from_dict(d: dict[str, Any], where: str = "") -> ClassifierConfig:
    """Inverse of dataclasses.asdict for ClassifierConfig."""
    return from_dict(ClassifierConfig, d, where)


def load_classifier_data(data: DataConfig) -> tuple[Split, list[Sample]]:
    """The semi-supervised split of `data` (every DataConfig field honoured, as for the batch
    sampler) and the category's anomaly-free images, which the AE trains on."""
    from data.loading import load_split

    split = load_split(data)
    if len(split.normal) < 2:
        raise DatasetError(f"{data.data_root or 'the built-in data'} ({data.category}): the residual classifier "
                           f"needs anomaly-free training images (train/good; found {len(split.normal)})")
    return split, list(split.normal)


class ResidualClassifierEnv(gym.Env):
    """One step = one image: observe its residual map, answer 0 (normal) or 1 (anomalous).

    Observation (`spaces.Dict`, float32, channel-first, side S):
      - "residual"       (1, S, S) in [0, residual_clip]: squared AE error / mean error of normal
                         training images
      - "rgb"            (3, S, S) in [0, 1], with inputs 'residual+image' and '...+stats'
      - "residual_stats" (2, S, S): mean and std of the residual over the AE's last checkpoints,
                         same scale, with inputs 'residual+image+stats'
    Action `Discrete(2)`: 0 normal, 1 anomalous.
    Reward: +1 for a right decision, -1 for a wrong one. Images are drawn class-balanced (a class
    with probability 1/2, then an image of it uniformly), so any constant policy earns 0 on
    average and only telling the classes apart pays.
    Seeding: `reset(seed=s)` trains the AE from s; `reset()` starts the next episode. The AE a seed
    gave is kept (the last CACHED_SEEDS seeds): reset(seed=s) again restores it, RNG included, which
    is exactly what training it again would give, without the minute it takes at the defaults
    (the env checkers reset with the same seed several times).
    """

    metadata = {"render_modes": []}

    def __init__(self, split: Split | None = None, train_good: list[Sample] | None = None,
                 data: DataConfig | Mapping[str, Any] | None = None,
                 config: ClassifierConfig | Mapping[str, Any] | None = None, **data_fields: Any) -> None:
        """`data` and `config` as objects or plain dicts (a JSON spec's form); DataConfig fields may
        also be given as plain keywords (image_size=64)."""
        super().__init__()
        self.data_config = data_config_from_kwargs(data, data_fields, "ResidualClassifierEnv")
        if split is None or train_good is None:
            split, train_good = load_classifier_data(self.data_config)
        self.split = split
        if isinstance(config, Mapping):
            config = classifier_config_from_dict(dict(config))
        elif config is not None and not isinstance(config, ClassifierConfig):
            raise ConfigError(f"config={config!r}: expected a ClassifierConfig or a dict of its settings, got "
                              f"{type(config).__name__}")
        self.config = c = dataclasses.replace(config or ClassifierConfig())
        size = split.labeled[0].image.shape[0]
        self.image_size = size
        if c.patch_size is None:
            c.patch_size = default_patch_size(size)
        n_holdout = max(1, int(round(len(train_good) * c.normal_holdout)))
        if len(train_good) - n_holdout < 1:
            raise ValueError(f"need at least 2 train/good images (AE training + held-out normals), got {len(train_good)}")
        # Deterministic hold-out (the last images by name): the same for every seed, like the split.
        self.ae_train, self.normal_holdout = list(train_good[:-n_holdout]), list(train_good[-n_holdout:])
        self.pool = list(split.labeled) + self.normal_holdout
        self.pool_labels = np.array([int(s.mask.any()) for s in self.pool])
        if self.pool_labels.min() == self.pool_labels.max():
            raise ValueError("the labeled pool (D_l + held-out train/good) holds one class only")
        self.device = resolve_device(c.device)

        with_image = c.inputs != "residual"
        maps = {"residual": spaces.Box(0.0, c.residual_clip, (1, size, size), np.float32)}
        if with_image:
            maps["rgb"] = spaces.Box(0.0, 1.0, (3, size, size), np.float32)
        if c.inputs == "residual+image+stats":
            maps["residual_stats"] = spaces.Box(0.0, c.residual_clip, (2, size, size), np.float32)
        self.observation_space = spaces.Dict(maps)
        self.action_space = spaces.Discrete(2)
        self._initialised = False
        self._trained: dict[int, dict[str, Any]] = {}  # seed -> what _train_ae left (see reset)

    @property
    def episode_steps(self) -> int:
        return self.config.images_per_episode

    # ------------------------------------------------------------------ the AE and its residuals
    def _torch_rng(self) -> contextlib.AbstractContextManager[None]:
        return torch_rng_from(self.np_random, self.device)

    def _tensor(self, samples: list[Sample]) -> torch.Tensor:
        x = np.stack([s.image.transpose(2, 0, 1) for s in samples]).astype(np.float32) / 255.0
        return torch.from_numpy(x).to(self.device)

    def _train_ae(self) -> None:
        """Train a fresh AE on random patches of the AE's train/good images; keep the checkpoints
        behind the residual statistics."""
        c = self.config
        images = self._tensor(self.ae_train)
        h, s = c.patch_size // 2, self.image_size
        with self._torch_rng():
            self.ae = ConvAutoencoder(c.patch_size, c.ae).to(self.device)
            opt = torch.optim.Adam(self.ae.parameters(), lr=c.ae_lr)
            marks = set(np.linspace(c.ae_steps // 2, c.ae_steps, c.stats_snapshots).round().astype(int).tolist())
            self.snapshots = []
            for step in range(1, c.ae_steps + 1):
                idx = self.np_random.integers(len(images), size=c.ae_batch)
                ys, xs = self.np_random.integers(h, s - h + 1, size=(2, c.ae_batch))
                x = torch.stack([images[i, :, y - h:y + h, x - h:x + h] for i, y, x in zip(idx, ys, xs)])
                self.last_ae_loss = ae_train_step(self.ae, opt, x)
                if step in marks:
                    self.snapshots.append(snapshot(self.ae))
        self._compute_maps()

    def _residuals(self, ae: ConvAutoencoder, samples: list[Sample], batch: int = 16) -> torch.Tensor:
        with torch.no_grad():
            return torch.cat([reconstruction_loss_map(ae, self._tensor(samples[k:k + batch]))
                              for k in range(0, len(samples), batch)])

    def _compute_maps(self) -> None:
        """Residual maps (raw, and normalised for the policy) of every image the env serves."""
        self.ae.eval()
        groups = {"pool": self.pool, "unlabeled": self.split.unlabeled}
        self.scale = float(self._residuals(self.ae, self.ae_train).mean()) or 1.0
        self.raw: dict[str, torch.Tensor] = {g: self._residuals(self.ae, v) for g, v in groups.items() if v}
        self.rgb = {g: self._tensor(v) for g, v in groups.items() if v} if "rgb" in self.observation_space.spaces else {}
        self.stats: dict[str, torch.Tensor] = {}
        if self.config.inputs == "residual+image+stats":
            ae = ConvAutoencoder(self.config.patch_size, self.config.ae).to(self.device)
            for g, v in groups.items():
                if not v:
                    continue
                maps = []
                for snap in self.snapshots:
                    ae.load_state_dict(snap)
                    ae.eval()
                    maps.append(self._residuals(ae, v))
                m = torch.stack(maps, 1)
                self.stats[g] = torch.stack([m.mean(1), m.std(1, unbiased=False)], 1)

    def residual_maps(self, group: str = "unlabeled") -> np.ndarray:
        """Raw residual maps (n, S, S) of 'pool' (D_l + held-out normals) or 'unlabeled' (D_u)."""
        return self.raw[group].cpu().numpy()

    def observation(self, group: str, k: int, augment: tuple[int, int, int] = (0, 0, 0)) -> dict[str, np.ndarray]:
        """The observation of image k of `group` ('pool' or 'unlabeled'); `augment` = (dihedral
        variant 0-7, vertical shift, horizontal shift), (0, 0, 0) for none."""
        c = self.config
        obs = {"residual": (self.raw[group][k] / self.scale)[None]}
        if self.rgb:
            obs["rgb"] = self.rgb[group][k]
        if "residual_stats" in self.observation_space.spaces:
            obs["residual_stats"] = self.stats[group][k] / self.scale
        out = {}
        for key, v in obs.items():
            if any(augment):
                v = torch.roll(dihedral(v, augment[0]), shifts=(augment[1], augment[2]), dims=(-2, -1))
            v = v.clamp(0.0, c.residual_clip) if key != "rgb" else v
            out[key] = v.float().cpu().numpy().astype(np.float32, copy=True)
        return out

    # ------------------------------------------------------------------ gym API
    def _draw(self) -> None:
        label = int(self.np_random.integers(2))
        self._k = int(self.np_random.choice(np.flatnonzero(self.pool_labels == label)))
        s = self.image_size
        self._aug = (int(self.np_random.integers(8)), int(self.np_random.integers(s)), int(self.np_random.integers(s))) \
            if self.config.augment else (0, 0, 0)

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        super().reset(seed=seed)
        if seed is not None and seed in self._trained:
            self._restore(self._trained[seed])
        elif seed is not None or not self._initialised:
            self._train_ae()
            if seed is not None:
                self._remember(seed)
        self._initialised = True
        self._t = 0
        self._draw()
        return self.observation("pool", self._k, self._aug), {"image": self._k}

    _TRAINED = ("ae", "snapshots", "last_ae_loss", "scale", "raw", "rgb", "stats")

    def _remember(self, seed: int) -> None:
        """Keep what training the AE from `seed` left (never changed afterwards: shared, not
        copied) and the RNG state it left."""
        self._trained[seed] = {**{k: getattr(self, k) for k in self._TRAINED}, "rng": self.np_random.bit_generator.state}
        while len(self._trained) > CACHED_SEEDS:
            del self._trained[next(iter(self._trained))]

    def _restore(self, trained: dict[str, Any]) -> None:
        for k in self._TRAINED:
            setattr(self, k, trained[k])
        self.np_random.bit_generator.state = trained["rng"]

    def step(self, action):
        if not self._initialised:
            raise RuntimeError("call reset() before step()")
        if self._t >= self.config.images_per_episode:
            raise RuntimeError("episode is over: call reset()")
        a = checked_action(action, 2)  # 0 normal, 1 anomalous
        label = int(self.pool_labels[self._k])
        reward = 1.0 if a == label else -1.0
        info = {"image": self._k, "label": label, "correct": a == label, "ae_loss": self.last_ae_loss}
        self._t += 1
        terminated = self._t == self.config.images_per_episode
        self._draw()
        return self.observation("pool", self._k, self._aug), reward, terminated, False, info

    # ------------------------------------------------------------------ checkpoints
    def state_dict(self) -> dict[str, Any]:
        return {"ae": {k: v.cpu() for k, v in self.ae.state_dict().items()},
                "snapshots": [{k: t.cpu() for k, t in s.items()} for s in self.snapshots],
                "last_ae_loss": self.last_ae_loss, "np_random": self.np_random.bit_generator.state}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore the trained AE (residual maps are recomputed) and the RNG; then reset()."""
        self.ae = ConvAutoencoder(self.config.patch_size, self.config.ae).to(self.device)
        self.ae.load_state_dict(state["ae"])
        self.snapshots = [{k: t.to(self.device) for k, t in s.items()} for s in state["snapshots"]]
        self.last_ae_loss = float(state.get("last_ae_loss", math.nan))
        self.np_random.bit_generator.state = state["np_random"]
        self._compute_maps()
        self._initialised = True
