"""Choose the AE on the labeled images before training: a short probe of each candidate.

No one AE is best on every dataset. Measured in this package (docs/results/ae-probe.md): BatchNorm made the loss maps separate defects better on bottle and kept the AE alive on
CrackForest, where without it the code collapsed; on the built-in brick the AE without BatchNorm
ranked the defects better. The D_l loss maps of a few minutes of training already told these
apart, so a run can ask them instead of its user: train each candidate AE for `probe.updates`
updates on uniformly random patches (the uniform sampler's batches; no predictor training, no
reward), and keep the one whose mean D_l profile ranks the labeled defect pixels best (pixel
AUROC, averaged over the probe's second half). The preset's own AE is kept unless another beats
it by `probe.margin`, so that a difference of the size one short probe on 5 labeled images can
show by chance does not switch the AE. Nothing outside D_l is scored; no D_u label is read.

Opt-in (`probe.candidates`; empty in every preset): measured on the nine protocol splits, it
raised ranking on one built-in brick split and chose a much worse AE on one bottle split (F1 0.53
-> 0.33), so a short probe on 5 labeled images is a hint to read, not a rule to ship
(docs/results/ae-probe.md).
"""
from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import torch

from common.settings import ConfigError, check_fields, setting, with_overrides
from data.split import Split
from envs.config import EnvConfig
from envs.training_process import TrainingProcess
from models.autoencoder import AEConfig


@dataclass
class AEProbeConfig:
    """The AE probe before training (opt-in: no candidates in any preset)."""

    CONFIG_NAME: ClassVar[str] = "probe"
    candidates: tuple[dict[str, Any], ...] = ()
    """alternatives to the env's `ae`, each a dict of AEConfig fields that differ from it (e.g.
    [{"norm": false}]). When given, train.py first probes `ae` and each alternative for `updates`
    updates of uniformly random patches and trains with the one whose mean D_l profile ranks the
    labeled defects best. (): train with `ae` as given"""
    updates: int = setting(100, ge=1)
    """AE updates per candidate in the probe (plus its pretraining and warm-up)"""
    margin: float = setting(0.02, ge=0, lt=1)
    """another candidate replaces `ae` only if its D_l profile AUROC is higher by this much"""

    def __post_init__(self) -> None:
        check_fields(self)
        fields = {f.name for f in dataclasses.fields(AEConfig)}
        for c in self.candidates:
            if set(c) - fields:
                raise ConfigError(f"probe.candidates: {sorted(set(c) - fields)} are not AE fields; fields: "
                                  f"{sorted(fields)}")
            AEConfig(**c)  # each candidate's values are checked as an AE's


@dataclass
class ProbeResult:
    """What one candidate AE's probe measured on D_l (averages over the probe's second half)."""

    ae: AEConfig
    dl_profile_auroc: float
    """pixel AUROC of the mean D_l profile against the D_l masks: what the choice is made on"""
    dl_loss_auroc: float
    """the same for the latest D_l loss maps"""
    ae_vs_mean_colour: float
    """the AE's D_l loss over the loss of predicting each image's mean colour (>= 1: collapsed)"""
    seconds: float = math.nan
    """wall time of this candidate's probe, pretraining included"""
    chosen: bool = False


def candidate_aes(config: EnvConfig, probe_config: AEProbeConfig) -> list[AEConfig]:
    """The preset's AE first, then `config.ae` with each candidate's overrides."""
    out = [config.ae]
    for overrides in probe_config.candidates:  # field names checked by AEProbeConfig
        overrides = {k: tuple(v) if isinstance(v, list) else v for k, v in overrides.items()}
        out.append(dataclasses.replace(config.ae, **overrides))
    return out


def probe(split: Split, config: EnvConfig, ae: AEConfig, updates: int, seed: int, device: torch.device) -> ProbeResult:
    """Train `ae` as a run would (pretraining and warm-up included) for `updates` updates on
    uniformly random patches, and average its D_l diagnostics over the second half. `config` must
    be resolved (EnvConfig.resolved). Every random number comes from `seed`."""
    t0 = time.time()
    n = updates
    c = with_overrides(config, {"ae": ae, "predictor.heldout": False, "predictor.freeze_updates": n,
                                "ae_training.reinit_every": n + 1, "rewards.cover": "bonus"})
    process = TrainingProcess(split, c, device)
    process.start(np.random.default_rng(seed))
    seen: dict[str, list[float]] = {"dl_profile_auroc": [], "dl_loss_auroc": [], "ae_vs_mean_colour": []}
    for u in range(n):
        process.train_iteration(process.random_patches(c.sampler.patches_per_update))
        if u >= n // 2:
            for key, values in seen.items():
                values.append(process.diagnostics.get(key, math.nan))
    mean = {k: float(np.mean(v)) if v else math.nan for k, v in seen.items()}
    return ProbeResult(ae, **mean, seconds=time.time() - t0)


def choose_ae(split: Split, config: EnvConfig, probe_config: AEProbeConfig, seed: int,
              device: torch.device) -> tuple[EnvConfig, list[ProbeResult]]:
    """`config` with the AE the probe chooses, and every probe's result.

    Without candidates, or when D_l holds no defect pixel to rank (AUROC undefined), the preset's
    AE is kept and nothing is probed."""
    if not probe_config.candidates:
        return config, []
    resolved = config.resolved(split.labeled[0].image.shape[0])
    masks = np.stack([s.mask for s in split.labeled]).astype(bool)
    if not masks.any() or masks.all():
        return config, []
    results = [probe(split, resolved, ae, probe_config.updates, seed, device)
               for ae in candidate_aes(config, probe_config)]
    best = select(results, probe_config.margin)
    return dataclasses.replace(config, ae=best.ae), results


def select(results: list[ProbeResult], margin: float) -> ProbeResult:
    """The first result (the preset's AE) unless another's D_l profile AUROC beats the best so far
    by `margin`; marks the one chosen. A nan AUROC (a candidate that produced no usable maps)
    never wins."""
    best = results[0]
    for r in results[1:]:
        if r.dl_profile_auroc >= best.dl_profile_auroc + margin or (math.isnan(best.dl_profile_auroc)
                                                                    and not math.isnan(r.dl_profile_auroc)):
            best = r
    best.chosen = True
    return best


def describe(results: list[ProbeResult]) -> list[dict[str, Any]]:
    """JSON-able rows of the probe (for the run folder and the log); "label" names each candidate
    by the AE fields it changes ("preset AE" for the first)."""
    base = dataclasses.asdict(results[0].ae) if results else {}
    rows = []
    for k, r in enumerate(results):
        ae = dataclasses.asdict(r.ae)
        label = ", ".join(f"{f}={v}" for f, v in ae.items() if v != base[f]) if k else "preset AE"
        rows.append({"label": label or "preset AE again", "ae": ae, "dl_profile_auroc": r.dl_profile_auroc,
                     "dl_loss_auroc": r.dl_loss_auroc, "ae_vs_mean_colour": r.ae_vs_mean_colour,
                     "seconds": round(r.seconds, 1), "chosen": r.chosen})
    return rows
