"""Plain timm backbones with a linear head: the comparison rows of the papers.

``mobilenetv2_100`` is the backbone EMO-Net modifies and ``resnet18`` the one SA-FER modifies; trained with
the same recipes they show what the attention modules add. The timm model is held as ``model``, so
timm's ImageNet files load with a ``model.`` prefix (the 1000-class classifier is skipped).
"""

from __future__ import annotations

from typing import Any

import timm
import torch
import torch.nn as nn

from ._base import FERModel
from ._registry import register_model

__all__ = ["TimmClassifier"]


class TimmClassifier(FERModel):
    """A timm backbone and its linear classifier, behind attnfer's model interface.

    Args:
        architecture: timm model name.
        num_classes: number of classes.
        drop_rate: dropout before the classifier.
        in_chans: input channels.
    """

    deviations = ()

    def __init__(self, architecture: str, num_classes: int = 7, drop_rate: float = 0.0, in_chans: int = 3) -> None:
        super().__init__()
        self.model = timm.create_model(
            architecture, pretrained=False, num_classes=num_classes, drop_rate=drop_rate, in_chans=in_chans
        )
        self.architecture = architecture
        self.pretrained_timm = architecture
        self.num_classes = num_classes
        self.num_features = self.model.num_features
        cfg = self.model.pretrained_cfg
        self.classifier_attr = f"model.{cfg['classifier']}"
        self.paper = f"timm {architecture} + linear head (baseline)"
        self._cfg = cfg

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.model.forward_features(x)

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        return self.model.forward_head(x, pre_logits=pre_logits)

    def _card_fields(self) -> dict[str, Any]:
        return dict(
            input_size=tuple(self._cfg["input_size"]),
            mean=tuple(self._cfg["mean"]),
            std=tuple(self._cfg["std"]),
            interpolation=self._cfg.get("interpolation", "bilinear"),
        )

    def map_pretrained(self, state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """timm keys -> ``model.*``; the ImageNet classifier is skipped."""
        own = self.state_dict()
        head = self._cfg["classifier"] + "."
        return {f"model.{k}": v for k, v in state_dict.items() if not k.startswith(head) and f"model.{k}" in own}

    def _init_classifier(self, layer: nn.Linear) -> None:
        pass


@register_model
def mobilenetv2_100(num_classes: int = 7, **kwargs: Any) -> TimmClassifier:
    """timm MobileNetV2 1.0 + linear head: EMO-Net's baseline."""
    return TimmClassifier("mobilenetv2_100", num_classes=num_classes, **kwargs)


@register_model
def resnet18(num_classes: int = 7, **kwargs: Any) -> TimmClassifier:
    """timm ResNet18 + linear head: SA-FER's baseline."""
    return TimmClassifier("resnet18", num_classes=num_classes, **kwargs)
