"""Training throughput per model: the real data path vs pre-made tensors (the compute-only ceiling).

For each model, at its recipe's input size, time optimizer steps (forward, backward, update) fed by
(a) a DataLoader over SynthFER in RAF-DB layout (JPEG decode, resize, flip, normalise; in-process on a 2-core
CPU, 2 workers otherwise),
(b) the same over the compiled uint8 store, and (c) one pre-made tensor batch reused every step.
Prints images/s and the ratio data/compute (the data path must not be the bottleneck: >= 0.9), in fp32 and in the
precision ``auto`` picks on this machine (attnfer.hardware: bf16 only with native BF16 or on a GPU) side by side, with
the CPU's model and flags (AVX2 / AVX-512 / BF16 / VNNI / AMX). channels_last throughout.

    uv run python benchmarks/train_throughput.py [--models patt_lite emonet sa_fer feratt] [--steps 12]
    ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2 ATTNFER_CPU_CAPS=avx2 uv run python benchmarks/train_throughput.py
        # an AVX2 CPU without BF16, measured on a newer one
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader

BATCH = {"patt_lite": 32, "emonet": 32, "sa_fer": 32, "feratt": 8}


def step_rate(model, batches, steps: int, device: str, bf16: bool) -> float:
    """Training images/s over ``steps`` optimizer steps after two warm-up steps."""
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    model.train()
    it = iter(batches)
    n, t = 0, None
    for s in range(steps + 2):
        x, y = next(it)[:2]
        x = x.to(device, non_blocking=True).contiguous(memory_format=torch.channels_last)
        y = y.to(device)
        with torch.autocast(device, dtype=torch.bfloat16, enabled=bf16):
            loss = F.cross_entropy(model(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if device == "cuda":
            torch.cuda.synchronize()
        if s == 1:  # two warm-up steps
            t = time.perf_counter()
        elif s > 1:
            n += len(x)
    return n / (time.perf_counter() - t)


def repeat(batch):
    while True:
        yield batch


def cycle(loader):
    while True:
        yield from loader


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", nargs="+", default=["patt_lite", "emonet", "sa_fer", "feratt"])
    ap.add_argument("--steps", type=int, default=12)
    ap.add_argument(
        "--workers",
        type=int,
        default=None,
        help="DataLoader workers (default: 0 on a CPU-only machine with <= 2 cores, where worker processes would "
        "compete with the compute threads; else 2)",
    )
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    args = ap.parse_args()
    if args.workers is None:
        args.workers = 0 if not torch.cuda.is_available() and (os.cpu_count() or 1) <= 2 else 2
    import attnfer
    from attnfer.data import load_dataset
    from attnfer.data.compiled import compile_dataset
    from attnfer.data.synthfer import generate
    from attnfer.engine.data import SeededAugmentation
    from attnfer.hardware import describe_machine, resolve_precision
    from attnfer.preprocess.torch_ops import Augment, build_transform

    device = "cuda" if torch.cuda.is_available() else "cpu"
    auto = resolve_precision("auto", device)
    machine = describe_machine()
    precisions = {"fp32": False, f"auto ({auto})": auto.startswith("bf16")}
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        root = generate(Path(tmp) / "synthfer", n=2000, size=112, workers=2)
        jpeg = load_dataset("synthfer", root)
        store = load_dataset("synthfer", compile_dataset(jpeg, Path(tmp) / "store", size=112))
        for name in args.models:
            model = (
                attnfer.create_model(name, freeze_backbone=False) if name == "patt_lite" else attnfer.create_model(name)
            )
            model = model.to(device).to(memory_format=torch.channels_last)
            card = model.cfg
            bs = BATCH.get(name, 32)
            tf = build_transform(card, train=True, augment=Augment(hflip=0.5))
            x = torch.randn(bs, *card.input_size)
            y = torch.randint(0, 7, (bs,))
            result = {"model": name, "input": card.input_size[-1], "batch": bs}
            for label, bf16 in precisions.items():
                result[f"compute_{label.split()[0]}"] = round(
                    step_rate(model, repeat((x, y)), args.steps, device, bf16), 1
                )
            compute = result["compute_auto"]
            bf16 = precisions[f"auto ({auto})"]
            for label, data in (("jpeg", jpeg), ("compiled", store)):
                ds = data["train"].subset(range(len(data["train"])))
                ds.transform = tf
                loader = DataLoader(
                    SeededAugmentation(ds, 0),
                    batch_size=bs,
                    shuffle=True,
                    num_workers=args.workers,
                    persistent_workers=args.workers > 0,
                    drop_last=True,
                    pin_memory=device == "cuda",
                )
                rate = step_rate(model, cycle(loader), args.steps, device, bf16)
                result[label] = round(rate, 1)
                result[f"{label}_ratio"] = round(rate / compute, 3)
            rows.append(result)
            print(json.dumps(result), flush=True)
    where = machine.get("gpu") or f"{machine['cpu']} ({machine['cores']} cores)"
    print(f"\n{where}, {device}; CPU flags: {', '.join(machine['cpu_flags']) or 'none of note'}")
    print(f"precision auto = {auto}; channels_last, {args.workers} workers; data paths in precision auto")
    header = ("model", "input", "batch", "fp32 img/s", "auto img/s", "jpeg img/s", "ratio", "store img/s", "ratio")
    widths = (10, 6, 6, 12, 12, 12, 7, 13, 7)
    print("".join(f"{h:<{w}}" if i == 0 else f"{h:>{w}}" for i, (h, w) in enumerate(zip(header, widths, strict=True))))
    for r in rows:
        print(
            f"{r['model']:<10}{r['input']:>6}{r['batch']:>6}{r['compute_fp32']:>12.1f}{r['compute_auto']:>12.1f}"
            f"{r['jpeg']:>12.1f}{r['jpeg_ratio']:>7.2f}{r['compiled']:>13.1f}{r['compiled_ratio']:>7.2f}"
        )
    args.out.mkdir(parents=True, exist_ok=True)
    tag = "avx2proxy" if machine["capabilities_source"] != "detected" else machine["isa"].lower().replace("-", "")
    out = args.out / f"train_throughput_{device}_{tag}.json"
    record = {"machine": machine, "device": device, "precision_auto": auto, "rows": rows}
    out.write_text(json.dumps(record, indent=2) + "\n")


if __name__ == "__main__":
    main()
