"""Image-file decoding shared by the dataset loaders and inference (no torch needed)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import BinaryIO

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

__all__ = ["IMAGE_SUFFIXES", "ImageReadError", "read_rgb"]

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".gif")

Image.MAX_IMAGE_PIXELS = 64_000_000  # larger images are refused as decompression bombs


class ImageReadError(ValueError):
    """An input that is not a readable image; the message names the file and why."""


def read_rgb(
    path: str | Path | BinaryIO,
    box: Sequence[int] | None = None,
    exif_transpose: bool = True,
    max_pixels: int | None = None,
    name: str | None = None,
) -> np.ndarray:
    """Decode an image file (a path or a binary file object) to RGB uint8 (H, W, 3).

    Handles CMYK, palette, RGBA and 16/32-bit grey (rescaled to 8 bits); ``exif_transpose`` applies the EXIF
    orientation (photos) - dataset loaders turn it off because their annotations refer to the stored pixels;
    ``box`` = (x, y, w, h) crops after decoding. ``max_pixels`` refuses larger images before decoding them;
    ``name`` is what error messages call the input (default: the path).
    """
    path_name = name or str(path)
    try:
        with Image.open(path) as im:
            if max_pixels is not None and im.width * im.height > max_pixels:
                raise ImageReadError(
                    f"{path_name}: {im.width}x{im.height} = {im.width * im.height} pixels, more than the limit of "
                    f"{max_pixels}"
                )
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
    except ImageReadError:
        raise
    except Image.DecompressionBombError as e:
        raise ImageReadError(f"{path_name}: refused, {e}") from e
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as e:
        raise ImageReadError(f"{path_name}: not a readable image ({type(e).__name__}: {e})") from e
