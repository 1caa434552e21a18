"""Image-file decoding shared by the dataset loaders and inference (no torch needed)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

__all__ = ["IMAGE_SUFFIXES", "ImageReadError", "read_rgb"]

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".gif")

Image.MAX_IMAGE_PIXELS = 64_000_000  # larger images are refused as decompression bombs


class ImageReadError(ValueError):
    """An input that is not a readable image; the message names the file and why."""


def read_rgb(path: str | Path, box: Sequence[int] | None = None, exif_transpose: bool = True) -> np.ndarray:
    """Decode an image file to RGB uint8 (H, W, 3).

    Handles CMYK, palette, RGBA and 16/32-bit grey (rescaled to 8 bits); ``exif_transpose`` applies the EXIF
    orientation (photos) - dataset loaders turn it off because their annotations refer to the stored pixels;
    ``box`` = (x, y, w, h) crops after decoding.
    """
    try:
        with Image.open(path) as im:
            if exif_transpose:
                im = ImageOps.exif_transpose(im)
            if box is not None:
                x, y, w, h = (int(v) for v in box)
                im = im.crop((x, y, x + w, y + h))
            if im.mode in ("I;16", "I;16B", "I;16L", "I"):
                arr = np.asarray(im, dtype=np.float64)
                arr = (arr - arr.min()) / max(float(arr.max() - arr.min()), 1.0) * 255.0
                return np.repeat(arr.astype(np.uint8)[..., None], 3, axis=2)
            return np.asarray(im.convert("RGB"))
    except Image.DecompressionBombError as e:
        raise ImageReadError(f"{path}: refused, {e}") from e
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as e:
        raise ImageReadError(f"{path}: not a readable image ({type(e).__name__}: {e})") from e
