"""Training: recipes (:mod:`.config`), losses, the loop (:mod:`.trainer`), ``vistok train``."""

from vistok.train import losses as _losses  # noqa: F401  (registers the losses)
from vistok.train.config import TrainConfig, load_config
from vistok.train.trainer import Trainer, TrainingDiverged, train

__all__ = ["TrainConfig", "Trainer", "TrainingDiverged", "load_config", "train"]
