"""Saving and loading attnfer models: ``model.safetensors`` + ``config.json``, no pickle anywhere.

The config records the registry name, the constructor kwargs, the class names and the model's whole config
(:class:`~._cfg.ModelCfg`: input contract, paper, deviations), so ``load_model(dir)`` rebuilds exactly the saved
model, and consumers that need no weights (ONNX export, the service) read the contract from it.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn

from .. import __version__
from ..files import atomic_write
from ._cfg import ModelCfg

__all__ = [
    "CONFIG_NAME",
    "WEIGHTS_NAME",
    "CheckpointError",
    "load_model",
    "model_cfg",
    "read_config",
    "save_model",
    "state_dict_mismatch",
]

WEIGHTS_NAME = "model.safetensors"
CONFIG_NAME = "config.json"
FORMAT_VERSION = 2  # 2: the whole model config under "config" (1: "preprocessing" and "card")


class CheckpointError(RuntimeError):
    """A saved model directory is missing, truncated, or does not match its config."""


def save_model(model: nn.Module, directory: str | Path) -> Path:
    """Save weights and config of a registry-built model into ``directory``; returns the directory.

    Each file is written atomically and gets the usual permissions, 0666 less the umask (0644 under 022), so another
    user or a container running as another uid can read a shared model."""
    from safetensors.torch import save_file

    if not getattr(model, "model_name", ""):
        raise ValueError("only models built with attnfer.create_model can be saved (model_name is unset)")
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    config = {
        "format_version": FORMAT_VERSION,
        "attnfer_version": __version__,
        "model": model.model_name,
        "num_classes": model.num_classes,
        "kwargs": model.model_kwargs,
        "class_names": model.class_names,
        "config": model.cfg.to_dict(),
    }
    # safetensors refuses shared storage; contiguous copies keep it simple.
    tensors = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    atomic_write(directory / WEIGHTS_NAME, lambda p: save_file(tensors, str(p), metadata={"model": model.model_name}))
    atomic_write(directory / CONFIG_NAME, json.dumps(config, indent=2) + "\n")
    return directory


def read_config(directory: str | Path) -> dict[str, Any]:
    path = Path(directory) / CONFIG_NAME
    if not path.is_file():
        raise CheckpointError(
            f"{path} not found: a saved attnfer model is a directory with {CONFIG_NAME} and {WEIGHTS_NAME}"
        )
    try:
        config = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise CheckpointError(f"{path}: not valid JSON (line {e.lineno}, column {e.colno}: {e.msg})") from e
    for key in ("model", "num_classes", "kwargs"):
        if key not in config:
            raise CheckpointError(f"{path}: missing field '{key}'")
    return config


def load_model(directory: str | Path, map_location: str | torch.device = "cpu") -> nn.Module:
    """Rebuild a model saved with ``model.save(directory)`` and load its weights (strictly)."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    from ._registry import create_model, is_model

    directory = Path(directory)
    config = read_config(directory)
    if not is_model(config["model"]):
        raise CheckpointError(f"{directory / CONFIG_NAME}: unknown model '{config['model']}'")
    weights = directory / WEIGHTS_NAME
    if not weights.is_file():
        raise CheckpointError(f"{weights} not found")
    try:
        state = load_file(str(weights), device=str(map_location))
    except (SafetensorError, OSError, ValueError) as e:
        raise CheckpointError(f"{weights}: not a readable safetensors file (truncated or foreign?): {e}") from e
    with warnings.catch_warnings():
        # a saved batch-dependent model says so in its config, which every consumer reads (one face per pass);
        # the construction-time warning is for people who build one
        warnings.filterwarnings("ignore", category=UserWarning, message=".*attention='batch'")
        model = create_model(config["model"], num_classes=config["num_classes"], **config["kwargs"])
    problem = state_dict_mismatch(model.state_dict(), state)
    if problem:
        raise CheckpointError(f"{weights} does not match a '{config['model']}' built from {CONFIG_NAME}: {problem}")
    model.load_state_dict(state, strict=True)
    model.class_names = config.get("class_names")
    model.cfg = model_cfg(config, directory)
    return model


def state_dict_mismatch(own: dict[str, torch.Tensor], given: dict[str, torch.Tensor]) -> str | None:
    """How ``given`` (a file's tensors under our names) fails to fill a model whose state dict is ``own`` exactly:
    tensors missing from the file, unexpected ones, other shapes (a count and an example each); None when it fits."""
    missing = sorted(set(own) - set(given))
    unexpected = sorted(set(given) - set(own))
    wrong = sorted(k for k in set(own) & set(given) if tuple(own[k].shape) != tuple(given[k].shape))
    parts = []
    if missing:
        parts.append(f"{len(missing)} tensors missing, not in the file (e.g. {missing[0]})")
    if unexpected:
        parts.append(f"{len(unexpected)} unexpected (e.g. {unexpected[0]})")
    if wrong:
        k = wrong[0]
        parts.append(
            f"{len(wrong)} with other shapes (e.g. {k}: file {tuple(given[k].shape)}, model {tuple(own[k].shape)})"
        )
    return "; ".join(parts) or None


def model_cfg(config: dict[str, Any], directory: str | Path = "") -> ModelCfg:
    """The model config stored in a checkpoint's ``config.json`` (format 1 files: the registry's default for the
    saved constructor options)."""
    from ._registry import get_model_cfg

    if "config" not in config:
        return get_model_cfg(config["model"], **config["kwargs"])
    try:
        return ModelCfg.from_dict(config["config"])
    except (TypeError, ValueError) as e:
        raise CheckpointError(
            f"{Path(directory) / CONFIG_NAME}: field 'config' is not a valid model config: {e}"
        ) from e
