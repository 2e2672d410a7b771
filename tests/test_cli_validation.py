"""Arguments that used to be accepted and then crashed or silently did the wrong thing."""
from __future__ import annotations

import pytest

import train


@pytest.mark.parametrize("setting, message", [
    ("profile_length=abc", "expected a whole number"),
    ("profile_length=2.5", "expected a whole number"),
    ("profile_length=true", "expected a whole number"),
    ("ae_lr=NaN", "expected a finite number"),
    ("ae_lr=Infinity", "expected a finite number"),
    ("heldout_predictors=1", "expected true or false"),
    ("fused_weights=[0.5, \"x\", 1]", "expected a list of numbers"),
    ("ae.width=wide", "expected a whole number"),
    ("patch_size=null", None),  # optional field: None is fine (the image-size default)
])
def test_set_values_are_checked_against_the_field_types(setting, message, tmp_path):
    argv = ["--set", setting, "--updates", "-1", "--run-dir", str(tmp_path / "r")]
    with pytest.raises(SystemExit) as e:
        train.main(argv)
    if message is None:  # the value passed; the run stopped at the next check
        assert "--updates must be >= 0" in str(e.value)
    else:
        assert f"--set {setting}" in str(e.value) and message in str(e.value)


def test_negative_updates_and_zero_checkpoint_interval_are_refused(tmp_path):
    with pytest.raises(SystemExit, match="--updates must be >= 0, got -5"):
        train.main(["--updates", "-5", "--run-dir", str(tmp_path / "a")])
    with pytest.raises(SystemExit, match="--checkpoint-every must be >= 1"):
        train.main(["--checkpoint-every", "0", "--run-dir", str(tmp_path / "b")])
    with pytest.raises(SystemExit, match="--policy-input-size must be >= 0"):
        train.main(["--policy-input-size", "-1", "--run-dir", str(tmp_path / "c")])
    with pytest.raises(SystemExit, match="--baseline-rate must be in"):
        train.main(["--baseline-rate", "1.5", "--run-dir", str(tmp_path / "d")])
    with pytest.raises(SystemExit, match="--baseline-rate is REINFORCE's"):
        train.main(["--baseline-rate", "0.1", "--agent", "sb3:PPO", "--run-dir", str(tmp_path / "e")])
    assert not any((tmp_path / d).exists() for d in "abcde")


def test_runs_saved_before_a_setting_existed_keep_what_they_trained_with():
    """config.json of a run from before --policy-input-size: resume and evaluate rebuild its agent
    with the policy at full size (what it trained with), not today's default."""
    from runner.spec import parse_args, saved_args

    assert parse_args([])[0].policy_input_size == 64
    old = saved_args({"seed": 3})
    assert old.policy_input_size == 0 and old.seed == 3
    assert saved_args({"policy_input_size": 32}).policy_input_size == 32
