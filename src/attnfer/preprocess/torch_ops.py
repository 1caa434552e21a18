"""The preprocessing of :class:`PreprocessConfig` on torch tensors: training (with augmentation) and evaluation.

``build_transform(cfg, train=False)`` maps a uint8 face (a (3, H, W) tensor or an (H, W, 3) array) to the float
(3, h, w) tensor the model expects. Without augmentation it is exactly the numpy backend
(:func:`~.numpy_ops.resize_face` for grey and resize, then the same scaling), so training, evaluation and inference
inputs agree. With ``train=True`` the recipe's augmentations (:class:`~.augment.Augment`) are drawn per sample and
applied with torchvision.transforms.v2's kernels (:mod:`.augment`, whose :class:`~.augment.BatchAugment` applies the
same parameters to a whole batch on the accelerator); a random resized crop replaces the plain resize.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from .augment import Augment, apply_sample, draw_params, normalize_tensor
from .config import PreprocessConfig, as_preprocess
from .numpy_ops import resize_face

__all__ = ["Augment", "FaceTransform", "build_transform", "normalize_tensor"]


def _hwc(image: Any) -> np.ndarray:
    if isinstance(image, torch.Tensor):
        if image.dtype != torch.uint8 or image.dim() != 3 or image.shape[0] != 3:
            raise ValueError(f"expected a uint8 (3, H, W) tensor, got {image.dtype} {tuple(image.shape)}")
        return image.permute(1, 2, 0).numpy()
    return np.asarray(image)


class FaceTransform:
    """uint8 face -> model input tensor, built by :func:`build_transform`.

    Evaluation: the numpy backend's resize (:func:`~.numpy_ops.resize_face`) and scaling. Training: the sample's
    augmentation is drawn (:func:`~.augment.draw_params`, from torch's global RNG, which the training loader seeds
    per sample) and applied by :func:`~.augment.apply_sample`, the per-sample twin of the batched
    :class:`~.augment.BatchAugment`."""

    def __init__(self, cfg: PreprocessConfig, train: bool, augment: Augment | None) -> None:
        self.cfg, self.train, self.augment = cfg, train, augment or Augment()

    def _resize(self, face: np.ndarray) -> np.ndarray:
        return resize_face(face, self.cfg)

    def __call__(self, image: Any) -> torch.Tensor:
        face = _hwc(image)
        if self.train and self.augment.any:
            source = torch.from_numpy(np.ascontiguousarray(face)).permute(2, 0, 1)  # (3, H, W) uint8
            params = draw_params(self.augment, face.shape[:2], self.cfg.size)
            return apply_sample(source, params, self.cfg, self.augment, resize=self._resize)
        face = resize_face(face, self.cfg)
        x = torch.from_numpy(face if face.flags.writeable else face.copy()).permute(2, 0, 1)  # (3, h, w) uint8
        x = x.float() / 255.0  # (3, h, w) in [0, 1]; the numpy backend's arithmetic
        return normalize_tensor(x, self.cfg).contiguous()

    def __repr__(self) -> str:
        return f"FaceTransform(train={self.train}, {self.cfg}, {self.augment})"


def build_transform(cfg: Any, train: bool = False, augment: Augment | None = None) -> FaceTransform:
    """The transform of a preprocessing config (or a model config / model / their dicts, see ``as_preprocess``)."""
    return FaceTransform(as_preprocess(cfg), train, augment)
