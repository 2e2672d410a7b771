"""EnvConfig from the plain keyword arguments of `gymnasium.make` (a preset name, a dict of
settings): what a spec read back from JSON holds (envs.batch_sampling_env.BatchSamplingEnv)."""
from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import fields
from typing import Any

from envs.config import ENV_PRESETS, ConfigError, EnvConfig, make_env_config

#: The preset gym.make starts from without `preset=` (EnvConfig()'s defaults are its settings).
DEFAULT_ENV_PRESET = "chu2020"

def env_config_from_kwargs(preset: str | None = None, config: Any = None) -> EnvConfig:
    """The EnvConfig that `gymnasium.make`'s `preset` and `config` keyword arguments name.

    `config` may be an EnvConfig (used as it is), a dict of settings applied on top of `preset`
    (default DEFAULT_ENV_PRESET) in any of the forms `--set` and config.json use: nested groups
    ({"sampler": {"patch_size": 8}}), dotted keys ({"sampler.patch_size": 8}) or the old flat names
    ({"patch_size": 8}), or None (the preset). A dict is what `EnvSpec.to_json` turns an EnvConfig
    into, so a spec made from JSON builds the same env again."""
    if preset is not None and not isinstance(preset, str):
        raise ConfigError(f"preset={preset!r}: expected a preset name, one of {', '.join(sorted(ENV_PRESETS))}")
    if config is None:
        return make_env_config(preset or DEFAULT_ENV_PRESET)
    if isinstance(config, EnvConfig):
        if preset is not None:
            raise ConfigError(f"preset={preset!r} and config=EnvConfig(...): give one of them (a dict config is "
                              "applied on top of the preset)")
        return copy.deepcopy(config)
    if isinstance(config, Mapping):
        return make_env_config(preset or DEFAULT_ENV_PRESET, **flatten_settings(config))
    raise ConfigError(f"config={config!r}: expected an EnvConfig or a dict of settings such as "
                      '{"sampler.patch_size": 8}, got ' + type(config).__name__)


def preset_of(config: EnvConfig) -> str | None:
    """The name of the ENV_PRESETS entry `config` equals (unresolved, as given), or None."""
    return next((name for name, preset in ENV_PRESETS.items() if preset == config), None)


def flatten_settings(d: Mapping[str, Any]) -> dict[str, Any]:
    """{"sampler": {"patch_size": 8}, "device": "cpu"} -> {"sampler.patch_size": 8, "device": "cpu"}:
    nested group dicts as dotted keys, so that a partial group overrides only the fields it names."""
    groups = {f.name for f in fields(EnvConfig) if f.name != "device"}
    out: dict[str, Any] = {}
    for key, value in d.items():
        if key in groups and isinstance(value, Mapping):
            out.update({f"{key}.{k}": v for k, v in value.items()})
        else:  # a setting, or a whole group as its dataclass (sampler=SamplerConfig(...))
            out[key] = value
    return out
