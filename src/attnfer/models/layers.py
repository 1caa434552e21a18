"""Building blocks shared by the model families: ECA, CBAM, patch extraction and token attention.

Shapes in comments use B = batch, C = channels, N = tokens, D = token width.
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

__all__ = [
    "CBAM",
    "ECA",
    "ChannelAttention",
    "PatchExtraction",
    "ScaledDotSelfAttention",
    "SpatialAttention",
    "TokenMHSA",
    "eca_kernel_size",
]


# ------------------------------------------------------------------------------------------------
# ECA: Efficient Channel Attention (Wang et al., CVPR 2020), used by EMO-Net's "local attention block"
# ------------------------------------------------------------------------------------------------
def eca_kernel_size(channels: int, gamma: int = 2, b: int = 1) -> int:
    """ECA's adaptive kernel: t = int(|(log2(C) + b) / gamma|), made odd (t if odd else t + 1)."""
    t = int(abs((math.log2(channels) + b) / gamma))
    return t if t % 2 else t + 1


class ECA(nn.Module):
    """Global average pool, 1-D convolution across channels (no bias), sigmoid, channel rescale."""

    def __init__(self, channels: int, kernel_size: int | None = None) -> None:
        super().__init__()
        k = eca_kernel_size(channels) if kernel_size is None else kernel_size
        assert k % 2 == 1, f"ECA kernel must be odd, got {k}"
        self.kernel_size = k
        self.conv = nn.Conv1d(1, 1, kernel_size=k, padding=k // 2, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, C, _, _ = x.shape
        y = x.mean(dim=(2, 3)).unsqueeze(1)  # (B, 1, C): channels as a 1-D sequence
        y = torch.sigmoid(self.conv(y))  # (B, 1, C)
        return x * y.view(B, C, 1, 1)


# ------------------------------------------------------------------------------------------------
# CBAM: Convolutional Block Attention Module (Woo et al., ECCV 2018), used inside SA-FER's blocks
# ------------------------------------------------------------------------------------------------
class ChannelAttention(nn.Module):
    """Shared 1x1-conv MLP (C -> C/r -> C, no bias) over avg- and max-pooled maps, summed, sigmoid."""

    def __init__(self, channels: int, reduction: int = 16) -> None:
        super().__init__()
        hidden = max(channels // reduction, 1)
        self.fc1 = nn.Conv2d(channels, hidden, 1, bias=False)
        self.fc2 = nn.Conv2d(hidden, channels, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        avg = self.fc2(F.relu(self.fc1(F.adaptive_avg_pool2d(x, 1))))  # (B, C, 1, 1)
        mx = self.fc2(F.relu(self.fc1(F.adaptive_max_pool2d(x, 1))))  # (B, C, 1, 1)
        return torch.sigmoid(avg + mx)


class SpatialAttention(nn.Module):
    """Channel-mean and channel-max maps, 7x7 conv 2 -> 1 (no bias), sigmoid."""

    def __init__(self, kernel_size: int = 7) -> None:
        super().__init__()
        self.conv = nn.Conv2d(2, 1, kernel_size, padding=kernel_size // 2, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pooled = torch.cat([x.mean(dim=1, keepdim=True), x.amax(dim=1, keepdim=True)], dim=1)  # (B, 2, H, W)
        return torch.sigmoid(self.conv(pooled))  # (B, 1, H, W)


class CBAM(nn.Module):
    """Channel attention then spatial attention, each multiplied into the features.

    The last spatial map is kept in ``last_spatial_map`` (detached) when ``record`` is True, for
    attention visualisation.
    """

    def __init__(self, channels: int, reduction: int = 16, spatial_kernel: int = 7) -> None:
        super().__init__()
        self.channel = ChannelAttention(channels, reduction)
        self.spatial = SpatialAttention(spatial_kernel)
        self.record = False
        self.last_spatial_map: torch.Tensor | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x * self.channel(x)  # (B, C, H, W)
        s = self.spatial(x)  # (B, 1, H, W)
        if self.record:
            self.last_spatial_map = s.detach()
        return x * s


# ------------------------------------------------------------------------------------------------
# Patch extraction (PAtt-Lite, and SA-FER's variant of it)
# ------------------------------------------------------------------------------------------------
class PatchExtraction(nn.Module):
    """Turn a 14x14 map into a 2x2 map of patch embeddings (4 patches).

    Stage 1: depthwise 4x4 stride 4 with symmetric padding 1 (= TensorFlow SAME on 14) + pointwise to
    ``dim``; stage 2: depthwise 2x2 stride 2 + pointwise; stage 3: 1x1 convolution. Each pointwise and the
    final 1x1 carry a bias and are followed by ReLU.

    PAtt-Lite (Keras ``SeparableConv2D``): depthwise convs without bias and without activation.
    SA-FER: depthwise convs with bias, each followed by ReLU (``depthwise_bias=depthwise_act=True``).
    """

    def __init__(
        self, in_channels: int, dim: int = 256, depthwise_bias: bool = False, depthwise_act: bool = False
    ) -> None:
        super().__init__()

        def dw(ch: int, k: int, s: int, p: int) -> nn.Module:
            conv = nn.Conv2d(ch, ch, k, stride=s, padding=p, groups=ch, bias=depthwise_bias)
            return nn.Sequential(conv, nn.ReLU(inplace=True)) if depthwise_act else conv

        self.dw1 = dw(in_channels, 4, 4, 1)
        self.pw1 = nn.Conv2d(in_channels, dim, 1)
        self.dw2 = dw(dim, 2, 2, 0)
        self.pw2 = nn.Conv2d(dim, dim, 1)
        self.conv = nn.Conv2d(dim, dim, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.pw1(self.dw1(x)))  # (B, dim, 4, 4) from 14x14
        x = F.relu(self.pw2(self.dw2(x)))  # (B, dim, 2, 2)
        return F.relu(self.conv(x))  # (B, dim, 2, 2)


# ------------------------------------------------------------------------------------------------
# Token attention
# ------------------------------------------------------------------------------------------------
class ScaledDotSelfAttention(nn.Module):
    """Dot-product self-attention with one learnable scalar scale (Keras ``Attention(use_scale=True)``).

    ``out = softmax(scale * X X^T) X`` with query = key = value = X, no projections; ``scale`` starts
    at 1.0 (Keras' initialiser), not 1/sqrt(D). Input (B, N, D) attends among the N tokens of each of
    the B sequences independently.
    """

    def __init__(self, scale_init: float = 1.0) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.tensor(float(scale_init)))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        assert x.dim() == 3, f"expected (B, N, D) tokens, got {tuple(x.shape)}"
        scores = self.scale * torch.matmul(x, x.transpose(1, 2))  # (B, N, N)
        weights = scores.softmax(dim=-1)  # (B, N, N), rows sum to 1
        out = torch.matmul(weights, x)  # (B, N, D)
        return out, weights


class TokenMHSA(nn.Module):
    """Multi-head self-attention over tokens with a residual connection and post-LayerNorm.

    ``LayerNorm(x + MHA(x, x, x))``; used by SA-FER over its 4 patch tokens.
    """

    def __init__(self, dim: int, num_heads: int = 1, attn_drop: float = 0.0) -> None:
        super().__init__()
        assert dim % num_heads == 0, f"dim {dim} not divisible by num_heads {num_heads}"
        self.attn = nn.MultiheadAttention(dim, num_heads, dropout=attn_drop, batch_first=True)
        self.norm = nn.LayerNorm(dim)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        assert x.dim() == 3, f"expected (B, N, D) tokens, got {tuple(x.shape)}"
        out, weights = self.attn(x, x, x, need_weights=True, average_attn_weights=True)  # (B, N, D), (B, N, N)
        return self.norm(x + out), weights  # (B, N, D)
