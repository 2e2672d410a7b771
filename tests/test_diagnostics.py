"""Loss maps from the AE applied the way it was trained, and the per-update training diagnostics."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from envs import BatchSamplingEnv
from envs.diagnostics import rank_auroc
from evaluation.metrics import auroc
from models.autoencoder import AEConfig, ConvAutoencoder, reconstruction_loss_map, tiled_reconstruction
from tests.helpers import TINY, run_episodes, tiny_config, toy_split
from runner.training import TrainingWatch


# ---------------------------------------------------------------- tiled loss maps
@pytest.mark.parametrize("config", [AEConfig(), AEConfig(skip_levels=(), norm=True, dropout=0.3, leaky_relu=True)])
def test_tiled_loss_map_equals_the_ae_on_each_training_patch(config):
    torch.manual_seed(0)
    ae = ConvAutoencoder(16, config).eval()
    images = torch.rand(2, 3, 48, 64)
    with torch.no_grad():
        maps = reconstruction_loss_map(ae, images)
        for y in range(0, 48, 16):
            for x in range(0, 64, 16):
                patch = images[..., y:y + 16, x:x + 16]
                expected = (ae(patch) - patch).square().mean(dim=1)
                torch.testing.assert_close(maps[:, y:y + 16, x:x + 16], expected, rtol=1e-5, atol=1e-7)
        absolute = reconstruction_loss_map(ae, images, "absolute")
        torch.testing.assert_close(absolute[:, :16, :16], (ae(images[..., :16, :16]) - images[..., :16, :16]).abs().mean(1),
                                   rtol=1e-5, atol=1e-7)
        # 'ssim': (1 - SSIM) / 2 of the tiled reconstruction against the image, in [0, 1]
        from models.autoencoder import reconstruct_images
        from models.ssim import ssim_map
        ssim = reconstruction_loss_map(ae, images, "ssim")
        torch.testing.assert_close(ssim, (1 - ssim_map(reconstruct_images(ae, images), images)) / 2)
        assert 0.0 <= float(ssim.min()) and float(ssim.max()) <= 1.0
        assert float(reconstruction_loss_map(ae, images[:, :, :16, :16].repeat(1, 1, 3, 4), "ssim").min()) >= 0


def test_whole_image_pass_is_not_the_patch_pass():
    """The reason for tiling: a 1x1-bottleneck AE on a whole image is a different function."""
    torch.manual_seed(0)
    ae = ConvAutoencoder(16).eval()
    with torch.no_grad():
        for p in ae.parameters():
            p.mul_(3.0)  # away from the near-constant output of a fresh init
    images = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        whole = reconstruction_loss_map(ae, images, whole_image=True)
        tiled = reconstruction_loss_map(ae, images)
    assert (whole - tiled).abs().mean() > 0.1 * tiled.mean()


def test_overlapping_windows_average_and_cover_odd_sides():
    torch.manual_seed(0)
    ae = ConvAutoencoder(8).eval()
    images = torch.rand(3, 3, 21, 30)
    with torch.no_grad():
        recon = tiled_reconstruction(ae, images, stride=3)
        # the bottom-right window is flush with the corner and covered by it alone
        torch.testing.assert_close(recon[..., -1, -1], ae(images[..., -8:, -8:])[..., -1, -1])
    assert recon.shape == images.shape
    with pytest.raises(ValueError, match="smaller than the AE's 8x8"):
        tiled_reconstruction(ae, torch.rand(1, 3, 4, 30))


def test_env_loss_maps_are_tiled_by_default_and_whole_on_request():
    env = BatchSamplingEnv(split=toy_split(32), config=TINY)
    env.reset(seed=0)
    with torch.no_grad():
        tiled = env.process.loss_maps(env.process.ae, range(1))
        env.process.config = tiny_config(env.process.config, **{"profiles.mode": "whole"})
        whole = env.process.loss_maps(env.process.ae, range(1))
        x = env.process._images[:1, :, 8:16, 16:24]
        expected = (env.process.ae(x) - x).square().mean(1)
    torch.testing.assert_close(tiled[:, 8:16, 16:24], expected, rtol=1e-5, atol=1e-7)
    assert not torch.allclose(tiled, whole)


# ---------------------------------------------------------------- diagnostics
def test_rank_auroc_matches_the_metric_with_ties():
    rng = np.random.default_rng(0)
    scores = rng.integers(0, 6, size=(3, 20, 20)).astype(np.float32)  # many ties
    labels = rng.random((3, 20, 20)) < 0.1 + scores / 20
    assert rank_auroc(torch.from_numpy(scores), torch.from_numpy(labels)) == pytest.approx(auroc(scores, labels), abs=1e-12)
    assert rank_auroc(torch.from_numpy(scores), torch.from_numpy(labels)) > 0.6
    assert np.isnan(rank_auroc(torch.ones(4), torch.zeros(4, dtype=torch.bool)))


def test_episode_info_carries_diagnostics_and_action_histogram():
    env = BatchSamplingEnv(split=toy_split(32), config=TINY)
    env.reset(seed=0)
    actions = [8, 8, 0, 3]
    for a in actions:
        _, _, done, _, info = env.step(a)
    assert done
    assert info["jump_rate"] == 0.5
    assert info["action_hist"] == [0.25, 0, 0, 0.25, 0, 0, 0, 0, 0.5]
    for key in ("dl_loss_auroc", "dl_profile_auroc"):
        assert 0.0 <= info[key] <= 1.0
    assert info["ae_vs_mean_colour"] > 0
    # the toy defects are bright red squares on grey noise: a trained AE reconstructs them worse
    run_episodes(env, 40)
    assert env.process.diagnostics["dl_profile_auroc"] > 0.7


def test_collapsed_ae_is_reported_relative_to_the_mean_colour():
    """An AE that outputs black on dark images is worse than each image's mean colour (ratio > 1)
    and its output is flat (spread ~ 0)."""
    split = toy_split(32)
    for s in split.labeled + split.unlabeled:
        s.image[:] = (s.image // 8).astype(np.uint8)  # dark images
    env = BatchSamplingEnv(split=split, config=TINY)
    env.reset(seed=0)
    for p in env.process.ae.parameters():
        torch.nn.init.zeros_(p)
    env.process.ae.head.bias.data.fill_(-20.0)  # sigmoid -> 0: a black reconstruction
    run_episodes(env, 1)
    assert env.process.diagnostics["ae_vs_mean_colour"] > 1.5
    assert env.process.diagnostics["ae_output_spread"] < 0.01


def test_training_watch_warns_once_per_problem_and_not_on_a_healthy_run():
    watch = TrainingWatch(window=5, after=10)
    collapsed = {"ae_vs_mean_colour": 2.0, "ae_output_spread": 0.01, "dl_loss_auroc": 0.9}
    assert all(watch.update({"episode": k, **collapsed}) == [] for k in range(1, 10))  # too early
    (warning,) = watch.update({"episode": 10, **collapsed})
    assert "collapsed" in warning
    assert watch.update({"episode": 11, **collapsed}) == []  # once
    blind = {"ae_vs_mean_colour": 0.5, "ae_output_spread": 0.8, "dl_loss_auroc": 0.45}
    (warning,) = [w for k in range(12, 20) for w in watch.update({"episode": k, **blind})]
    assert "do not separate" in warning
    # a textured category: AE worse than the mean colour, but its maps separate the defects
    healthy = TrainingWatch(window=5, after=10)
    textured = {"ae_vs_mean_colour": 1.8, "ae_output_spread": 0.6, "dl_loss_auroc": 0.95}
    assert all(healthy.update({"episode": k, **textured}) == [] for k in range(1, 60))
    assert all(healthy.update({"episode": k, "dl_loss_auroc": math.nan}) == [] for k in range(60, 70))
