"""FER2013 (Kaggle ``fer2013.csv``): ``emotion,pixels,Usage``, 35,887 rows of 48x48 grey images.

``Usage``: Training (28,709) -> train, PublicTest (3,589) -> validation, PrivateTest (3,589) -> test, the
split that is reported. Emotion codes 0-6 start at Angry (see labels.py). The 2,304 pixel values per row are
converted by one numpy call over the whole file: all 35,887 rows load in about 3 s on 2 cores.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np

from ._common import finish, require_file
from .base import DatasetError, DatasetSplits, FERDataset
from .labels import BASIC7, FER2013_CODES

__all__ = ["USAGE_TO_SPLIT", "load_fer2013", "parse_fer2013_csv"]

USAGE_TO_SPLIT = {"Training": "train", "PublicTest": "validation", "PrivateTest": "test"}
N_PIXELS = 48 * 48


def parse_fer2013_csv(path: Path) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Read fer2013.csv -> (images uint8 (N, 48, 48), native emotion codes (N,), Usage per row).

    Raises DatasetError naming the line for a wrong header, a bad emotion code, a row whose pixel count
    is not 2,304, a value outside 0-255, or an unknown Usage. The file has no quoted fields (pixels are
    space-separated), so rows are split on commas directly, and all pixel strings are converted by one
    ``np.fromstring`` call.
    """
    lines = path.read_text().splitlines()
    header = [h.strip().strip('"') for h in lines[0].split(",")] if lines else None
    if not header or header[:3] != ["emotion", "pixels", "Usage"]:
        raise DatasetError(path, f"header must be 'emotion,pixels,Usage', got {header}", 1)
    codes, pixels, usage, linenos = [], [], [], []
    for lineno, line in enumerate(lines[1:], 2):
        if not line.strip():
            continue
        row = [c.strip().strip('"') for c in line.split(",")]
        if len(row) < 3:
            raise DatasetError(path, f"expected 3 columns (emotion, pixels, Usage), got {len(row)}", lineno)
        e, px, u = row[0], row[1], row[2]
        if not e.isdigit() or int(e) not in FER2013_CODES:
            raise DatasetError(path, f"emotion '{e}' is not a FER2013 code 0-6", lineno)
        if u not in USAGE_TO_SPLIT:
            raise DatasetError(path, f"Usage '{u}' is not one of {', '.join(USAGE_TO_SPLIT)}", lineno)
        if px.count(" ") != N_PIXELS - 1:
            n = len(px.split())
            raise DatasetError(path, f"pixels has {n} values, expected {N_PIXELS} (48x48)", lineno)
        codes.append(int(e))
        pixels.append(px)
        usage.append(u)
        linenos.append(lineno)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", DeprecationWarning)  # older numpy warns instead of raising
            values = np.fromstring(" ".join(pixels), dtype=np.int32, sep=" ")
    except (ValueError, DeprecationWarning):
        values = np.empty(0, np.int32)
    if len(values) != N_PIXELS * len(pixels):  # a non-integer token: find its row (slow path, errors only)
        for px, lineno in zip(pixels, linenos, strict=True):
            if not all(tok.isdigit() for tok in px.split(" ")):
                raise DatasetError(path, "pixel values must be integers 0-255", lineno)
        raise DatasetError(path, "pixel values must be integers 0-255")
    values = values.reshape(-1, N_PIXELS)
    out_of_range = np.flatnonzero((values < 0).any(1) | (values > 255).any(1))
    if len(out_of_range):
        raise DatasetError(path, "pixel values must be integers 0-255", linenos[out_of_range[0]])
    return values.astype(np.uint8).reshape(-1, 48, 48), np.asarray(codes, dtype=np.int64), usage


def load_fer2013(root: str | Path) -> DatasetSplits:
    root = Path(root)
    path = root if root.is_file() else require_file(root / "fer2013.csv", "fer2013.csv")
    images, codes, usage = parse_fer2013_csv(path)
    index = {name: i for i, name in enumerate(BASIC7)}
    targets = np.array([index[FER2013_CODES[c]] for c in codes], dtype=np.int64)
    usage_arr = np.array(usage)
    splits = {}
    for u, split in USAGE_TO_SPLIT.items():
        rows = np.flatnonzero(usage_arr == u)
        splits[split] = FERDataset(
            name="fer2013",
            split=split,
            class_names=BASIC7,
            targets=targets[rows],
            ids=[f"fer{r:07d}" for r in rows],  # Microsoft's FERPlus file names use the row index
            images=images[rows],
        )
    return finish("fer2013", BASIC7, splits)
