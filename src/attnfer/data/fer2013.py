"""FER2013 (Kaggle ``fer2013.csv``): ``emotion,pixels,Usage``, 35,887 rows of 48x48 grey images.

``Usage``: Training (28,709) -> train, PublicTest (3,589) -> validation, PrivateTest (3,589) -> test, the
split that is reported. Emotion codes 0-6 start at Angry (see labels.py). The 2,304 pixel values per row are
converted by one numpy call over the whole file: all 35,887 rows load in about 3 s on 2 cores.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np

from ._common import finish, quote, read_lines, require_file
from .base import DatasetError, DatasetSplits, FERDataset, SkipLog
from .labels import BASIC7, FER2013_CODES

__all__ = ["USAGE_TO_SPLIT", "load_fer2013", "parse_fer2013_csv", "read_fer2013_rows"]

USAGE_TO_SPLIT = {"Training": "train", "PublicTest": "validation", "PrivateTest": "test"}
N_PIXELS = 48 * 48


def parse_fer2013_csv(path: Path, skipped: SkipLog | None = None) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Read fer2013.csv -> (images uint8 (N, 48, 48), native emotion codes (N,), Usage per row).

    Raises DatasetError naming the line for a wrong header, a bad emotion code, a row whose pixel count
    is not 2,304, a value outside 0-255, or an unknown Usage; with ``skipped`` enabled a bad row is recorded there
    and left out instead (the header stays fatal). See :func:`read_fer2013_rows`.
    """
    images, codes, usage, _, _ = read_fer2013_rows(path, skipped)
    return images, codes, usage


def read_fer2013_rows(
    path: Path, skipped: SkipLog | None = None
) -> tuple[np.ndarray, np.ndarray, list[str], list[int], list[int]]:
    """:func:`parse_fer2013_csv` plus the line number of each row kept and of every data row in the file, kept or
    not (FERPlus joins its votes by row).

    The file is UTF-8 (a byte-order mark, as Excel writes it, is dropped) and has no quoted fields (pixels are
    whitespace-separated), so rows are split on commas directly; pixel values may be separated by any run of
    whitespace. All pixel strings are converted by one ``np.fromstring`` call; rows are looked at one by one only
    to name the line of a problem.
    """
    skipped = skipped if skipped is not None else SkipLog()
    lines = list(read_lines(path, "the CSV 'emotion,pixels,Usage'", skipped, keep_bad=True))
    if lines and isinstance(lines[0][1], DatasetError):
        raise lines[0][1]
    header = [h.strip().strip('"') for h in lines[0][1].split(",")] if lines else None
    if not header or header[:3] != ["emotion", "pixels", "Usage"]:
        raise DatasetError(path, f"header must be 'emotion,pixels,Usage', got {header}", lines[0][0] if lines else 1)
    codes, pixels, usage, linenos = [], [], [], []
    data_lines = []
    for lineno, line in lines[1:]:
        if isinstance(line, DatasetError):  # not UTF-8
            data_lines.append(lineno)
            skipped.handle(line)
            continue
        if not line.strip():
            continue
        data_lines.append(lineno)
        try:
            row = [c.strip().strip('"') for c in line.split(",")]
            if len(row) < 3:
                raise DatasetError(path, f"expected 3 columns (emotion, pixels, Usage), got {len(row)}", lineno)
            e, px, u = row[0], row[1], row[2]
            if not e.isdigit() or int(e) not in FER2013_CODES:
                raise DatasetError(path, f"emotion {quote(e)} is not a FER2013 code 0-6", lineno)
            if u not in USAGE_TO_SPLIT:
                raise DatasetError(path, f"Usage {quote(u)} is not one of {', '.join(USAGE_TO_SPLIT)}", lineno)
            if px.count(" ") != N_PIXELS - 1 or "  " in px:  # the fast check failed: count the values properly
                values = px.split()
                if len(values) != N_PIXELS:
                    raise DatasetError(
                        path,
                        f"pixels has {len(values)} values, expected {N_PIXELS} (48x48, whitespace-separated)",
                        lineno,
                    )
                px = " ".join(values)
        except DatasetError as err:
            skipped.handle(err)
            continue
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
    if len(values) != N_PIXELS * len(pixels):  # a non-integer token: find its rows (slow path, errors only)
        keep = []
        for k, (px, lineno) in enumerate(zip(pixels, linenos, strict=True)):
            try:
                _check_tokens(px, path, lineno)
                keep.append(k)
            except DatasetError as err:
                skipped.handle(err)
        codes, pixels, usage, linenos = ([x[k] for k in keep] for x in (codes, pixels, usage, linenos))
        values = np.array([int(t) for px in pixels for t in px.split(" ")], dtype=np.int32)
    values = values.reshape(-1, N_PIXELS)
    bad = (values < 0) | (values > 255)
    if bad.any():
        keep = []
        for k in range(len(values)):
            if bad[k].any():
                col = int(np.flatnonzero(bad[k])[0])
                err = DatasetError(
                    path,
                    f"pixel values must be integers 0-255: value {col + 1} of 2304 is {values[k, col]}",
                    linenos[k],
                )
                skipped.handle(err)
            else:
                keep.append(k)
        values = values[keep]
        codes, usage, linenos = ([x[k] for k in keep] for x in (codes, usage, linenos))
    return values.astype(np.uint8).reshape(-1, 48, 48), np.asarray(codes, dtype=np.int64), usage, linenos, data_lines


def _check_tokens(px: str, path: Path, lineno: int) -> None:
    """A DatasetError naming the first pixel value of a row that is not an integer."""
    for col, tok in enumerate(px.split(" "), 1):
        if not tok.isdigit():
            raise DatasetError(
                path, f"pixel values must be integers 0-255: value {col} of 2304 is {quote(tok)}", lineno
            )


def load_fer2013(root: str | Path, skip_bad: bool = False) -> DatasetSplits:
    root = Path(root)
    path = root if root.is_file() else require_file(root / "fer2013.csv", "fer2013.csv")
    skipped = SkipLog.of(skip_bad)
    images, codes, usage, linenos, _ = read_fer2013_rows(path, skipped)
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
            ids=[f"fer{linenos[r] - 2:07d}" for r in rows],  # Microsoft's FERPlus names use the CSV row index
            images=images[rows],
        )
    return finish("fer2013", BASIC7, splits, skipped=skipped)
