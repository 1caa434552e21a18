"""Preprocessing derived from the model card, shared by training, evaluation and inference.

``build_transform(card, train=False)`` maps a uint8 (3, H, W) RGB tensor to the float tensor the model expects:
resize to the card's input size (grey faces replicated to 3 channels when the card says ``grayscale``),
scale to [0, 1], normalise with the card's mean/std. With ``train=True`` the recipe's augmentations
(:class:`Augment`) come first, built from torchvision.transforms.v2.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torchvision.transforms import InterpolationMode, v2

__all__ = ["Augment", "RandomContrast", "build_transform"]


@dataclass
class Augment:
    """Training augmentations of the recipes (all off except the horizontal flip).

    Attributes:
        hflip: probability of a horizontal flip.
        rotation: max degrees of a random rotation (DAN +/-20, SA-FER +/-10).
        color_jitter: (brightness, contrast, saturation, hue) for ColorJitter.
        random_contrast: Keras RandomContrast factor (PAtt-Lite 0.3).
        random_erasing: probability of RandomErasing (after normalisation).
        resized_crop_scale: (min, max) area scale of RandomResizedCrop instead of a plain resize
            (EMO-Net uses torchvision's default (0.08, 1.0)).
    """

    hflip: float = 0.5
    rotation: float = 0.0
    color_jitter: tuple[float, float, float, float] | None = None
    random_contrast: float = 0.0
    random_erasing: float = 0.0
    resized_crop_scale: tuple[float, float] | None = None


class RandomContrast(torch.nn.Module):
    """Keras ``RandomContrast(factor)``: per image, ``(x - mean_c) * f + mean_c`` with f ~ U[1-factor, 1+factor],
    per-channel spatial means, clipped to [0, 1]. Expects float images in [0, 1]."""

    def __init__(self, factor: float) -> None:
        super().__init__()
        self.factor = factor

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        f = 1.0 + (torch.rand(()) * 2 - 1) * self.factor
        mean = x.mean(dim=(-2, -1), keepdim=True)
        return ((x - mean) * f + mean).clamp(0, 1)


def _field(card: Any, name: str, default: Any = None) -> Any:
    return card.get(name, default) if isinstance(card, dict) else getattr(card, name, default)


def build_transform(card: Any, train: bool = False, augment: Augment | None = None) -> v2.Compose:
    """The preprocessing of a model card (``model.card`` or the ``preprocessing`` dict of a saved model)."""
    _, h, w = _field(card, "input_size")
    mean, std = list(_field(card, "mean")), list(_field(card, "std"))
    interp = InterpolationMode(_field(card, "interpolation", "bilinear"))
    extra = _field(card, "extra", None) or {}
    ops: list[Any] = [v2.ToImage()]
    if extra.get("grayscale"):
        ops.append(v2.Grayscale(num_output_channels=3))
    aug = augment or Augment()
    if train and aug.resized_crop_scale:
        ops.append(v2.RandomResizedCrop((h, w), scale=aug.resized_crop_scale, interpolation=interp, antialias=True))
    else:
        ops.append(v2.Resize((h, w), interpolation=interp, antialias=True))
    if train:
        if aug.hflip:
            ops.append(v2.RandomHorizontalFlip(aug.hflip))
        if aug.rotation:
            ops.append(v2.RandomRotation(aug.rotation))
        if aug.color_jitter:
            ops.append(v2.ColorJitter(*aug.color_jitter))
    ops.append(v2.ToDtype(torch.float32, scale=True))
    if train and aug.random_contrast:
        ops.append(RandomContrast(aug.random_contrast))
    ops.append(v2.Normalize(mean, std))
    if train and aug.random_erasing:
        ops.append(v2.RandomErasing(aug.random_erasing))
    return v2.Compose(ops)
