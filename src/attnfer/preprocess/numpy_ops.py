"""The preprocessing of :class:`PreprocessConfig` in numpy/PIL/OpenCV (no torch): the ONNX path, predict, serve.

:func:`resize_face` is the one place where a face is greyed and resized, for both backends: the torch backend
(:mod:`.torch_ops`) calls it too, so training, evaluation and inference see identical uint8 pixels. Resizing
uses PIL's kernels (antialiased like torchvision's ``antialias=True``), or OpenCV's plain ones when
``antialias`` is off.
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np
from PIL import Image

from .config import PreprocessConfig

__all__ = ["normalize", "preprocess", "preprocess_batch", "resize_face", "to_grayscale"]

_PIL = {"bilinear": Image.Resampling.BILINEAR, "bicubic": Image.Resampling.BICUBIC, "nearest": Image.Resampling.NEAREST}
_CV2 = {"bilinear": cv2.INTER_LINEAR, "bicubic": cv2.INTER_CUBIC, "nearest": cv2.INTER_NEAREST}


def _check(image: np.ndarray) -> None:
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"expected an RGB uint8 image (H, W, 3), got {image.dtype} {image.shape}")
    if image.shape[0] < 1 or image.shape[1] < 1:
        raise ValueError(f"empty image {image.shape}")


def to_grayscale(image: np.ndarray) -> np.ndarray:
    """ITU-R 601-2 luma of an RGB uint8 image, replicated to 3 channels (PIL's ``convert("L")``)."""
    luma = np.asarray(Image.fromarray(np.ascontiguousarray(image)).convert("L"))
    return np.repeat(luma[..., None], 3, axis=2)


def _resize(image: np.ndarray, size: tuple[int, int], cfg: PreprocessConfig) -> np.ndarray:
    h, w = size
    if image.shape[:2] == (h, w):
        return image
    if cfg.antialias:
        pil = Image.fromarray(np.ascontiguousarray(image))
        return np.asarray(pil.resize((w, h), resample=_PIL[cfg.interpolation], reducing_gap=None))
    return cv2.resize(image, (w, h), interpolation=_CV2[cfg.interpolation])


def resize_face(image: np.ndarray, cfg: PreprocessConfig, grayscale: bool | None = None) -> np.ndarray:
    """RGB uint8 face (H, W, 3) -> uint8 (h, w, 3) at the model's input size: grey (if the model is), stretch to
    ``cfg.resize_size``, centre-crop ``cfg.size``. ``grayscale`` overrides the config's (None: as configured)."""
    _check(image)
    if cfg.grayscale if grayscale is None else grayscale:
        image = to_grayscale(image)
    image = _resize(image, cfg.resize_size, cfg)
    (rh, rw), (h, w) = cfg.resize_size, cfg.size
    if (rh, rw) != (h, w):
        y0, x0 = (rh - h) // 2, (rw - w) // 2
        image = image[y0 : y0 + h, x0 : x0 + w]
    return np.ascontiguousarray(image)


def normalize(image: np.ndarray, cfg: PreprocessConfig) -> np.ndarray:
    """uint8 (h, w, 3) at input size -> float32 (3, h, w) in the model's units."""
    x = image.astype(np.float32).transpose(2, 0, 1)  # (3, h, w), 0..255
    if cfg.mean is None:
        return np.ascontiguousarray(x)
    mean = np.asarray(cfg.mean, np.float32)[:, None, None]
    std = np.asarray(cfg.std, np.float32)[:, None, None]
    return np.ascontiguousarray((x / np.float32(255.0) - mean) / std)


def preprocess(image: np.ndarray, cfg: PreprocessConfig) -> np.ndarray:
    """RGB uint8 face (H, W, 3) -> float32 (3, h, w): what the model is fed."""
    return normalize(resize_face(image, cfg), cfg)


def preprocess_batch(images: Sequence[np.ndarray], cfg: PreprocessConfig) -> np.ndarray:
    """Faces -> float32 (N, 3, h, w)."""
    h, w = cfg.size
    out = np.empty((len(images), 3, h, w), np.float32)
    for i, image in enumerate(images):
        out[i] = preprocess(image, cfg)
    return out
