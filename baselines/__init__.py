"""The papers' comparison methods, trained on a run's split: the supervised U-Net on the labeled
images D_l (chu2020's "U-Net" column; `unet`) and the MVTec AD paper's unsupervised
reconstruction AE in its L2 and SSIM variants, trained on the anomaly-free images only
(`recon_ae`); `reference` trains them on a split, scores its D_u images and caches the maps.

The networks are pure nn.Modules in models/ (models.unet.UNet, models.autoencoder.ConvAutoencoder);
the decision rules that turn maps into masks are in evaluation.decisions.
"""
from baselines.recon_ae import LOSSES, ReconAEConfig, anomaly_maps, reconstruct, train_recon_ae
from baselines.reference import (CACHE_VERSION, METHODS, ReferenceConfig, cache_key, load_method_maps,
                                 reference_maps, save_method_maps)
from baselines.unet import UNetConfig, predict_unet, train_unet

__all__ = ["LOSSES", "ReconAEConfig", "anomaly_maps", "reconstruct", "train_recon_ae", "CACHE_VERSION",
           "METHODS", "ReferenceConfig", "cache_key", "load_method_maps", "reference_maps",
           "save_method_maps", "UNetConfig", "predict_unet", "train_unet"]
