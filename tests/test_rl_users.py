"""The env as an RL researcher meets it (issue 39): gymnasium.make with plain keyword arguments and
a JSON spec, the env checkers at every preset, SB3 directly (save / load / evaluate_policy, the
policy factory, frame stacking), scoring a policy trained outside train.py, hyperparameters from
the command line, time limits, rendering and the classifier's checks. One test per thing a user
did, on tiny data and settings (a few AE updates each)."""
from __future__ import annotations

import csv
import importlib.util
import json

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.envs.registration import EnvSpec
from gymnasium.utils.env_checker import check_env as gym_check_env
from stable_baselines3 import PPO
from stable_baselines3.common.env_checker import check_env as sb3_check_env
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.evaluation import evaluate_policy
from stable_baselines3.common.vec_env import VecFrameStack

from agents.sb3 import SamplerExtractor, policy_kwargs
from baselines.reference import ReferenceConfig
from common.settings import ConfigError
from envs import ENV_ID, BatchSamplingEnv, ClassifierConfig, DataConfig, ResidualClassifierEnv
from envs.config import SamplerConfig, make_env_config
from envs.rendering import GAP, MIN_SIDE
from models.segmenter import Segmenter
from runner.ablation import Cell, Plan, cell_train_args
from runner.agent_kwargs import sweep_agent_args, sweep_agent_kwargs
from runner.evaluation import evaluate_run
from runner.factory import make_agent, too_short_warning
from runner.scoring import PolicyActions, score_policy
from runner.spec import parse_args, saved_args
from runner.training import train
from tests.helpers import TINY_CHU, toy_split

#: Tiny env settings as plain values (what a user passes to gym.make): warm-up shorter than the
#: profiles, so l_pred does not exist at first (the check_env failure of issue 39, item 5).
SETTINGS = {"sampler.patch_size": 8, "sampler.patches_per_update": 4, "ae_training.reinit_every": 10,
            "ae_training.warmup_updates": 1, "profiles.length": 2, "predictor.buffer_size": 8,
            "predictor.batch": 4, "predictor.crop": None, "device": "cpu"}
#: The preset-specific settings made tiny too (pretraining, noghredeh2025's crop).
PRESET_SETTINGS = {"chu2020": {}, "ours": {"ae_training.pretrain_steps": 2},
                   "noghredeh2025": {"ae_training.pretrain_steps": 2, "sampler.crop_size": 16, "sampler.stride": 4}}
CONTRIB = pytest.mark.skipif(importlib.util.find_spec("sb3_contrib") is None, reason="sb3-contrib not installed")


@pytest.fixture
def kwargs(tiny_root) -> dict:
    """gym.make keyword arguments of a tiny env on the generated data, all plain values."""
    return dict(data_root=str(tiny_root), category="brick", image_size=32, n_labeled=3, config=dict(SETTINGS))


# ---------------------------------------------------------------- 1. a loaded model, the same world
def test_a_loaded_sb3_model_continues_in_the_world_it_was_trained_in(kwargs, tmp_path):
    env = gym.make(ENV_ID, **kwargs)
    model = PPO("MultiInputPolicy", env, policy_kwargs=policy_kwargs(input_size=16), n_steps=8, batch_size=8, seed=0)
    model.learn(16)  # 4 episodes = 4 AE updates
    process = env.unwrapped.process
    updates, best = process.updates, process.best_l_pred
    assert updates == SETTINGS["ae_training.warmup_updates"] + 4 and np.isfinite(best)
    model.save(tmp_path / "ppo.zip")
    loaded = PPO.load(tmp_path / "ppo.zip", env=env)  # SB3 re-seeds the env with the saved seed
    with pytest.warns(UserWarning, match="under way .* continues"):
        evaluate_policy(loaded, loaded.get_env(), n_eval_episodes=1, warn=False)
    assert process.updates == updates + 1 and process.best_l_pred <= best  # not restarted
    env.reset(seed=0, options={"restart": True})  # asked for: a fresh run
    assert process.updates == SETTINGS["ae_training.warmup_updates"]


# ---------------------------------------------------------------- 2. a scored run folder from any policy
def test_a_policy_trained_with_sb3_gets_a_folder_evaluate_and_predict_read(kwargs, tmp_path):
    env = gym.make(ENV_ID, render_mode="rgb_array", **kwargs)
    model = PPO("MultiInputPolicy", env, policy_kwargs=policy_kwargs(input_size=16), n_steps=8, batch_size=8, seed=0)
    model.learn(8)
    run = score_policy(model, env, tmp_path / "run", updates=3)
    with open(run / "log.csv") as f:
        rows = list(csv.DictReader(f))
    assert [r["episode"] for r in rows] == ["1", "2", "3"]
    config = json.loads((run / "config.json").read_text())
    assert config["args"]["agent"] == "policy:PPO" and config["env"]["sampler"]["patch_size"] == 8
    assert {p.name for p in run.glob("frames_*.png")} == {"frames_early.png", "frames_middle.png", "frames_late.png"}
    result = evaluate_run(run, overlays=0, device="cpu", reference=ReferenceConfig(methods=()))
    assert result["rows"][0]["method"].startswith("NBS") and np.isfinite(result["rows"][0]["pixel AUROC"])
    report = (run / "report.md").read_text()
    assert "What the sampler did" in report and "frames_late.png" in report
    images = [s.image for s in env.unwrapped.split.unlabeled[:2]]
    assert [m.shape for m in Segmenter.load(run, device="cpu").predict(images).masks] == [(32, 32)] * 2
    with pytest.raises(ValueError, match="already holds a run"):
        score_policy(model, env, run, updates=1)
    with pytest.raises(ValueError, match="in-memory split"):
        score_policy(lambda obs: 8, BatchSamplingEnv(split=toy_split(32), config=SETTINGS), tmp_path / "toy", 1)


# ---------------------------------------------------------------- 3. SB3's policies and the observation
def test_the_policy_factory_gives_sb3_policies_the_spec_network(kwargs):
    env = gym.make(ENV_ID, **kwargs)
    ours = PPO("MultiInputPolicy", env, policy_kwargs=policy_kwargs())
    flat = PPO("MultiInputPolicy", env)  # SB3's own extractor flattens the maps into an MLP
    count = lambda m: sum(p.numel() for p in m.policy.parameters())  # noqa: E731
    assert any(isinstance(m, SamplerExtractor) for m in ours.policy.modules()) and count(ours) < count(flat)
    stacked = VecFrameStack(make_vec_env(lambda: gym.make(ENV_ID, **kwargs)), 2, channels_order="first")
    obs = stacked.reset()
    assert obs["rgb"].shape == (1, 6, 32, 32)  # stacked along the channels, not the width
    PPO("MultiInputPolicy", stacked, policy_kwargs=policy_kwargs())  # the extractor reads stacked channels


@CONTRIB
def test_recurrent_and_maskable_policies_fit_and_drive_the_env(kwargs):
    """RecurrentPPO with the factory stays small; score_policy's actions carry its LSTM state
    through an episode and give MaskablePPO the env's action masks."""
    from sb3_contrib import MaskablePPO, RecurrentPPO

    env = gym.make(ENV_ID, **kwargs)
    recurrent = RecurrentPPO("MultiInputLstmPolicy", env, policy_kwargs=policy_kwargs())
    assert sum(p.numel() for p in recurrent.policy.parameters()) < 3_000_000  # 13.2M with SB3's own extractor
    obs, _ = env.reset(seed=0)
    actions = PolicyActions(recurrent, env)
    assert 0 <= int(actions(obs)) < 9 and actions.state is not None and not actions.start
    masked = PolicyActions(MaskablePPO("MultiInputPolicy", env, policy_kwargs=policy_kwargs()), env, deterministic=True)
    env.unwrapped.action_masks = lambda: np.eye(9, dtype=bool)[4]  # only action 4 allowed
    assert int(masked(obs)) == 4


# ---------------------------------------------------------------- 4. hyperparameters from the command line
def test_agent_kwargs_reach_the_algorithm_and_are_recorded(tiny_root, tmp_path, capsys):
    argv = [*TINY_CHU, "--data-root", str(tiny_root), "--agent", "sb3:DQN", "--updates", "2",
            "--agent-kwargs", '{"learning_starts": 50, "buffer_size": 64}', "--run-dir", str(tmp_path / "dqn")]
    run = train(argv)
    assert "the policy will not train" in capsys.readouterr().out  # 2 x 4 steps < 51
    saved = json.loads((run / "config.json").read_text())["args"]
    assert saved["agent_kwargs"] == {"learning_starts": 50, "buffer_size": 64}
    assert saved_args({k: v for k, v in saved.items() if k != "agent_kwargs"}).agent_kwargs is None  # older runs


def test_agent_kwargs_files_unknown_names_and_short_runs(tmp_path):
    zoo = tmp_path / "dqn.yml"
    zoo.write_text(f"{ENV_ID}:\n  n_timesteps: 1000\n  policy: MultiInputPolicy\n  learning_starts: 8\n"
                   "  learning_rate: lin_1e-3\n")
    args, _ = parse_args(["--agent", "sb3:DQN", "--agent-kwargs", str(zoo), "--updates", "4"])
    assert args.agent_kwargs == {"learning_starts": 8, "learning_rate": "lin_1e-3"}  # rl-zoo3's own keys dropped
    env = BatchSamplingEnv(split=toy_split(32), config=SETTINGS)
    agent = make_agent(args, env, "cpu")
    assert agent.model.learning_starts == 8 and agent.model.lr_schedule(0.5) == pytest.approx(5e-4)
    assert too_short_warning(args, agent) is None  # 4 x 4 steps > 8
    args.updates = 1
    assert "learning_starts=8" in too_short_warning(args, agent)
    args.agent_kwargs = {"learning_strats": 8}
    with pytest.raises(ValueError, match="learning_strats for DQN; it accepts: .*learning_starts"):
        make_agent(args, env, "cpu")
    args.agent, args.agent_kwargs = "reinforce", {"gama": 0.9}
    with pytest.raises(ValueError, match="gama for reinforce; it accepts: .*gamma"):
        make_agent(args, env, "cpu")
    plan = Plan("out", 2, [], 1, 0, agent_args=sweep_agent_args(["sb3:DQN", "reinforce"],
                                                                '{"sb3:DQN": {"learning_starts": 8}}', None))
    cell_args = cell_train_args(Cell("brick", "chu2020", "sb3:DQN", 0), plan)
    assert cell_args[cell_args.index("--agent-kwargs") + 1] == '{"learning_starts": 8}'
    assert "--agent-kwargs" not in cell_train_args(Cell("brick", "chu2020", "reinforce", 0), plan)
    with pytest.raises(SystemExit, match="agents of --agents"):
        sweep_agent_kwargs('{"sb3:PPO": {"n_steps": 8}}', ["sb3:DQN"])


# ---------------------------------------------------------------- 5. the checkers, at every preset
@pytest.mark.parametrize("preset", sorted(PRESET_SETTINGS))
def test_both_checkers_pass_at_every_preset_before_the_predictor_trains(preset, kwargs):
    kwargs["config"].update(PRESET_SETTINGS[preset])
    env = gym.make(ENV_ID, preset=preset, render_mode="rgb_array", **kwargs)
    _, info = env.reset(seed=0)
    assert info["l_pred"] is None  # no NaN: equal infos compare equal
    gym_check_env(env.unwrapped)  # render check included
    sb3_check_env(env.unwrapped, warn=False)


def test_a_missing_figure_is_a_blank_log_cell(tiny_root, tmp_path):
    run = train([*TINY_CHU, "--data-root", str(tiny_root), "--updates", "2", "--set", "ae_training.warmup_updates=1",
                 "--run-dir", str(tmp_path / "r")])
    with open(run / "log.csv") as f:
        first = next(csv.DictReader(f))
    assert first["l_pred"] == "" and first["ae_loss"] != ""


# ---------------------------------------------------------------- 6. configuration as plain values
def test_plain_kwargs_presets_and_a_json_spec_make_the_env(kwargs, tiny_root):
    env = gym.make(ENV_ID, preset="ours", **kwargs)
    config = env.unwrapped.config
    assert config.ae.norm and config.sampler.patch_size == 8 and env.unwrapped.preset == "ours"
    again = gym.make(EnvSpec.from_json(env.spec.to_json()))
    assert again.unwrapped.config == config and again.unwrapped.data_config == env.unwrapped.data_config
    objects = gym.make(ENV_ID, data=DataConfig(data_root=str(tiny_root), image_size=32, n_labeled=3),
                       config=make_env_config(**SETTINGS))  # dataclasses: the spec holds them as dicts
    assert gym.make(EnvSpec.from_json(objects.spec.to_json())).unwrapped.config == objects.unwrapped.config
    nested = gym.make(ENV_ID, **{**kwargs, "config": {"sampler": {"patch_size": 8, "patches_per_update": 4},
                                                      "device": "cpu"}})
    assert nested.unwrapped.config.sampler.patches_per_update == 4
    with pytest.raises(ConfigError, match="config='abc': expected an EnvConfig or a dict"):
        gym.make(ENV_ID, config="abc")
    with pytest.raises(ConfigError, match="unknown keyword argument.* patch_size"):
        gym.make(ENV_ID, patch_size=8)
    with pytest.raises(ConfigError, match="unknown preset 'papers'"):
        gym.make(ENV_ID, preset="papers")


def test_only_integer_actions_are_taken(tiny_root):
    env = BatchSamplingEnv(split=toy_split(32), config=SETTINGS)
    env.reset(seed=0)
    for bad in (2.7, "3", True, np.float32(1.0), np.array([3]), 9, -1):
        with pytest.raises(ValueError, match=r"expected an integer in 0\.\.8"):
            env.step(bad)
    for good in (3, np.int64(3), np.array(3)):
        env.step(good)
    classifier = ResidualClassifierEnv(data=dict(data_root=str(tiny_root), image_size=32, n_labeled=4),
                                       config=ClassifierConfig(ae_steps=2, ae_batch=4, patch_size=8, device="cpu"))
    classifier.reset(seed=0)
    with pytest.raises(ValueError, match=r"expected an integer in 0\.\.1"):
        classifier.step(0.5)


# ---------------------------------------------------------------- 7. episode limits
def test_a_time_limit_shorter_than_an_episode_warns(kwargs):
    assert gym.spec(ENV_ID).max_episode_steps == SamplerConfig().patches_per_update
    env = gym.make(ENV_ID, max_episode_steps=3, **kwargs)  # episodes of 4 patches
    env.reset(seed=0)
    with pytest.warns(UserWarning, match="max_episode_steps=4"):
        for _ in range(3):
            truncated = False
            while not truncated:
                *_, truncated, _ = env.step(8)
            env.reset()
    assert env.unwrapped.process.updates == SETTINGS["ae_training.warmup_updates"]  # the AE never trained


# ---------------------------------------------------------------- 8. crops larger than the images
def test_a_crop_larger_than_the_image_warns():
    with pytest.warns(UserWarning, match="sampler.crop_size=128 is larger than the images \\(32 px\\)"):
        BatchSamplingEnv(split=toy_split(32), preset="noghredeh2025", config={"sampler.patch_size": 8, "device": "cpu"})


# ---------------------------------------------------------------- 9. rendering
def test_render_shows_image_loss_map_and_history(kwargs):
    env = gym.make(ENV_ID, render_mode="rgb_array", **kwargs)
    env.reset(seed=0)
    env.step(2)
    frame = env.render()
    assert frame.dtype == np.uint8 and frame.shape == (MIN_SIDE, 3 * MIN_SIDE + 2 * GAP, 3)
    image = frame[:, :MIN_SIDE]
    assert ((image == (0, 255, 0)).all(axis=2)).any()  # the patch outline
    assert gym.make(ENV_ID, **kwargs).unwrapped.render() is None  # no render mode: a warning, no frame


# ---------------------------------------------------------------- 11. the classifier's checks
def test_the_classifier_trains_its_ae_once_per_seed(tiny_root):
    env = ResidualClassifierEnv(data=dict(data_root=str(tiny_root), image_size=32, n_labeled=4),
                                config={"ae_steps": 3, "ae_batch": 4, "patch_size": 8, "device": "cpu"})
    trained = []
    original = env._train_ae
    env._train_ae = lambda: trained.append(1) or original()
    first, _ = env.reset(seed=3)
    state = env.np_random.bit_generator.state
    env.reset(seed=4)
    again, _ = env.reset(seed=3)
    assert len(trained) == 2 and env.np_random.bit_generator.state == state
    for key in first:
        np.testing.assert_array_equal(first[key], again[key])
    gym_check_env(env)  # resets with seed 123 five times and with 456 once
    assert len(trained) == 4
