"""Config dataclasses with typed, range-checked fields, dotted overrides and a JSON round trip.

Every config of the package (the env's groups, the AE's shape, the data, the final predictor, the
AE probe) declares its fields with `setting(default, ...)`, which records what a value may be, and
calls `check_fields(self)` in `__post_init__`. So a config is checked the moment it is built,
whichever way its values came in: `--set`, a run's config.json, `gymnasium.make` keyword
arguments or a bundle's metadata. A bad value raises `ConfigError`, whose message names the field,
the value and what is allowed, e.g. `sampler.stride=0: must be >= 1`.

`from_dict` / `to_dict` convert a (nested) config to and from plain JSON data; `with_overrides`
sets fields by dotted key (`"predictor.width": 32`), the form `--set KEY=VALUE` takes.
"""
from __future__ import annotations

import dataclasses
import math
import typing
from collections.abc import Callable, Mapping
from dataclasses import MISSING, field
from typing import Any


class ConfigError(ValueError):
    """A setting has a wrong type or is out of range; the message names it and what is allowed."""


def setting(default: Any = MISSING, *, ge: float | None = None, gt: float | None = None,
            le: float | None = None, lt: float | None = None, choices: tuple[Any, ...] | None = None,
            power_of_two: bool = False, factory: Callable[[], Any] | None = None) -> Any:
    """A dataclass field with the range its value must lie in (checked by check_fields): bounds
    (ge/gt/le/lt, inclusive or not), a set of `choices`, or a power of two. None always passes
    where the annotation allows None."""
    meta = {"ge": ge, "gt": gt, "le": le, "lt": lt, "choices": choices, "power_of_two": power_of_two}
    if factory is not None:
        return field(default_factory=factory, metadata=meta)
    return field(default=default, metadata=meta)


def _type_problem(value: Any, annotation: str, owner: type) -> tuple[str | None, Any]:
    """(why `value` does not fit `annotation`, or None; the value normalised: lists of numbers to
    tuples, ints to floats for float fields)."""
    options = [t.strip() for t in annotation.split("|")]
    if value is None:
        return (None, None) if "None" in options else ("a value is required", value)
    problems = []
    for t in (o for o in options if o != "None"):
        if t == "bool":
            if isinstance(value, bool):
                return None, value
            problems.append("expected true or false")
        elif t == "int":
            if isinstance(value, int) and not isinstance(value, bool):
                return None, value
            problems.append("expected a whole number")
        elif t == "float":
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                return (None, float(value)) if math.isfinite(value) else ("expected a finite number", value)
            problems.append("expected a number")
        elif t == "str":
            if isinstance(value, str):
                return None, value
            problems.append("expected text")
        elif t.startswith("dict"):
            if isinstance(value, dict):
                return None, value
            problems.append("expected a mapping of names to values")
        elif t.startswith("tuple[dict"):
            if isinstance(value, (list, tuple)) and all(isinstance(v, dict) for v in value):
                return None, tuple(dict(v) for v in value)
            problems.append('expected a list of {"field": value} objects, e.g. [{"norm": false}]')
        elif t.startswith("tuple[str"):
            if isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value):
                return None, tuple(value)
            problems.append('expected a list of names, e.g. ["ssim"]')
        elif t.startswith("tuple"):
            if isinstance(value, (list, tuple)) and all(
                    isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in value):
                kinds = t[len("tuple["):-1]
                return None, tuple(float(v) if kinds.startswith("float") else v for v in value)
            problems.append("expected a list of numbers, e.g. [1, 2]")
        else:  # a nested config: its own class checks it
            cls = _nested_class(owner, t)
            if cls is not None and isinstance(value, cls):
                return None, value
            problems.append(f"expected a {t}")
    return problems[0], value


def _nested_class(owner: type, name: str) -> type | None:
    hints = typing.get_type_hints(owner)
    for f in dataclasses.fields(owner):
        hint = hints.get(f.name)
        if dataclasses.is_dataclass(hint) and hint.__name__ == name:
            return hint
    return None


def _range_problem(value: Any, meta: Mapping[str, Any]) -> str | None:
    if value is None or isinstance(value, (bool, str, tuple)) and not meta.get("choices"):
        return None
    if meta.get("choices") is not None and value not in meta["choices"]:
        return f"must be one of {', '.join(map(repr, meta['choices']))}"
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        return None
    if meta.get("ge") is not None and value < meta["ge"]:
        return f"must be >= {meta['ge']:g}"
    if meta.get("gt") is not None and value <= meta["gt"]:
        return f"must be > {meta['gt']:g}"
    if meta.get("le") is not None and value > meta["le"]:
        return f"must be <= {meta['le']:g}"
    if meta.get("lt") is not None and value >= meta["lt"]:
        return f"must be < {meta['lt']:g}"
    if meta.get("power_of_two") and (value < 1 or int(value) & (int(value) - 1)):
        return "must be a power of two"
    return None


def check_fields(obj: Any) -> None:
    """Check every field of the dataclass `obj` against its annotation and its `setting` range,
    normalising in place (lists to tuples, ints to floats). Raises ConfigError naming the field."""
    name = getattr(obj, "CONFIG_NAME", "")
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        problem, value = _type_problem(value, str(f.type), type(obj))
        problem = problem or _range_problem(value, f.metadata)
        if problem:
            raise ConfigError(f"{name + '.' if name else ''}{f.name}={value!r}: {problem}")
        object.__setattr__(obj, f.name, value)


def check_field_types(obj: Any) -> None:
    """Check every field of the dataclass `obj` against its annotation only (no ranges), for plain
    dataclasses read back from a file (train.py's Args from config.json); `list[str]` fields take a
    list of text or None; fields of other types are left alone. Raises ConfigError naming the
    field, its value and the type expected."""
    for f in dataclasses.fields(obj):
        value, annotation = getattr(obj, f.name), str(f.type)
        if annotation.startswith("list[str"):
            ok = value is None or isinstance(value, list) and all(isinstance(v, str) for v in value)
            problem = None if ok else 'expected a list of text, e.g. ["a=1"]'
        elif {t.strip() for t in annotation.split("|")} <= {"bool", "int", "float", "str", "None"}:
            problem, value = _type_problem(value, annotation, type(obj))
        else:
            continue
        if problem:
            raise ConfigError(f"{f.name}={value!r}: {problem}")
        object.__setattr__(obj, f.name, value)


def to_dict(obj: Any) -> dict[str, Any]:
    """JSON-able dict of a (nested) config dataclass (tuples become lists when dumped)."""
    return dataclasses.asdict(obj)


def from_dict(cls: type, data: Mapping[str, Any], where: str = "") -> Any:
    """The config `cls` from its dict form (nested configs from nested dicts). Unknown keys and
    bad values raise ConfigError, prefixed with `where` (e.g. the file they came from)."""
    try:
        return _from_dict(cls, data, "")
    except ConfigError as e:
        raise ConfigError(f"{where}: {e}" if where else str(e)) from None


def _from_dict(cls: type, data: Mapping[str, Any], path: str) -> Any:
    if not isinstance(data, Mapping):
        raise ConfigError(f"{path.rstrip('.') or cls.__name__}: expected a mapping of settings, got "
                          f"{type(data).__name__}")
    hints = typing.get_type_hints(cls)
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - known, key=str)
    if unknown:
        raise ConfigError(f"unknown setting(s) {', '.join(path + str(k) for k in unknown)}; known"
                          f"{' in ' + path.rstrip('.') if path else ''}: {', '.join(sorted(known))}")
    kwargs = {}
    for key, value in data.items():
        nested = hints.get(key)
        if dataclasses.is_dataclass(nested) and isinstance(value, Mapping):
            value = _from_dict(nested, value, f"{path}{key}.")
        kwargs[key] = value
    return cls(**kwargs)


def with_overrides(config: Any, overrides: Mapping[str, Any], aliases: Mapping[str, str] | None = None) -> Any:
    """A copy of `config` with fields set by dotted key ("predictor.width": 32); a key found in
    `aliases` is first renamed (old flat names). Values are checked as the config is rebuilt."""
    d = to_dict(config)
    for key, value in overrides.items():
        key = (aliases or {}).get(key, key)
        target, parts = d, key.split(".")
        for part in parts[:-1]:
            if not isinstance(target.get(part), dict):
                raise ConfigError(f"{key}: {part!r} is not a group of settings; groups: "
                                  f"{', '.join(k for k, v in target.items() if isinstance(v, dict))}")
            target = target[part]
        if parts[-1] not in target:
            raise ConfigError(f"{key}: unknown setting; known here: {', '.join(sorted(target))}")
        if isinstance(target[parts[-1]], dict) and dataclasses.is_dataclass(value):
            value = to_dict(value)
        target[parts[-1]] = value
    return from_dict(type(config), d)


def parse_value(text: str, current: Any) -> Any:
    """A --set VALUE as JSON (numbers, true/false, null, lists, objects), or the text itself when
    the field holds text or the value is not JSON."""
    import json

    if isinstance(current, str):
        return text
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def leaf_keys(config: Any, prefix: str = "") -> dict[str, Any]:
    """Every setting of a (nested) config by dotted key, with its value."""
    out = {}
    for f in dataclasses.fields(config):
        value = getattr(config, f.name)
        if dataclasses.is_dataclass(value):
            out.update(leaf_keys(value, f"{prefix}{f.name}."))
        else:
            out[prefix + f.name] = value
    return out
