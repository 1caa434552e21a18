"""A compact decoded store: every split as one uint8 array on disk, memory-mapped when read.

``attnfer data compile DATASET ROOT OUT`` decodes each image once, resizes it to ``size`` x ``size`` (with the
preprocessing's own resize, :func:`attnfer.preprocess.resize_face`, bilinear and antialiased; build the store at the
model's input size, ``--size`` or ``--model``, and training resizes nothing) and writes
``OUT/<split>.images.npy`` (N, size, size, 3), ``OUT/<split>.targets.npy`` and ``OUT/<split>.ids.json`` (plus
``<split>.soft.npy`` for soft labels), and ``OUT/meta.json`` last, so a half-written store is never mistaken for a
complete one. An epoch then costs no JPEG decoding.

An image that cannot be decoded follows the loader's ``skip_bad`` (``-o skip_bad=true``): with it, the image is left
out of the store and recorded, one line naming the file, in ``meta.json``'s ``skipped`` list (with the lines the loader
itself skipped; each split's ``skipped`` counts its own), which the store's ``skipped`` log reports again when it is
loaded; without it, compiling stops with a one-line :class:`~attnfer.data.base.DatasetError` naming the file, and
nothing is written.
"""

from __future__ import annotations

import json
import os
import shutil
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from ..images import display_name
from ..preprocess import PreprocessConfig, resize_face
from .base import DatasetError, DatasetLayoutError, DatasetSplits, FERDataset, SkipLog

__all__ = ["compile_dataset", "is_compiled", "load_compiled"]

META = "meta.json"


def is_compiled(root: str | Path) -> bool:
    return (Path(root) / META).is_file()


def compile_dataset(data: DatasetSplits, out: str | Path, size: int = 112, workers: int = 2) -> Path:
    """Decode ``data`` into a compiled store at ``out`` (replaced when complete); returns ``out``. Undecodable
    images: see the module's text (``data.skipped`` enabled, the loader's ``skip_bad``: left out and recorded)."""
    out = Path(out)
    stored = PreprocessConfig(input_size=(3, size, size))  # faces stretched to size x size, as the preprocessing does
    tmp = out.with_name(out.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    meta = {
        "format": 1,
        "dataset": data.name,
        "class_names": data.class_names,
        "size": size,
        "validation_source": data.validation_source,
        "notes": data.notes,
        "splits": {},
    }
    try:
        for split, ds in data.splits.items():
            ds, skipped = _compile_split(data, split, ds, tmp, stored, size, workers)
            np.save(tmp / f"{split}.targets.npy", ds.targets)
            if ds.soft_targets is not None:
                np.save(tmp / f"{split}.soft.npy", ds.soft_targets)
            (tmp / f"{split}.ids.json").write_text(json.dumps(ds.ids))
            meta["splits"][split] = {"count": len(ds), "target_mode": ds.target_mode, "skipped": skipped}
        meta["skipped"] = data.skipped.all_entries()
        (tmp / META).write_text(json.dumps(meta, indent=2))
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if out.exists():
        shutil.rmtree(out)
    os.replace(tmp, out)
    return out


def _compile_split(
    data: DatasetSplits, split: str, ds: FERDataset, tmp: Path, stored: PreprocessConfig, size: int, workers: int
) -> tuple[FERDataset, int]:
    """Write ``tmp/<split>.images.npy``; returns the split as stored (undecodable images left out when skipping)
    and how many were left out."""
    n = len(ds)
    path = tmp / f"{split}.images.npy"
    arr = np.lib.format.open_memmap(path, mode="w+", dtype=np.uint8, shape=(n, size, size, 3))
    bad: dict[int, DatasetError] = {}

    def work(i: int, arr: np.ndarray = arr) -> None:
        try:
            arr[i] = resize_face(ds.load_image(i), stored, grayscale=False)  # colour kept: grey is per model
        except DatasetError as e:
            if not data.skipped.enabled:
                raise _undecodable(ds, i, e) from e
            bad[i] = e

    pool = ThreadPoolExecutor(max(1, workers))  # PIL and cv2 release the GIL while decoding
    try:
        list(pool.map(work, range(n)))
    finally:
        pool.shutdown(wait=True, cancel_futures=True)  # the first error stops the images not yet started
    del work  # holds the array too
    arr.flush()
    if not bad:
        del arr
        return ds, 0
    for i in sorted(bad):  # recorded in the split's order whatever order the threads met them in
        data.skipped.handle(bad[i])
    keep = np.array([i for i in range(n) if i not in bad], dtype=np.int64)
    if len(keep) == 0:
        raise DatasetError(data.name, f"split '{split}' is empty: none of its {n} images can be decoded")
    kept_path = tmp / f"{split}.images.kept.npy"
    kept = np.lib.format.open_memmap(kept_path, mode="w+", dtype=np.uint8, shape=(len(keep), size, size, 3))
    for start in range(0, len(keep), 1024):  # in blocks: memory stays flat
        kept[start : start + 1024] = arr[keep[start : start + 1024]]
    kept.flush()
    del arr, kept
    os.replace(kept_path, path)
    return ds.subset(keep), len(bad)


def _undecodable(ds: FERDataset, i: int, e: DatasetError) -> DatasetError:
    """The error that stops compiling at sample ``i``: one line naming the file, and how to skip such images."""
    text = " ".join(str(e).split("\n"))
    if ds.paths is None:
        return DatasetError(f"{ds.name}/{ds.split}", f"sample {i}: {text}")
    path = ds.paths[i]
    text = display_name(text.removeprefix(f"{path}: "))
    hint = "(the loader option skip_bad=true leaves undecodable images out of the store)"
    error = DatasetError(display_name(path), f"{text} {hint}")  # a non-UTF-8 name: its bytes as \xNN
    error.path = path
    return error


def load_compiled(root: str | Path, skip_bad: bool = False) -> DatasetSplits:
    """A compiled store (``skip_bad`` is accepted like the other loaders' and has nothing to skip: the store holds
    decoded pixels). Its ``skipped`` log lists what was left out when it was compiled."""
    root = Path(root)
    meta_path = root / META
    if not meta_path.is_file():
        raise DatasetLayoutError(meta_path, "missing: not a compiled attnfer store (run `attnfer data compile`)")
    meta = json.loads(meta_path.read_text())
    splits = {}
    for split, info in meta["splits"].items():
        images = np.load(root / f"{split}.images.npy", mmap_mode="r")
        if len(images) != info["count"]:
            raise DatasetError(
                root / f"{split}.images.npy", f"has {len(images)} images, meta.json says {info['count']}"
            )
        soft = root / f"{split}.soft.npy"
        splits[split] = FERDataset(
            name=meta["dataset"],
            split=split,
            class_names=meta["class_names"],
            targets=np.load(root / f"{split}.targets.npy"),
            ids=json.loads((root / f"{split}.ids.json").read_text()),
            images=images,
            soft_targets=np.load(soft) if soft.is_file() else None,
            target_mode=info["target_mode"],
        )
    return DatasetSplits(
        meta["dataset"],
        meta["class_names"],
        splits,
        meta["validation_source"],
        SkipLog(entries=list(meta.get("skipped", []))),  # left out when the store was compiled (skip_bad)
        [*meta["notes"], f"compiled store at {meta['size']}x{meta['size']}"],
        stored_size=(meta["size"], meta["size"]),
    )
