"""Class folders (ImageFolder-style) with an explicit class-name list.

``root/<split>/<class folder>/*.jpg`` with split folders named ``train``, ``val``/``valid``/``validation``
and ``test`` (or no split level: everything is train). Folder names are mapped to expression names by
``class_names``: either a list aligned with the sorted folder names, or a dict {folder: expression}.
Folder names that already are expression names ("happy", "Surprise") need no mapping.

Common RAF-DB repacks this reads:

* Kaggle "RAF-DB DATASET": ``train/1..7``, ``test/1..7`` in RAF-DB's order -> ``class_names="rafdb"``;
* EfficientFace / MA-Net: ``train/0..6``, ``test/0..6`` in AffectNet order (0 neutral ... 6 anger)
  -> ``class_names="affectnet"``;
* EMO-Net's README layout: ``train/0..6``, ``test/0..6`` in RAF-DB's order minus one (0 surprise, 1 fear,
  2 disgust, 3 happiness, 4 sadness, 5 anger, 6 neutral) -> ``class_names="emonet_rafdb"``. Both 0..6 layouts
  look alike on disk; only the preset says which order the folders are in, and the two map folder ``0`` to
  different classes (neutral vs surprise);
* POSTER: ``train/`` and ``valid/`` with named class folders.
"""

from __future__ import annotations

from pathlib import Path

from ._common import IMAGE_SUFFIXES, finish, require_dir
from .base import DatasetError, DatasetLayoutError, DatasetSplits, FERDataset, SkipLog
from .labels import AFFECTNET_CODES, CANONICAL, RAFDB_CODES, normalize_name

__all__ = ["PRESETS", "load_folder"]

PRESETS = {
    "rafdb": {str(k): v for k, v in RAFDB_CODES.items()},
    "affectnet": {str(k): v for k, v in AFFECTNET_CODES.items()},
    "emonet_rafdb": {str(k - 1): v for k, v in RAFDB_CODES.items()},
}
_SPLIT_NAMES = {
    "train": "train",
    "val": "validation",
    "valid": "validation",
    "validation": "validation",
    "test": "test",
}


def load_folder(
    root: str | Path,
    class_names: list[str] | dict[str, str] | str | None = None,
    val_fraction: float = 0.1,
    seed: int = 0,
    skip_bad: bool = False,
) -> DatasetSplits:
    """``skip_bad``: an image that cannot be decoded when it is used is skipped and recorded (see
    :class:`~attnfer.data.base.FERDataset`); the folder tree itself has no label lines to skip."""
    root = require_dir(Path(root), "a folder of class folders")
    split_dirs = {
        _SPLIT_NAMES[p.name.lower()]: p for p in root.iterdir() if p.is_dir() and p.name.lower() in _SPLIT_NAMES
    }
    if "train" not in split_dirs or "test" not in split_dirs:
        raise DatasetLayoutError(root, "expected split folders train/ and test/ (and optionally val/) of class folders")
    folders = sorted({c.name for d in split_dirs.values() for c in d.iterdir() if c.is_dir()})
    if not folders:
        raise DatasetError(root, "no class folders found")
    if isinstance(class_names, str):
        if class_names not in PRESETS:
            raise ValueError(f"class_names preset must be one of {list(PRESETS)}, got {class_names!r}")
        mapping = PRESETS[class_names]
    elif isinstance(class_names, dict):
        mapping = dict(class_names)
    elif class_names is not None:
        if len(class_names) != len(folders):
            raise DatasetError(root, f"{len(class_names)} class names for {len(folders)} folders {folders}")
        mapping = dict(zip(folders, class_names, strict=True))
    else:
        mapping = {f: f for f in folders}
    try:
        mapping = {f: normalize_name(mapping[f]) for f in folders}
    except KeyError as e:
        raise DatasetError(root / str(e.args[0]), "class folder has no entry in class_names") from None
    except ValueError as e:
        raise DatasetError(root, f"{e}; pass class_names to map the folder names") from None
    names = tuple(c for c in CANONICAL if c in mapping.values())
    splits = {}
    for split, d in split_dirs.items():
        ids, paths, targets = [], [], []
        for folder in folders:
            for p in sorted((d / folder).glob("*")) if (d / folder).is_dir() else []:
                if p.suffix.lower() in IMAGE_SUFFIXES:
                    ids.append(p.stem)
                    paths.append(p)
                    targets.append(names.index(mapping[folder]))
        splits[split] = FERDataset(name="folder", split=split, class_names=names, targets=targets, ids=ids, paths=paths)
    return finish("folder", names, splits, val_fraction=val_fraction, seed=seed, skipped=SkipLog.of(skip_bad))
