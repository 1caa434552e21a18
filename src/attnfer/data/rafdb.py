"""RAF-DB (basic): ``EmoLabel/list_patition_label.txt`` + ``Image/aligned`` or ``Image/original``.

Label file: one line per image, ``<name> <label 1-7>`` separated by any whitespace (extra columns ignored);
the split comes from the name prefix (``train_`` / ``test_``). Aligned files add ``_aligned`` to the stem:
``train_00001.jpg`` -> ``Image/aligned/train_00001_aligned.jpg``. 12,271 train and 3,068 test images.
RAF-DB has no validation split: one is carved from train (stratified, seeded) and recorded.

The file is read as UTF-8; a UTF-8 byte-order mark (a list re-saved by Excel or Notepad) is dropped. A label must
be a whole number: ``3`` or ``3.0`` (a spreadsheet's export) is 3; ``3.7`` is an error naming the file and line,
never truncated to a class. With ``skip_bad=True`` a bad line or a missing image is recorded and left out (and
an image that cannot be decoded when used is skipped, see :class:`~attnfer.data.base.FERDataset`).
"""

from __future__ import annotations

from pathlib import Path

from ._common import finish, parse_int, quote, read_lines, require_dir, require_file
from .base import DatasetError, DatasetLayoutError, DatasetSplits, FERDataset, SkipLog
from .labels import BASIC7, RAFDB_CODES

__all__ = ["load_rafdb"]


def _basic_root(root: Path) -> Path:
    for cand in (root, root / "basic"):
        if (cand / "EmoLabel").is_dir():
            return cand
    raise DatasetLayoutError(root, "not a RAF-DB root: expected EmoLabel/list_patition_label.txt here or under basic/")


def load_rafdb(
    root: str | Path,
    aligned: bool = True,
    val_fraction: float = 0.1,
    seed: int = 0,
    skip_bad: bool = False,
    check_files: bool = True,
) -> DatasetSplits:
    root = _basic_root(Path(root))
    label_file = require_file(root / "EmoLabel" / "list_patition_label.txt", "RAF-DB's label list")
    image_dir = require_dir(root / "Image" / ("aligned" if aligned else "original"), "RAF-DB images")
    index = {name: i for i, name in enumerate(BASIC7)}
    skipped = SkipLog.of(skip_bad)
    rows: dict[str, tuple[list, list, list]] = {"train": ([], [], []), "test": ([], [], [])}
    expected = "'<image name> <label 1-7>' lines"
    for lineno, line in read_lines(label_file, expected, skipped):
        parts = line.split()
        if not parts:
            continue
        try:
            if len(parts) < 2:
                raise DatasetError(label_file, f"expected '<image name> <label 1-7>', got {quote(line)}", lineno)
            name, code = parts[0], parse_int(parts[1], label_file, lineno, "label")
            if code not in RAFDB_CODES:
                raise DatasetError(label_file, f"label {code} for {quote(name)} is not a RAF-DB code 1-7", lineno)
            split = "train" if name.startswith("train_") else "test" if name.startswith("test_") else None
            if split is None:
                raise DatasetError(label_file, f"{quote(name)} starts with neither train_ nor test_", lineno)
            stem = Path(name).stem
            path = image_dir / (f"{stem}_aligned{Path(name).suffix}" if aligned else name)
            if check_files and not path.is_file():
                raise DatasetError(path, f"image listed at {label_file.name}:{lineno} is missing")
        except DatasetError as e:
            skipped.handle(e)
            continue
        ids, paths, targets = rows[split]
        ids.append(stem)
        paths.append(path)
        targets.append(index[RAFDB_CODES[code]])
    splits = {
        s: FERDataset(name="rafdb", split=s, class_names=BASIC7, targets=t, ids=i, paths=p)
        for s, (i, p, t) in rows.items()
    }
    return finish("rafdb", BASIC7, splits, val_fraction=val_fraction, seed=seed, skipped=skipped)
