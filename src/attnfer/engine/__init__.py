"""Training and evaluation on Lightning: recipes, honest protocol (select on validation), reports."""

from .config import ConfigError, TrainConfig, load_config
from .train import evaluate_run, resume, train

__all__ = ["ConfigError", "TrainConfig", "evaluate_run", "load_config", "resume", "train"]
