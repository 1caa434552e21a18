"""A compact decoded store: every split as one uint8 array on disk, memory-mapped when read.

``attnfer data compile DATASET ROOT OUT`` decodes each image once, resizes it to ``size`` x ``size`` (with the
preprocessing's own resize, :func:`attnfer.preprocess.resize_face`, bilinear and antialiased; build the store at the
model's input size, ``--size`` or ``--model``, and training resizes nothing) and writes
``OUT/<split>.images.npy`` (N, size, size, 3), ``OUT/<split>.targets.npy`` and ``OUT/<split>.ids.json`` (plus
``<split>.soft.npy`` for soft labels), and ``OUT/meta.json`` last, so a half-written store is never mistaken for a
complete one. An epoch then costs no JPEG decoding.
"""

from __future__ import annotations

import json
import os
import shutil
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from ..preprocess import PreprocessConfig, resize_face
from .base import DatasetError, DatasetSplits, FERDataset, SkipLog

__all__ = ["compile_dataset", "is_compiled", "load_compiled"]

META = "meta.json"


def is_compiled(root: str | Path) -> bool:
    return (Path(root) / META).is_file()


def compile_dataset(data: DatasetSplits, out: str | Path, size: int = 112, workers: int = 2) -> Path:
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
    for split, ds in data.splits.items():
        arr = np.lib.format.open_memmap(
            tmp / f"{split}.images.npy", mode="w+", dtype=np.uint8, shape=(len(ds), size, size, 3)
        )

        def work(i: int, ds: FERDataset = ds, arr: np.ndarray = arr) -> None:
            arr[i] = resize_face(ds.load_image(i), stored, grayscale=False)  # colour kept: grey is per model

        with ThreadPoolExecutor(max(1, workers)) as pool:  # PIL and cv2 release the GIL while decoding
            list(pool.map(work, range(len(ds))))
        arr.flush()
        del arr
        np.save(tmp / f"{split}.targets.npy", ds.targets)
        if ds.soft_targets is not None:
            np.save(tmp / f"{split}.soft.npy", ds.soft_targets)
        (tmp / f"{split}.ids.json").write_text(json.dumps(ds.ids))
        meta["splits"][split] = {"count": len(ds), "target_mode": ds.target_mode}
    (tmp / META).write_text(json.dumps(meta, indent=2))
    if out.exists():
        shutil.rmtree(out)
    os.replace(tmp, out)
    return out


def load_compiled(root: str | Path) -> DatasetSplits:
    root = Path(root)
    meta_path = root / META
    if not meta_path.is_file():
        raise DatasetError(meta_path, "missing: not a compiled attnfer store (run `attnfer data compile`)")
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
        SkipLog(),
        [*meta["notes"], f"compiled store at {meta['size']}x{meta['size']}"],
        stored_size=(meta["size"], meta["size"]),
    )
