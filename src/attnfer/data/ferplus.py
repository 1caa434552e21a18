"""FERPlus: ten crowd votes per FER2013 image, in two forms.

1. ``fer2013new.csv`` (``Usage, Image name, neutral, ..., contempt, unknown, NF``) joined **by row** with
   ``fer2013.csv`` (same order, 35,887 rows); an empty ``Image name`` marks a dropped image.
2. The generated ``FER2013Train`` / ``FER2013Valid`` / ``FER2013Test`` folders, each with ``label.csv``
   (``file name, "(0, 0, 48, 48)", 10 vote counts``) next to the PNGs.

Label modes, after outlier-vote removal (an emotion with a single vote gets 0), as Microsoft's trainer does:

* ``majority``: keep the image if its top class holds more than half of the remaining votes;
* ``probability`` / ``crossentropy``: take the top classes (ties together, at most 3) until 75% of the votes
  are covered; discard if 50% or less are covered; the target is the normalised distribution
  (``probability`` samples one class from it per draw, ``crossentropy`` trains on it as a soft target);
* ``multi_target``: every class with at least 30% of the votes is a positive (normalised multi-hot).

Images whose result is unknown or NF (no face) are dropped and counted. Validation and test always use
``majority``. 8 classes (canonical order); ``num_classes=7`` drops contempt images.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np

from ._common import csv_rows, finish, parse_int, quote, read_lines, require_file
from .base import DatasetError, DatasetSplits, FERDataset, SkipLog
from .fer2013 import USAGE_TO_SPLIT, read_fer2013_rows
from .labels import CANONICAL, FERPLUS_VOTE_COLUMNS

__all__ = ["LABEL_MODES", "ferplus_target", "load_ferplus"]

LABEL_MODES = ("majority", "probability", "crossentropy", "multi_target")
_FOLDERS = {"train": "FER2013Train", "validation": "FER2013Valid", "test": "FER2013Test"}


def ferplus_target(votes: np.ndarray, mode: str) -> np.ndarray | None:
    """10 vote counts -> a distribution over the 10 columns, or None when the image is dropped.

    The caller drops results whose largest entry is 'unknown' or 'NF'.
    """
    v = np.asarray(votes, dtype=np.float64).copy()
    v[v <= 1] = 0.0  # outlier removal: a single vote does not count
    total = v.sum()
    if total <= 0:
        return None
    out = np.zeros_like(v)
    if mode == "majority":
        top = int(np.argmax(v))
        if v[top] <= 0.5 * total:
            return None
        out[top] = 1.0
        return out
    if mode in ("probability", "crossentropy"):
        remaining, covered, taken = v.copy(), 0.0, 0
        while covered < 0.75 * total and taken < 3:
            peak = remaining.max()
            if peak <= 0:
                break
            tied = np.flatnonzero(remaining == peak)
            out[tied] = peak
            remaining[tied] = 0.0
            covered += peak * len(tied)
            taken += len(tied)
        if covered <= 0.5 * total or taken > 3:
            return None
        return out / out.sum()
    if mode == "multi_target":
        out[v >= 0.3 * total] = v[v >= 0.3 * total]
        if out.sum() <= 0.5 * total:
            return None
        return out / out.sum()
    raise ValueError(f"label mode must be one of {LABEL_MODES}, got {mode!r}")


def _parse_votes(row: list[str], path: Path, lineno: int) -> np.ndarray:
    if len(row) != 10:
        raise DatasetError(path, f"expected 10 vote counts ({', '.join(FERPLUS_VOTE_COLUMNS)}), got {len(row)}", lineno)
    votes = np.array([parse_int(x, path, lineno, "vote count") for x in row], dtype=np.float64)
    if (votes < 0).any():
        raise DatasetError(path, "vote counts must be >= 0", lineno)
    return votes


def _make_split(
    split: str,
    names: list[str],
    votes: list[np.ndarray],
    mode: str,
    class_names: tuple[str, ...],
    dropped: Counter,
    images: np.ndarray | None = None,
    paths: list[Path] | None = None,
) -> FERDataset:
    """The images of one split that survive ``mode`` (validation and test always use majority)."""
    split_mode = mode if split == "train" else "majority"
    keep, hard, soft = [], [], []
    n = len(class_names)
    for i, v in enumerate(votes):
        dist = ferplus_target(v, split_mode)
        if dist is None or int(np.argmax(dist)) >= 8:
            dropped[f"{split}: unknown/NF or no agreement ({split_mode})"] += 1
            continue
        dist = dist[:8]
        if n == 7:
            if int(np.argmax(dist)) == 7:
                dropped[f"{split}: contempt (7-class variant)"] += 1
                continue
            dist = dist[:7]
        keep.append(i)
        hard.append(int(np.argmax(dist)))
        soft.append((dist / dist.sum()).astype(np.float32))
    target_mode = {"majority": "hard", "probability": "sample", "crossentropy": "soft", "multi_target": "soft"}
    return FERDataset(
        name="ferplus",
        split=split,
        class_names=class_names,
        targets=hard,
        ids=[names[k] for k in keep],
        images=None if images is None else images[keep],
        paths=None if paths is None else [paths[k] for k in keep],
        soft_targets=np.stack(soft) if soft else np.zeros((0, n), np.float32),
        target_mode=target_mode[split_mode],
    )


def load_ferplus(
    root: str | Path, label_mode: str = "majority", num_classes: int = 8, skip_bad: bool = False
) -> DatasetSplits:
    if label_mode not in LABEL_MODES:
        raise ValueError(f"label_mode must be one of {LABEL_MODES}, got {label_mode!r}")
    if num_classes not in (7, 8):
        raise ValueError(f"FERPlus has 8 classes (7 without contempt), got num_classes={num_classes}")
    root = Path(root)
    class_names = CANONICAL[:num_classes]
    dropped: Counter = Counter()
    skipped = SkipLog.of(skip_bad)
    splits: dict[str, FERDataset] = {}
    if (root / "fer2013new.csv").is_file():
        new_csv = root / "fer2013new.csv"
        fer_csv = require_file(root / "fer2013.csv", "fer2013.csv (joined by row)")
        images, _, usage, fer_lines, data_lines = read_fer2013_rows(fer_csv, skipped)
        lines = read_lines(new_csv, "the CSV 'Usage,Image name,' + 10 vote columns", skipped, keep_bad=True)
        rows = [(n, row) for n, row in csv_rows(lines) if row != []]
        if rows and isinstance(rows[0][1], DatasetError):
            raise rows[0][1]
        header = [h.strip() for h in rows[0][1]] if rows else []
        if header[:2] != ["Usage", "Image name"] or len(header) != 12:
            raise DatasetError(new_csv, f"header must be 'Usage,Image name,' + 10 vote columns, got {header}", 1)
        if len(rows) - 1 != len(data_lines):
            raise DatasetError(
                new_csv, f"has {len(rows) - 1} rows but fer2013.csv has {len(data_lines)}; they are joined by row"
            )
        fer_row = {lineno: k for k, lineno in enumerate(fer_lines)}  # fer2013.csv line -> kept image
        per_split: dict[str, tuple[list, list, list]] = {s: ([], [], []) for s in USAGE_TO_SPLIT.values()}
        for (lineno, row), fer_lineno in zip(rows[1:], data_lines, strict=True):
            if isinstance(row, DatasetError):  # not UTF-8
                skipped.handle(row)
                continue
            try:
                if len(row) < 12:
                    raise DatasetError(
                        new_csv, f"expected 12 columns (Usage, Image name, 10 votes), got {len(row)}", lineno
                    )
                u, name = row[0].strip(), row[1].strip()
                k = fer_row.get(fer_lineno)
                if k is None:  # its fer2013.csv row was bad: recorded there, left out here
                    continue
                if u != usage[k]:
                    raise DatasetError(
                        new_csv, f"Usage {quote(u)} differs from fer2013.csv's '{usage[k]}' on this row", lineno
                    )
                split = USAGE_TO_SPLIT[u]
                if not name:
                    dropped[f"{split}: no image name (removed by FERPlus)"] += 1
                    continue
                votes = _parse_votes(row[2:12], new_csv, lineno)
            except DatasetError as e:
                skipped.handle(e)
                continue
            rows_, names, votes_ = per_split[split]
            rows_.append(k)
            names.append(Path(name).stem)
            votes_.append(votes)
        for split, (rows_, names, votes) in per_split.items():
            splits[split] = _make_split(split, names, votes, label_mode, class_names, dropped, images=images[rows_])
    else:
        for split, folder in _FOLDERS.items():
            label_csv = require_file(root / folder / "label.csv", f"FERPlus {folder}/label.csv (or fer2013new.csv)")
            names, paths, votes = [], [], []
            lines = read_lines(label_csv, "FERPlus label.csv rows 'file, box, 10 votes'", skipped)
            for lineno, row in csv_rows(lines):
                if not row:
                    continue
                try:
                    if len(row) != 12:
                        raise DatasetError(
                            label_csv, f"expected 'file, box, 10 votes' (12 columns), got {len(row)}", lineno
                        )
                    path = label_csv.parent / row[0].strip()
                    if not path.is_file():
                        raise DatasetError(path, f"image listed at {label_csv.name}:{lineno} is missing")
                    v = _parse_votes(row[2:12], label_csv, lineno)
                except DatasetError as e:
                    skipped.handle(e)
                    continue
                names.append(path.stem)
                paths.append(path)
                votes.append(v)
            splits[split] = _make_split(split, names, votes, label_mode, class_names, dropped, paths=paths)
    notes = [f"dropped {n} images: {why}" for why, n in sorted(dropped.items())]
    return finish("ferplus", class_names, splits, notes=notes, skipped=skipped)
