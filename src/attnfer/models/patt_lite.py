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
* Backbone from timm's ``mobilenetv1_100`` (BN eps 1e-5, symmetric padding) instead of Keras'
  MobileNet (eps 1e-3, bottom/right padding); its ImageNet weights also expect [-1, 1] inputs.
* ``unfreeze_last_n`` really unfreezes backbone layers; the original's fine-tuning phase computed a
  start index of -1 and left the whole backbone frozen.
"""

from __future__ import annotations

import warnings
from collections import OrderedDict
from typing import Any, ClassVar, Literal

import timm
import torch
import torch.nn as nn
import torch.nn.functional as F

from ..preprocess import PreprocessConfig
from ._base import INCEPTION_MEAN, INCEPTION_STD, AttentionMap, FERModel, recording, token_attention_map
from ._cfg import ModelCfg, PretrainedSource
from ._registry import register_model
from .layers import PatchExtraction, ScaledDotSelfAttention

__all__ = ["BatchDependentWarning", "MobileNetV1Trunk", "PAttLite"]


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
    ) -> None:
        super().__init__()
        if attention not in ("tokens", "batch"):
            raise ValueError(f"attention must be 'tokens' or 'batch', got {attention!r}")
        self.num_classes = num_classes
        self.num_features = head_dim
        self.attention_mode = attention
        self.resize_to = resize_to
        self.freeze_backbone = freeze_backbone
        self.record = False  # keep the last attention weights in ``last_attention`` when True
        self.last_attention: torch.Tensor | None = None

        self.backbone = MobileNetV1Trunk(in_chans)
        self.patches = PatchExtraction(MobileNetV1Trunk.out_channels, embed_dim)
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

    @staticmethod
    def adapt_cfg(cfg: ModelCfg, kwargs: dict[str, Any]) -> ModelCfg:
        """The config of a PAtt-Lite built with ``kwargs``: input size from ``resize_to``, batch dependence."""
        size = kwargs.get("resize_to") or 224
        attention = kwargs.get("attention", "tokens")
        freeze = kwargs.get("freeze_backbone", True)
        if attention != "batch":
            return cfg.replace(input_size=(3, size, size), extra={"attention": attention, "freeze_backbone": freeze})
        return cfg.replace(
            input_size=(3, size, size),
            batch_dependent=True,
            # faithful to the original here: the token-attention deviation does not apply
            deviations=(
                "attention='batch': the original's cross-sample attention, kept for reproduction only",
                *cfg.deviations[1:],
            ),
            extra={"attention": attention, "freeze_backbone": freeze},
        )


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
        extra={"attention": "tokens", "freeze_backbone": True},
    ),
    adapt=PAttLite.adapt_cfg,
)
def patt_lite(num_classes: int = 7, **kwargs: Any) -> PAttLite:
    """PAtt-Lite, per-sample token attention, frozen ImageNet MobileNetV1 trunk (1,093,000 params, C=7)."""
    return PAttLite(num_classes=num_classes, **kwargs)
