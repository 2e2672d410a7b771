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
    """FIFO of (mean-normalised profile, mask) pairs, stored in float16 to halve its memory."""

    def __init__(self, capacity: int, length: int, height: int, width: int,
                 device: torch.device) -> None:
        self.profiles = torch.zeros(capacity, length, height, width, dtype=torch.float16, device=device)
        self.masks = torch.zeros(capacity, height, width, dtype=torch.bool, device=device)
        self.ids = torch.zeros(capacity, dtype=torch.int64, device=device)  # which labeled image
        self.capacity = capacity
        self.next = 0
        self.size = 0

    def push(self, profiles: torch.Tensor, masks: torch.Tensor, ids: list[int] | None = None) -> None:
        """Add a batch (B,T,H,W), (B,H,W); the oldest entries are overwritten when full. `ids`:
        the labeled image each entry comes from (default 0..B-1), for held-out sampling."""
        for k, (p, m) in enumerate(zip(profiles, masks)):
            self.profiles[self.next] = p.to(torch.float16)
            self.masks[self.next] = m
            self.ids[self.next] = k if ids is None else ids[k]
            self.next = (self.next + 1) % self.capacity
            self.size = min(self.size + 1, self.capacity)

    def sample(self, batch: int, rng: np.random.Generator,
               exclude: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """A uniform batch of entries; with `exclude`, none of that labeled image's entries
        (None when no other entry exists)."""
        if exclude is None:
            idx = torch.as_tensor(rng.integers(0, self.size, size=batch), device=self.profiles.device)
        else:
            allowed = torch.nonzero(self.ids[:self.size] != exclude)[:, 0]
            if len(allowed) == 0:
                return None
            idx = allowed[torch.as_tensor(rng.integers(0, len(allowed), size=batch), device=allowed.device)]
        return self.profiles[idx].float(), self.masks[idx]

    def reset(self) -> None:
        self.next = 0
        self.size = 0

    def state_dict(self) -> dict:
        n = self.size
        return {"profiles": self.profiles[:n].cpu(), "masks": self.masks[:n].cpu(),
                "ids": self.ids[:n].cpu(), "next": self.next, "size": n}

    def load_state_dict(self, s: dict) -> None:
        n = int(s["size"])
        if n > self.capacity:
            raise ValueError(f"checkpoint buffer holds {n} entries, capacity is {self.capacity}")
        self.profiles[:n] = s["profiles"].to(self.profiles.device)
        self.masks[:n] = s["masks"].to(self.masks.device)
        if "ids" in s:
            self.ids[:n] = s["ids"].to(self.ids.device)
        self.next, self.size = int(s["next"]), n


def snapshot(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    """Detached copy of a module's weights and buffers."""
    return {k: v.detach().clone() for k, v in module.state_dict().items()}
