"""The preprocessing of :class:`PreprocessConfig` on torch tensors: training (with augmentation) and evaluation.

``build_transform(cfg, train=False)`` maps a uint8 face (a (3, H, W) tensor or an (H, W, 3) array) to the float
(3, h, w) tensor the model expects. Without augmentation it is exactly the numpy backend
(:func:`~.numpy_ops.resize_face` for grey and resize, then the same scaling), so training, evaluation and inference
inputs agree. With ``train=True`` the recipe's augmentations (:class:`Augment`, torchvision.transforms.v2) are
applied around it; a random resized crop replaces the plain resize and uses torchvision's kernel of the same name.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torchvision.transforms import InterpolationMode, v2

from .config import PreprocessConfig, as_preprocess
from .numpy_ops import resize_face, to_grayscale

__all__ = ["Augment", "FaceTransform", "RandomContrast", "build_transform", "normalize_tensor"]


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


def normalize_tensor(x: torch.Tensor, cfg: PreprocessConfig) -> torch.Tensor:
    """Float pixels in [0, 1], (..., 3, h, w) -> the model's units (the same arithmetic as the numpy backend)."""
    if cfg.mean is None:
        return x * 255.0
    mean = torch.tensor(cfg.mean, dtype=x.dtype, device=x.device).view(3, 1, 1)
    std = torch.tensor(cfg.std, dtype=x.dtype, device=x.device).view(3, 1, 1)
    return (x - mean) / std


def _hwc(image: Any) -> np.ndarray:
    if isinstance(image, torch.Tensor):
        if image.dtype != torch.uint8 or image.dim() != 3 or image.shape[0] != 3:
            raise ValueError(f"expected a uint8 (3, H, W) tensor, got {image.dtype} {tuple(image.shape)}")
        return image.permute(1, 2, 0).numpy()
    return np.asarray(image)


class FaceTransform:
    """uint8 face -> model input tensor, built by :func:`build_transform`."""

    def __init__(self, cfg: PreprocessConfig, train: bool, augment: Augment | None) -> None:
        self.cfg, self.train, self.augment = cfg, train, augment or Augment()
        a = self.augment
        h, w = cfg.size
        interp = InterpolationMode(cfg.interpolation)
        self.resized_crop = (
            v2.RandomResizedCrop((h, w), scale=a.resized_crop_scale, interpolation=interp, antialias=cfg.antialias)
            if train and a.resized_crop_scale
            else None
        )
        geometric: list[Any] = []
        if train and a.hflip:
            geometric.append(v2.RandomHorizontalFlip(a.hflip))
        if train and a.rotation:
            geometric.append(v2.RandomRotation(a.rotation))
        if train and a.color_jitter:
            geometric.append(v2.ColorJitter(*a.color_jitter))
        self.uint8_ops = v2.Compose(geometric) if geometric else None
        self.contrast = RandomContrast(a.random_contrast) if train and a.random_contrast else None
        self.erasing = v2.RandomErasing(a.random_erasing) if train and a.random_erasing else None

    def __call__(self, image: Any) -> torch.Tensor:
        face = _hwc(image)
        if self.resized_crop is not None:
            if self.cfg.grayscale:
                face = to_grayscale(face)
            x = self.resized_crop(torch.from_numpy(np.ascontiguousarray(face)).permute(2, 0, 1))
        else:
            face = resize_face(face, self.cfg)
            x = torch.from_numpy(face if face.flags.writeable else face.copy()).permute(2, 0, 1)  # (3, h, w) uint8
        if self.uint8_ops is not None:
            x = self.uint8_ops(x)
        x = x.float() / 255.0  # (3, h, w) in [0, 1]; the numpy backend's arithmetic
        if self.contrast is not None:
            x = self.contrast(x)
        x = normalize_tensor(x, self.cfg)
        if self.erasing is not None:
            x = self.erasing(x)
        return x.contiguous()

    def __repr__(self) -> str:
        return f"FaceTransform(train={self.train}, {self.cfg}, {self.augment})"


def build_transform(cfg: Any, train: bool = False, augment: Augment | None = None) -> FaceTransform:
    """The transform of a preprocessing config (or a model config / model / their dicts, see ``as_preprocess``)."""
    return FaceTransform(as_preprocess(cfg), train, augment)
