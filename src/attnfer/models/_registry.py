"""Model registry and factory, in the style of timm's ``_registry`` / ``_factory``.

Each model family file decorates small entrypoint functions with :func:`register_model`; users build
models with :func:`create_model` and discover them with :func:`list_models`.
"""

from __future__ import annotations

import fnmatch
import sys
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch.nn as nn

__all__ = ["create_model", "is_model", "list_models", "model_entrypoint", "register_model"]

_model_entrypoints: dict[str, Callable[..., nn.Module]] = {}
_model_to_module: dict[str, str] = {}


def register_model(fn: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
    """Register ``fn`` under its function name and add it to its module's ``__all__``."""
    name = fn.__name__
    module = sys.modules[fn.__module__]
    if hasattr(module, "__all__"):
        if name not in module.__all__:
            module.__all__.append(name)
    else:
        module.__all__ = [name]
    if name in _model_entrypoints:
        warnings.warn(f"attnfer: model '{name}' registered twice; the later one wins", stacklevel=2)
    _model_entrypoints[name] = fn
    _model_to_module[name] = fn.__module__.rsplit(".", 1)[-1]
    return fn


def list_models(filter: str | list[str] = "", exclude_filters: str | list[str] = "") -> list[str]:
    """Names of registered models, sorted; ``filter``/``exclude_filters`` are fnmatch patterns."""
    names = sorted(_model_entrypoints)
    if filter:
        patterns = [filter] if isinstance(filter, str) else filter
        names = [n for n in names if any(fnmatch.fnmatch(n, p) for p in patterns)]
    if exclude_filters:
        patterns = [exclude_filters] if isinstance(exclude_filters, str) else exclude_filters
        names = [n for n in names if not any(fnmatch.fnmatch(n, p) for p in patterns)]
    return names


def is_model(name: str) -> bool:
    return name in _model_entrypoints


def model_entrypoint(name: str) -> Callable[..., nn.Module]:
    if name not in _model_entrypoints:
        import difflib

        close = difflib.get_close_matches(name, list(_model_entrypoints), n=1)
        hint = f"; did you mean '{close[0]}'?" if close else ""
        raise ValueError(f"unknown model '{name}'{hint} Known models: {', '.join(list_models())}")
    return _model_entrypoints[name]


def create_model(
    name: str,
    num_classes: int = 7,
    pretrained: bool | str | Path = False,
    class_names: list[str] | None = None,
    **kwargs: Any,
) -> nn.Module:
    """Build a registered model.

    Args:
        name: registered model name (see :func:`list_models`).
        num_classes: width of the classifier.
        pretrained: ``False`` (random init), ``True`` (the backbone's ImageNet weights, downloaded through
            timm or torchvision with their cache and checksum), or a path to a local weight file in the
            timm or torchvision key layout (``.safetensors``, ``.pth``, ``.pt``, ``.bin``).
        class_names: optional names of the ``num_classes`` outputs, stored with saved models.
        **kwargs: architecture options of the model family (an explicit ``None`` is passed on, e.g.
            ``representation_dim=None`` removes FERAtt's representation head).

    Returns:
        The model, with ``model.model_name`` and ``model.model_kwargs`` recorded for :meth:`save`.
    """
    from .pretrained import load_pretrained

    model = model_entrypoint(name)(num_classes=num_classes, **kwargs)
    model.model_name = name
    model.model_kwargs = dict(kwargs)
    if class_names is not None:
        model.class_names = list(class_names)
    if pretrained:
        model.pretrained_report = load_pretrained(model, pretrained)
    return model
