"""The comparison methods: a supervised U-Net on D_l and the reconstruction AE of the MVTec AD paper.

Each learns a seeded toy (striped texture with defects) to a pixel AUROC that an untrained or
shuffled model does not reach, is reproducible from its seed, and rejects malformed input.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch
from skimage.metrics import structural_similarity

from baselines.recon_ae import ReconAEConfig, anomaly_maps, reconstruct, train_recon_ae
from baselines.unet import UNetConfig, predict_unet, train_unet
from models.fit import default_crop, jitter_rgb, random_views
from evaluation.metrics import auroc, binary_scores
from models.ssim import ssim_map
from models.unet import UNet


def striped_toy(n: int, size: int, seed: int, defect: str | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Vertical stripes (period 16, random phase) with a little noise, uint8 (n,S,S,3), and masks.

    defect='square': a bright 4-8 px square (U-Net toy); 'blob': a magenta disk of radius 3-6 with
    the texture's brightness, so that it is an outlier only to a model of the normal texture
    (an untrained AE's error does not single it out); None: defect-free."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size]
    images, masks = [], []
    for _ in range(n):
        stripes = 110 + 35 * np.sin(2 * np.pi * xx / 16 + rng.uniform(0, 2 * np.pi))
        img = (stripes[..., None] + rng.normal(0, 4, (size, size, 3))) * np.array([1.0, 0.95, 0.85])
        mask = np.zeros((size, size), bool)
        if defect == "square":
            d = int(rng.integers(4, 9))
            y, x = rng.integers(0, size - d, size=2)
            mask[y:y + d, x:x + d] = True
            img[mask] = 240
        elif defect == "blob":
            r = rng.uniform(3, 6)
            cy, cx = rng.uniform(r, size - r, size=2)
            mask = (yy - cy) ** 2 + (xx - cx) ** 2 <= r * r
            img[mask] = (150, 80, 150)
        images.append(img.clip(0, 255).astype(np.uint8))
        masks.append(mask)
    return np.stack(images), np.stack(masks)


# 150 steps: lr 3e-3 (default 1e-3 needs the default 600 steps to calibrate p > 0.5)
TINY_UNET = UNetConfig(width=8, depth=2, steps=150, batch=8, crop=32, lr=3e-3)
TINY_AE = ReconAEConfig(patch_size=32, steps=150, batch=8, width=32, bottleneck=32)


# ---------------------------------------------------------------- U-Net
def test_unet_learns_toy_defects_from_four_labeled_images():
    images, masks = striped_toy(4, 48, seed=0, defect="square")
    test_images, test_masks = striped_toy(6, 48, seed=1, defect="square")
    net, losses = train_unet(images, masks, TINY_UNET, seed=0)
    probs = predict_unet(net, test_images)

    assert len(losses) == TINY_UNET.steps and np.mean(losses[-20:]) < 0.6 * np.mean(losses[:20])
    assert probs.shape == test_masks.shape and probs.dtype == np.float32
    assert probs.min() >= 0.0 and probs.max() <= 1.0
    assert auroc(probs, test_masks) > 0.99  # measured 1.0 (seeds 0-5)
    trivial_f1 = binary_scores(np.ones_like(test_masks), test_masks).f1  # about 0.04
    assert binary_scores(probs > 0.5, test_masks).f1 > max(0.85, 10 * trivial_f1)  # 0.975-1.0
    assert auroc(probs[::-1], test_masks) < 0.8  # maps of other images: the metric is not trivial


def test_unet_is_reproducible_from_its_seed():
    images, masks = striped_toy(3, 32, seed=0, defect="square")
    config = UNetConfig(width=4, depth=2, steps=5, batch=4, crop=16)
    runs = [train_unet(images, masks, config, seed=s) for s in (0, 0, 1)]
    preds = [predict_unet(net, images) for net, _ in runs]
    assert runs[0][1] == runs[1][1]
    for a, b in zip(runs[0][0].state_dict().values(), runs[1][0].state_dict().values()):
        assert torch.equal(a, b)
    np.testing.assert_array_equal(preds[0], preds[1])
    assert not np.allclose(preds[0], preds[2])


def test_unet_batchnorm_statistics_are_those_of_the_final_weights():
    """After training, eval mode on the labeled images equals train mode (their own batch stats):
    the running averages, which trail fast-moving weights, were re-estimated."""
    images, masks = striped_toy(3, 32, seed=0, defect="square")
    net, _ = train_unet(images, masks, UNetConfig(width=4, depth=2, steps=20, batch=4, crop=16,
                                                  lr=3e-3))
    x = torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255
    with torch.no_grad():
        eval_out = net(x)
        net.train()
        train_out = net(x)
    # not exact: running_var keeps the unbiased variance, train mode divides by the biased one
    torch.testing.assert_close(eval_out, train_out, atol=0.05, rtol=0.02)


def test_unet_predicts_any_image_size_and_forward_checks_it():
    net = UNet(width=4, depth=3).eval()
    images, _ = striped_toy(2, 45, seed=0)
    assert predict_unet(net, images, batch=1).shape == (2, 45, 45)
    with pytest.raises(ValueError, match="multiples of 8"):
        net(torch.zeros(1, 3, 45, 48))


def test_random_views_move_the_mask_with_the_image():
    """Flips, rotations and crops are applied identically: a channel equal to the mask stays so."""
    rng = np.random.default_rng(0)
    mask = torch.zeros(2, 24, 24)
    mask[0, 2:9, 3:6] = 1.0
    mask[1, 10:20, 1:4] = 1.0
    image = torch.cat([mask[:, None], torch.rand(2, 2, 24, 24)], dim=1)
    seen = set()
    for _ in range(10):
        x, m = random_views(image, mask, 4, 16, rng)
        assert x.shape == (4, 3, 16, 16) and m.shape == (4, 1, 16, 16)
        torch.testing.assert_close(x[:, :1], m)
        seen.update(v.numpy().tobytes() for v in m)
    assert len(seen) > 10  # it does augment


def test_colour_jitter_keeps_images_in_range_and_other_channels_intact():
    rng = np.random.default_rng(0)
    batch = torch.rand(3, 5, 16, 16)  # 2 profile channels, then RGB
    out = jitter_rgb(batch, 0.5, rng)
    assert 0.0 <= out.min() and out.max() <= 1.0 and not torch.allclose(out[:, 2:], batch[:, 2:])
    torch.testing.assert_close(out[:, :2], batch[:, :2])


def test_default_crop():
    assert default_crop(128, 128, 3) == 64
    assert default_crop(48, 48, 2) == 32  # at least 32 px
    assert default_crop(20, 24, 2) == 20  # no more than the image, a multiple of 2**depth
    with pytest.raises(ValueError, match="too small"):
        default_crop(6, 6, 3)


# ---------------------------------------------------------------- reconstruction AE
@pytest.mark.parametrize("loss", ["l2", "ssim"])
def test_recon_ae_finds_colour_blobs_after_training_on_normal_images(loss):
    normal, _ = striped_toy(8, 48, seed=2)
    test_images, test_masks = striped_toy(6, 48, seed=3, defect="blob")
    config = ReconAEConfig(**{**TINY_AE.__dict__, "loss": loss})
    ae, losses = train_recon_ae(normal, config, seed=0)
    maps = anomaly_maps(ae, test_images, kind=loss)

    assert len(losses) == config.steps and np.mean(losses[-20:]) < 0.5 * np.mean(losses[:20])
    assert maps.shape == test_masks.shape and maps.dtype == np.float32
    assert auroc(maps, test_masks) > 0.95  # measured 0.996-1.0 over seeds 0-4
    # controls a broken model would look like: maps of other images, and an untrained AE
    assert auroc(np.roll(maps, 1, axis=0), test_masks) < 0.8
    untrained, _ = train_recon_ae(normal, ReconAEConfig(**{**config.__dict__, "steps": 1, "lr": 1e-12}), seed=0)
    assert auroc(anomaly_maps(untrained, test_images, kind=loss), test_masks) < 0.8


def test_recon_ae_is_reproducible_from_its_seed():
    normal, _ = striped_toy(3, 32, seed=0)
    config = ReconAEConfig(loss="ssim", patch_size=16, steps=5, batch=4, width=8, bottleneck=8)
    runs = [train_recon_ae(normal, config, seed=s) for s in (0, 0, 1)]
    assert runs[0][1] == runs[1][1] and runs[0][1] != runs[2][1]
    for a, b in zip(runs[0][0].state_dict().values(), runs[1][0].state_dict().values()):
        assert torch.equal(a, b)


def test_patchwise_reconstruction_covers_the_image_and_equals_the_ae_on_one_patch():
    normal, _ = striped_toy(2, 37, seed=0)
    ae, _ = train_recon_ae(normal, ReconAEConfig(patch_size=16, steps=1, width=8, bottleneck=8))
    x = torch.rand(2, 3, 16, 16)
    with torch.no_grad():
        torch.testing.assert_close(reconstruct(ae, x), ae(x))
        assert reconstruct(ae, torch.rand(1, 3, 37, 21), stride=5).shape == (1, 3, 37, 21)
    for kind in ("l2", "ssim"):
        for whole_image in (False, True):
            maps = anomaly_maps(ae, normal, kind=kind, whole_image=whole_image)
            assert maps.shape == (2, 37, 37) and np.isfinite(maps).all()


# ---------------------------------------------------------------- SSIM
def test_ssim_map_matches_skimage_and_is_one_on_identical_images():
    rng = np.random.default_rng(0)
    a = rng.random((2, 40, 52, 3))
    b = np.clip(a + rng.normal(0, 0.2, a.shape), 0, 1)
    b[1, 10:30, 10:30] = 0.3  # a flat patch: low variance, where the constants matter
    ours = ssim_map(torch.from_numpy(a).permute(0, 3, 1, 2).float(),
                    torch.from_numpy(b).permute(0, 3, 1, 2).float()).numpy()
    for k in range(2):
        _, full = structural_similarity(a[k], b[k], gaussian_weights=True, sigma=1.5,
                                        use_sample_covariance=False, data_range=1.0,
                                        channel_axis=-1, full=True)
        ref = full.mean(axis=-1)
        np.testing.assert_allclose(ours[k, 5:-5, 5:-5], ref[5:-5, 5:-5], atol=1e-4)
        np.testing.assert_allclose(ours[k], ref, atol=1e-4)  # same (scipy 'reflect') border too
    x = torch.from_numpy(a).permute(0, 3, 1, 2).float()
    torch.testing.assert_close(ssim_map(x, x), torch.ones(2, 40, 52))


def test_ssim_map_rejects_mismatched_inputs():
    with pytest.raises(ValueError, match="same shape"):
        ssim_map(torch.zeros(1, 3, 16, 16), torch.zeros(1, 3, 16, 15))
    with pytest.raises(ValueError, match="window"):
        ssim_map(torch.zeros(1, 3, 16, 16), torch.zeros(1, 3, 16, 16), window=4)


# ---------------------------------------------------------------- input validation
GOOD_IMAGES, GOOD_MASKS = striped_toy(2, 32, seed=0, defect="square")
FAST_UNET = UNetConfig(width=4, depth=2, steps=1, batch=2, crop=16)
FAST_AE = ReconAEConfig(patch_size=16, steps=1, batch=2, width=8, bottleneck=8)


@pytest.mark.parametrize("call, name", [
    (lambda: train_unet(GOOD_IMAGES.astype(np.float32), GOOD_MASKS, FAST_UNET), "`images`"),
    (lambda: train_unet(GOOD_IMAGES[:, :, :, :2], GOOD_MASKS, FAST_UNET), "`images`"),
    (lambda: train_unet(GOOD_IMAGES[:0], GOOD_MASKS[:0], FAST_UNET), "`images`"),
    (lambda: train_unet(GOOD_IMAGES, GOOD_MASKS[:1], FAST_UNET), "`masks`"),
    (lambda: train_unet(GOOD_IMAGES, GOOD_MASKS * 0.5, FAST_UNET), "`masks`"),
    (lambda: train_unet(GOOD_IMAGES, GOOD_MASKS, UNetConfig(depth=2, steps=1, crop=18)), "`config.crop`"),
    (lambda: predict_unet(UNet(4, 2), GOOD_IMAGES[0]), "`images`"),
    (lambda: train_recon_ae(GOOD_IMAGES.astype(np.float32), FAST_AE), "`normal_images`"),
    (lambda: train_recon_ae(GOOD_IMAGES, ReconAEConfig(**{**FAST_AE.__dict__, "loss": "l1"})),
     "recon.loss='l1': must be one of 'l2', 'ssim'"),
    (lambda: train_recon_ae(GOOD_IMAGES, ReconAEConfig(**{**FAST_AE.__dict__, "patch_size": 64})),
     "`config.patch_size`"),
    (lambda: anomaly_maps(train_recon_ae(GOOD_IMAGES, FAST_AE)[0], GOOD_IMAGES, kind="mse"),
     "`kind`"),
    (lambda: anomaly_maps(train_recon_ae(GOOD_IMAGES, FAST_AE)[0], GOOD_IMAGES[..., 0]),
     "`images`"),
])
def test_bad_inputs_raise_value_errors_naming_the_argument(call, name):
    with pytest.raises(ValueError, match=name.replace(".", r"\.")):
        call()


def test_masks_may_be_zero_one_integers():
    net, losses = train_unet(GOOD_IMAGES, GOOD_MASKS.astype(np.uint8), FAST_UNET)
    assert len(losses) == 1 and not net.training


def test_unet_ensemble_averages_seeded_fits_and_each_baseline_is_cached_on_its_own(tmp_path, monkeypatch):
    """'unet-ensemble' is the mean of unet_fits U-Nets (fit 0 = the single U-Net's seed); each
    method is cached under its own key, so adding a baseline to a sweep re-trains only that one."""
    import dataclasses

    import baselines.reference as reference
    from tests.helpers import toy_split

    split = toy_split(32)
    config = reference.ReferenceConfig(methods=("unet", "unet-ensemble"), unet=UNetConfig(steps=3, width=4, depth=2),
                                       unet_fits=2)
    single, ensemble = reference.reference_maps(split, config, seed=5, cache_dir=tmp_path)
    images_l = np.stack([s.image for s in split.labeled])
    masks_l = np.stack([s.mask for s in split.labeled])
    images_u = np.stack([s.image for s in split.unlabeled])
    fits = [predict_unet(train_unet(images_l, masks_l, config.unet, seed=5 + 1000 * k)[0], images_u) for k in range(2)]
    np.testing.assert_array_equal(single.prob, fits[0])
    np.testing.assert_allclose(ensemble.prob, (fits[0] + fits[1]) / 2, rtol=0, atol=1e-7)
    assert ensemble.label != single.label and "mean of 2 fits" in ensemble.name
    assert len(list(tmp_path.glob("*.npz"))) == 2

    trained = []
    monkeypatch.setattr(reference, "train_unet", lambda *a, **k: trained.append(k["seed"]) or train_unet(*a, **k))
    again = reference.reference_maps(split, config, seed=5, cache_dir=tmp_path)  # both from the cache
    assert trained == [] and np.array_equal(again[1].prob, ensemble.prob)
    wider = dataclasses.replace(config, methods=("unet-ensemble",), unet_fits=3)
    reference.reference_maps(split, wider, seed=5, cache_dir=tmp_path)  # new settings: only it re-trains
    assert trained == [5, 1005, 2005]
    with pytest.raises(ValueError, match="unet_fits"):
        reference.reference_maps(split, dataclasses.replace(config, unet_fits=0), seed=5)


def test_unet_logit_ensemble_pools_the_same_fits_by_their_mean_logit():
    """'unet-ensemble-logit' (the match for ours' logit pool) is sigmoid of the mean logit of the
    same seeded fits 'unet-ensemble' averages, so the two rows differ only in how they pool."""
    import torch

    import baselines.reference as reference
    from tests.helpers import toy_split

    split = toy_split(32)
    config = reference.ReferenceConfig(methods=("unet-ensemble", "unet-ensemble-logit"),
                                       unet=UNetConfig(steps=3, width=4, depth=2), unet_fits=2)
    by_prob, by_logit = reference.reference_maps(split, config, seed=5)
    images_l = np.stack([s.image for s in split.labeled])
    masks_l = np.stack([s.mask for s in split.labeled])
    images_u = np.stack([s.image for s in split.unlabeled])
    nets = [train_unet(images_l, masks_l, config.unet, seed=5 + 1000 * k)[0] for k in range(2)]
    logits = [predict_unet(n, images_u, logits=True) for n in nets]
    np.testing.assert_array_equal(torch.sigmoid(torch.from_numpy(logits[0])).numpy(), predict_unet(nets[0], images_u))
    np.testing.assert_allclose(by_logit.prob, 1 / (1 + np.exp(-(logits[0] + logits[1]) / 2)), rtol=0, atol=1e-6)
    np.testing.assert_allclose(by_prob.prob, (predict_unet(nets[0], images_u) + predict_unet(nets[1], images_u)) / 2,
                               rtol=0, atol=1e-7)
    assert "logit mean of 2 fits" in by_logit.name and by_logit.label != by_prob.label
