"""attnfer: attention-based facial expression recognition in PyTorch.

    >>> import attnfer
    >>> model = attnfer.create_model("patt_lite", num_classes=7)
    >>> attnfer.list_models()

The model zoo (torch, timm) is imported on first use, so ``attnfer --version`` and light imports stay fast.
"""

from typing import Any

__version__ = "0.1.0"

__all__ = ["__version__", "create_model", "list_models", "load_model"]


def __getattr__(name: str) -> Any:
    if name in ("create_model", "list_models", "load_model"):
        from . import models

        return getattr(models, name)
    raise AttributeError(f"module 'attnfer' has no attribute {name!r}")
