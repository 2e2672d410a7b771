"""--agent-kwargs: an agent's hyperparameters for train.py (a JSON object, or a .json / .yaml file,
rl-zoo3's form included) and per agent for ablate.py, with the other per-agent flags of a sweep."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from envs import CLASSIFIER_ENV_ID, ENV_ID


#: rl-zoo3's per-env keys that are not the algorithm's own arguments: train.py sets them otherwise
#: (--updates; the policy is the spec's network), so a zoo file is read without them.
ZOO_KEYS = ("n_timesteps", "policy")
ENV_IDS = {"batch-sampling": ENV_ID, "residual-classifier": CLASSIFIER_ENV_ID}


def read_agent_kwargs(text: str, env: str = "batch-sampling") -> dict[str, Any]:
    """--agent-kwargs as a dict: a JSON object, or the path of a .json / .yaml / .yml file holding
    one. A file in rl-zoo3's form ({env id: {hyperparameter: value}}) gives the section of the
    run's env, without rl-zoo3's own keys (ZOO_KEYS). Raises ValueError saying what is wrong."""
    path = Path(text).expanduser()
    if not text.lstrip().startswith("{") and path.suffix.lower() in (".json", ".yaml", ".yml"):
        if not path.is_file():
            raise ValueError(f"{text}: no such file")
        if path.suffix.lower() == ".json":
            data = _json(path.read_text(), str(path))
        else:
            try:
                import yaml
            except ImportError:
                raise ValueError(f"{text}: reading YAML needs PyYAML (pip install pyyaml); or give JSON") from None
            data = yaml.safe_load(path.read_text())  # safe_load: plain data only, no Python objects
    else:
        data = _json(text, "the argument")
    if not isinstance(data, dict):
        raise ValueError(f"expected a JSON object (or mapping) of settings, got {type(data).__name__}")
    section = data.get(ENV_IDS.get(env, env))
    if isinstance(section, dict):
        data = {k: v for k, v in section.items() if k not in ZOO_KEYS}
    return data


def _json(text: str, where: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise ValueError(f"{where} is not JSON ({e}); e.g. '{{\"learning_starts\": 50}}' or a .yaml file") from None


def sweep_agent_kwargs(text: str | None, agents: list[str]) -> dict[str, dict[str, Any]]:
    """ablate.py --agent-kwargs: a JSON object (or .json / .yaml file) of hyperparameters per agent,
    e.g. {"sb3:DQN": {"learning_starts": 50}}; each cell of that agent gets its entry as train.py's
    --agent-kwargs, which checks the names."""
    if text is None:
        return {}
    try:
        data = read_agent_kwargs(text, env="")
    except ValueError as e:
        raise SystemExit(f"--agent-kwargs: {e}") from None
    for agent, settings in data.items():
        if agent not in agents or not isinstance(settings, dict):
            raise SystemExit(f"--agent-kwargs: expected {{agent: {{setting: value}}}} with agents of --agents "
                             f"({', '.join(agents)}), got {agent!r}: {settings!r}")
    return data


def sweep_agent_args(agents: list[str], agent_kwargs: str | None,
                     baseline_rate: float | None) -> dict[str, tuple[str, ...]]:
    """ablate.py's train.py flags per agent: --baseline-rate for the reinforce cells (train.py
    refuses it for other agents) and each agent's entry of --agent-kwargs (sweep_agent_kwargs)."""
    per_agent = sweep_agent_kwargs(agent_kwargs, agents)
    out = {agent: ("--agent-kwargs", json.dumps(kwargs)) for agent, kwargs in per_agent.items()}
    if baseline_rate is not None:
        out["reinforce"] = ("--baseline-rate", str(baseline_rate), *out.get("reinforce", ()))
    return out
