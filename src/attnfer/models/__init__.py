"""attnfer's model zoo: one file per family, all behind a timm-style registry."""

from . import emonet, feratt, patt_lite, preact_resnet, sa_fer, timm_baselines  # noqa: F401  (registers)
from ._base import FERModel, ModelCard, count_macs, count_parameters
from ._registry import create_model, is_model, list_models, model_entrypoint, register_model
from .diagnostics import batch_dependence
from .emonet import EMONet
from .feratt import FERAtt, FERAttLoss, FERAttOutput, attention_loss, gmm_loss
from .io import CheckpointError, load_model, save_model
from .patt_lite import BatchDependentWarning, PAttLite
from .preact_resnet import PreActResNet18
from .pretrained import PretrainedLoadReport, PretrainedWeightsError, load_pretrained
from .sa_fer import SAFER
from .timm_baselines import TimmClassifier

__all__ = [
    "SAFER",
    "BatchDependentWarning",
    "CheckpointError",
    "EMONet",
    "FERAtt",
    "FERAttLoss",
    "FERAttOutput",
    "FERModel",
    "ModelCard",
    "PAttLite",
    "PreActResNet18",
    "PretrainedLoadReport",
    "PretrainedWeightsError",
    "TimmClassifier",
    "attention_loss",
    "batch_dependence",
    "count_macs",
    "count_parameters",
    "create_model",
    "gmm_loss",
    "is_model",
    "list_models",
    "load_model",
    "load_pretrained",
    "logits_of",
    "model_entrypoint",
    "register_model",
    "save_model",
]


def logits_of(output):
    """The (B, C) logits of any model's forward output (FERAtt returns a structured output)."""
    return output.logits if isinstance(output, FERAttOutput) else output
