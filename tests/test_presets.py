"""The noghredeh2025 preset: its state maps, rewards, schedules, pretraining and freezes; presets as
plain, overridable config objects in groups, with range-checked settings and the old flat names."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from gymnasium.utils.env_checker import check_env

from data.split import Split
from envs import BatchSamplingEnv
from common.settings import ConfigError
from envs.config import ENV_PRESETS, EnvConfig, SamplerConfig, env_config_from_dict, make_env_config
from runner.presets import PRESETS, MethodConfig, method_config, method_config_from_saved
from envs.rewards import alpha_schedule, frequency_cover_reward
from envs.state_maps import fuse_maps, local_variance, minmax, sobel_magnitude
from models.policy import observation_channels
from tests.helpers import toy_split

NOG = dict(patch_size=8, patches_per_update=4, reinit_every=40, warmup_updates=5, profile_length=4,
           buffer_size=16, predictor_batch=4, predictor_crop=None, crop_size=32, stride=4,
           pretrain_steps=10, predictor_freeze_updates=8, rl_feedback_after=10, device="cpu")


def nog_env(split: Split | None = None, **overrides) -> BatchSamplingEnv:
    return BatchSamplingEnv(split=split or toy_split(32), config=make_env_config("noghredeh2025", **{**NOG, **overrides}))


def episode(env: BatchSamplingEnv, action: int = 2) -> dict:
    done, info = False, {}
    while not done:
        _, _, done, _, info = env.step(action)
    return info


# ---------------------------------------------------------------- presets are plain configs
def test_presets_are_grouped_configs_and_copies():
    assert isinstance(PRESETS["noghredeh2025"], MethodConfig) and PRESETS["chu2020"].env == EnvConfig()
    assert ENV_PRESETS["ours"] is PRESETS["ours"].env  # the env part of a preset is the env's own preset
    c = method_config("noghredeh2025", {"rewards.beta_min": 0.3})
    assert c.env.rewards.beta_min == 0.3 and PRESETS["noghredeh2025"].env.rewards.beta_min == 0.15
    c.env.ae.dropout = 0.9  # a copy: the preset itself is untouched
    assert PRESETS["noghredeh2025"].env.ae.dropout == 0.3
    p = PRESETS["noghredeh2025"].env
    assert (p.sampler.state, p.rewards.clone, p.rewards.cover, p.predictor.alpha_decay) == (
        "noghredeh2025", "sobel", "frequency", True)
    assert p.ae.skip_levels == () and p.ae.norm and p.ae.leaky_relu and p.profiles.error == "absolute"
    assert (p.predictor.freeze_updates, p.rewards.rl_feedback_after, p.sampler.crop_size, p.sampler.stride) == (
        50, 100, 128, 24)
    o = PRESETS["ours"]  # its AE: no shortcuts, BatchNorm, half-image patches, pretrained; a final predictor
    r = o.env.resolved(128)
    assert (r.ae.skip_levels, r.ae.norm, r.sampler.patch_size, r.ae_training.pretrain_steps) == ((), True, 64, 500)
    assert (o.final.choose, o.final.folds, o.final.errors, o.env.profiles.select_on) == (True, 3, ("ssim",), "dl_auroc")
    with pytest.raises(ConfigError, match="unknown preset"):
        method_config("nope")


@pytest.mark.parametrize("make,message", [
    (lambda: SamplerConfig(stride=0), "sampler.stride=0: must be >= 1"),
    (lambda: SamplerConfig(stride=-4), "sampler.stride=-4"),
    (lambda: make_env_config(clone_reward="x"), "rewards.clone='x': must be one of 'mask', 'sobel'"),
    (lambda: make_env_config(**{"ae_training.warmup_updates": -1}), "warmup_updates=-1: must be >= 0"),
    (lambda: make_env_config(**{"ae_training.lr": -1}), "ae_training.lr=-1.0: must be > 0"),
    (lambda: make_env_config(**{"ae.width": 0}), "ae.width=0: must be >= 1"),
    (lambda: make_env_config(**{"ae.dropout": 2}), "ae.dropout=2.0: must be < 1"),
    (lambda: make_env_config(**{"predictor.width": 0}), "predictor.width=0"),
    (lambda: make_env_config(**{"profiles.length": "x"}), "profiles.length='x': expected a whole number"),
    (lambda: make_env_config(**{"sampler.nope": 1}), "sampler.nope: unknown setting"),
    (lambda: method_config("ours", {"final.image_members": 2, "final.inputs": "profile"}), "final.image_members"),
    (lambda: EnvConfig().resolved(100000), "image_size=100000"),
])
def test_every_setting_is_checked_when_the_config_is_built(make, message):
    """A bad value stops at construction with the setting's dotted name, the value and the range."""
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        make()


def test_old_flat_configs_and_names_still_load():
    """A config.json saved before the groups (flat "env", the final predictor's and the probe's
    fields in it) gives the same settings; runs from before predictor.shrink / prior_bias existed
    get the values they trained with; --set takes the old flat names too."""
    flat = {"patch_size": 16, "profile_length": 7, "predictor_inputs": "profile+rgb", "ae": {"norm": True},
            "predictor_refit_steps": 50, "predictor_refit_image_members": 1, "ae_probe_updates": 9, "cover_reward": "bonus"}
    m = method_config_from_saved({"env": flat})
    assert (m.env.sampler.patch_size, m.env.profiles.length, m.env.ae.norm) == (16, 7, True)
    assert (m.final.steps, m.final.image_members, m.probe.updates) == (50, 1, 9)
    assert (m.env.predictor.shrink, m.env.predictor.prior_bias) == (0.0, False)  # SAVED_BEFORE_FIELD
    grouped = {"env": dataclasses.asdict(m.env), "final": dataclasses.asdict(m.final), "probe": dataclasses.asdict(m.probe)}
    assert method_config_from_saved(grouped) == m  # the new form round-trips
    assert env_config_from_dict(dataclasses.asdict(m.env)) == m.env
    assert method_config("chu2020", {"profile_length": 5, "predictor_refit_steps": 3}).final.steps == 3
    with pytest.raises(ConfigError, match="config.json: unknown setting"):
        method_config_from_saved({"env": {"sampler": {"patch_size": 8, "bogus": 1}}})


def test_default_patch_size_is_a_fraction_of_the_image():
    """patch_divisor scales the default patch with the image, so a preset fits 32 px tests and 256 px
    runs alike; an explicit patch_size wins, and a divisor below 1 is refused by name."""
    size = lambda **s: lambda side: EnvConfig(sampler=SamplerConfig(**s)).resolved(side).sampler.patch_size  # noqa: E731
    assert [size()(s) for s in (32, 128, 256, 200)] == [8, 32, 64, 32]
    assert [size(patch_divisor=2)(s) for s in (32, 128, 256)] == [16, 64, 128]
    assert size(patch_divisor=2, patch_size=16)(128) == 16
    assert size(patch_divisor=1)(100) == 64
    with pytest.raises(ValueError, match="patch_divisor"):
        SamplerConfig(patch_divisor=0)


# ---------------------------------------------------------------- state maps and reward terms
def test_sobel_and_variance_on_a_step_edge():
    img = np.zeros((3, 16, 16), np.float32)
    img[:, :, 8:] = 1.0  # vertical edge between columns 7 and 8
    s = sobel_magnitude(img)
    assert s.max() == 1.0 and s[:, 0].max() == 0.0 and s[:, 15].max() == 0.0
    assert s[:, 7].min() == 1.0 and s[:, 8].min() == 1.0
    v = local_variance(img, sigma=1.0)
    assert v[:, 0].max() < 1e-6 and v[:, 7].min() > 0.1
    assert np.allclose(local_variance(np.full((3, 8, 8), 0.4, np.float32)), 0.0, atol=1e-6)


def test_fuse_maps_weights_and_range():
    are = np.zeros((4, 4), np.float32)
    are[0, 0] = 5.0
    sob = np.zeros((4, 4), np.float32)
    sob[3, 3] = 1.0
    fused = fuse_maps(are, np.zeros((4, 4), np.float32), sob, (0.7, 0.1, 0.2))
    assert fused.min() == 0.0 and fused.max() == 1.0
    assert fused[0, 0] == 1.0 and fused[3, 3] == pytest.approx(0.2 / 0.7)
    assert np.all(minmax(np.ones((3, 3))) == 0.0)


def test_frequency_cover_and_alpha_schedule():
    visits = np.zeros((4, 4), np.float32)
    assert frequency_cover_reward(visits) == 0.0
    visits[:2] = 2.0
    assert frequency_cover_reward(visits) == pytest.approx(-1.0)
    assert alpha_schedule(0, 100) == 1.0
    assert alpha_schedule(50, 100, 1.0, 0.2) == pytest.approx(0.6)
    assert alpha_schedule(1000, 100, 1.0, 0.15) == 0.15


# ---------------------------------------------------------------- the env under the preset
def test_noghredeh_env_passes_checker_with_six_channels():
    env = nog_env()
    assert set(env.observation_space.spaces) == {"rgb", "fused", "history", "previous_loss"}
    assert observation_channels(env.observation_space) == 6
    check_env(env, skip_render_check=True)


def test_history_is_visit_frequency_and_cover_penalises_revisits():
    env = nog_env(stride=8)
    env.reset(seed=0)
    there, back = (2, 6) if env._cx <= 20 else (6, 2)  # east/west, whichever stays inside
    env.step(there)
    first = (env._img, env._cy, env._cx)
    env.step(back)
    obs, _, _, _, info = env.step(there)
    assert (env._img, env._cy, env._cx) == first
    assert info["r_cover"] == pytest.approx(-1.0)  # every pixel of the patch was visited once before
    assert obs["history"].max() == pytest.approx(2 / env.config.sampler.patches_per_update)  # two visits


def test_sobel_clone_reward_is_patch_mean():
    env = nog_env()
    env.reset(seed=1)
    _, _, _, _, info = env.step(2)
    i, h = env._img, env._half
    expected = env._sobel[i, env._cy - h:env._cy + h, env._cx - h:env._cx + h].mean()
    assert info["r_clone"] == pytest.approx(float(expected))


def test_predictor_frozen_then_trained_and_no_rl_feedback_early():
    env = nog_env()
    env.reset(seed=0)
    w0 = [p.detach().clone() for p in env.process.predictor.parameters()]
    while env.process.updates < env.config.predictor.freeze_updates:
        info = episode(env)
        assert info["r_pred"] == 0.0
        env.reset()
    assert all(torch.equal(a, b) for a, b in zip(w0, env.process.predictor.parameters()))
    assert env.process.best is None
    while env.process.updates <= env.config.rewards.rl_feedback_after:
        info = episode(env)
        env.reset()
    assert not all(torch.equal(a, b) for a, b in zip(w0, env.process.predictor.parameters()))
    info = episode(env)
    assert info["r_pred"] == pytest.approx(-info["l_pred"]) and info["r_pred"] < 0
    assert env.process.alpha < 1.0  # decaying


def test_pretraining_uses_normal_images_and_reinit_restores_it():
    split = toy_split(32)
    normal = toy_split(32, seed=5).unlabeled  # any images: pretraining must only read these
    normal = [dataclasses.replace(s, mask=np.zeros_like(s.mask)) for s in normal]
    split = dataclasses.replace(split, normal=normal)
    env = nog_env(split, reinit_every=12)
    env.reset(seed=0)
    assert env.process.pretrained is not None
    episode(env)
    env.process._reinit_ae(warmup=False)  # what every K-th update does, without the warm-up updates
    assert all(torch.equal(env.process.ae.state_dict()[k], v) for k, v in env.process.pretrained.items())
    scratch = env.process.new_ae().state_dict()
    assert any(not torch.equal(scratch[k], v) for k, v in env.process.pretrained.items())
    # pretraining reads the normal images: changing them changes the pretrained weights
    other = dataclasses.replace(split, normal=[dataclasses.replace(s, image=255 - s.image) for s in normal])
    env2 = nog_env(other, reinit_every=12)
    env2.reset(seed=0)
    assert any(not torch.equal(a, b) for a, b in zip(env.process.pretrained.values(), env2.process.pretrained.values()))


def test_previous_loss_is_the_loss_before_the_last_update():
    env = nog_env()
    env.reset(seed=0)
    episode(env)
    obs, _ = env.reset()
    prev_ae = env.process.new_ae()
    prev_ae.load_state_dict(env.process.snapshots[-2])
    cur = env._loss_map("current")
    prev = env._loss_map("previous")
    assert not np.allclose(cur, prev)
    from models.autoencoder import reconstruction_loss_map
    with torch.no_grad():
        prev_ae.eval()
        m = reconstruction_loss_map(prev_ae, env.process._images[env._img:env._img + 1], "absolute")[0]
        m = torch.clamp(m / (m.mean() + 1e-12), 0, env.config.sampler.loss_obs_clip).numpy()
    assert np.allclose(prev, m, atol=1e-6)


def test_noghredeh_state_dict_resumes_exactly():
    a = nog_env()
    a.reset(seed=3)
    for _ in range(3):
        episode(a)
        a.reset()
    state = a.state_dict()
    import io
    buf = io.BytesIO()
    torch.save(state, buf)
    buf.seek(0)
    b = nog_env()
    b.load_state_dict(torch.load(buf, weights_only=False))
    b.reset()
    a.reset()
    ra, rb = episode(a), episode(b)
    assert ra["l_pred"] == rb["l_pred"] and ra["ae_loss"] == rb["ae_loss"]
