"""Fixed-size stores the env keeps on its device: loss-profile FIFOs, the replay buffer, and the
ring of AE weight snapshots. Each is bounded by its constructor arguments."""
from __future__ import annotations

import numpy as np
import torch


class ProfileRing:
    """Loss profiles of n images: the last T loss maps of each, (n, T, H, W), oldest dropped."""

    def __init__(self, n: int, length: int, height: int, width: int, device: torch.device) -> None:
        self.data = torch.zeros(n, length, height, width, device=device)
        self.length = length
        self.next = 0
        self.count = 0

    def append(self, loss_maps: torch.Tensor) -> None:
        """Add one loss map per image, (n, H, W)."""
        self.data[:, self.next] = loss_maps
        self.next = (self.next + 1) % self.length
        self.count = min(self.count + 1, self.length)

    @property
    def full(self) -> bool:
        return self.count == self.length

    def ordered(self) -> torch.Tensor:
        """Profiles with time running oldest -> newest along dim 1 (a copy)."""
        return torch.roll(self.data, shifts=-self.next, dims=1).clone()

    def reset(self) -> None:
        self.data.zero_()
        self.next = 0
        self.count = 0

    def state_dict(self) -> dict:
        return {"data": self.data.cpu(), "next": self.next, "count": self.count}

    def load_state_dict(self, s: dict) -> None:
        self.data.copy_(s["data"])
        self.next, self.count = int(s["next"]), int(s["count"])


def dihedral(x: torch.Tensor, k: int) -> torch.Tensor:
    """One of the 8 flips/90-degree rotations of the last two dims (k in 0..7)."""
    x = torch.rot90(x, k % 4, dims=(-2, -1))
    return torch.flip(x, dims=(-1,)) if k >= 4 else x


class ReplayBuffer:
    """FIFO of `capacity` augmented (mean-normalised labeled profile, mask) pairs: the predictor's
    training data.

    An entry is kept as what it is made of, not as its T (+3 RGB) channels of pixels: which labeled
    image, the append its profile ends at, its dihedral transform and its normalisation divisor.
    The raw D_l loss maps the live entries span are kept once (entries pushed on consecutive
    updates share T-1 maps), about capacity / n_labeled + T maps per labeled image: 40 MB instead
    of 390 MB of float16 profiles at 128 px (T=20, 5 labeled images, 512 entries), and a
    checkpoint shrinks alike. `sample` rebuilds an entry exactly as the buffer used to store it:
    the same float32 division, dihedral and float16 rounding."""

    def __init__(self, capacity: int, length: int, masks: torch.Tensor, rgb: torch.Tensor | None = None) -> None:
        """`masks` (n, H, W): the labeled images' masks; `rgb` (n, 3, H, W) in [0, 1]: their
        images, appended to every profile when the predictor reads the image too."""
        if capacity < 1 or length < 1:
            raise ValueError(f"capacity and length must be >= 1, got {capacity} and {length}")
        self.capacity, self.length = capacity, length
        self.label_masks = masks.bool()
        self.rgb = rgb
        self.maps: dict[int, torch.Tensor] = {}  # append number -> (n, H, W) raw loss maps
        self.appended = 0
        self.image = np.zeros(capacity, np.int64)  # the labeled image of each entry
        self.end = np.zeros(capacity, np.int64)  # the append its profile's newest map came from
        self.k = np.zeros(capacity, np.int64)  # its dihedral transform
        self.scale = torch.zeros(capacity, device=masks.device)  # its profile_scale
        self.next = 0
        self.size = 0

    def append(self, loss_maps: torch.Tensor) -> None:
        """Record one raw loss map per labeled image, (n, H, W): every map the profiles get."""
        self.appended += 1
        self.maps[self.appended] = loss_maps.detach().clone()
        self._drop_unused_maps()

    def push(self, scales: torch.Tensor, ks: np.ndarray) -> None:
        """One entry per labeled image i: its profile is the last T appended maps divided by
        scales[i] (models.predictor.profile_scale of that profile), seen through dihedral ks[i].
        Push only while those T maps are the current profiles (a full ProfileRing); the oldest
        entries are overwritten when full."""
        if self.appended < self.length:
            raise ValueError(f"push needs {self.length} appended loss maps, got {self.appended}")
        for i, k in enumerate(ks):
            j = self.next
            self.image[j], self.end[j], self.k[j] = i, self.appended, int(k)
            self.scale[j] = scales[i]
            self.next = (self.next + 1) % self.capacity
            self.size = min(self.size + 1, self.capacity)
        self._drop_unused_maps()

    def _drop_unused_maps(self) -> None:
        """Keep the maps from the oldest live entry's first one (or the next push's first) on."""
        first = self.appended - self.length + 1
        if self.size:
            first = min(first, int(self.end[:self.size].min()) - self.length + 1)
        for g in [g for g in self.maps if g < first]:
            del self.maps[g]

    def sample(self, batch: int, rng: np.random.Generator,
               exclude: int | None = None) -> tuple[torch.Tensor, torch.Tensor] | None:
        """A uniform batch of entries (float32 profiles, bool masks); with `exclude`, none of that
        labeled image's entries (None when no other entry exists)."""
        if exclude is None:
            idx = rng.integers(0, self.size, size=batch)
        else:
            allowed = np.flatnonzero(self.image[:self.size] != exclude)
            if len(allowed) == 0:
                return None
            idx = allowed[rng.integers(0, len(allowed), size=batch)]
        return self.entries(idx)

    def entries(self, idx: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        """Entries `idx` rebuilt: (B, T (+3), H, W) float32 profiles, (B, H, W) bool masks."""
        t = self.length
        windows = torch.stack([torch.stack([self.maps[g][i] for g in range(e - t + 1, e + 1)])
                               for i, e in zip(self.image[idx], self.end[idx])])
        x = windows / self.scale[torch.as_tensor(idx, device=self.scale.device)].view(-1, 1, 1, 1)
        if self.rgb is not None:
            x = torch.cat([x, self.rgb[torch.as_tensor(self.image[idx], device=x.device)].to(x.dtype)], dim=1)
        profiles = torch.stack([dihedral(p, int(k)) for p, k in zip(x, self.k[idx])])
        masks = torch.stack([dihedral(self.label_masks[i], int(k)) for i, k in zip(self.image[idx], self.k[idx])])
        return profiles.to(torch.float16).float(), masks

    def state_dict(self) -> dict:
        n, first = self.size, min(self.maps, default=self.appended + 1)
        maps = [self.maps[g] for g in range(first, self.appended + 1)]
        return {"maps": torch.stack(maps).cpu() if maps else None, "first": first, "appended": self.appended,
                "image": torch.from_numpy(self.image[:n].copy()), "end": torch.from_numpy(self.end[:n].copy()),
                "k": torch.from_numpy(self.k[:n].copy()), "scale": self.scale[:n].cpu(),
                "next": self.next, "size": n}

    def load_state_dict(self, s: dict) -> None:
        if "profiles" in s:
            raise ValueError("the checkpoint's replay buffer holds whole profiles, the format of an older version of "
                             "this package: resume it with that version, or train afresh")
        n = int(s["size"])
        if n > self.capacity:
            raise ValueError(f"checkpoint buffer holds {n} entries, capacity is {self.capacity}")
        dev = self.scale.device
        first, self.appended = int(s["first"]), int(s["appended"])
        self.maps = {} if s["maps"] is None else {first + j: m.to(dev) for j, m in enumerate(s["maps"])}
        self.image[:n], self.end[:n], self.k[:n] = s["image"].numpy(), s["end"].numpy(), s["k"].numpy()
        self.scale[:n] = s["scale"].to(dev)
        self.next, self.size = int(s["next"]), n


def snapshot(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    """Detached copy of a module's weights and buffers."""
    return {k: v.detach().clone() for k, v in module.state_dict().items()}
