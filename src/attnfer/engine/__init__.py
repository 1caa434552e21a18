"""Training and evaluation on Lightning: recipes, honest protocol (select on validation), evaluation files and the
report that views them."""

from .config import ConfigError, TrainConfig, load_config
from .evaluate import evaluate_checkpoints
from .report import render_report
from .train import quickstart, resume, train

__all__ = [
    "ConfigError",
    "TrainConfig",
    "evaluate_checkpoints",
    "load_config",
    "quickstart",
    "render_report",
    "resume",
    "train",
]
