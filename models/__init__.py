"""Pure networks and post-processing: the AE, the predictor and its losses, the sampler's policy net,
the U-Net, SSIM, the CRF. Training loops of the papers' baselines live in the baselines package."""
from models.autoencoder import AEConfig, ConvAutoencoder, reconstruction_loss_map
from models.crf import CRFConfig, dense_crf
from models.policy import OBSERVATION_KEYS, PolicyNet, SamplerFeatures
from models.predictor import DilatedFCN, normalize_profiles, segmentation_loss, soft_dice_loss, weighted_bce
from models.ssim import ssim_map
from models.unet import UNet

__all__ = ["AEConfig", "ConvAutoencoder", "reconstruction_loss_map", "CRFConfig", "dense_crf",
           "OBSERVATION_KEYS", "PolicyNet", "SamplerFeatures", "DilatedFCN", "normalize_profiles",
           "segmentation_loss", "soft_dice_loss", "weighted_bce", "ssim_map", "UNet"]
