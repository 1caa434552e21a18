"""SA-FER: facial expression recognition with self-attention over patch tokens on ResNet18-CBAM.

Source: "Facial Expression Recognition Using Self Attention" (37nomad; public copy at
github.com/Deepanshu903/Facial-Expression-Recognition-Using-Self-Attention), a PyTorch notebook on RAF-DB.
Spec: architectures.md section 4.

ResNet18 up to layer3 (256x14x14 at 224) with CBAM inside *every* BasicBlock (after conv2 + bn2, before
the residual add), the patch-extraction block (PAtt-Lite's, with biased depthwise convs each followed by
ReLU) down to 2x2, the 4 patch tokens through one-head multi-head self-attention, residual add and
LayerNorm (post-norm), global average pooling over the tokens, Linear. 3,273,363 parameters for 7 classes.

Deviations / interpretation:

* ``imagenet_norm=False`` (default) keeps the notebook's un-normalised [0, 1] input; ``True`` switches the
  config to ImageNet mean/std, which suits ImageNet-initialised backbones.
* Parameter names of the trunk follow torchvision/timm ``resnet18`` (``backbone.`` prefix), so its
  ImageNet weights load directly; CBAM starts from scratch. Without ImageNet weights every layer keeps PyTorch's
  default initialisation, as the notebook does (its ``ResNet`` applies no kaiming init).
* The notebook's checkpoint (``torch.save({'iter', 'model_state_dict', 'optimizer_state_dict'})``) imports as
  format ``sa_fer_notebook`` (``attnfer convert``); with the same weights the outputs are identical.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..preprocess import PreprocessConfig
from ._base import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    NO_NORM_MEAN,
    NO_NORM_STD,
    AttentionMap,
    FERModel,
    recording,
    token_attention_map,
)
from ._cfg import ModelCfg, PretrainedSource
from ._formats import OfficialFormatError, load_mapped, load_torch_file, register_format, state_dict_of
from ._registry import create_model, register_model
from .layers import CBAM, PatchExtraction, TokenMHSA

__all__ = ["SAFER", "CBAMBasicBlock", "ResNetCBAMTrunk"]


class CBAMBasicBlock(nn.Module):
    """ResNet BasicBlock with CBAM applied to the residual branch before the addition."""

    def __init__(self, inplanes: int, planes: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(planes, planes, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.cbam = CBAM(planes)
        self.downsample: nn.Module | None = None
        if stride != 1 or inplanes != planes:
            self.downsample = nn.Sequential(
                nn.Conv2d(inplanes, planes, 1, stride=stride, bias=False), nn.BatchNorm2d(planes)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.cbam(self.bn2(self.conv2(out)))
        return self.relu(out + identity)


class ResNetCBAMTrunk(nn.Module):
    """ResNet18 stem + layer1..layer3 with CBAM blocks; torchvision/timm parameter names."""

    out_channels = 256

    def __init__(self, in_chans: int = 3) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_chans, 64, 7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
        self.layer1 = nn.Sequential(CBAMBasicBlock(64, 64), CBAMBasicBlock(64, 64))
        self.layer2 = nn.Sequential(CBAMBasicBlock(64, 128, 2), CBAMBasicBlock(128, 128))
        self.layer3 = nn.Sequential(CBAMBasicBlock(128, 256, 2), CBAMBasicBlock(256, 256))
        # PyTorch's default initialisation, as the notebook (no kaiming re-init)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))  # (B, 64, 56, 56)
        return self.layer3(self.layer2(self.layer1(x)))  # (B, 256, 14, 14)


class SAFER(FERModel):
    """SA-FER (see the module docstring).

    Args:
        num_classes: number of expression classes.
        num_heads: attention heads over the patch tokens (1 in the original).
        imagenet_norm: describe inputs as ImageNet-normalised in the config (default: raw [0, 1]).
        in_chans: input channels.
    """

    classifier_attr = "head"

    def __init__(
        self, num_classes: int = 7, num_heads: int = 1, imagenet_norm: bool = False, in_chans: int = 3
    ) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.num_features = 256
        self.imagenet_norm = imagenet_norm
        self.backbone = ResNetCBAMTrunk(in_chans)
        self.patches = PatchExtraction(256, 256, depthwise_bias=True, depthwise_act=True)
        self.attention = TokenMHSA(256, num_heads)
        self.head = nn.Linear(256, num_classes)
        self._init_classifier(self.head)
        self.record = False
        self.last_attention: torch.Tensor | None = None

    def _init_classifier(self, layer: nn.Linear) -> None:
        bound = 1.0 / (layer.in_features + layer.out_features) ** 0.5  # the notebook's uniform init
        nn.init.uniform_(layer.weight, -bound, bound)
        nn.init.zeros_(layer.bias)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        x = self.backbone(x)  # (B, 256, 14, 14)
        x = self.patches(x)  # (B, 256, 2, 2)
        B, D, H, W = x.shape
        t = x.flatten(2).transpose(1, 2)  # (B, 4, 256): one token per patch
        t, w = self.attention(t)  # (B, 4, 256), weights (B, 4, 4)
        assert w.shape == (B, H * W, H * W)
        if self.record:
            self.last_attention = w.detach()
        return t.transpose(1, 2).reshape(B, D, H, W)  # (B, 256, 2, 2)

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        x = x.mean(dim=(2, 3))  # (B, 256): global average pool over the patch tokens
        return x if pre_logits else self.head(x)

    @torch.no_grad()
    def attention_maps(self, x: torch.Tensor) -> list[AttentionMap]:
        """The CBAM spatial map of every block up to layer3, and the self-attention over the 2x2 patch tokens."""
        with recording(self) as mods:
            self(x)
        size = tuple(x.shape[-2:])
        maps = []
        for i, m in enumerate(k for k in mods if isinstance(k, CBAM) and k.last_spatial_map is not None):
            s = m.last_spatial_map[:1].float()  # (1, 1, h, w) in [0, 1] after the sigmoid
            up = F.interpolate(s, size=size, mode="bilinear", align_corners=False)[0, 0].cpu().numpy()
            maps.append(AttentionMap(f"CBAM spatial map {i + 1} ({s.shape[-2]}x{s.shape[-1]})", up))
        assert self.last_attention is not None
        maps.append(
            AttentionMap("self-attention over 2x2 patch tokens", token_attention_map(self.last_attention, size))
        )
        return maps

    @staticmethod
    def adapt_cfg(cfg: ModelCfg, kwargs: dict[str, Any]) -> ModelCfg:
        """ImageNet normalisation only with ``imagenet_norm=True``; the notebook feeds [0, 1] pixels."""
        if kwargs.get("imagenet_norm"):
            return cfg.replace(mean=IMAGENET_MEAN, std=IMAGENET_STD)
        return cfg


@register_model(
    ModelCfg(
        paper="SA-FER (37nomad, FER using self-attention)",
        preprocess=PreprocessConfig(input_size=(3, 224, 224), mean=NO_NORM_MEAN, std=NO_NORM_STD),
        pretrained=PretrainedSource(timm="resnet18", prefix="backbone.", layout="timm or torchvision resnet18"),
        explain_layer="backbone",  # (B, 256, 14, 14), ResNet18-CBAM up to layer3
        deviations=("optional ImageNet normalisation (imagenet_norm); the notebook feeds raw [0, 1] pixels",),
    ),
    adapt=SAFER.adapt_cfg,
)
def sa_fer(num_classes: int = 7, **kwargs: Any) -> SAFER:
    """ResNet18-CBAM to layer3 + patch tokens + 1-head MHSA + LayerNorm (3,273,363 params, C=7)."""
    return SAFER(num_classes=num_classes, **kwargs)


# ------------------------------------------------------------------------------------------------
# The authors' file: the notebook's checkpoint dict
# ------------------------------------------------------------------------------------------------
#: The notebook reads RAF-DB's labels 1-7 and subtracts 1 (RAF-DB's own order)
NOTEBOOK_CLASSES = ("surprise", "fear", "disgust", "happiness", "sadness", "anger", "neutral")

# notebook key prefix -> ours (first match wins; the trunk's own names get ``backbone.``)
_NOTEBOOK_RENAMES = (
    ("patch_extraction.depthwise_conv1.", "patches.dw1.0."),
    ("patch_extraction.pointwise_conv1.", "patches.pw1."),
    ("patch_extraction.depthwise_conv2.", "patches.dw2.0."),
    ("patch_extraction.pointwise_conv2.", "patches.pw2."),
    ("patch_extraction.conv3.", "patches.conv."),
    ("attention.", "attention.attn."),  # nn.MultiheadAttention(256, 1)
    ("layer_norm.", "attention.norm."),
    ("classifier.", "head."),
)
_CBAM_RENAMES = (
    (".ca.fc.0.", ".cbam.channel.fc1."),
    (".ca.fc.2.", ".cbam.channel.fc2."),
    (".sa.conv1.", ".cbam.spatial.conv."),
)


def _notebook_key(key: str) -> str:
    for old, new in _NOTEBOOK_RENAMES:
        if key.startswith(old):
            return new + key[len(old) :]
    for old, new in _CBAM_RENAMES:
        key = key.replace(old, new)
    return "backbone." + key


@register_format(
    "sa_fer_notebook",
    model="sa_fer",
    description="SA-FER notebook: torch.save({'iter', 'model_state_dict', 'optimizer_state_dict'}) "
    "(aug_epoch_N_acc_X_newmodel.pth), or a bare state dict",
)
def import_sa_fer_notebook(path: Path) -> SAFER:
    """The notebook's checkpoint -> ``sa_fer`` with its weights, RAF-DB class order and [0, 1] input.

    The number of classes comes from ``classifier.weight``; the optimizer state is not read.
    """
    obj = load_torch_file(path, "an SA-FER notebook checkpoint")
    sd = state_dict_of(obj, path, ("model_state_dict", "state_dict"), "the SA-FER notebook model")
    if "classifier.weight" not in sd or "patch_extraction.conv3.weight" not in sd:
        raise OfficialFormatError(
            f"{path}: not the SA-FER notebook model (no classifier.weight / patch_extraction.conv3.weight; "
            f"keys start {', '.join(list(sd)[:4])})"
        )
    num_classes = int(sd["classifier.weight"].shape[0])
    model = create_model("sa_fer", num_classes=num_classes)
    load_mapped(model, {_notebook_key(k): v for k, v in sd.items()}, path, "sa_fer_notebook")
    model.class_names = list(NOTEBOOK_CLASSES) if num_classes == len(NOTEBOOK_CLASSES) else None
    model.cfg = model.cfg.replace(interpolation="bilinear", antialias=True, mean=NO_NORM_MEAN, std=NO_NORM_STD)
    epoch = obj.get("iter") if isinstance(obj, dict) else None
    model.import_notes = [
        f"notebook checkpoint{f' of epoch {epoch}' if epoch is not None else ''}: model_state_dict read, "
        "optimizer state ignored",
        "class order of the notebook (RAF-DB labels 1-7 minus 1)"
        if model.class_names
        else f"no known class order for {num_classes} classes",
        "inputs: Resize((224, 224)) + ToTensor, RGB in [0, 1], no normalisation (notebook cell 12)",
    ]
    return model
