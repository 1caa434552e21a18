"""The batched augmentation alone on a device: images/s per recipe augmentation, and no host-device synchronisation.

For each recipe's augmentation (and all of them at once) at batch 256 and 224 px: the uint8 batch already on the
device, its parameters drawn on the host as the loader draws them, ``BatchAugment`` timed over 20 calls after 3
warm-up calls. On CUDA every call runs under ``torch.cuda.set_sync_debug_mode("error")``: an operation that makes
the host wait for the GPU (a ``.item()``, a tensor made from a Python list on the device, a blocking copy) fails the
row instead of silently costing throughput.

    python benchmarks/augment_batch.py [--device cuda] [--batch 256] [--out DIR]   # writes augment_batch_<dev>.json
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

AUGMENTS = {
    "patt_lite (flip, random contrast)": {"hflip": 0.5, "random_contrast": 0.3},
    "emonet (flip, random resized crop)": {"hflip": 0.5, "resized_crop_scale": (0.08, 1.0)},
    "sa_fer phase 2 (flip, rotation, colour jitter)": {
        "hflip": 0.5,
        "rotation": 10,
        "color_jitter": (0.2, 0.2, 0.2, 0.1),
    },
    "all at once": {
        "hflip": 0.5,
        "rotation": 20,
        "color_jitter": (0.4, 0.4, 0.4, 0.2),
        "random_contrast": 0.3,
        "random_erasing": 0.5,
        "resized_crop_scale": (0.08, 1.0),
    },
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--calls", type=int, default=20)
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    args = ap.parse_args()
    from attnfer.hardware import describe_machine
    from attnfer.models import get_model_cfg
    from attnfer.preprocess.augment import Augment, BatchAugment, draw_params

    dev = torch.device(args.device)
    cuda = dev.type == "cuda"
    cfg = get_model_cfg("patt_lite").preprocess  # 224 px, bilinear
    x = torch.randint(0, 256, (args.batch, 3, 224, 224), dtype=torch.uint8, device=dev)
    rows = []
    for name, kw in AUGMENTS.items():
        augment = Augment(**kw)
        params = [torch.stack([draw_params(augment, (224, 224), cfg.size) for _ in range(args.batch)])]
        params += [params[0][torch.randperm(args.batch)] for _ in range(3)]  # a few different batches
        run = BatchAugment(cfg, augment, memory_format=torch.channels_last)
        row: dict = {"augment": name}
        try:
            for k in range(3):
                run(x, params[k % len(params)])
            if cuda:
                torch.cuda.synchronize()
                torch.cuda.set_sync_debug_mode("error")
            t = time.perf_counter()
            for k in range(args.calls):
                out = run(x, params[k % len(params)])
            if cuda:
                torch.cuda.set_sync_debug_mode("default")
                torch.cuda.synchronize()
            seconds = time.perf_counter() - t
            row.update(images_per_s=round(args.calls * args.batch / seconds, 1), shape=list(out.shape), syncs="none")
        except RuntimeError as e:  # a synchronisation under debug mode "error"
            if cuda:
                torch.cuda.set_sync_debug_mode("default")
            row.update(error=str(e).splitlines()[0][:300])
        rows.append(row)
        print(json.dumps(row), flush=True)
    args.out.mkdir(parents=True, exist_ok=True)
    record = {"machine": describe_machine(), "device": str(dev), "batch": args.batch, "rows": rows}
    (args.out / f"augment_batch_{dev.type}.json").write_text(json.dumps(record, indent=2) + "\n")


if __name__ == "__main__":
    main()
