"""attnfer's model zoo: one file per family, all behind a timm-style registry.

Every public module of this package is imported here, so a family file registers its models by existing: a new
family needs only ``models/<family>.py`` (its ``@register_model(cfg)`` entrypoints) and a recipe.
"""

import importlib as _importlib
import pkgutil as _pkgutil

from ._base import AttentionMap, FERModel, count_macs, count_parameters, recording
from ._cfg import DEFAULT_CLASS_NAMES, ModelCfg, PretrainedSource
from ._formats import OfficialFormatError, convert_checkpoint, get_format, list_formats, register_format
from ._registry import create_model, get_model_cfg, is_model, list_models, model_entrypoint, register_model
from .diagnostics import batch_dependence
from .emonet import EMONet
from .feratt import FERAtt, FERAttLoss, attention_loss, gmm_loss
from .io import CheckpointError, load_model, save_model
from .patt_lite import BatchDependentWarning, PAttLite
from .preact_resnet import PreActResNet18
from .pretrained import PretrainedLoadReport, PretrainedWeightsError, load_pretrained
from .sa_fer import SAFER
from .timm_baselines import TimmClassifier

__all__ = [
    "DEFAULT_CLASS_NAMES",
    "SAFER",
    "AttentionMap",
    "BatchDependentWarning",
    "CheckpointError",
    "EMONet",
    "FERAtt",
    "FERAttLoss",
    "FERModel",
    "ModelCfg",
    "OfficialFormatError",
    "PAttLite",
    "PreActResNet18",
    "PretrainedLoadReport",
    "PretrainedSource",
    "PretrainedWeightsError",
    "TimmClassifier",
    "attention_loss",
    "batch_dependence",
    "convert_checkpoint",
    "count_macs",
    "count_parameters",
    "create_model",
    "get_format",
    "get_model_cfg",
    "gmm_loss",
    "is_model",
    "list_formats",
    "list_models",
    "load_model",
    "load_pretrained",
    "model_entrypoint",
    "recording",
    "register_format",
    "register_model",
    "save_model",
]

# every family file (a fifth one included) registers its models on import
for _module in _pkgutil.iter_modules(__path__):
    if not _module.name.startswith("_"):
        _importlib.import_module(f"{__name__}.{_module.name}")
