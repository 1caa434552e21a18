"""Model registry and factory, in the style of timm's ``_registry`` / ``_factory``.

Each model family file decorates small entrypoint functions with ``@register_model(cfg)``, giving the model's
declarative config (:class:`~._cfg.ModelCfg`) and, when constructor options change it (an input size, an
attention mode), an ``adapt(cfg, kwargs)`` function of the family. Users build models with :func:`create_model`,
read a model's config without building it with :func:`get_model_cfg`, and discover models with :func:`list_models`.
"""

from __future__ import annotations

import fnmatch
import sys
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch.nn as nn

from ._cfg import ModelCfg

__all__ = ["create_model", "get_model_cfg", "is_model", "list_models", "model_entrypoint", "register_model"]

_model_entrypoints: dict[str, Callable[..., nn.Module]] = {}
_model_to_module: dict[str, str] = {}
_model_cfgs: dict[str, ModelCfg] = {}
_model_adapters: dict[str, Callable[[ModelCfg, dict[str, Any]], ModelCfg]] = {}


def register_model(
    cfg: ModelCfg, adapt: Callable[[ModelCfg, dict[str, Any]], ModelCfg] | None = None
) -> Callable[[Callable[..., nn.Module]], Callable[..., nn.Module]]:
    """Decorator: register an entrypoint under its function name with its default config ``cfg``; ``adapt(cfg,
    kwargs)`` returns the config of a model built with constructor options ``kwargs``."""
    if not isinstance(cfg, ModelCfg):
        raise TypeError("register_model(cfg) takes the model's ModelCfg; use it as @register_model(cfg)")

    def decorate(fn: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        _register(fn)
        _model_cfgs[fn.__name__] = cfg
        if adapt is not None:
            _model_adapters[fn.__name__] = adapt
        return fn

    return decorate


def _register(fn: Callable[..., nn.Module]) -> None:
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


def get_model_cfg(name: str, **kwargs: Any) -> ModelCfg:
    """The config of model ``name`` built with constructor options ``kwargs``, without building it."""
    model_entrypoint(name)  # unknown names: the error with a hint
    cfg = _model_cfgs[name]
    adapt = _model_adapters.get(name)
    return adapt(cfg, dict(kwargs)) if adapt is not None else cfg


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
        class_names: names of the ``num_classes`` outputs, stored with saved models (default: the config's, when
            it has ``num_classes`` of them).
        **kwargs: architecture options of the model family (an explicit ``None`` is passed on, e.g.
            ``representation_dim=None`` removes FERAtt's representation head).

    Returns:
        The model, with ``model.cfg`` (its config, see :func:`get_model_cfg`), ``model.model_name`` and
        ``model.model_kwargs`` recorded for :meth:`save`.
    """
    from .pretrained import load_pretrained

    cfg = get_model_cfg(name, **kwargs)
    model = model_entrypoint(name)(num_classes=num_classes, **kwargs)
    model.model_name = name
    model.model_kwargs = dict(kwargs)
    model.cfg = cfg
    if class_names is not None:
        if len(class_names) != num_classes:
            raise ValueError(f"{len(class_names)} class names for {num_classes} classes: {list(class_names)}")
        model.class_names = list(class_names)
    elif cfg.class_names is not None and len(cfg.class_names) == num_classes:
        model.class_names = list(cfg.class_names)
    if pretrained:
        model.pretrained_report = load_pretrained(model, pretrained)
    return model
