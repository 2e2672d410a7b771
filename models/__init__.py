"""Pure networks and post-processing: the AE, the predictor, the sampler's policy net, the CRF."""
from models.autoencoder import AEConfig, ConvAutoencoder, reconstruction_loss_map
from models.crf import CRFConfig, dense_crf
from models.policy import OBSERVATION_KEYS, PolicyNet, SamplerFeatures
from models.predictor import DilatedFCN, normalize_profiles, weighted_bce
from models.recon_ae import ReconAEConfig, anomaly_maps, ssim_map, train_recon_ae
from models.unet import UNet, UNetConfig, predict_unet, train_unet

__all__ = ["AEConfig", "ConvAutoencoder", "reconstruction_loss_map", "CRFConfig", "dense_crf",
           "OBSERVATION_KEYS", "PolicyNet", "SamplerFeatures", "DilatedFCN", "normalize_profiles",
           "weighted_bce", "ReconAEConfig", "anomaly_maps", "ssim_map", "train_recon_ae", "UNet",
           "UNetConfig", "predict_unet", "train_unet"]
