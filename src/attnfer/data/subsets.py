"""Challenging-condition evaluation subsets (occlusion, pose > 30, pose > 45).

The RAN authors published list files for RAF-DB and FERPlus test images (spec architectures.md 1(c)): one image
name per line, extra columns ignored (``test_0001_aligned.jpg 3 1``). Names are matched on their stem without
``_aligned`` against the test split's ids. A name that is not in the test split is an error (a list for the
wrong dataset or a wrong root), never silently dropped.
"""

from __future__ import annotations

from pathlib import Path

from ._common import read_lines, require_file
from .base import DatasetError, DatasetSplits

__all__ = ["add_subsets", "read_subset_list"]


def _key(name: str) -> str:
    stem = Path(name.strip()).stem
    return stem[: -len("_aligned")] if stem.endswith("_aligned") else stem


def read_subset_list(path: str | Path) -> list[str]:
    """Image keys of a list file, in order, duplicates removed."""
    path = require_file(Path(path), "a subset list (one image name per line)")
    keys: dict[str, None] = {}
    for _, line in read_lines(path, "one image name per line"):
        if line.split():
            keys[_key(line.split()[0])] = None
    if not keys:
        raise DatasetError(path, "the subset list is empty")
    return list(keys)


def add_subsets(data: DatasetSplits, lists: dict[str, str | Path], source_split: str = "test") -> DatasetSplits:
    """Add one evaluation split per list file, selected from ``source_split`` by image name."""
    test = data[source_split]
    where = {_key(i): n for n, i in enumerate(test.ids)}
    for name, path in lists.items():
        keys = read_subset_list(path)
        missing = [k for k in keys if k not in where]
        if missing:
            raise DatasetError(
                path, f"{len(missing)} of {len(keys)} names are not in {data.name}/{source_split} (e.g. {missing[0]})"
            )
        data.splits[name] = test.subset([where[k] for k in keys], name)
        data.notes.append(f"subset '{name}': {len(keys)} images from {Path(path).name}")
    return data
