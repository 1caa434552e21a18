"""FERAtt: facial expression recognition with attention and representation learning.

Paper: P. D. Marrero Fernandez, F. A. Guerrero Pena, T. I. Ren, A. Cunha, "FERAtt: Facial Expression
Recognition with Attention Net", CVPR Workshops 2019 (arXiv:1902.03284). Code:
github.com/pedrodiamel/ferattention (paper-era model at commit adf65f4, final code at HEAD).
Spec: architectures.md section 2.

Four modules:

* **G_att** (``attention``): a U-Net with an ImageNet ResNet34 encoder (its classifier dropped) that
  predicts the attention map A;
* **G_ft** (``features``): a 9x9 conv, residual blocks with LeakyReLU(0.2), a 3x3 conv and a global skip,
  giving the feature map F;
* fusion ``sigmoid(A) * F``, then **G_rec** (``reconstruction``) that produces the attention image I_att,
  trained to reproduce the face on a black background (:func:`attention_loss`);
* **G_rep** (``classifier``): a CIFAR-style PreActResNet18 on I_att pooled to 32x32, with an optional
  representation z (Linear 512->dim) trained by the Gaussian-mixture loss (:func:`gmm_loss`).

Layouts:

* ``layout="paper"`` (default; the commits of the paper era): 128x128 input, dilated centre (four chained
  3x3 convs, dilation 1-4, summed, ReLU), decoders with 4x4 transposed convs, 1-channel A, 32-channel F,
  4 residual blocks, G_rec = 3x3 conv + ReLU + 1x1 conv, average pool 4 (128 -> 32x32).
* ``layout="code"`` (the released HEAD): 64x64 input, extra 2x2 max-pool after layer4, bilinear-upsample
  decoder blocks, A and F with ``num_classes`` channels, 8 residual blocks, G_rec on
  concat(fusion, image, A) ending in BN + ReLU, a fixed affine "normalize layer", average pool 2 (64 -> 32x32).

The pool factor is fixed per layout, as in the originals, so at another input size G_rep sees H/4 (paper) or
H/2 (code), not 32x32. The code layout needs inputs divisible by 64 (as the original: its centre block upsamples
the pooled layer4 output back to layer4's size).

Importer: ``feratt_official`` (:func:`read_feratt_official`) reads the checkpoint container that the HEAD
trainer writes (``chkNNNNNN.pth.tar`` / ``model_best.pth.tar``) into ``layout="code"`` without a representation.

Deviations: the ResNet34 encoder's unused 1000-class fc (513,000 parameters, counted in the released
totals) is dropped; the representation dim defaults to the paper's 64 (the HEAD scripts use 32, the
paper-era class used 1000); the config's mean/std are ImageNet's, for the ImageNet encoder (the originals'
normalisation lived in an external package). The mix-up in the representation loss mixes one-hot targets
(the original mixed integer labels numerically, which yields targets that match no class).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
import torchvision

from ..preprocess import PreprocessConfig
from ._base import IMAGENET_MEAN, IMAGENET_STD, AttentionMap, FERModel
from ._cfg import ModelCfg, PretrainedSource
from ._formats import OfficialFormatError, load_mapped, load_torch_file, register_format, state_dict_of
from ._registry import register_model
from .preact_resnet import PreActResNet18

__all__ = ["FERAtt", "FERAttLoss", "attention_loss", "gmm_loss", "read_feratt_official"]

# CIFAR-10 statistics of the HEAD "normalize layer" (fixed affine; values from the common CIFAR recipe).
_CIFAR_MEAN = (0.4914, 0.4822, 0.4465)
_CIFAR_STD = (0.2023, 0.1994, 0.2010)


class ConvReLU(nn.Sequential):
    def __init__(self, cin: int, cout: int, dilation: int = 1) -> None:
        super().__init__(nn.Conv2d(cin, cout, 3, padding=dilation, dilation=dilation), nn.ReLU(inplace=True))


class DilatedCenter(nn.Module):
    """Four chained 3x3 convs with dilation 1, 2, 3, 4 whose outputs are summed, then ReLU."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.convs = nn.ModuleList(
            nn.Conv2d(cin if d == 1 else cout, cout, 3, padding=d, dilation=d) for d in (1, 2, 3, 4)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        total = 0
        for conv in self.convs:
            x = conv(x)
            total = total + x
        return F.relu(total)


def _decoder(cin: int, mid: int, cout: int, layout: str) -> nn.Module:
    """x2 upsampling decoder block: conv + 4x4 transposed conv (paper) or bilinear + 2 convs (code)."""
    if layout == "paper":
        return nn.Sequential(
            ConvReLU(cin, mid), nn.ConvTranspose2d(mid, cout, 4, stride=2, padding=1), nn.ReLU(inplace=True)
        )
    return nn.Sequential(
        nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False),
        ConvReLU(cin, mid),
        ConvReLU(mid, cout),
    )


class AttentionUNet(nn.Module):
    """G_att: ResNet34 encoder (torchvision names, fc dropped) + decoder + attention head."""

    def __init__(self, out_channels: int, layout: str, num_filters: int = 32) -> None:
        super().__init__()
        self.layout = layout
        self.encoder = torchvision.models.resnet34(weights=None)
        del self.encoder.fc, self.encoder.avgpool  # unused; the released totals counted the fc
        self.pool = nn.MaxPool2d(2, 2)  # replaces ResNet's 3x3/2 max-pool after the stem
        nf = num_filters
        if layout == "paper":
            self.center: nn.Module = DilatedCenter(512, nf * 8)
        else:
            self.center = _decoder(512, nf * 16, nf * 8, layout)
        self.dec5 = _decoder(512 + nf * 8, nf * 16, nf * 8, layout)
        self.dec4 = _decoder(256 + nf * 8, nf * 16, nf * 8, layout)
        self.dec3 = _decoder(128 + nf * 8, nf * 8, nf * 2, layout)
        self.dec2 = _decoder(64 + nf * 2, nf * 4, nf * 4, layout)
        self.dec1 = _decoder(nf * 4, nf * 4, nf, layout)
        self.head = nn.Sequential(ConvReLU(nf, nf), nn.Conv2d(nf, out_channels, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        e = self.encoder
        s1 = self.pool(e.relu(e.bn1(e.conv1(x))))  # (B, 64, H/4, W/4)
        l1 = e.layer1(s1)  # (B, 64, H/4)
        l2 = e.layer2(l1)  # (B, 128, H/8)
        l3 = e.layer3(l2)  # (B, 256, H/16)
        l4 = e.layer4(l3)  # (B, 512, H/32)
        c = self.center(l4 if self.layout == "paper" else self.pool(l4))  # (B, 256, H/32)
        d = self.dec5(torch.cat([c, l4], 1))  # (B, 256, H/16)
        d = self.dec4(torch.cat([d, l3], 1))  # (B, 256, H/8)
        d = self.dec3(torch.cat([d, l2], 1))  # (B, 64, H/4)
        d = self.dec2(torch.cat([d, l1], 1))  # (B, 128, H/2)
        d = self.dec1(d)  # (B, 32, H)
        return self.head(d)  # (B, a, H, W)


class FeatureNet(nn.Module):
    """G_ft: 9x9 conv, residual blocks [conv3x3, LeakyReLU 0.2, conv3x3, +x], 3x3 conv, global skip."""

    def __init__(self, in_chans: int, channels: int, num_blocks: int) -> None:
        super().__init__()
        self.conv_input = nn.Conv2d(in_chans, channels, 9, padding=4)
        self.blocks = nn.ModuleList(
            nn.Sequential(
                nn.Conv2d(channels, channels, 3, padding=1),
                nn.LeakyReLU(0.2, inplace=True),
                nn.Conv2d(channels, channels, 3, padding=1),
            )
            for _ in range(num_blocks)
        )
        self.conv_mid = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skip = x = self.conv_input(x)  # (B, f, H, W)
        for block in self.blocks:
            x = x + block(x)
        return self.conv_mid(x) + skip  # (B, f, H, W)


class FERAtt(FERModel):
    """FERAtt (see the module docstring).

    Args:
        num_classes: number of expression classes.
        layout: ``"paper"`` (default) or ``"code"`` (the released HEAD variant).
        representation_dim: width of the representation z (64, the paper's); ``None`` for
            classification only (FERAtt+Cls).
        in_chans: input channels (grey faces are replicated to 3).
    """

    classifier_attr = "classifier.head"

    def __init__(
        self,
        num_classes: int = 7,
        layout: Literal["paper", "code"] = "paper",
        representation_dim: int | None = 64,
        in_chans: int = 3,
    ) -> None:
        super().__init__()
        if layout not in ("paper", "code"):
            raise ValueError(f"layout must be 'paper' or 'code', got {layout!r}")
        self.num_classes = num_classes
        self.layout = layout
        self.input_size = 128 if layout == "paper" else 64
        self.bridge_pool = 4 if layout == "paper" else 2  # I_att -> G_rep: average pool 4 (paper era) / 2 (HEAD)
        att_ch, ft_ch, nblocks = (1, 32, 4) if layout == "paper" else (num_classes, num_classes, 8)
        self.attention = AttentionUNet(att_ch, layout)
        self.features = FeatureNet(in_chans, ft_ch, nblocks)
        if layout == "paper":
            self.reconstruction = nn.Sequential(ConvReLU(ft_ch, 32), nn.Conv2d(32, in_chans, 1))
        else:
            self.reconstruction = nn.Sequential(
                ConvReLU(ft_ch + in_chans + att_ch, 32),
                nn.Conv2d(32, in_chans, 1),
                nn.BatchNorm2d(in_chans),
                nn.ReLU(inplace=True),
            )
            scale = torch.tensor(_CIFAR_STD) / 0.5
            shift = (torch.tensor(_CIFAR_MEAN) - 0.5) / 0.5
            self.register_buffer("bridge_scale", scale.view(1, 3, 1, 1), persistent=False)
            self.register_buffer("bridge_shift", shift.view(1, 3, 1, 1), persistent=False)
        self.classifier = PreActResNet18(num_classes, representation_dim=representation_dim, in_chans=in_chans)
        self.num_features = self.classifier.num_features
        self.representation_dim = representation_dim
        for m in self.attention.encoder.modules():  # torchvision ResNet init (encoder built with weights=None)
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    # ---- forward -------------------------------------------------------------------------------
    def forward_attention(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Image -> (A, F, I_att): attention logits, features, attention image (all at input size)."""
        A = self.attention(x)  # (B, a, H, W)
        Fm = self.features(x)  # (B, f, H, W)
        fused = torch.sigmoid(A) * Fm  # (B, f, H, W); a = 1 broadcasts over f
        if self.layout == "code":
            fused = torch.cat([fused, x, A], dim=1)  # (B, 2C + 3, H, W)
        I_att = self.reconstruction(fused)  # (B, 3, H, W)
        return A, Fm, I_att

    def _bridge(self, I_att: torch.Tensor) -> torch.Tensor:
        """I_att -> G_rep's input: the HEAD's fixed affine "normalize layer" (code layout), then an average pool by
        the layout's fixed factor, as in the originals: 4 in the paper era (128 -> 32), 2 at HEAD (64 -> 32).
        At other input sizes G_rep sees H/4 or H/2 (floored, as ``avg_pool2d`` does), like the original code."""
        if self.layout == "code":
            I_att = I_att * self.bridge_scale + self.bridge_shift
        return F.avg_pool2d(I_att, self.bridge_pool)  # (B, 3, H/k, W/k): 32x32 at the layout's default size

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        _, _, I_att = self.forward_attention(x)
        return self.classifier.forward_features(self._bridge(I_att))  # (B, 512, 4, 4)

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        return self.classifier.forward_head(x, pre_logits=pre_logits)

    def forward_train(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """Logits and what the losses need: ``attention_image`` I_att (B, 3, H, W), ``attention_map`` A (B, a, H, W)
        (pre-sigmoid; a = 1 in the paper layout), ``features`` F (B, f, H, W) and, with a representation head,
        ``embedding`` z (B, dim)."""
        A, Fm, I_att = self.forward_attention(x)
        feats = self.classifier.forward_features(self._bridge(I_att))  # (B, 512, 4, 4)
        z = self.classifier.forward_head(feats, pre_logits=True)  # (B, dim) or (B, 512)
        out = {"logits": self.classifier.head(z), "attention_image": I_att, "attention_map": A, "features": Fm}
        if self.representation_dim:
            out["embedding"] = z
        return out

    # ---- loss ------------------------------------------------------------------------------------
    def configure_loss(self, **options: Any) -> None:
        """Weights of the three terms (``ce``, ``attention``, ``representation``; 1 each), the representation loss'
        ``sigma`` (0.5) and ``mixup`` (True)."""
        known = {"ce", "attention", "representation", "sigma", "mixup"}
        unknown = sorted(set(options) - known)
        if unknown:
            raise ValueError(f"FERAtt loss option(s) {', '.join(unknown)} unknown; expected {', '.join(sorted(known))}")
        self.loss_options = dict(options)

    def loss(
        self,
        outputs: dict[str, torch.Tensor],
        targets: torch.Tensor,
        extras: dict[str, torch.Tensor] | None = None,
        *,
        label_smoothing: float = 0.0,
        class_weight: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """CE + attention reconstruction (against ``extras["x_org"]``, the face on black, when the data gives it) +
        Gaussian representation loss. Class weights are not used (the original has none)."""
        o = self.loss_options
        fn = FERAttLoss(
            self.num_classes,
            ce_weight=o.get("ce", 1.0),
            attention_weight=o.get("attention", 1.0),
            representation_weight=o.get("representation", 1.0),
            sigma=o.get("sigma", 0.5),
            mixup=o.get("mixup", True),
            label_smoothing=label_smoothing,
        )
        parts = fn(outputs, targets, (extras or {}).get("x_org"))
        return parts.pop("loss"), {k: v.detach() for k, v in parts.items()}

    # ---- attention maps --------------------------------------------------------------------------
    @torch.no_grad()
    def attention_maps(self, x: torch.Tensor) -> list[AttentionMap]:
        """sigmoid(A), the attention map, and I_att, the attention image its classifier sees (denormalised)."""
        A, _, I_att = self.forward_attention(x)
        maps = [AttentionMap("FERAtt attention map sigmoid(A)", torch.sigmoid(A[0]).mean(0).float().cpu().numpy())]
        img = I_att[0].permute(1, 2, 0).float().cpu().numpy()  # (H, W, 3) in the model's units
        pre = self.cfg.preprocess
        img = img * np.asarray(pre.std) + np.asarray(pre.mean) if pre.mean is not None else img / 255.0
        maps.append(AttentionMap("FERAtt attention image I_att", np.clip(img, 0, 1), overlay=False))
        return maps

    @staticmethod
    def adapt_cfg(cfg: ModelCfg, kwargs: dict[str, Any]) -> ModelCfg:
        """64x64 inputs in the released ``layout="code"``; 128 in the paper's."""
        layout = kwargs.get("layout", "paper")
        size = 128 if layout == "paper" else 64
        rep = kwargs.get("representation_dim", 64)
        return cfg.replace(input_size=(3, size, size), extra={"layout": layout, "representation_dim": rep})


# ------------------------------------------------------------------------------------------------
# Losses
# ------------------------------------------------------------------------------------------------
def attention_loss(x_org: torch.Tensor, attention_image: torch.Tensor, weight: float = 5.0) -> torch.Tensor:
    """Attention-reconstruction loss ``weight * mean(tanh(3 |x_org - I_att|))``.

    ``x_org`` is the face on a black background (the compositing target), not the composited input.
    The original writes tanh(3d) as (e^(6d) - 1) / (e^(6d) + 1).
    """
    assert x_org.shape == attention_image.shape, f"{tuple(x_org.shape)} vs {tuple(attention_image.shape)}"
    return weight * torch.tanh(3.0 * (x_org - attention_image).abs()).mean()


def gmm_loss(
    z: torch.Tensor,
    targets: torch.Tensor,
    num_classes: int,
    sigma: float = 0.5,
    mixup: bool = True,
    alpha: float = 2.0,
) -> torch.Tensor:
    """Gaussian-mixture representation loss of FERAtt ("DGMM").

    Class centres are the (target-weighted) batch means of z; ``p_ic`` is proportional to
    ``exp(-||z_i - mu_c||^2 / (2 sigma^2))`` over the classes present in the batch; the loss is
    ``mean_i sum_c (p_ic - t_ic)^2``. With ``mixup``, the batch is extended by mixed copies
    (one lambda ~ Beta(alpha, alpha) per batch, random pairing) whose one-hot targets are mixed too.

    Args:
        z: (B, D) representations.
        targets: (B,) integer labels or (B, C) soft targets.
    """
    B = z.shape[0]
    t = F.one_hot(targets, num_classes).to(z.dtype) if targets.dim() == 1 else targets.to(z.dtype)  # (B, C)
    if mixup and B > 1:
        lam = torch.distributions.Beta(alpha, alpha).sample().to(z.device, z.dtype)
        perm = torch.randperm(B, device=z.device)
        z = torch.cat([z, lam * z + (1 - lam) * z[perm]])  # (2B, D)
        t = torch.cat([t, lam * t + (1 - lam) * t[perm]])  # (2B, C)
    mass = t.sum(0)  # (C,)
    present = mass > 0
    mu = (t.T @ z)[present] / mass[present, None]  # (K, D) centres of the K classes present
    d2 = torch.cdist(z, mu).pow(2)  # (N, K)
    p = torch.softmax(-d2 / (2 * sigma**2), dim=1)  # (N, K)
    return (p - t[:, present]).pow(2).sum(1).mean()


class FERAttLoss(nn.Module):
    """Total FERAtt loss: cross-entropy + attention reconstruction + Gaussian representation.

    ``forward(output, targets, x_org)`` takes ``FERAtt.forward_train``'s dict and returns a dict with ``loss`` and
    its parts; the representation term is used only when the model has a representation head (``embedding``).
    """

    def __init__(
        self,
        num_classes: int,
        ce_weight: float = 1.0,
        attention_weight: float = 1.0,
        representation_weight: float = 1.0,
        sigma: float = 0.5,
        mixup: bool = True,
        label_smoothing: float = 0.0,
    ) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.ce_weight, self.attention_weight, self.representation_weight = (
            ce_weight,
            attention_weight,
            representation_weight,
        )
        self.sigma, self.mixup = sigma, mixup
        self.ce = nn.CrossEntropyLoss(label_smoothing=label_smoothing)

    def forward(
        self, output: dict[str, torch.Tensor], targets: torch.Tensor, x_org: torch.Tensor | None = None
    ) -> dict[str, torch.Tensor]:
        parts = {"ce": self.ce(output["logits"], targets)}
        loss = self.ce_weight * parts["ce"]
        if x_org is not None and self.attention_weight:
            parts["attention"] = attention_loss(x_org, output["attention_image"])
            loss = loss + self.attention_weight * parts["attention"]
        if output.get("embedding") is not None and self.representation_weight:
            parts["representation"] = gmm_loss(output["embedding"], targets, self.num_classes, self.sigma, self.mixup)
            loss = loss + self.representation_weight * parts["representation"]
        parts["loss"] = loss
        return parts


@register_model(
    ModelCfg(
        paper="FERAtt (Marrero Fernandez et al., CVPR-W 2019)",
        preprocess=PreprocessConfig(input_size=(3, 128, 128), mean=IMAGENET_MEAN, std=IMAGENET_STD, grayscale=True),
        pretrained=PretrainedSource(
            timm="resnet34", prefix="attention.encoder.", layout="timm or torchvision resnet34"
        ),
        explain_layer="features",  # G_ft, (B, f, H, W) at input resolution
        deviations=(
            "ResNet34 encoder without its unused 1000-class fc (513,000 params fewer than the released totals)",
            "representation dim 64 (paper) by default; HEAD scripts used 32",
            "representation loss mixes one-hot targets in its mix-up (the original mixed integer labels)",
            "ImageNet mean/std in the config (the original's normalisation lived in an external package)",
        ),
        extra={"layout": "paper", "representation_dim": 64},
    ),
    adapt=FERAtt.adapt_cfg,
)
def feratt(num_classes: int = 7, **kwargs: Any) -> FERAtt:
    """FERAtt, paper-era layout: 128x128 input, 1-channel attention map, 32-channel features, z of 64."""
    return FERAtt(num_classes=num_classes, **kwargs)


# ------------------------------------------------------------------------------------------------
# Importer: the official trainer's checkpoint container
# ------------------------------------------------------------------------------------------------
#: Keys of the container ``AttentionNeuralNetAbstract.save`` writes (ferattention @ d0497bf, torchlib/attentionnet.py).
_OFFICIAL_CONTAINER_KEYS = ("epoch", "arch", "imsize", "num_input_channels", "num_classes", "state_dict")
#: The original's class order (FER+ order; every dataset is remapped to it); 7-class runs (BU-3DFE) drop contempt.
_OFFICIAL_CLASSES = ("neutral", "happiness", "surprise", "sadness", "anger", "disgust", "fear", "contempt")
#: ``AttentionResNet`` registers the torchvision ResNet34's parts a second time (``conv1 = Sequential(encoder.conv1,
#: encoder.bn1, relu, pool)``, ``conv2..conv5 = encoder.layer1..4``): these state-dict keys are the same tensors.
_OFFICIAL_ALIASES = {
    "attention_map.conv1.0.": "attention_map.encoder.conv1.",
    "attention_map.conv1.1.": "attention_map.encoder.bn1.",
    "attention_map.conv2.": "attention_map.encoder.layer1.",
    "attention_map.conv3.": "attention_map.encoder.layer2.",
    "attention_map.conv4.": "attention_map.encoder.layer3.",
    "attention_map.conv5.": "attention_map.encoder.layer4.",
}
#: In the file, not in our model: the ResNet34's 1000-class fc, which the original never calls.
_OFFICIAL_UNUSED = ("attention_map.encoder.fc.",)


def _official_module_table() -> dict[str, str]:
    """Official module path -> ours, for every module holding tensors in ``FERAttentionNet`` (HEAD,
    ``torchlib/models/ferattentionnet.py``, backbone 'preactresnet'); a key is ``<module>.<tensor name>`` in both."""
    t: dict[str, str] = {}
    # G_att encoder: torchvision ResNet34 in both (same names below the encoder)
    t["attention_map.encoder.conv1"] = "attention.encoder.conv1"
    t["attention_map.encoder.bn1"] = "attention.encoder.bn1"
    for layer, blocks in zip((1, 2, 3, 4), (3, 4, 6, 3), strict=True):
        for b in range(blocks):
            parts = ["conv1", "bn1", "conv2", "bn2"] + (
                ["downsample.0", "downsample.1"] if layer > 1 and b == 0 else []
            )
            for part in parts:
                t[f"attention_map.encoder.layer{layer}.{b}.{part}"] = f"attention.encoder.layer{layer}.{b}.{part}"
    # G_att decoder: DecoderBlockV2 = (Upsample, cr1 = ConvRelu, cr2 = ConvRelu), ConvRelu = (conv, ReLU)
    for block in ("center", "dec5", "dec4", "dec3", "dec2", "dec1"):
        t[f"attention_map.{block}.cr1.conv"] = f"attention.{block}.1.0"
        t[f"attention_map.{block}.cr2.conv"] = f"attention.{block}.2.0"
    # G_att head: Sequential(ConvRelu(32, 32), Conv2d(32, C, 1))
    t["attention_map.attention_map.0.conv"] = "attention.head.0.0"
    t["attention_map.attention_map.1"] = "attention.head.1"
    # G_ft: conv_input, feature = 8 residual blocks (conv1, LeakyReLU, conv2), conv_mid
    t["conv_input"] = "features.conv_input"
    for i in range(8):
        t[f"feature.{i}.conv1"] = f"features.blocks.{i}.0"
        t[f"feature.{i}.conv2"] = f"features.blocks.{i}.2"
    t["conv_mid"] = "features.conv_mid"
    # G_rec: reconstruction = Sequential(ConvRelu(2C + 3, 32), Conv2d(32, 3, 1)), then conv2_bn (+ ReLU)
    t["reconstruction.0.conv"] = "reconstruction.0.0"
    t["reconstruction.1"] = "reconstruction.1"
    t["conv2_bn"] = "reconstruction.2"
    # G_rep: netclass = PreActResNet18 (shortcut = Sequential(Conv2d 1x1)), linear -> our head
    t["netclass.conv1"] = "classifier.conv1"
    for layer in (1, 2, 3, 4):
        for b in (0, 1):
            for part in ("bn1", "conv1", "bn2", "conv2"):
                t[f"netclass.layer{layer}.{b}.{part}"] = f"classifier.layer{layer}.{b}.{part}"
            if layer > 1 and b == 0:
                t[f"netclass.layer{layer}.{b}.shortcut.0"] = f"classifier.layer{layer}.{b}.shortcut"
    t["netclass.linear"] = "classifier.head"
    return t


def _map_official_state_dict(sd: dict[str, torch.Tensor], path: Path) -> dict[str, torch.Tensor]:
    """Our names for the official state dict: table lookups only; alias keys must equal their canonical tensor."""
    table = _official_module_table()
    mapped: dict[str, torch.Tensor] = {}
    unknown = []
    for key, value in sd.items():
        if key.startswith(_OFFICIAL_UNUSED):
            continue
        alias = next((a for a in _OFFICIAL_ALIASES if key.startswith(a)), None)
        if alias is not None:
            canonical = _OFFICIAL_ALIASES[alias] + key[len(alias) :]
            other = sd.get(canonical)
            if other is None or other.shape != value.shape or not torch.equal(other, value):
                raise OfficialFormatError(
                    f"{path}: {key} should be the same tensor as {canonical} (FERAttentionNet registers the encoder's "
                    "parts twice), but " + ("the latter is missing" if other is None else "they differ")
                )
            continue
        module, _, leaf = key.rpartition(".")
        if module not in table:
            unknown.append(key)
            continue
        mapped[f"{table[module]}.{leaf}"] = value
    if unknown:
        raise OfficialFormatError(
            f"{path} does not fit the feratt_official layout: {len(unknown)} key(s) of no FERAttentionNet module "
            f"(e.g. {', '.join(unknown[:3])})"
        )
    return mapped


def _official_value(x: Any) -> Any:
    return x.item() if isinstance(x, torch.Tensor) and x.numel() == 1 else x


@register_format(
    "feratt_official",
    model="feratt",
    description="pedrodiamel/ferattention trainer's chkNNNNNN.pth.tar / model_best.pth.tar (arch 'ferattention', "
    "HEAD FERAttentionNet) -> feratt layout='code'",
)
def read_feratt_official(path: Path) -> FERAtt:
    """Import a checkpoint of the original FERAtt trainer (pedrodiamel/ferattention @ d0497bf, ``train.py`` with
    ``--arch ferattention``; ``AttentionNeuralNetAbstract.save`` in ``torchlib/attentionnet.py``).

    The file is ``torch.save({'epoch', 'arch', 'imsize', 'num_output_channels', 'num_input_channels', 'num_classes',
    'state_dict', 'prec', 'optimizer'})``; ``state_dict`` is ``FERAttentionNet``'s, which becomes
    ``create_model("feratt", num_classes, layout="code", representation_dim=None)`` (its ``netclass`` is a
    PreActResNet18 with ``linear`` 512->C and no representation layer) through an explicit table of module names
    (:func:`_official_module_table`). Skipped: the 216 alias keys (``attention_map.conv1..conv5``, the encoder's parts
    registered twice; each must equal its canonical tensor), the ResNet34's unused ``fc`` and the optimizer state.

    The model gets the original's class order (the FER+ order: 8 classes, or the first 7 for BU-3DFE runs) and its
    evaluation preprocessing (``get_transforms_det``): squash-resize to ``imsize`` with cv2 INTER_LINEAR (bilinear,
    no antialiasing), grey replicated to 3 channels, x / 255 with no mean/std. Deviation: attnfer converts to grey
    before resizing (the original after); both are linear, so they differ by uint8 rounding only.

    Raises:
        OfficialFormatError: the file is not a torch.save file of tensors, not this container, another ``arch`` of
            the repository (the GMM / STN variants), or its tensors do not fit; the message names the file.
    """
    from ._registry import create_model

    ck = load_torch_file(path, "a FERAtt training checkpoint")
    if not isinstance(ck, dict) or any(k not in ck for k in _OFFICIAL_CONTAINER_KEYS):
        top = ", ".join(map(str, list(ck)[:8])) if isinstance(ck, dict) else type(ck).__name__
        raise OfficialFormatError(
            f"{path}: not a ferattention training checkpoint (expected the keys {', '.join(_OFFICIAL_CONTAINER_KEYS)}"
            f" that AttentionNeuralNetAbstract.save writes; top-level: {top})"
        )
    arch = ck["arch"]
    if arch != "ferattention":
        raise OfficialFormatError(
            f"{path}: arch {arch!r} is not supported; feratt_official reads checkpoints of arch 'ferattention' "
            "(FERAttentionNet) only, not the repository's other networks (the GMM / STN variants)"
        )
    num_classes, imsize, channels = (_official_value(ck[k]) for k in ("num_classes", "imsize", "num_input_channels"))
    for name, value in (("num_classes", num_classes), ("imsize", imsize), ("num_input_channels", channels)):
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise OfficialFormatError(f"{path}: container field {name!r} is {value!r}, expected a positive integer")
    if channels != 3:
        raise OfficialFormatError(f"{path}: num_input_channels {channels}: attnfer's FERAtt takes 3-channel input")
    if imsize % 64:
        raise OfficialFormatError(
            f"{path}: imsize {imsize}: FERAttentionNet runs only at sizes divisible by 64 (its centre block "
            "upsamples the pooled layer4 output back to layer4's size)"
        )
    sd = state_dict_of(ck, path, ("state_dict",), "FERAttentionNet")
    mapped = _map_official_state_dict(sd, path)

    model = create_model("feratt", num_classes=num_classes, layout="code", representation_dim=None)
    load_mapped(model, mapped, path, "feratt_official")
    model.input_size = imsize
    # attnfer's canonical order is the original's (FER+); known for 8 classes and 7 (BU-3DFE, without contempt):
    # for other counts the names must be given (convert_checkpoint asks for them)
    names = list(_OFFICIAL_CLASSES[:num_classes]) if num_classes in (7, 8) else []
    model.class_names = names or None
    model.cfg = model.cfg.replace(
        input_size=(3, imsize, imsize),
        interpolation="bilinear",
        antialias=False,
        crop_pct=1.0,
        mean=(0.0, 0.0, 0.0),
        std=(1.0, 1.0, 1.0),
        grayscale=True,
        class_names=tuple(names) or None,
        deviations=(
            "ResNet34 encoder without its unused 1000-class fc (in the official file, skipped at import)",
            "grey computed on the uint8 face before the resize (the original converts after resizing)",
        ),
    )
    epoch, prec = _official_value(ck.get("epoch")), _official_value(ck.get("prec"))
    prec = f"{prec:.4g}" if isinstance(prec, float) else prec
    model.import_notes = [
        f"read the container fields arch ({arch}), num_classes ({num_classes}), imsize ({imsize}), "
        f"num_input_channels ({channels}) and state_dict ({len(sd)} keys: {len(mapped)} tensors loaded, the alias "
        "keys attention_map.conv1-conv5 checked equal to the encoder's and skipped, the unused "
        "attention_map.encoder.fc skipped)",
        f"checkpoint epoch {epoch} (the trainer stores its 0-based epoch + 1: the epochs completed); prec {prec} "
        "(the trainer's best validation top-1 so far)",
        f"num_output_channels ({_official_value(ck.get('num_output_channels'))}) ignored: FERAttentionNet does not "
        "use it; the optimizer state was ignored",
        f"class order of the original (FER+ order, {num_classes} classes): {', '.join(names)}"
        if names
        else f"no known class order for {num_classes} classes (ferattention's runs use 8, or 7 on BU-3DFE)",
        f"preprocessing of the original's evaluation transform: squash-resize to {imsize}x{imsize} bilinear without "
        "antialiasing (cv2 INTER_LINEAR), grey replicated to 3 channels, x / 255 (mean 0, std 1)",
    ]
    return model.eval()
