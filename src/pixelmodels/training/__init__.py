"""Training: config dataclasses, presets, the trainer and checkpoints (DESIGN.md section 5)."""

from pixelmodels.training.checkpoint import load_checkpoint
from pixelmodels.training.config import (
    DataConfig,
    ModelConfig,
    OptimConfig,
    RunConfig,
    TrainConfig,
    apply_overrides,
    valid_keys,
)
from pixelmodels.training.presets import PRESETS, available_presets, get_preset
from pixelmodels.training.trainer import NonFiniteLossError, train

__all__ = [
    "DataConfig",
    "ModelConfig",
    "NonFiniteLossError",
    "OptimConfig",
    "PRESETS",
    "RunConfig",
    "TrainConfig",
    "apply_overrides",
    "available_presets",
    "get_preset",
    "load_checkpoint",
    "train",
    "valid_keys",
]
