from medassist.training.config import Monitor, Schedule, TrainConfig
from medassist.training.data import ArrayDataset
from medassist.training.losses import class_weights, classification_loss
from medassist.training.privacy import PrivacyConfig
from medassist.training.trainer import Trainer, TrainResult, seed_everything

__all__ = [
    "ArrayDataset", "Monitor", "PrivacyConfig", "Schedule", "TrainConfig", "TrainResult", "Trainer",
    "class_weights", "classification_loss", "seed_everything",
]
