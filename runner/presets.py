"""The presets a run can start from: each published system (and ours) as one plain MethodConfig.

    from runner.presets import PRESETS
    print(PRESETS["ours"])            # every setting, in groups

A MethodConfig is what `--preset` picks and `--set KEY=VALUE` changes: the env's settings
(envs.config.EnvConfig, in groups: sampler, ae, ae_training, profiles, predictor, rewards), the
final predictor made after training (`final`, models.final_predictor.FinalPredictorConfig) and the
AE probe before it (`probe`, runner.ae_probe.AEProbeConfig). Keys are dotted: `predictor.width`,
`final.steps`, `probe.candidates` (`env.` in front of an env group is optional). The flat names of
runs saved before the groups (`profile_length`, `predictor_refit_steps`, ...) still work. Why each
preset has its values: docs/method.md.
"""
from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from common.settings import ConfigError, check_fields, from_dict, leaf_keys, parse_value, to_dict, with_overrides
from envs.config import ENV_PRESETS, FLAT_NAMES, EnvConfig, unflatten
from models.final_predictor import FinalPredictorConfig
from runner.ae_probe import AEProbeConfig


@dataclass
class MethodConfig:
    """A preset: the env's settings, the final predictor and the AE probe."""

    env: EnvConfig = field(default_factory=EnvConfig)
    final: FinalPredictorConfig = field(default_factory=FinalPredictorConfig)
    probe: AEProbeConfig = field(default_factory=AEProbeConfig)

    def __post_init__(self) -> None:
        check_fields(self)
        inputs = self.final.inputs or self.env.predictor.inputs
        if self.final.image_members and inputs != "profile+rgb":
            raise ConfigError(f"final.image_members={self.final.image_members}: needs the final nets to read the "
                              f"image (final.inputs or predictor.inputs 'profile+rgb', got {inputs!r}): image-only "
                              "members sit beside nets that read it")


PRESETS: dict[str, MethodConfig] = {
    "chu2020": MethodConfig(ENV_PRESETS["chu2020"]),
    "noghredeh2025": MethodConfig(ENV_PRESETS["noghredeh2025"]),
    # Ours: after training, a final predictor chosen per run on D_l (models.final_predictor,
    # evaluation.choice): U-Nets on the best profiles + image and on the image only, cross-fit on
    # 3 groups of the labeled images, whose out-of-fold maps choose among the profiles' member
    # alone and its pools with the nets, the profiles' loss error (squared or SSIM), the threshold,
    # the CRF and the image score; the profiles' member alone where D_l cannot judge.
    "ours": MethodConfig(ENV_PRESETS["ours"], FinalPredictorConfig(
        steps=600, choose=True, folds=3, errors=("ssim",), arch="unet", inputs="profile+rgb", width=16,
        colour_jitter=0.2)),
}
#: What `python train.py` trains without --preset.
DEFAULT_PRESET = "ours"

#: Old flat names of the final predictor's and the AE probe's fields (in `env` before the groups).
OLD_FINAL_AND_PROBE = {**{f"predictor_refit_{k}": f"final.{k}" for k in (
    "steps", "members", "image_members", "pool", "profile_member", "heldout", "profile_dropout")},
    "ae_candidates": "probe.candidates", "ae_probe_updates": "probe.updates", "ae_probe_margin": "probe.margin"}
ENV_GROUPS = tuple(f for f in to_dict(EnvConfig()))


def canonical_key(key: str) -> str:
    """The dotted key of MethodConfig that `key` names: env groups with or without `env.`, the
    old flat names of the env (envs.config.FLAT_NAMES) and of the final predictor and probe."""
    if key in OLD_FINAL_AND_PROBE:
        return OLD_FINAL_AND_PROBE[key]
    if key in FLAT_NAMES:
        return "env." + FLAT_NAMES[key]
    if key.split(".")[0] in ENV_GROUPS:
        return "env." + key
    return key


def method_config(preset: str = DEFAULT_PRESET, overrides: Mapping[str, Any] | None = None) -> MethodConfig:
    """A fresh copy of a preset with `overrides` ({dotted key: value}, see canonical_key)."""
    if preset not in PRESETS:
        raise ConfigError(f"unknown preset {preset!r}; choose from {', '.join(sorted(PRESETS))}")
    config = copy.deepcopy(PRESETS[preset])
    if not overrides:
        return config
    return with_overrides(config, {canonical_key(k): v for k, v in overrides.items()})


def parse_set(config: MethodConfig, items: list[str]) -> dict[str, Any]:
    """--set KEY=VALUE items as {canonical key: value}, each VALUE read as JSON unless the
    setting holds text (common.settings.parse_value). Unknown keys raise ConfigError."""
    known = leaf_keys(config)
    out: dict[str, Any] = {}
    for item in items:
        key, sep, text = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"--set expects KEY=VALUE, got {item!r}")
        name = canonical_key(key.strip())
        if name not in known:
            groups = sorted({k.rsplit(".", 1)[0] for k in known})
            raise ConfigError(f"--set {item}: unknown setting; settings are GROUP.NAME with GROUP one of "
                              f"{', '.join(g.removeprefix('env.') for g in groups)} (see runner/presets.py)")
        out[name] = parse_value(text, known[name])
    return out


def method_config_from_saved(saved: Mapping[str, Any], where: str = "config.json") -> MethodConfig:
    """The MethodConfig of a run's config.json: "env" (grouped, or flat in runs saved before the
    groups, whose final-predictor and probe fields sit there too), "final" and "probe"."""
    env = saved.get("env")
    if not isinstance(env, Mapping):
        raise ConfigError(f"{where}: \"env\" is not a mapping of settings")
    final = dict(saved.get("final") or {})
    probe = dict(saved.get("probe") or {})
    for key, value in env.items():  # flat runs: predictor_refit_* and ae_* lived in env
        if key in OLD_FINAL_AND_PROBE:
            group, name = OLD_FINAL_AND_PROBE[key].split(".")
            (final if group == "final" else probe)[name] = value
    return from_dict(MethodConfig, {"env": unflatten(dict(env)), "final": final, "probe": probe}, where)
