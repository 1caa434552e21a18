"""Input-pipeline throughput: images/s of each loader and of the compiled store, with and without augmentation.

Data: a SynthFER set in RAF-DB's layout (JPEG decoding path), the same set compiled to a memory-mapped store,
and a full-size synthetic ``fer2013.csv`` (35,887 rows, in-memory arrays). Each is read through a
torch DataLoader with 2 workers, batch 64, with the PAtt-Lite card's preprocessing (224x224), once plain, once with
the recipe augmentations, and once as the loader's share of augmentation on the device (``data.augment_on: device``:
the uint8 face at its stored size and its drawn parameters, no float work). Then the batched augmentation itself
(``BatchAugment``) on this CPU, images/s, for scale. Also times the parse of all 35,887 FER2013 rows.

    uv run python benchmarks/data_throughput.py [--n 4000] [--out benchmarks/results]
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader


def write_fer2013(path: Path, rows: int = 35_887, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    usage = ["Training"] * 28_709 + ["PublicTest"] * 3_589 + ["PrivateTest"] * 3_589
    with path.open("w") as f:
        f.write("emotion,pixels,Usage\n")
        for i in range(rows):
            px = " ".join(map(str, rng.integers(0, 256, 2304)))
            f.write(f"{int(rng.integers(0, 7))},{px},{usage[i]}\n")


def throughput(ds, batches: int, workers: int = 2, batch_size: int = 64, collate_fn=None) -> float:
    loader = DataLoader(
        ds, batch_size=batch_size, shuffle=True, num_workers=workers, persistent_workers=False, collate_fn=collate_fn
    )
    it = iter(loader)
    next(it)  # start-up (worker spawn) is not counted
    t = time.perf_counter()
    n = 0
    for _ in range(batches):
        try:
            x = next(it)[0]
        except StopIteration:
            break
        n += len(x)
    return n / (time.perf_counter() - t)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=4000, help="SynthFER images")
    ap.add_argument("--batches", type=int, default=20)
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    args = ap.parse_args()
    torch.set_num_threads(1)
    import attnfer
    from attnfer.data import load_dataset
    from attnfer.data.compiled import compile_dataset
    from attnfer.data.fer2013 import load_fer2013
    from attnfer.data.synthfer import generate
    from attnfer.engine.data import SourceTransform, collate_sources
    from attnfer.hardware import describe_machine
    from attnfer.preprocess.augment import BatchAugment, draw_params
    from attnfer.preprocess.torch_ops import Augment, build_transform

    card = attnfer.models.get_model_cfg("patt_lite")
    augment = Augment(rotation=10, random_contrast=0.3, random_erasing=0.25)
    plain = build_transform(card)
    augmented = build_transform(card, train=True, augment=augment)
    results: dict = {"machine": describe_machine(), "workers": 2, "batch": 64}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        csv_path = tmp / "fer2013.csv"
        write_fer2013(csv_path)
        t = time.perf_counter()
        fer = load_fer2013(csv_path)
        results["fer2013_parse_s"] = time.perf_counter() - t
        root = generate(tmp / "synthfer", n=args.n, size=112, workers=2)
        jpeg = load_dataset("synthfer", root)
        t = time.perf_counter()
        store = compile_dataset(jpeg, tmp / "store", size=112, workers=2)
        results["compile_s"] = time.perf_counter() - t
        compiled = load_dataset("synthfer", store)
        rows = []
        for name, data in (("rafdb-layout JPEG", jpeg), ("compiled store", compiled), ("fer2013 csv", fer)):
            ds = data["train"]
            source = SourceTransform(card.preprocess, augment, data.stored_size or card.preprocess.resize_size)
            for label, tf in (("plain", plain), ("augmented", augmented), ("for device", source)):
                ds.transform = tf
                ips = throughput(ds, args.batches, collate_fn=collate_sources if tf is source else None)
                rows.append({"loader": name, "transform": label, "images_per_s": round(ips, 1)})
        results["throughput"] = rows
        batch = torch.randint(0, 256, (64, 3, 112, 112), dtype=torch.uint8)  # the store's faces
        params = torch.stack([draw_params(augment, (112, 112), card.preprocess.size) for _ in range(64)])
        torch.set_num_threads(os.cpu_count() or 1)
        gpu_path = BatchAugment(card.preprocess, augment)
        gpu_path(batch, params)
        t = time.perf_counter()
        for _ in range(5):
            gpu_path(batch, params)
        results["batch_augment_cpu_images_per_s"] = round(5 * 64 / (time.perf_counter() - t), 1)
    print(
        f"FER2013 parse, 35,887 rows: {results['fer2013_parse_s']:.2f} s;  compile {args.n} JPEGs: "
        f"{results['compile_s']:.1f} s"
    )
    print(f"{'loader':<22}{'transform':<12}{'images/s':>10}")
    for r in rows:
        print(f"{r['loader']:<22}{r['transform']:<12}{r['images_per_s']:>10.0f}")
    m = results["machine"]
    print(
        f"BatchAugment on this CPU ({m['threads']} threads): {results['batch_augment_cpu_images_per_s']:.0f} images/s"
    )
    print(f"{m['cpu']}, {m['cores']} cores; flags: {', '.join(m['cpu_flags'])}")
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "data_throughput.json").write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
