"""Image-file decoding shared by the dataset loaders and inference (no torch needed)."""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import BinaryIO

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

__all__ = ["IMAGE_SUFFIXES", "ImageReadError", "display_name", "read_rgb"]

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".gif")

Image.MAX_IMAGE_PIXELS = 64_000_000  # larger images are refused as decompression bombs


_SURROGATE = re.compile("[\ud800-\udfff]")


_REPR_SURROGATE = re.compile(r"\\udc([89a-f][0-9a-f])")


def _escape_surrogate(m: re.Match) -> str:
    o = ord(m.group())
    return f"\\x{o - 0xDC00:02x}" if 0xDC80 <= o <= 0xDCFF else f"\\u{o:04x}"


def display_name(name: str | os.PathLike | bytes) -> str:
    """A file name, or any text holding one, as valid text: bytes of the name that are not UTF-8 (which Python
    carries as lone surrogates, ``os.fsdecode``'s ``surrogateescape``) are written as ``\\xNN``, as Python's
    ``backslashreplace`` writes them: ``b"caf\\xe9.jpg"`` -> ``caf\\xe9.jpg`` (a backslash, x, e, 9). Text that is
    valid UTF-8 comes back unchanged."""
    if isinstance(name, bytes):
        return name.decode("utf-8", "backslashreplace")
    text = os.fspath(name) if isinstance(name, os.PathLike) else str(name)
    if isinstance(text, bytes):
        return text.decode("utf-8", "backslashreplace")
    return _SURROGATE.sub(_escape_surrogate, text)


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
        # PIL and the OS quote the path with repr(), which writes a non-UTF-8 byte as \udcNN: write it as \xNN, the
        # way display_name writes the name itself
        detail = _REPR_SURROGATE.sub(r"\\x\1", str(e))
        raise ImageReadError(f"{path_name}: not a readable image ({type(e).__name__}: {detail})") from e
