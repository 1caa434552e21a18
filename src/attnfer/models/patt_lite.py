"""PAtt-Lite: lightweight patch and attention MobileNet for facial expression recognition.

Paper: J. L. Ngwe, K. M. Lim, C. P. Lee, T. S. Ong, A. Alqahtani, "PAtt-Lite: Lightweight Patch and
Attention MobileNet for Challenging Facial Expression Recognition", IEEE Access 12, 2024
(arXiv:2306.09626). Original code: TensorFlow/Keras notebook, github.com/JLREx/PAtt-Lite.

Architecture (spec: architectures.md section 1): ImageNet MobileNetV1 (alpha 1.0) truncated after the
depthwise conv + BN + ReLU6 of its 9th depthwise-separable block (512x14x14 at 224x224), patch
extraction down to a 2x2 map of 256-d patches, spatial dropout, and an "attention classifier"
(Linear 256->32 + ReLU + BatchNorm, dot-product self-attention with a learnable scalar scale,
dropout, Linear 32->C).

Deviations from the original, all deliberate:

* **Attention among the 4 patch tokens of one sample (default ``attention="tokens"``).** The original
  feeds the (B, 32) pooled vector to Keras ``Attention``, which then attends across the *samples of
  the batch*: every prediction mixes in its batch-mates, a batch of one turns the layer into the
  identity, and class-sorted evaluation batches inflate the published accuracy. The authors
  acknowledge the bug. We keep the 2x2 patch map as 4 tokens, apply the same 256->32 projection,
  ReLU and BatchNorm per token, attend among the 4 tokens, and average them (in place of the global
  average pool). Same layers, same parameter count (1,093,000 for 7 classes).
* ``attention="batch"`` reproduces the original exactly (softmax(scale * X X^T) X over the batch) for
  reproducing published numbers only; it warns at construction and its config is flagged
  ``batch_dependent``.
* Two trunks. ``trunk="keras"`` is Keras' MobileNet exactly (:class:`KerasMobileNetV1Trunk`: stride-2 convolutions
  padded bottom/right, BatchNorm epsilon 1e-3) and takes Keras' ImageNet file ``mobilenet_1_0_224_tf_no_top.h5``,
  the paper's starting point; with the same weights it reproduces the original's outputs (5e-5 in the logits,
  measured). ``trunk="timm"`` (the default) is timm's ``mobilenetv1_100`` (symmetric padding, epsilon 1e-5), which
  differs from Keras by up to 12 in the logits with the same weights. The default stays timm because its ImageNet
  weights come from the Hugging Face hub with the hub's own verification (Keras publishes no checksum for its file),
  are a 2024 retraining with timm's ``ra4`` recipe (Keras' file is the 2017 release, 70.6% ImageNet top-1 by Keras'
  documentation), and because checkpoints saved before the Keras trunk existed are timm ones; choose
  ``trunk="keras"`` to reproduce the paper from the paper's weights, and for the authors' files (``attnfer convert
  --from patt_lite_keras``). Both trunks expect [-1, 1] inputs.
* ``unfreeze_last_n`` really unfreezes backbone layers; the original's fine-tuning phase computed a
  start index of -1 and left the whole backbone frozen.
"""

from __future__ import annotations

import warnings
from collections import OrderedDict
from pathlib import Path
from typing import Any, ClassVar, Literal

import numpy as np
import timm
import torch
import torch.nn as nn
import torch.nn.functional as F

from ..preprocess import PreprocessConfig
from ._base import INCEPTION_MEAN, INCEPTION_STD, AttentionMap, FERModel, recording, token_attention_map
from ._cfg import ModelCfg, PretrainedSource
from ._formats import OfficialFormatError, load_mapped, register_format
from ._registry import create_model, register_model
from .layers import PatchExtraction, ScaledDotSelfAttention

__all__ = ["BatchDependentWarning", "KerasMobileNetV1Trunk", "MobileNetV1Trunk", "PAttLite"]

#: Keras' ImageNet MobileNet v1 (alpha 1.0, 224) without its classifier, as ``keras.applications`` downloads it.
#: Keras' source (keras-team/keras ``keras/src/applications/mobilenet.py``) lists no sha256 for it; the file is
#: checked by its layout (every trunk tensor present with Keras' shape) and by the sha256 recorded at download.
KERAS_MOBILENET_URL = (
    "https://storage.googleapis.com/tensorflow/keras-applications/mobilenet/mobilenet_1_0_224_tf_no_top.h5"
)


class BatchDependentWarning(UserWarning):
    """A model whose predictions depend on the other samples of the batch."""


class MobileNetV1Trunk(nn.Module):
    """timm ``mobilenetv1_100`` cut after the depthwise conv + BN + ReLU6 of separable block 9.

    Keras block k maps to timm as 1 -> blocks[0][0]; 2-3 -> blocks[1]; 4-5 -> blocks[2];
    6-11 -> blocks[3][0..5]. Block 9 is ``blocks[3][3]``; we keep its ``conv_dw`` and ``bn1`` (BN with
    ReLU6) and drop its pointwise conv and everything after. Parameter names match timm's, so timm's
    state dict loads directly. 812,352 parameters; output (B, 512, H/16, W/16).
    """

    out_channels = 512

    def __init__(self, in_chans: int = 3) -> None:
        super().__init__()
        full = timm.create_model("mobilenetv1_100", pretrained=False, num_classes=0, in_chans=in_chans)
        self.conv_stem = full.conv_stem
        self.bn1 = full.bn1
        stage3 = full.blocks[3]
        cut = nn.Sequential(OrderedDict(conv_dw=stage3[3].conv_dw, bn1=stage3[3].bn1))
        self.blocks = nn.Sequential(full.blocks[0], full.blocks[1], full.blocks[2], nn.Sequential(*stage3[:3], cut))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.blocks(self.bn1(self.conv_stem(x)))

    def weighted_layers(self) -> list[tuple[str, nn.Module]]:
        """Convolutions and BatchNorms in forward order (how Keras counts trainable layers)."""
        return [(n, m) for n, m in self.named_modules() if isinstance(m, nn.Conv2d | nn.modules.batchnorm._BatchNorm)]


def _tf_same_padding(size: tuple[int, int], kernel: int, stride: int) -> tuple[int, int, int, int]:
    """TensorFlow's "same" padding as ``F.pad`` amounts (left, right, top, bottom): the extra pixel goes right and
    bottom (for a stride-2 3x3 convolution: (0, 1) on an even size, (1, 1) on an odd one)."""
    pads = []
    for n in size:
        out = -(-n // stride)
        total = max((out - 1) * stride + kernel - n, 0)
        pads.append((total // 2, total - total // 2))
    (top, bottom), (left, right) = pads
    return left, right, top, bottom


class KerasMobileNetV1Trunk(nn.Module):
    """Keras' MobileNet v1 (alpha 1.0) cut after ``conv_dw_9_relu``, layer by layer as Keras builds it.

    ``conv1``: 3x3 stride-2 convolution with TensorFlow "same" padding (bottom/right on even sizes), BN, ReLU6; then
    depthwise-separable blocks 1-8 (depthwise 3x3 + BN + ReLU6, pointwise 1x1 + BN + ReLU6) and the depthwise half of
    block 9. Stride-2 blocks (2, 4, 6) pad one row and column at the bottom/right (Keras' ``ZeroPadding2D(((0, 1),
    (0, 1)))``) and use an unpadded depthwise convolution; stride-1 ones pad 1 all round. BatchNorm epsilon 1e-3
    (Keras' default), momentum 0.01 (Keras' 0.99). Modules carry the Keras layer names (``conv_dw_3_bn``), so
    Keras' file maps onto them one to one. 812,352 parameters + 9,664 BN statistics; output (B, 512, H/16, W/16).
    """

    out_channels = 512
    #: (pointwise filters, stride) of Keras' blocks 1-9 (block 9: its depthwise half only)
    BLOCKS: ClassVar[list[tuple[int, int]]] = [
        (64, 1),
        (128, 2),
        (128, 1),
        (256, 2),
        (256, 1),
        (512, 2),
        (512, 1),
        (512, 1),
        (512, 1),
    ]

    def __init__(self, in_chans: int = 3) -> None:
        super().__init__()

        def bn(c: int) -> nn.BatchNorm2d:
            return nn.BatchNorm2d(c, eps=1e-3, momentum=0.01)

        self.conv1 = nn.Conv2d(in_chans, 32, 3, stride=2, bias=False)
        self.conv1_bn = bn(32)
        ch = 32
        for i, (filters, stride) in enumerate(self.BLOCKS, 1):
            self.add_module(
                f"conv_dw_{i}",
                nn.Conv2d(ch, ch, 3, stride=stride, padding=1 if stride == 1 else 0, groups=ch, bias=False),
            )
            self.add_module(f"conv_dw_{i}_bn", bn(ch))
            if i < len(self.BLOCKS):
                self.add_module(f"conv_pw_{i}", nn.Conv2d(ch, filters, 1, bias=False))
                self.add_module(f"conv_pw_{i}_bn", bn(filters))
                ch = filters

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.pad(x, _tf_same_padding(tuple(x.shape[-2:]), 3, 2))
        x = F.relu6(self.conv1_bn(self.conv1(x)))  # (B, 32, H/2, W/2)
        for i, (_, stride) in enumerate(self.BLOCKS, 1):
            if stride == 2:
                x = F.pad(x, (0, 1, 0, 1))  # conv_pad_i: one column right, one row bottom
            x = F.relu6(getattr(self, f"conv_dw_{i}_bn")(getattr(self, f"conv_dw_{i}")(x)))
            if i < len(self.BLOCKS):
                x = F.relu6(getattr(self, f"conv_pw_{i}_bn")(getattr(self, f"conv_pw_{i}")(x)))
        return x  # (B, 512, H/16, W/16)

    def weighted_layers(self) -> list[tuple[str, nn.Module]]:
        """Convolutions and BatchNorms in forward order (how Keras counts trainable layers)."""
        return [(n, m) for n, m in self.named_children() if isinstance(m, nn.Conv2d | nn.BatchNorm2d)]

    @staticmethod
    def from_keras(weights: dict[str, torch.Tensor], prefix: str = "") -> dict[str, torch.Tensor]:
        """Keras MobileNet tensors under their weight names (``conv_dw_3/depthwise_kernel:0``, Keras layouts) ->
        this trunk's state dict (``prefix`` + ``conv_dw_3.weight``), for the layers the trunk has. Kernels become
        transposed views of the file's tensors."""
        keep = {"conv1", "conv1_bn"}
        for i in range(1, len(KerasMobileNetV1Trunk.BLOCKS) + 1):
            keep |= {f"conv_dw_{i}", f"conv_dw_{i}_bn"}
            if i < len(KerasMobileNetV1Trunk.BLOCKS):
                keep |= {f"conv_pw_{i}", f"conv_pw_{i}_bn"}
        bn_names = {"gamma": "weight", "beta": "bias", "moving_mean": "running_mean", "moving_variance": "running_var"}
        out: dict[str, torch.Tensor] = {}
        for key, v in weights.items():
            layer, _, var = key.rpartition("/")
            layer, var = layer.rsplit("/", 1)[-1], var.split(":")[0]
            if layer not in keep:
                continue
            if var == "kernel":  # (kh, kw, in, out) -> (out, in, kh, kw)
                out[f"{prefix}{layer}.weight"] = v.permute(3, 2, 0, 1)
            elif var == "depthwise_kernel":  # (kh, kw, C, 1) -> (C, 1, kh, kw)
                out[f"{prefix}{layer}.weight"] = v.permute(2, 3, 0, 1)
            elif var in bn_names:
                out[f"{prefix}{layer}.{bn_names[var]}"] = v
                if var == "moving_variance":  # Keras keeps no count; ours starts from 0
                    out[f"{prefix}{layer}.num_batches_tracked"] = torch.tensor(0)
        return out


class PAttLite(FERModel):
    """PAtt-Lite with per-sample token attention (see the module docstring for the deviations).

    Args:
        num_classes: number of expression classes.
        attention: ``"tokens"`` (default, correct): self-attention among the 4 patch tokens of each
            sample. ``"batch"``: the original's attention across the samples of a batch (reproduction
            only; predictions depend on batch-mates).
        freeze_backbone: keep the MobileNetV1 trunk frozen with its BatchNorms in inference mode, as the
            original does (default). ``False`` trains everything (e.g. from scratch).
        unfreeze_last_n: with a frozen backbone, make the last N weighted backbone layers (convs and
            BatchNorm affines, counted as Keras counts them; 36 in the trunk) trainable again. BatchNorm
            statistics stay frozen.
        resize_to: resize inputs inside the model (bilinear) to this square size, as the original's
            ``Resizing(224, 224)`` layer; ``None`` feeds inputs as they come.
        trunk: ``"timm"`` (default) or ``"keras"`` (Keras-exact MobileNet; see the module docstring).
        pixel_input: inputs are RGB pixels in [0, 255] and the model scales them to [-1, 1] (``x / 127.5 - 1``,
            the original's ``preprocess_input`` layers) after ``resize_to``; the config then asks for raw pixels.
            Default False: the config normalises to [-1, 1] outside the model.
        drop_rate: dropout on the patch tokens before the projection (0.1 phase 1, 0.2 phase 2).
        spatial_drop_rate: SpatialDropout2D on the 2x2 patch map (0.2; phase 2 only in the original).
        attn_drop_rate: dropout after the attention (0.2; phase 2 only in the original).
        embed_dim: patch embedding width (256).
        head_dim: attention width (32).
        in_chans: input channels.
    """

    classifier_attr = "head"
    dropout_settings: ClassVar[dict[str, str]] = {
        "drop_rate": "drop",
        "spatial_drop_rate": "spatial_drop",
        "attn_drop_rate": "attn_drop",
    }

    def __init__(
        self,
        num_classes: int = 7,
        attention: Literal["tokens", "batch"] = "tokens",
        freeze_backbone: bool = True,
        unfreeze_last_n: int = 0,
        resize_to: int | None = None,
        drop_rate: float = 0.2,
        spatial_drop_rate: float = 0.2,
        attn_drop_rate: float = 0.2,
        embed_dim: int = 256,
        head_dim: int = 32,
        in_chans: int = 3,
        trunk: Literal["timm", "keras"] = "timm",
        pixel_input: bool = False,
    ) -> None:
        super().__init__()
        if attention not in ("tokens", "batch"):
            raise ValueError(f"attention must be 'tokens' or 'batch', got {attention!r}")
        if trunk not in ("timm", "keras"):
            raise ValueError(f"trunk must be 'timm' or 'keras', got {trunk!r}")
        self.trunk = trunk
        self.pixel_input = pixel_input
        self.num_classes = num_classes
        self.num_features = head_dim
        self.attention_mode = attention
        self.resize_to = resize_to
        self.freeze_backbone = freeze_backbone
        self.record = False  # keep the last attention weights in ``last_attention`` when True
        self.last_attention: torch.Tensor | None = None

        self.backbone = KerasMobileNetV1Trunk(in_chans) if trunk == "keras" else MobileNetV1Trunk(in_chans)
        self.patches = PatchExtraction(self.backbone.out_channels, embed_dim)
        self.spatial_drop = nn.Dropout2d(spatial_drop_rate)
        self.drop = nn.Dropout(drop_rate)
        self.pre_fc = nn.Linear(embed_dim, head_dim)
        # Keras BatchNormalization defaults: eps 1e-3, momentum 0.99 (= 0.01 in PyTorch's convention).
        self.pre_bn = nn.BatchNorm1d(head_dim, eps=1e-3, momentum=0.01)
        self.attention = ScaledDotSelfAttention(scale_init=1.0)
        self.attn_drop = nn.Dropout(attn_drop_rate)
        self.head = nn.Linear(head_dim, num_classes)

        # Keras' default initialisers (glorot-uniform kernels, zero biases) for everything new.
        for m in [*self.patches.modules(), self.pre_fc, self.head]:
            if isinstance(m, nn.Conv2d | nn.Linear):
                nn.init.xavier_uniform_(m.weight)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)

        self.set_backbone_trainable(freeze_backbone, unfreeze_last_n)
        if attention == "batch":
            warnings.warn(
                "PAtt-Lite with attention='batch' reproduces the original's bug: each prediction is a "
                "mixture of all samples in its batch, so outputs change with batch size and batch-mates "
                "(a batch of one makes the attention the identity). Use only to reproduce published "
                "numbers; evaluate with shuffled, fixed-size batches.",
                BatchDependentWarning,
                stacklevel=2,
            )

    # ---- freezing ------------------------------------------------------------------------------
    def set_backbone_trainable(self, freeze_backbone: bool = True, unfreeze_last_n: int = 0) -> None:
        """Freeze the trunk (BatchNorm in inference mode) except its last ``unfreeze_last_n`` layers."""
        layers = self.backbone.weighted_layers()
        if not 0 <= unfreeze_last_n <= len(layers):
            raise ValueError(f"unfreeze_last_n must be in [0, {len(layers)}], got {unfreeze_last_n}")
        self.freeze_backbone = freeze_backbone
        self.unfreeze_last_n = unfreeze_last_n if freeze_backbone else len(layers)
        for p in self.backbone.parameters():
            p.requires_grad = not freeze_backbone
        if freeze_backbone and unfreeze_last_n:
            for _, m in layers[-unfreeze_last_n:]:
                for p in m.parameters():
                    p.requires_grad = True
        self.train(self.training)

    def train(self, mode: bool = True) -> PAttLite:
        super().train(mode)
        if self.freeze_backbone:
            self.backbone.eval()  # the original calls the base with training=False
        return self

    # ---- forward -------------------------------------------------------------------------------
    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Image (B, 3, H, W) -> patch map (B, 256, 2, 2) at 224 input."""
        if self.resize_to is not None and x.shape[-2:] != (self.resize_to, self.resize_to):
            x = F.interpolate(x, size=(self.resize_to, self.resize_to), mode="bilinear", align_corners=False)
        if self.pixel_input:
            x = x / 127.5 - 1.0  # [0, 255] -> [-1, 1], Keras' mobilenet.preprocess_input
        if min(x.shape[-2:]) < 96:
            raise ValueError(
                f"PAtt-Lite needs inputs of at least 96x96 (224x224 by design), got {tuple(x.shape[-2:])}; "
                "create it with resize_to=224 to resize small images (e.g. FER2013's 48x48) inside the model"
            )
        x = self.backbone(x)  # (B, 512, 14, 14)
        return self.patches(x)  # (B, 256, 2, 2)

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        B, _, H, W = x.shape
        x = self.spatial_drop(x)
        if self.attention_mode == "tokens":
            t = x.flatten(2).transpose(1, 2)  # (B, 4, 256): one token per patch
            t = F.relu(self.pre_fc(self.drop(t)))  # (B, 4, 32)
            t = self.pre_bn(t.reshape(B * H * W, -1)).view(B, H * W, -1)  # BN over all B*4 tokens
            t, w = self.attention(t)  # (B, 4, 32), weights (B, 4, 4)
            assert w.shape == (B, H * W, H * W)
            t = t.mean(dim=1)  # (B, 32)
        else:
            t = x.mean(dim=(2, 3))  # (B, 256): global average pool, as the original
            t = self.pre_bn(F.relu(self.pre_fc(self.drop(t))))  # (B, 32)
            t, w = self.attention(t.unsqueeze(0))  # the batch is the sequence: (1, B, 32), (1, B, B)
            t = t.squeeze(0)  # (B, 32)
        if self.record:
            self.last_attention = w.detach()
        t = self.attn_drop(t)
        return t if pre_logits else self.head(t)

    # ---- attention maps ------------------------------------------------------------------------
    @torch.no_grad()
    def attention_maps(self, x: torch.Tensor) -> list[AttentionMap]:
        """Token mode: the attention each of the 2x2 patch tokens receives, on the image quadrant it mostly covers
        (the patch convolutions' receptive fields overlap, so the quadrants are an approximation). Batch mode
        attends across samples and has no per-image map."""
        if self.attention_mode != "tokens":
            return []
        with recording(self):
            self(x)
        assert self.last_attention is not None
        return [
            AttentionMap(
                "PAtt-Lite token attention (2x2 patches)", token_attention_map(self.last_attention, x.shape[-2:])
            )
        ]

    def map_pretrained(self, state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """timm ``mobilenetv1_100`` keys (timm trunk) or Keras MobileNet weight names (Keras trunk: the
        ``mobilenet_1_0_224_tf_no_top.h5`` file, or a saved PAtt-Lite ``model.h5``'s ``base_model``) -> ours."""
        if self.trunk == "keras":
            if not any(":" in k for k in state_dict):
                return {}  # not a Keras file: load_pretrained reports that nothing fits
            return KerasMobileNetV1Trunk.from_keras(state_dict, prefix="backbone.")
        return super().map_pretrained(state_dict)

    @staticmethod
    def adapt_cfg(cfg: ModelCfg, kwargs: dict[str, Any]) -> ModelCfg:
        """The config of a PAtt-Lite built with ``kwargs``: input size from ``resize_to``, batch dependence, the
        trunk's ImageNet source and deviations, raw-pixel input with ``pixel_input``."""
        size = kwargs.get("resize_to") or 224
        attention = kwargs.get("attention", "tokens")
        trunk = kwargs.get("trunk", "timm")
        extra = {"attention": attention, "freeze_backbone": kwargs.get("freeze_backbone", True), "trunk": trunk}
        deviations = list(cfg.deviations)
        changes: dict[str, Any] = {"input_size": (3, size, size), "extra": extra}
        if attention == "batch":
            # faithful to the original here: the token-attention deviation does not apply
            deviations[0] = "attention='batch': the original's cross-sample attention, kept for reproduction only"
            changes["batch_dependent"] = True
        if trunk == "keras":
            deviations = [d for d in deviations if not d.startswith("timm mobilenetv1_100 trunk")]
            changes["pretrained"] = PretrainedSource(
                url=KERAS_MOBILENET_URL, layout="Keras MobileNet (mobilenet_1_0_224_tf_no_top.h5, HDF5)"
            )
        if kwargs.get("pixel_input"):
            changes.update(mean=None, std=None)
            extra["pixel_input"] = True
        return cfg.replace(deviations=tuple(deviations), **changes)


@register_model(
    ModelCfg(
        paper="PAtt-Lite (Ngwe et al., IEEE Access 2024, arXiv:2306.09626)",
        preprocess=PreprocessConfig(input_size=(3, 224, 224), mean=INCEPTION_MEAN, std=INCEPTION_STD),
        pretrained=PretrainedSource(timm="mobilenetv1_100", prefix="backbone.", layout="timm mobilenetv1_100"),
        explain_layer="backbone",  # (B, 512, 14, 14), the truncated MobileNetV1
        deviations=(
            "attention among the 4 patch tokens of a sample, not across the batch",
            "timm mobilenetv1_100 trunk (BN eps 1e-5, symmetric padding) instead of Keras MobileNet",
            "unfreeze_last_n really unfreezes (the original's fine-tuning unfroze nothing)",
        ),
        extra={"attention": "tokens", "freeze_backbone": True, "trunk": "timm"},
    ),
    adapt=PAttLite.adapt_cfg,
)
def patt_lite(num_classes: int = 7, **kwargs: Any) -> PAttLite:
    """PAtt-Lite, per-sample token attention, frozen ImageNet MobileNetV1 trunk (1,093,000 params, C=7)."""
    return PAttLite(num_classes=num_classes, **kwargs)


# ------------------------------------------------------------------------------------------------
# The authors' file: the notebook's model.save('model.h5')
# ------------------------------------------------------------------------------------------------
#: data-compile.ipynb numbers the class folders in sorted order: RAF-DB (7) and the 8-class datasets
KERAS_NOTEBOOK_CLASSES = {
    7: ("anger", "disgust", "fear", "happiness", "neutral", "sadness", "surprise"),
    8: ("anger", "contempt", "disgust", "fear", "happiness", "neutral", "sadness", "surprise"),
}


def _keras_layers(config_layers: list[dict[str, Any]], path: Path) -> dict[str, dict[str, Any]]:
    """The notebook graph's parts, found by layer class (names of auto-named layers vary between sessions)."""
    found: dict[str, dict[str, Any]] = {}
    for layer in config_layers:
        cls = layer["class_name"]
        inner = [sub["class_name"] for sub in layer.get("config", {}).get("layers", [])]
        if cls == "InputLayer":
            found.setdefault("input", layer)
        elif cls == "Resizing":
            found["resize"] = layer
        elif cls == "Functional":
            found["backbone"] = layer
        elif cls == "Sequential" and "SeparableConv2D" in inner:
            found["patches"] = layer
        elif cls == "Sequential" and "Dense" in inner:
            found["pre_classification"] = layer
        elif cls == "Attention":
            found["attention"] = layer
        elif cls == "Dense":
            found["head"] = layer  # the last Dense: the classification head
    missing = [k for k in ("input", "backbone", "patches", "pre_classification", "attention", "head") if k not in found]
    if missing:
        raise OfficialFormatError(
            f"{path}: not the PAtt-Lite notebook's model (model_config lacks its {', '.join(missing)} layer(s); "
            f"layers: {', '.join(layer['class_name'] + ':' + layer['name'] for layer in config_layers)})"
        )
    return found


def _inner_weights(h5: Any, layer: dict[str, Any], kinds: list[str], path: Path) -> list[dict[str, np.ndarray]]:
    """Weights of a Sequential's inner layers of the given classes, in graph order, by variable name."""
    tensors = dict(h5.weights(layer["name"]))
    out = []
    for sub in layer["config"]["layers"]:
        if sub["class_name"] not in kinds:
            continue
        name = sub["config"]["name"]
        vars_ = {k.split("/")[-1].split(":")[0]: v for k, v in tensors.items() if k.rsplit("/", 1)[0] == name}
        if not vars_:
            raise OfficialFormatError(f"{path}: layer {layer['name']}/{name} holds no weights")
        out.append(vars_)
    return out


@register_format(
    "patt_lite_keras",
    model="patt_lite",
    description="JLREx/PAtt-Lite notebook: model.save('model.h5') (Keras legacy full-model HDF5; read with h5py)",
)
def import_patt_lite_keras(path: Path) -> PAttLite:
    """The notebook's saved model -> ``patt_lite(trunk="keras", attention="batch", pixel_input=True)``.

    Number of classes, input size and the in-model resize come from the file's ``model_config``; the weights of
    ``base_model``, ``patch_extraction``, ``pre_classification``, ``attention`` and ``classification_head`` from
    ``model_weights`` (the optimizer state is not read). The model keeps the original's attention across the batch,
    which its weights were trained with, so consumers classify one face per forward pass (what ``model.predict`` on
    one image gives).
    """
    from .keras_hdf5 import KerasH5, KerasH5Error, bn_params, dense_kernel

    try:
        h5 = KerasH5(path)
        parts = _keras_layers(h5.layer_configs(), path)
    except KerasH5Error as e:
        raise OfficialFormatError(str(e)) from e
    shape = parts["input"]["config"].get("batch_input_shape") or parts["input"]["config"].get("batch_shape")
    if not shape or len(shape) != 4 or shape[3] != 3:
        raise OfficialFormatError(f"{path}: input layer shape {shape}, expected (None, H, W, 3)")
    height, width = int(shape[1]), int(shape[2])
    resize = parts.get("resize", {}).get("config")
    if resize is not None and (resize["height"] != resize["width"] or resize.get("interpolation") != "bilinear"):
        raise OfficialFormatError(f"{path}: Resizing layer {resize}, expected a square bilinear resize")
    resize_to = int(resize["height"]) if resize is not None else None
    head = parts["head"]["config"]
    num_classes = int(head["units"])
    attn = parts["attention"]["config"]
    if not attn.get("use_scale", False) or attn.get("score_mode", "dot") != "dot":
        raise OfficialFormatError(f"{path}: attention layer {attn}, expected Attention(use_scale=True) (dot scores)")
    backbone_layers = [layer["name"] for layer in parts["backbone"]["config"]["layers"]]
    if backbone_layers[-1] != "conv_dw_9_relu":
        raise OfficialFormatError(f"{path}: backbone ends at {backbone_layers[-1]}, expected conv_dw_9_relu")

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", BatchDependentWarning)
        model = create_model(
            "patt_lite",
            num_classes=num_classes,
            attention="batch",
            trunk="keras",
            pixel_input=True,
            resize_to=resize_to,
        )
    try:
        trunk = {k: torch.from_numpy(v) for k, v in h5.weights(parts["backbone"]["name"])}
        sep1, sep2, conv = _inner_weights(h5, parts["patches"], ["SeparableConv2D", "Conv2D"], path)
        dense, bn = _inner_weights(h5, parts["pre_classification"], ["Dense", "BatchNormalization"], path)
        (scale,) = (v for _, v in h5.weights(parts["attention"]["name"]))
        head_w = {k.split("/")[-1].split(":")[0]: v for k, v in h5.weights(parts["head"]["name"])}
        mapped = KerasMobileNetV1Trunk.from_keras(trunk, prefix="backbone.")
        mapped.update(
            {
                "patches.dw1.weight": torch.from_numpy(sep1["depthwise_kernel"]).permute(2, 3, 0, 1),
                "patches.pw1.weight": torch.from_numpy(sep1["pointwise_kernel"]).permute(3, 2, 0, 1),
                "patches.pw1.bias": torch.from_numpy(sep1["bias"]),
                "patches.dw2.weight": torch.from_numpy(sep2["depthwise_kernel"]).permute(2, 3, 0, 1),
                "patches.pw2.weight": torch.from_numpy(sep2["pointwise_kernel"]).permute(3, 2, 0, 1),
                "patches.pw2.bias": torch.from_numpy(sep2["bias"]),
                "patches.conv.weight": torch.from_numpy(conv["kernel"]).permute(3, 2, 0, 1),
                "patches.conv.bias": torch.from_numpy(conv["bias"]),
                "pre_fc.weight": dense_kernel(dense["kernel"]),
                "pre_fc.bias": torch.from_numpy(dense["bias"]),
                "attention.scale": torch.from_numpy(np.asarray(scale, dtype=np.float32).reshape(())),
                "head.weight": dense_kernel(head_w["kernel"]),
                "head.bias": torch.from_numpy(head_w["bias"]),
            }
        )
        bn_t = bn_params(bn["gamma"], bn["beta"], bn["moving_mean"], bn["moving_variance"])
        mapped.update({f"pre_bn.{k}": v for k, v in bn_t.items()})
    except (KeyError, ValueError, KerasH5Error) as e:
        raise OfficialFormatError(
            f"{path}: weights do not have the notebook model's layout ({type(e).__name__}: {e})"
        ) from e
    load_mapped(model, mapped, path, "patt_lite_keras")
    if num_classes in KERAS_NOTEBOOK_CLASSES:
        model.class_names = list(KERAS_NOTEBOOK_CLASSES[num_classes])
    else:
        model.class_names = None
    model.cfg = model.cfg.replace(input_size=(3, height, width), interpolation="bilinear", antialias=False)
    model.import_notes = [
        f"Keras {h5.keras_version or '(version not recorded)'} model '{h5.config.get('config', {}).get('name', '')}': "
        f"{num_classes} classes, input {height}x{width}"
        + (f", resized to {resize_to}x{resize_to} inside the model" if resize_to else ""),
        "class order of data-compile.ipynb (class folders sorted by name)"
        if num_classes in KERAS_NOTEBOOK_CLASSES
        else f"no known class order for {num_classes} classes",
        "attention='batch' (the original's attention across the samples of a batch, as the weights were trained): "
        "consumers classify one face per forward pass",
        "inputs are RGB pixels 0-255 (cv2.resize, bilinear, as data-compile.ipynb), scaled to [-1, 1] inside the model",
    ]
    return model
