"""common.profiling and scripts/profile_update.py: the parts of an update are timed, and only when asked."""
from __future__ import annotations

import importlib.util
from pathlib import Path

from common import profiling


class FakeClock:
    """perf_counter that moves only when the test says so: timings without timing."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


def test_sections_add_up_only_while_profiling(monkeypatch):
    clock = FakeClock()
    monkeypatch.setattr(profiling.time, "perf_counter", clock)
    with profiling.section("x"):
        clock.sleep(1.0)
    assert profiling.stop() == {}  # off: nothing recorded
    profiling.start()
    for _ in range(3):
        with profiling.section("x"):
            clock.sleep(0.25)
    out = profiling.stop()
    assert out["x"] == (0.75, 3)
    with profiling.section("x"):
        clock.sleep(1.0)
    assert profiling.stop() == {}


def test_nested_sections_are_charged_once(monkeypatch):
    """A section inside another counts for itself only, so the parts add up to the wall time."""
    clock = FakeClock()
    monkeypatch.setattr(profiling.time, "perf_counter", clock)
    profiling.start()
    with profiling.section("outer"):
        clock.sleep(2.0)
        with profiling.section("inner"):
            clock.sleep(3.0)
        clock.sleep(0.5)
    out = profiling.stop()
    assert out == {"outer": (2.5, 1), "inner": (3.0, 1)}


def test_profile_script_times_every_part_of_a_reinforce_update(tmp_path):
    spec = importlib.util.spec_from_file_location("profile_update",
                                                  Path(__file__).parents[1] / "scripts" / "profile_update.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    from data.synthetic import generate_synthetic_mvtec

    root = generate_synthetic_mvtec(tmp_path / "data", seed=0, image_size=32, n_train_good=2, n_test_good=2,
                                    n_per_defect=2)
    argv = ["--agent", "reinforce", "--data-root", str(root), "--image-size", "32", "--n-labeled", "3",
            "--device", "cpu", "--set", "patches_per_update=4", "--set", "profile_length=2"]
    parts, wall = script.profile_agent(argv, warmup=1, updates=3, checkpoint_every=2)
    assert {"env.step", "AE step", "D_l loss maps", "predictor step", "observation", "policy forward",
            "policy update", "logging", "checkpoint"} <= set(parts)
    assert parts["AE step"][1] == 3 and parts["policy update"][1] == 3 and parts["env.step"][1] == 12
    assert sum(parts[k][0] for k in ("env.step", "policy forward", "policy update")) <= wall
    assert all(seconds >= 0 for seconds, _ in parts.values()) and sum(s for s, _ in parts.values()) <= wall
    rows = script.table(parts, wall, 3)
    assert rows[-1].startswith("| **total** |") and "100.0 %" in rows[-1]
