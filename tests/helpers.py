"""Tiny in-memory splits for fast env/agent tests (no files needed)."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from data.mvtec import Sample
from data.split import Split


def toy_split(size: int = 32, n_labeled: int = 3, n_unlabeled: int = 4, seed: int = 0,
              defect_region: str = "random") -> Split:
    """Noise textures with a bright square defect in most images.

    defect_region='left' puts every defect in the left half, so a sampler that learns to stay
    right sees only normal patches (a toy problem with a known optimal policy)."""
    rng = np.random.default_rng(seed)
    samples = []
    for k in range(n_labeled + n_unlabeled):
        img = (rng.normal(120, 20, (size, size, 3))).clip(0, 255).astype(np.uint8)
        mask = np.zeros((size, size), bool)
        if k % 4 != 3:
            d = max(2, size // 8)
            x_hi = size // 2 - d if defect_region == "left" else size - d
            y, x = rng.integers(0, size - d), rng.integers(0, max(1, x_hi))
            mask[y:y + d, x:x + d] = True
            img[mask] = (250, 40, 40)
        kind = "defect" if mask.any() else "good"
        samples.append(Sample(name=f"{kind}/{k:03d}", defect_type=kind, image=img, mask=mask,
                              path=Path(f"/toy/{kind}/{k:03d}.png")))
    return Split(category="toy", seed=seed, labeled=samples[:n_labeled],
                 unlabeled=samples[n_labeled:], extra_unlabeled=[])
