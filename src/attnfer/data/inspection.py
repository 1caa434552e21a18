"""What ``attnfer data inspect`` checks: every problem in a dataset tree, not just the first one.

A dataset is loaded with ``skip_bad=True`` (unless the options say otherwise), so a loader records each bad label
line (with its file and line number), each missing or mislabelled image, and each line that is not UTF-8, and goes
on; then image files are decoded (``check_images`` per split, or all of them) and each one that cannot be read or
decoded is a problem too. Problems are what is wrong in the data; warnings (class imbalance, a class absent from a
split, image ids shared by two splits) are worth a look but not errors. What cannot be inspected at all (no such
root, a root without the format's layout, an unknown format or option) raises instead.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..images import display_name
from . import load_dataset
from .base import DatasetError, DatasetLayoutError, DatasetSplits, FERDataset, SkipLog

__all__ = ["Inspection", "inspect_dataset"]


@dataclass
class Inspection:
    """The result of :func:`inspect_dataset`; ``exit_code`` is 1 when any problem was found, else 0."""

    dataset: str
    root: str
    data: DatasetSplits | None
    problems: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    images_checked: int = 0
    #: image files of the dataset (each counted once; 0 when the pixels live in the label file, e.g. FER2013)
    images_total: int = 0

    @property
    def exit_code(self) -> int:
        return 1 if self.problems else 0

    @property
    def all_images_checked(self) -> bool:
        return self.images_checked >= self.images_total


def inspect_dataset(
    name: str,
    root: str | Path,
    options: dict[str, Any] | None = None,
    check_images: int | None = 20,
    workers: int | None = None,
    on_image: Callable[[], None] | None = None,
) -> Inspection:
    """Load dataset ``name`` at ``root`` collecting every problem, and decode its images.

    ``check_images``: image files decoded per split (evenly spread over the split), or None for every one of them.
    ``on_image`` is called after each decoded image (progress). Raises ``FileNotFoundError`` (no such root),
    :class:`~attnfer.data.base.DatasetLayoutError` (not that format's layout) or ``ValueError`` (unknown format, bad
    option): nothing could be inspected.
    """
    if not Path(root).exists():
        raise FileNotFoundError(f"{root}: no such file or folder")
    options = dict(options or {})
    log = SkipLog(True)
    options.setdefault("skip_bad", log)  # record every bad line and go on (unless the options say otherwise)
    report = Inspection(name, str(root), None)
    try:
        data = load_dataset(name, root, **options)
    except DatasetLayoutError:
        raise
    except DatasetError as e:  # the dataset cannot be assembled: what was recorded on the way, then that error
        report.problems += [*log.entries, display_name(str(e))]
        return report
    except TypeError as e:
        if "unexpected keyword argument" in str(e):
            raise ValueError(f"dataset '{name}' has no option {str(e).rsplit(' ', 1)[-1]}") from None
        raise
    report.data = data
    report.problems += data.skipped.entries
    _check_counts(data, report)
    _check_images(data, report, check_images, workers, on_image)
    return report


def _check_counts(data: DatasetSplits, report: Inspection) -> None:
    for split, counts in data.counts().items():
        present = [counts[c] for c in data.class_names if counts[c] > 0]
        missing = [c for c in data.class_names if counts[c] == 0]
        if missing:
            report.warnings.append(f"{split}: no samples of {', '.join(missing)}")
        if present and max(present) > 10 * min(present):
            report.warnings.append(f"{split}: imbalance {max(present) / min(present):.0f}x between classes")
    ids = {s: set(ds.ids) for s, ds in data.splits.items() if s in ("train", "validation", "test")}
    for a, b in (("train", "validation"), ("train", "test"), ("validation", "test")):
        if a in ids and b in ids and ids[a] & ids[b]:
            shared = sorted(ids[a] & ids[b])
            report.warnings.append(
                f"{len(shared)} image ids are in both {a} and {b} (e.g. {shared[0]}): check for leakage"
            )


def _check_images(
    data: DatasetSplits,
    report: Inspection,
    per_split: int | None,
    workers: int | None,
    on_image: Callable[[], None] | None,
) -> None:
    chosen: dict[tuple, tuple[FERDataset, int]] = {}  # (path, box) -> a sample showing it (splits share files)
    every: set[tuple] = set()
    for ds in data.splits.values():
        if ds.paths is None:
            continue
        keys = [_key(ds, i) for i in range(len(ds))]
        every.update(keys)
        n = len(ds)
        picks = range(n) if per_split is None or per_split >= n else np.unique(np.linspace(0, n - 1, per_split).round())
        for i in picks:
            chosen.setdefault(keys[int(i)], (ds, int(i)))
    report.images_total = len(every)

    def decode(item: tuple[FERDataset, int]) -> str | None:
        ds, i = item
        try:
            ds.load_image(i)
            return None
        except DatasetError as e:
            return str(e)
        finally:
            if on_image is not None:
                on_image()

    workers = workers or min(8, os.cpu_count() or 1)
    with ThreadPoolExecutor(max_workers=workers) as pool:
        results = list(pool.map(decode, chosen.values()))
    report.images_checked = len(chosen)
    report.problems += [display_name(r) for r in results if r is not None]


def _key(ds: FERDataset, i: int) -> tuple:
    box = None if ds.boxes is None else tuple(int(v) for v in ds.boxes[i])
    return (ds.paths[i], box)
