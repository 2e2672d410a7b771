"""The bottom layer: seeding and device helpers that every other package may import.

Nothing here imports the rest of the package, so `models/` can seed its random initialisation
without importing (and thereby registering) the Gymnasium envs."""
from common.device import resolve_device
from common.seeding import seed_everything, torch_rng_from

__all__ = ["resolve_device", "seed_everything", "torch_rng_from"]
