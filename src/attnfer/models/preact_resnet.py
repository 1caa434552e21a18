"""CIFAR-style pre-activation ResNet-18, FERAtt's classification network and its baseline row.

Paper: K. He, X. Zhang, S. Ren, J. Sun, "Identity Mappings in Deep Residual Networks", ECCV 2016.
Layout as used by FERAtt (spec architectures.md 2(a)): 3x3 stride-1 stem conv 3->64 (no BN/ReLU after
it), pre-activation BasicBlocks [2, 2, 2, 2] at 64/128/256/512 with strides 1/2/2/2 (1x1 conv shortcut on
the pre-activated input when the shape changes), no final BN, global average pooling, then either
Linear 512->C or a representation head Linear 512->dim followed by Linear dim->C.
11,169,607 parameters for C=7; 11,199,303 with the 64-d representation.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..preprocess import PreprocessConfig
from ._base import FERModel
from ._cfg import ModelCfg, PretrainedSource
from ._registry import register_model

__all__ = ["PreActBlock", "PreActResNet18"]


class PreActBlock(nn.Module):
    """BN-ReLU-conv3x3-BN-ReLU-conv3x3 with an identity or 1x1-conv shortcut."""

    def __init__(self, inplanes: int, planes: int, stride: int = 1) -> None:
        super().__init__()
        self.bn1 = nn.BatchNorm2d(inplanes)
        self.conv1 = nn.Conv2d(inplanes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, padding=1, bias=False)
        self.shortcut: nn.Module | None = None
        if stride != 1 or inplanes != planes:
            self.shortcut = nn.Conv2d(inplanes, planes, 1, stride=stride, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(x))
        identity = x if self.shortcut is None else self.shortcut(out)
        out = self.conv1(out)
        out = self.conv2(F.relu(self.bn2(out)))
        return out + identity


class PreActResNet18(FERModel):
    """Pre-activation ResNet-18 for small inputs (32x32 in FERAtt).

    Args:
        num_classes: number of classes.
        representation_dim: if set, a Linear 512->dim representation layer (FERAtt's z, used by its
            Gaussian representation loss) precedes the classifier; ``forward_head(pre_logits=True)``
            then returns z.
        in_chans: input channels.
        input_size: nominal input size in the config.
    """

    classifier_attr = "head"

    def __init__(
        self,
        num_classes: int = 7,
        representation_dim: int | None = None,
        in_chans: int = 3,
        input_size: int = 32,
    ) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.representation_dim = representation_dim
        self.input_size = input_size
        self.conv1 = nn.Conv2d(in_chans, 64, 3, padding=1, bias=False)
        stages, inplanes = [], 64
        for planes, stride in [(64, 1), (128, 2), (256, 2), (512, 2)]:
            stages.append(nn.Sequential(PreActBlock(inplanes, planes, stride), PreActBlock(planes, planes)))
            inplanes = planes
        self.layer1, self.layer2, self.layer3, self.layer4 = stages
        self.embedding = nn.Linear(512, representation_dim) if representation_dim else None
        self.num_features = representation_dim or 512
        self.head = nn.Linear(self.num_features, num_classes)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv1(x)  # (B, 64, 32, 32)
        return self.layer4(self.layer3(self.layer2(self.layer1(x))))  # (B, 512, 4, 4)

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        x = x.mean(dim=(2, 3))  # (B, 512)
        if self.embedding is not None:
            x = self.embedding(x)  # (B, dim): the representation z
        return x if pre_logits else self.head(x)

    @staticmethod
    def adapt_cfg(cfg: ModelCfg, kwargs: dict[str, Any]) -> ModelCfg:
        size = kwargs.get("input_size", 32)
        return cfg.replace(input_size=(3, size, size))


@register_model(
    ModelCfg(
        paper="PreActResNet18 (He et al., ECCV 2016); FERAtt's baseline",
        preprocess=PreprocessConfig(input_size=(3, 32, 32), mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5)),
        # no published ImageNet weights: a local state dict of this architecture loads, without its head
        pretrained=PretrainedSource(exclude=("head.",), layout="attnfer preact_resnet18"),
        explain_layer="layer3",
    ),
    adapt=PreActResNet18.adapt_cfg,
)
def preact_resnet18(num_classes: int = 7, **kwargs: Any) -> PreActResNet18:
    """CIFAR-style PreActResNet-18 on 32x32 inputs, FERAtt's baseline (11,169,607 params, C=7)."""
    return PreActResNet18(num_classes=num_classes, **kwargs)
