"""Tiny in-memory splits for fast env/agent tests (no files needed)."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from data.mvtec import Sample
from data.split import Split


def toy_split(size: int = 32, n_labeled: int = 3, n_unlabeled: int = 4, seed: int = 0,
              defect_region: str = "random") -> Split:
    """Noise textures with a defect in most images (every 4th image is defect-free).

    defect_region='random': a small bright square anywhere. defect_region='left': the whole left
    half of the image is the defect (a bright band), so a sampler that moves right and stays
    there sees only normal patches: a toy problem with a known optimal policy ("always east")."""
    rng = np.random.default_rng(seed)
    samples = []
    for k in range(n_labeled + n_unlabeled):
        img = (rng.normal(120, 20, (size, size, 3))).clip(0, 255).astype(np.uint8)
        mask = np.zeros((size, size), bool)
        if k % 4 != 3:
            if defect_region == "left":
                mask[:, :size // 2] = True
            else:
                d = max(2, size // 8)
                y, x = rng.integers(0, size - d), rng.integers(0, size - d)
                mask[y:y + d, x:x + d] = True
            img[mask] = (250, 40, 40)
        kind = "defect" if mask.any() else "good"
        samples.append(Sample(name=f"{kind}/{k:03d}", defect_type=kind, image=img, mask=mask,
                              path=Path(f"/toy/{kind}/{k:03d}.png")))
    return Split(category="toy", seed=seed, labeled=samples[:n_labeled],
                 unlabeled=samples[n_labeled:], extra_unlabeled=[])
