"""The interface every attnfer model shares: card, classifier handling, counting, saving."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn

__all__ = ["FERModel", "ModelCard", "count_macs", "count_parameters"]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
INCEPTION_MEAN = (0.5, 0.5, 0.5)  # maps [0, 1] to [-1, 1], as Keras' MobileNet preprocess_input
INCEPTION_STD = (0.5, 0.5, 0.5)
NO_NORM_MEAN = (0.0, 0.0, 0.0)
NO_NORM_STD = (1.0, 1.0, 1.0)


@dataclass(frozen=True)
class ModelCard:
    """What a user needs to feed a model correctly and to know what it is.

    ``mean``/``std`` apply to RGB pixels scaled to [0, 1]; ``input_size`` is (channels, height, width).
    """

    name: str
    paper: str
    input_size: tuple[int, int, int]
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    num_params: int
    color_order: str = "RGB"
    interpolation: str = "bilinear"
    deviations: tuple[str, ...] = ()
    batch_dependent: bool = False
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["input_size"] = list(self.input_size)
        d["mean"] = list(self.mean)
        d["std"] = list(self.std)
        d["deviations"] = list(self.deviations)
        return d


def count_parameters(model: nn.Module, include_bn_stats: bool = False, trainable_only: bool = False) -> int:
    """Number of parameter elements.

    ``include_bn_stats=True`` adds BatchNorm running mean/variance, which is how Keras counts
    ("non-trainable params"), so figures can be compared with Keras summaries.
    """
    n = sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)
    if include_bn_stats:
        for m in model.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats:
                n += m.running_mean.numel() + m.running_var.numel()
    return n


@torch.no_grad()
def count_macs(model: nn.Module, input_size: tuple[int, int, int] | None = None, batch_size: int = 2) -> int:
    """Multiply-accumulates of one image's forward pass (convolutions, matmuls, attention).

    Counted with ``torch.utils.flop_counter.FlopCounterMode`` (which reports 2 FLOPs per MAC) in eval
    mode. A batch of 2 is run and halved so batch-level operations are counted realistically.
    """
    from torch.utils.flop_counter import FlopCounterMode

    if input_size is None:
        input_size = model.card.input_size
    was_training = model.training
    model.eval()
    try:
        x = torch.zeros(batch_size, *input_size)
        counter = FlopCounterMode(display=False)
        with counter:
            model(x)
    finally:
        model.train(was_training)
    return counter.get_total_flops() // 2 // batch_size


class FERModel(nn.Module):
    """Base class of attnfer models (timm's model interface plus a card and save/load).

    Subclasses implement ``forward_features`` and ``forward_head`` and set ``num_classes``,
    ``num_features`` and the card fields in ``_card_fields()``.
    """

    #: Paper reference shown on the card; set by subclasses.
    paper: str = ""
    #: Deviations from the original implementation, stated on the card; set by subclasses.
    deviations: tuple[str, ...] = ()
    #: Attribute path of the final classifier (an ``nn.Linear``), for ``reset_classifier``.
    classifier_attr: str = "head"

    num_classes: int
    num_features: int
    model_name: str = ""
    model_kwargs: dict[str, Any]
    class_names: list[str] | None = None

    def __init__(self) -> None:
        super().__init__()
        self.model_kwargs = {}
        self.class_names = None

    # ---- forward -------------------------------------------------------------------------------
    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> Any:
        return self.forward_head(self.forward_features(x))

    # ---- classifier ----------------------------------------------------------------------------
    def get_classifier(self) -> nn.Module:
        module: nn.Module = self
        for part in self.classifier_attr.split("."):
            module = getattr(module, part)
        return module

    def reset_classifier(self, num_classes: int) -> None:
        """Replace the final linear layer by a freshly initialised one with ``num_classes`` outputs."""
        if num_classes < 1:
            raise ValueError(f"num_classes must be >= 1, got {num_classes}")
        old = self.get_classifier()
        assert isinstance(old, nn.Linear), f"{type(self).__name__}.{self.classifier_attr} is not nn.Linear"
        new = nn.Linear(old.in_features, num_classes).to(old.weight.device, old.weight.dtype)
        self._init_classifier(new)
        parent: nn.Module = self
        *path, last = self.classifier_attr.split(".")
        for part in path:
            parent = getattr(parent, part)
        setattr(parent, last, new)
        self.num_classes = num_classes
        if self.class_names is not None and len(self.class_names) != num_classes:
            self.class_names = None

    def _init_classifier(self, layer: nn.Linear) -> None:
        """Initialise a classifier made by ``reset_classifier``; PyTorch's default unless overridden."""

    # ---- description ---------------------------------------------------------------------------
    def _card_fields(self) -> dict[str, Any]:
        """input_size, mean, std and optional overrides (interpolation, extra, batch_dependent)."""
        raise NotImplementedError

    @property
    def card(self) -> ModelCard:
        fields = self._card_fields()
        return ModelCard(
            name=self.model_name or type(self).__name__,
            paper=self.paper,
            num_params=count_parameters(self),
            deviations=tuple(self.deviations),
            **fields,
        )

    def frozen_parameter_names(self) -> list[str]:
        """Parameters that deliberately receive no gradient (e.g. a frozen backbone)."""
        return [n for n, p in self.named_parameters() if not p.requires_grad]

    # ---- persistence ---------------------------------------------------------------------------
    def save(self, directory: str | Path) -> Path:
        """Write ``model.safetensors`` and ``config.json`` into ``directory`` (atomically per file)."""
        from .io import save_model

        return save_model(self, directory)
