"""AffectNet, in its two distributed layouts.

1. Original release: ``Manually_Annotated_file_lists/training.csv`` and ``validation.csv`` with columns
   ``subDirectory_filePath, face_x, face_y, face_width, face_height, facial_landmarks, expression, valence,
   arousal``; images under ``Manually_Annotated_Images/<subDirectory_filePath>``, cropped by the face box.
2. Newer release: ``train_set/images/<id>.jpg`` + ``train_set/annotations/<id>_exp.npy`` (and ``val_set``);
   images are pre-cropped.

Expression codes 0-7 start at Neutral (labels.py); 8-10 (none, uncertain, no-face) are dropped and counted.
``num_classes=7`` (AN7) also drops contempt. The official validation set is the test set (balanced, 500 per
class); a validation split is carved from train. Training is usually class-balanced: see
``attnfer.data.sampling.balanced_sampler``.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np

from ._common import csv_rows, finish, parse_int, read_lines, require_dir, require_file
from .base import DatasetError, DatasetLayoutError, DatasetSplits, FERDataset, SkipLog
from .labels import AFFECTNET_CODES, AFFECTNET_DROPPED, CANONICAL

__all__ = ["load_affectnet"]

_COLUMNS = [
    "subDirectory_filePath",
    "face_x",
    "face_y",
    "face_width",
    "face_height",
    "facial_landmarks",
    "expression",
    "valence",
    "arousal",
]


def _code_to_target(code: int, class_names: tuple[str, ...], where: Path, line: int | None, dropped: Counter):
    if code in AFFECTNET_DROPPED:
        dropped[f"expression {code} ({AFFECTNET_DROPPED[code]})"] += 1
        return None
    if code not in AFFECTNET_CODES:
        raise DatasetError(where, f"expression {code} is not an AffectNet code 0-10", line)
    name = AFFECTNET_CODES[code]
    if name not in class_names:
        dropped[f"expression {code} ({name}, not in the {len(class_names)}-class variant)"] += 1
        return None
    return class_names.index(name)


def load_affectnet(
    root: str | Path, num_classes: int = 8, val_fraction: float = 0.1, seed: int = 0, skip_bad: bool = False
) -> DatasetSplits:
    if num_classes not in (7, 8):
        raise ValueError(f"AffectNet variants have 7 or 8 classes, got {num_classes}")
    root = Path(root)
    class_names = CANONICAL[:num_classes]
    dropped: Counter = Counter()
    skipped = SkipLog.of(skip_bad)
    splits = {}
    if (root / "Manually_Annotated_file_lists").is_dir():
        image_root = require_dir(root / "Manually_Annotated_Images", "AffectNet's Manually_Annotated_Images")
        for split, fname in (("train", "training.csv"), ("test", "validation.csv")):
            path = require_file(root / "Manually_Annotated_file_lists" / fname, f"AffectNet {fname}")
            ids, paths, boxes, targets = [], [], [], []
            lines = read_lines(path, f"the CSV {','.join(_COLUMNS)}", skipped)
            reader = csv_rows(lines)
            header = next(reader, (1, []))[1]
            if [h.strip() for h in header[:7]] != _COLUMNS[:7]:
                raise DatasetError(path, f"header must start with {','.join(_COLUMNS[:7])}, got {header[:7]}", 1)
            for lineno, row in reader:
                if not row:
                    continue
                try:
                    if len(row) < 7:
                        raise DatasetError(path, f"expected {len(_COLUMNS)} columns, got {len(row)}", lineno)
                    code = parse_int(row[6], path, lineno, "expression")
                    t = _code_to_target(code, class_names, path, lineno, dropped)
                    if t is None:
                        continue
                    box = [parse_int(v, path, lineno, c) for v, c in zip(row[1:5], _COLUMNS[1:5], strict=True)]
                    if box[2] <= 0 or box[3] <= 0:
                        raise DatasetError(path, f"face box {box} has no area", lineno)
                    img = image_root / row[0].strip()
                    if not img.is_file():
                        raise DatasetError(img, f"image listed at {path.name}:{lineno} is missing")
                except DatasetError as e:
                    skipped.handle(e)
                    continue
                ids.append(Path(row[0]).stem)
                paths.append(img)
                boxes.append(box)
                targets.append(t)
            splits[split] = FERDataset(
                name="affectnet",
                split=split,
                class_names=class_names,
                targets=targets,
                ids=ids,
                paths=paths,
                boxes=np.asarray(boxes, dtype=np.int64).reshape(-1, 4),
            )
    elif (root / "train_set").is_dir():
        for split, folder in (("train", "train_set"), ("test", "val_set")):
            image_dir = require_dir(root / folder / "images", f"AffectNet {folder}/images")
            ann_dir = require_dir(root / folder / "annotations", f"AffectNet {folder}/annotations")
            ids, paths, targets = [], [], []
            for img in sorted(p for p in image_dir.iterdir() if p.suffix.lower() in (".jpg", ".jpeg", ".png")):
                ann = ann_dir / f"{img.stem}_exp.npy"
                try:
                    if not ann.is_file():
                        raise DatasetError(ann, f"missing: expected the expression of {img.name}")
                    try:
                        code = int(np.load(ann, allow_pickle=False).reshape(-1)[0])
                    except (ValueError, OSError, IndexError) as e:
                        raise DatasetError(ann, f"not a .npy holding one expression code ({e})") from e
                    t = _code_to_target(code, class_names, ann, None, dropped)
                except DatasetError as e:
                    skipped.handle(e)
                    continue
                if t is None:
                    continue
                ids.append(img.stem)
                paths.append(img)
                targets.append(t)
            splits[split] = FERDataset(
                name="affectnet", split=split, class_names=class_names, targets=targets, ids=ids, paths=paths
            )
    else:
        raise DatasetLayoutError(root, "not an AffectNet root: expected Manually_Annotated_file_lists/ or train_set/")
    notes = [f"dropped {n}: {why}" for why, n in sorted(dropped.items())]
    return finish("affectnet", class_names, splits, val_fraction=val_fraction, seed=seed, skipped=skipped, notes=notes)
