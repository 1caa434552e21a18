"""Datasets in their real formats, mapped onto one label space (see :mod:`attnfer.data.labels`).

>>> from attnfer.data import load_dataset
>>> data = load_dataset("rafdb", "/data/RAF-DB/basic")
>>> data["train"], data["validation"], data["test"], data.class_names, data.counts()
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from .base import DatasetError, DatasetLayoutError, DatasetSplits, FERDataset, SkipLog, carve_validation, read_image
from .labels import BASIC7, CANONICAL, normalize_name

__all__ = [
    "BASIC7",
    "CANONICAL",
    "DATASETS",
    "DatasetError",
    "DatasetLayoutError",
    "DatasetSplits",
    "FERDataset",
    "SkipLog",
    "carve_validation",
    "load_dataset",
    "normalize_name",
    "read_image",
]


def _synthfer(root: str | Path, **kw: Any) -> DatasetSplits:
    """SynthFER: RAF-DB layout plus its subset lists as extra evaluation splits."""
    from .rafdb import load_rafdb
    from .subsets import add_subsets

    data = load_rafdb(root, **kw)
    data.name = "synthfer"
    for ds in data.splits.values():
        ds.name = "synthfer"
    lists = {name: Path(root) / "subsets" / f"{name}_list.txt" for name in ("occlusion", "pose_30", "pose_45")}
    present = {k: v for k, v in lists.items() if v.is_file() and v.read_bytes().strip(b"\xef\xbb\xbf \t\r\n")}
    return add_subsets(data, present)


def _lazy(module: str, func: str) -> Callable[..., DatasetSplits]:
    def load(root: str | Path, **kw: Any) -> DatasetSplits:
        import importlib

        return getattr(importlib.import_module(f"{__name__}.{module}"), func)(root, **kw)

    load.__name__ = func
    return load


DATASETS: dict[str, Callable[..., DatasetSplits]] = {
    "rafdb": _lazy("rafdb", "load_rafdb"),
    "fer2013": _lazy("fer2013", "load_fer2013"),
    "ferplus": _lazy("ferplus", "load_ferplus"),
    "affectnet": _lazy("affectnet", "load_affectnet"),
    "ckplus": _lazy("ckplus", "load_ckplus"),
    "bu3dfe": _lazy("bu3dfe", "load_bu3dfe"),
    "folder": _lazy("folder", "load_folder"),
    "compiled": _lazy("compiled", "load_compiled"),
    "synthfer": _synthfer,
}


def load_dataset(
    name: str, root: str | Path, subsets: dict[str, str | Path] | None = None, **options: Any
) -> DatasetSplits:
    """Load dataset ``name`` from ``root`` in its distributed format.

    A compiled store (``attnfer data compile``) is read whatever ``name`` says. ``subsets`` maps extra
    evaluation-split names to list files (occlusion / pose lists). Options go to the loader (e.g.
    ``label_mode`` for FERPlus, ``num_classes`` for AffectNet, ``fold`` for CK+ and BU-3DFE,
    ``min_intensity`` for BU-3DFE).
    """
    from .compiled import is_compiled, load_compiled

    if name not in DATASETS:
        raise ValueError(f"unknown dataset '{name}'; known: {', '.join(DATASETS)}")
    data = load_compiled(root) if is_compiled(root) else DATASETS[name](root, **options)
    if subsets:
        from .subsets import add_subsets

        add_subsets(data, subsets)
    return data
