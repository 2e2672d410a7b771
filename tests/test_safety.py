"""Opening a run folder never executes code from it: every load is weights-only."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch

from agents.reinforce import REINFORCE
from baselines.reference import load_method_maps, save_method_maps
from evaluation.decisions import MethodMaps
from common.files import UnsafeFileError, load_weights
from runner.folder import RunFolder
from tests.helpers import tiny_env


class Exploit:
    """Unpickling this runs a shell command (it creates the marker file)."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def test_a_crafted_checkpoint_is_refused_without_running_its_code(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "checkpoint.pt"
    torch.save({"env": {}, "agent": Exploit(marker)}, path)
    with pytest.raises(UnsafeFileError, match="refusing to load .*checkpoint.pt"):
        load_weights(path)
    with pytest.raises(SystemExit, match="refusing to load"):
        RunFolder(tmp_path).load_file("checkpoint.pt", torch.device("cpu"))
    with pytest.raises(UnsafeFileError):
        REINFORCE.load(path, tiny_env())
    assert not marker.exists()


def test_a_corrupt_checkpoint_names_the_file(tmp_path):
    path = tmp_path / "checkpoint.pt"
    path.write_bytes(b"\x00not a torch file")
    with pytest.raises(UnsafeFileError, match="cannot read .*checkpoint.pt"):
        load_weights(path)


def test_a_pickled_baseline_cache_is_refused(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "cache.npz"
    np.savez(path, meta=np.array([Exploit(marker)], dtype=object))
    with pytest.raises(ValueError):
        load_method_maps(path)
    assert not marker.exists()
    maps = [MethodMaps("U-Net", "unet", np.ones((2, 4, 4), np.float32), np.ones((2, 4, 4), np.float32)),
            MethodMaps("AE", "ae", None, note="not applicable")]
    save_method_maps(tmp_path / "ok.npz", maps)
    back = load_method_maps(tmp_path / "ok.npz")
    assert [m.name for m in back] == ["U-Net", "AE"] and back[1].scores is None
    np.testing.assert_array_equal(back[0].prob, maps[0].prob)


def test_env_and_agent_state_loads_weights_only(tmp_path):
    env = tiny_env()
    env.reset(seed=0)
    agent = REINFORCE(env, seed=0)
    agent.learn(3)
    torch.save({"env": env.state_dict(), "agent": agent.state_dict()}, tmp_path / "checkpoint.pt")
    ckpt = load_weights(tmp_path / "checkpoint.pt")
    fresh = tiny_env()
    fresh.load_state_dict(ckpt["env"])
    again = REINFORCE(fresh, seed=1)
    again.load_state_dict(ckpt["agent"])
    for a, b in zip(agent.policy.parameters(), again.policy.parameters()):
        torch.testing.assert_close(a, b)
    assert fresh.process.updates == env.process.updates


def test_sb3_agent_state_is_tensors_and_round_trips(tmp_path):
    pytest.importorskip("stable_baselines3")
    from agents.sb3 import SB3Agent

    env = tiny_env()
    agent = SB3Agent(env, "PPO", seed=0, n_steps=8, batch_size=8)
    agent.learn(2)
    torch.save(agent.state_dict(), tmp_path / "agent.pt")
    state = load_weights(tmp_path / "agent.pt")
    other = SB3Agent(tiny_env(), "PPO", seed=1, n_steps=8, batch_size=8)
    other.load_state_dict(state)
    for a, b in zip(agent.model.policy.parameters(), other.model.policy.parameters()):
        torch.testing.assert_close(a, b)
    assert other.episodes == agent.episodes and other.model.num_timesteps == agent.model.num_timesteps


def test_a_full_disk_gives_one_clear_error_and_leaves_no_partial_file(tmp_path, monkeypatch):
    from common.files import RunFileError, write_json_atomic

    target = tmp_path / "metrics.json"
    target.write_text('{"old": 1}')

    def full_disk(self, *args, **kwargs):
        self.open("w").write('{"half')  # something reaches the disk before it fills up
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(Path, "write_text", full_disk)
    with pytest.raises(RunFileError, match="could not write .*metrics.json: no space left on the device"):
        write_json_atomic(target, {"rows": []})
    monkeypatch.undo()
    assert target.read_text() == '{"old": 1}'  # the previous file is intact
    assert [p.name for p in tmp_path.iterdir()] == ["metrics.json"]  # no stray temporary file


def test_a_corrupt_latest_checkpoint_falls_back_to_the_previous_one(tmp_path, capsys):
    run = RunFolder(tmp_path)
    checkpoint = lambda episodes: {"env": {"updates": episodes}, "agent": {"episodes": episodes}, "wall_s": 1.0}  # noqa: E731
    run.save_checkpoint(checkpoint(50))
    run.save_checkpoint(checkpoint(100))
    assert load_weights(tmp_path / "checkpoint.prev.pt")["agent"]["episodes"] == 50
    (tmp_path / "checkpoint.pt").write_bytes(b"\x00truncated")
    assert run.load_checkpoint(torch.device("cpu"))["agent"]["episodes"] == 50
    assert "checkpoint.pt" in capsys.readouterr().out
    (tmp_path / "checkpoint.pt").unlink()  # a crash between save_checkpoint's two renames
    assert run.load_checkpoint(torch.device("cpu"))["agent"]["episodes"] == 50
    torch.save([1, 2], tmp_path / "checkpoint.pt")  # readable, but not a checkpoint: the previous one too
    assert run.load_checkpoint(torch.device("cpu"))["agent"]["episodes"] == 50
    assert "holds a list" in capsys.readouterr().out
    (tmp_path / "checkpoint.pt").write_bytes(b"\x00truncated")
    (tmp_path / "checkpoint.prev.pt").write_bytes(b"")
    with pytest.raises(SystemExit, match="cannot read .*checkpoint.pt.*; and cannot read .*checkpoint.prev.pt"):
        run.load_checkpoint(torch.device("cpu"))
