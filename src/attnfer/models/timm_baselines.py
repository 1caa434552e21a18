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

from ..preprocess import PreprocessConfig
from ._base import FERModel
from ._cfg import ModelCfg, PretrainedSource
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

    def __init__(self, architecture: str, num_classes: int = 7, drop_rate: float = 0.0, in_chans: int = 3) -> None:
        super().__init__()
        self.model = timm.create_model(
            architecture, pretrained=False, num_classes=num_classes, drop_rate=drop_rate, in_chans=in_chans
        )
        self.architecture = architecture
        self.num_classes = num_classes
        self.num_features = self.model.num_features
        cfg = self.model.pretrained_cfg
        self.classifier_attr = f"model.{cfg['classifier']}"

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.model.forward_features(x)

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        return self.model.forward_head(x, pre_logits=pre_logits)

    def _init_classifier(self, layer: nn.Linear) -> None:
        pass


def _timm_cfg(architecture: str, role: str) -> ModelCfg:
    """The config of a timm baseline from timm's own pretrained config (read without building the model).

    Input size, mean/std and interpolation are timm's; faces are fed whole (``crop_pct`` 1), not centre-cropped
    like ImageNet photos. timm's ImageNet files load under the ``model.`` prefix, without the classifier.
    """
    t = timm.models.get_pretrained_cfg(architecture).to_dict()
    return ModelCfg(
        paper=f"timm {architecture} + linear head; {role}",
        preprocess=PreprocessConfig(
            input_size=tuple(t["input_size"]),
            mean=tuple(t["mean"]),
            std=tuple(t["std"]),
            interpolation=t.get("interpolation", "bilinear"),
        ),
        pretrained=PretrainedSource(
            timm=architecture, prefix="model.", exclude=(t["classifier"] + ".",), layout=f"timm {architecture}"
        ),
    )


@register_model(_timm_cfg("mobilenetv2_100", "EMO-Net's baseline"))
def mobilenetv2_100(num_classes: int = 7, **kwargs: Any) -> TimmClassifier:
    """timm MobileNetV2 1.0 + linear head: EMO-Net's baseline."""
    return TimmClassifier("mobilenetv2_100", num_classes=num_classes, **kwargs)


@register_model(_timm_cfg("resnet18", "SA-FER's baseline"))
def resnet18(num_classes: int = 7, **kwargs: Any) -> TimmClassifier:
    """timm ResNet18 + linear head: SA-FER's baseline."""
    return TimmClassifier("resnet18", num_classes=num_classes, **kwargs)
