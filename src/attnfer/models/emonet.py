"""EMO-Net: MobileNetV2 with a local attention block (ECA) and a feature-fusion branch in every block.

Source: "Lightweight Network with Feature Fusion Branch and Local Attention Block for Facial Expression
Recognition", code at github.com/xiayu-cell/EMO-Net (2023; the README's paper link is empty, no paper
text was found). Spec: architectures.md section 3.

Every inverted-residual block of MobileNetV2 (width 1.0) is changed in two ways:

1. *Local attention block*: ECA (adaptive odd kernel, no bias) on the linear projected output.
2. *Feature-fusion branch*: an auxiliary shortcut on **every** block, identity when stride 1 and
   in = out channels, else 1x1 conv with the block's stride + BN; the output is
   ``shortcut_weight * aux + main`` with no activation after the sum.

2,310,738 parameters for 7 classes (MobileNetV2 2,232,839 + auxiliary convs/BN 77,840 + ECA 59).

Deviations / interpretation:

* ``shortcut_weight`` (lambda) defaults to 0.5, the README's RAF-DB setting (0.6 for AffectNet).
  The released code hard-codes 0.8; that lambda is this coefficient is our inference from the file
  names ``a_<lambda>``, the checkpoints that would settle it are not public.
* Parameter names follow torchvision's ``mobilenet_v2`` so its ImageNet weights load directly; timm's
  ``mobilenetv2_100`` layout is translated. ECA and auxiliary branches start from scratch.
* The released state dicts (``torch.save(net.state_dict(), ...)``: ``channel.conv1`` for ECA, ``dowmSample`` for
  the shortcut) import as format ``emonet_official`` (``attnfer convert``); with the same weights and lambda the
  outputs are identical.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, ClassVar

import torch
import torch.nn as nn
from torchvision.ops.misc import Conv2dNormActivation

from ..preprocess import PreprocessConfig
from ._base import IMAGENET_MEAN, IMAGENET_STD, FERModel
from ._cfg import ModelCfg, PretrainedSource
from ._formats import OfficialFormatError, load_mapped, load_torch_file, register_format, state_dict_of
from ._registry import create_model, register_model
from .layers import ECA

__all__ = ["EMOInvertedResidual", "EMONet"]

# MobileNetV2's (expansion t, channels c, repeats n, first stride s) table.
MOBILENETV2_SETTINGS = [
    (1, 16, 1, 1),
    (6, 24, 2, 2),
    (6, 32, 3, 2),
    (6, 64, 4, 2),
    (6, 96, 3, 1),
    (6, 160, 3, 2),
    (6, 320, 1, 1),
]


class EMOInvertedResidual(nn.Module):
    """Inverted residual with ECA on the projection and a weighted auxiliary shortcut.

    ``conv`` holds the main branch with torchvision's layout: [1x1 expand + BN + ReLU6] (t != 1),
    3x3 depthwise stride s + BN + ReLU6, 1x1 linear projection (no bias), BN.
    """

    def __init__(self, inp: int, oup: int, stride: int, expand_ratio: int, shortcut_weight: float) -> None:
        super().__init__()
        hidden = inp * expand_ratio
        layers: list[nn.Module] = []
        if expand_ratio != 1:
            layers.append(Conv2dNormActivation(inp, hidden, kernel_size=1, activation_layer=nn.ReLU6))
        layers += [
            Conv2dNormActivation(hidden, hidden, stride=stride, groups=hidden, activation_layer=nn.ReLU6),
            nn.Conv2d(hidden, oup, 1, bias=False),
            nn.BatchNorm2d(oup),
        ]
        self.conv = nn.Sequential(*layers)
        self.eca = ECA(oup)
        if stride == 1 and inp == oup:
            self.shortcut: nn.Module = nn.Identity()
        else:
            self.shortcut = nn.Sequential(nn.Conv2d(inp, oup, 1, stride=stride, bias=False), nn.BatchNorm2d(oup))
        self.shortcut_weight = shortcut_weight

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.shortcut_weight * self.shortcut(x) + self.eca(self.conv(x))


class EMONet(FERModel):
    """EMO-Net (see the module docstring).

    Args:
        num_classes: number of expression classes.
        shortcut_weight: lambda in ``lambda * aux + main`` (0.5 RAF-DB, 0.6 AffectNet, 0.8 released code).
        drop_rate: dropout before the classifier (0.2).
        in_chans: input channels.
        img_size: the square input size its config asks for (224, the paper's). The network has no fixed grid (global
            pooling before the classifier), so it is intact at any size of at least 32; e.g. the quickstart trains at
            a smaller one for CPU speed.
    """

    classifier_attr = "classifier.1"
    dropout_settings: ClassVar[dict[str, str]] = {"drop_rate": "classifier.0"}

    def __init__(
        self,
        num_classes: int = 7,
        shortcut_weight: float = 0.5,
        drop_rate: float = 0.2,
        in_chans: int = 3,
        img_size: int = 224,
    ) -> None:
        super().__init__()
        if img_size < 32:
            raise ValueError(f"EMO-Net needs inputs of at least 32x32 (5 stride-2 stages), got img_size={img_size}")
        self.num_classes = num_classes
        self.num_features = 1280
        self.shortcut_weight = shortcut_weight
        features: list[nn.Module] = [Conv2dNormActivation(in_chans, 32, stride=2, activation_layer=nn.ReLU6)]
        inp = 32
        for t, c, n, s in MOBILENETV2_SETTINGS:
            for i in range(n):
                features.append(EMOInvertedResidual(inp, c, s if i == 0 else 1, t, shortcut_weight))
                inp = c
        features.append(Conv2dNormActivation(inp, self.num_features, kernel_size=1, activation_layer=nn.ReLU6))
        self.features = nn.Sequential(*features)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Sequential(nn.Dropout(drop_rate), nn.Linear(self.num_features, num_classes))

        # Released code's init: kaiming-normal (fan_out) convs, BN 1/0, Linear N(0, 0.01), zero biases.
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out")
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                self._init_classifier(m)

    def _init_classifier(self, layer: nn.Linear) -> None:
        nn.init.normal_(layer.weight, 0, 0.01)
        nn.init.zeros_(layer.bias)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x)  # (B, 1280, H/32, W/32)

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        x = self.pool(x).flatten(1)  # (B, 1280)
        return x if pre_logits else self.classifier(x)

    @staticmethod
    def adapt_cfg(cfg: ModelCfg, kwargs: dict[str, Any]) -> ModelCfg:
        """Lambda in ``extra``; the input size from ``img_size``."""
        size = int(kwargs.get("img_size", 224))
        return cfg.replace(input_size=(3, size, size), extra={"shortcut_weight": kwargs.get("shortcut_weight", 0.5)})

    def map_pretrained(self, state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """torchvision ``mobilenet_v2`` keys (identical to ours) or timm ``mobilenetv2_100`` keys -> ours.

        The ImageNet classifier is dropped; ECA and auxiliary shortcuts are not in either file.
        """
        if any(k.startswith("blocks.") for k in state_dict):
            state_dict = _timm_mobilenetv2_to_torchvision(state_dict)
        return super().map_pretrained(state_dict)


def _timm_mobilenetv2_to_torchvision(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Rename timm ``mobilenetv2_100`` tensors to torchvision ``mobilenet_v2`` names."""
    out: dict[str, torch.Tensor] = {}
    stage_sizes = [n for _, _, n, _ in MOBILENETV2_SETTINGS]
    first_index = [1 + sum(stage_sizes[:i]) for i in range(len(stage_sizes))]  # features.k of blocks.i.0
    # timm block part -> torchvision part, for the t=1 block and for the expanded blocks
    ds = {"conv_dw": "conv.0.0", "bn1": "conv.0.1", "conv_pw": "conv.1", "bn2": "conv.2"}
    ir = {
        "conv_pw": "conv.0.0",
        "bn1": "conv.0.1",
        "conv_dw": "conv.1.0",
        "bn2": "conv.1.1",
        "conv_pwl": "conv.2",
        "bn3": "conv.3",
    }
    head = 1 + sum(stage_sizes)  # features.18: the final 1x1 conv
    for k, v in sd.items():
        parts = k.split(".")
        if parts[0] == "conv_stem":
            out["features.0.0." + ".".join(parts[1:])] = v
        elif parts[0] == "bn1":
            out["features.0.1." + ".".join(parts[1:])] = v
        elif parts[0] == "conv_head":
            out[f"features.{head}.0." + ".".join(parts[1:])] = v
        elif parts[0] == "bn2":
            out[f"features.{head}.1." + ".".join(parts[1:])] = v
        elif parts[0] == "blocks":
            i, j, layer, rest = int(parts[1]), int(parts[2]), parts[3], ".".join(parts[4:])
            table = ds if i == 0 else ir
            out[f"features.{first_index[i] + j}.{table[layer]}.{rest}"] = v
    return out


@register_model(
    ModelCfg(
        paper="EMO-Net (xiayu-cell/EMO-Net, 2023)",
        preprocess=PreprocessConfig(input_size=(3, 224, 224), mean=IMAGENET_MEAN, std=IMAGENET_STD),
        pretrained=PretrainedSource(
            url="https://download.pytorch.org/models/mobilenet_v2-b0353104.pth",
            exclude=("classifier.",),
            layout="torchvision mobilenet_v2 or timm mobilenetv2_100",
        ),
        explain_layer="features",  # (B, 1280, 7, 7), the last feature map
        deviations=("shortcut_weight (lambda) defaults to the README's 0.5; the released code hard-codes 0.8",),
        extra={"shortcut_weight": 0.5},
    ),
    adapt=EMONet.adapt_cfg,
)
def emonet(num_classes: int = 7, **kwargs: Any) -> EMONet:
    """EMO-Net on MobileNetV2 1.0, lambda 0.5 (2,310,738 params, C=7)."""
    return EMONet(num_classes=num_classes, **kwargs)


# ------------------------------------------------------------------------------------------------
# The authors' files: xiayu-cell/EMO-Net state dicts
# ------------------------------------------------------------------------------------------------
#: README: "0: surprise; 1: fear; 2: disgust; 3: happy; 4: sad; 5: anger; 6: neutral" (RAF-DB's labels minus 1)
RAFDB_CLASSES = ("surprise", "fear", "disgust", "happiness", "sadness", "anger", "neutral")
#: AffectNet's own expression codes 0-7 (the repository's AffectNet lists are 0-based; their order is undocumented)
AFFECTNET_CLASSES = ("neutral", "happiness", "sadness", "surprise", "fear", "disgust", "anger", "contempt")
#: ``return 0.8*x + out`` in the released model/emoNet.py
RELEASED_SHORTCUT_WEIGHT = 0.8
_LAMBDA_IN_NAME = re.compile(r"_a_(\d+(?:\.\d+)?)_", re.IGNORECASE)


def _official_key(key: str) -> str:
    return key.replace(".channel.conv1.", ".eca.conv.").replace(".dowmSample.", ".shortcut.")


@register_format(
    "emonet_official",
    model="emonet",
    description="xiayu-cell/EMO-Net: torch.save(net.state_dict(), ...) "
    "(mobileNet-ECA-RAFDB.pth, RAFDB_a_0.5_0.913.pth)",
    options=("shortcut_weight",),
)
def import_emonet_official(path: Path, shortcut_weight: float | None = None) -> EMONet:
    """A released EMO-Net state dict -> ``emonet`` with its weights, class order and preprocessing.

    The shortcut weight lambda comes from ``shortcut_weight``, else from a file name like ``RAFDB_a_0.5_0.913.pth``
    (``_a_<lambda>_``), else the released code's 0.8; ``model.import_notes`` says which rule applied. Class order:
    AffectNet's codes for 8 classes and for a 7-class file named after AffectNet, else RAF-DB's (the README's).
    """
    sd = state_dict_of(load_torch_file(path, "an EMO-Net state dict"), path, ("state_dict",), "an EMO-Net state dict")
    if "classifier.1.weight" not in sd or not any(".channel.conv1." in k for k in sd):
        raise OfficialFormatError(
            f"{path}: not an EMO-Net state dict (no classifier.1.weight / features.N.channel.conv1.weight; keys "
            f"start {', '.join(list(sd)[:4])})"
        )
    if shortcut_weight is not None:
        rule = f"shortcut weight {shortcut_weight} given by the user"
    elif (match := _LAMBDA_IN_NAME.search(path.name)) is not None:
        shortcut_weight = float(match.group(1))
        rule = f"shortcut weight {shortcut_weight} from the file name ('_a_{match.group(1)}_')"
    else:
        shortcut_weight = RELEASED_SHORTCUT_WEIGHT
        rule = f"shortcut weight {shortcut_weight}: the released model/emoNet.py's hard-coded value (no lambda given)"
    num_classes = int(sd["classifier.1.weight"].shape[0])
    model = create_model("emonet", num_classes=num_classes, shortcut_weight=shortcut_weight)
    load_mapped(model, {_official_key(k): v for k, v in sd.items()}, path, "emonet_official")
    # the released 8-class checkpoints are AffectNet-8 ones; a 7-class file is AffectNet-7 when its name says so
    affectnet = num_classes == 8 or (num_classes == 7 and "affectnet" in path.name.lower())
    if affectnet:
        model.class_names = list(AFFECTNET_CLASSES[:num_classes])
        order = "AffectNet's own codes 0-7 (assumed: the repository's AffectNet lists are 0-based, order undocumented)"
    elif num_classes == len(RAFDB_CLASSES):
        model.class_names = list(RAFDB_CLASSES)
        order = "RAF-DB order of the README (0 surprise ... 6 neutral)"
    else:
        model.class_names = None
        order = f"no known class order for {num_classes} classes"
    # train.py's 'val' transform: Resize(256) -> CenterCrop(224) -> ToTensor -> ImageNet Normalize
    model.cfg = model.cfg.replace(crop_pct=224 / 256, interpolation="bilinear", antialias=True)
    model.import_notes = [rule, f"class order: {order}", "inputs: Resize(256), CenterCrop(224), ImageNet mean/std"]
    return model
