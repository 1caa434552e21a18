"""Helpers shared by the loaders."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from ..images import IMAGE_SUFFIXES  # noqa: F401  (re-exported for the loaders)
from .base import DatasetError, DatasetSplits, FERDataset, SkipLog, carve_validation


def require_file(path: Path, what: str) -> Path:
    if not path.is_file():
        raise DatasetError(path, f"missing: expected {what}")
    return path


def require_dir(path: Path, what: str) -> Path:
    if not path.is_dir():
        raise DatasetError(path, f"missing: expected {what}")
    return path


def finish(
    name: str,
    class_names: Sequence[str],
    splits: dict[str, FERDataset],
    *,
    val_fraction: float = 0.1,
    seed: int = 0,
    skipped: SkipLog | None = None,
    groups: Sequence[str] | None = None,
    notes: list[str] | None = None,
) -> DatasetSplits:
    """Check splits are non-empty and make sure a validation split exists (carving one from train)."""
    for split, ds in splits.items():
        if len(ds) == 0:
            raise DatasetError(name, f"split '{split}' is empty")
    if "validation" in splits:
        source = "dataset"
    else:
        train, val, source = carve_validation(splits["train"], val_fraction, seed, groups)
        splits = {"train": train, "validation": val, **{k: v for k, v in splits.items() if k != "train"}}
    order = ["train", "validation", "test"]
    ordered = {k: splits[k] for k in order if k in splits}
    ordered.update({k: v for k, v in splits.items() if k not in ordered})
    return DatasetSplits(name, list(class_names), ordered, source, skipped or SkipLog(), notes or [])


def parse_int(token: str, path: Path, line: int, field: str) -> int:
    try:
        return int(float(token))
    except ValueError:
        raise DatasetError(path, f"{field} '{token}' is not a number", line) from None
