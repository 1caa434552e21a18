"""attnfer: attention-based facial expression recognition in PyTorch.

    >>> import attnfer
    >>> model = attnfer.create_model("patt_lite", num_classes=7)
    >>> attnfer.list_models()
"""

__version__ = "0.1.0"

from .models import create_model, list_models, load_model  # noqa: E402

__all__ = ["__version__", "create_model", "list_models", "load_model"]
