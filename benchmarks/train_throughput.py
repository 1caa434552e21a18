"""Training throughput per model: the real data path vs pre-made tensors (the compute-only ceiling).

Two modes.

**CPU table** (the default on a machine without CUDA; the README's figures): for each model, at its recipe's input
size, time optimizer steps (forward, backward, update) fed by (a) a DataLoader over SynthFER in RAF-DB layout (JPEG
decode, resize, flip, normalise; in-process on a 2-core CPU, 2 workers otherwise), (b) the same over the compiled
uint8 store, and (c) one pre-made tensor batch reused every step. Prints images/s and the ratio data/compute (the
data path must not be the bottleneck: >= 0.9), in fp32 and in the precision ``auto`` picks on this machine
(attnfer.hardware: bf16 only with native BF16 or on a GPU) side by side, with the CPU's model and flags (AVX2 /
AVX-512 / BF16 / VNNI / AMX). channels_last throughout. Cross-entropy on the logits. Writes
``benchmarks/results/train_throughput_cpu_<isa>.json``.

    uv run python benchmarks/train_throughput.py [--models patt_lite emonet sa_fer feratt] [--steps 12]
    ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2 ATTNFER_CPU_CAPS=avx2 uv run python benchmarks/train_throughput.py
        # an AVX2 CPU without BF16, measured on a newer one

**Device suite** (the default on CUDA; on the CPU with an explicit ``--device cpu``, small settings for testing): per
model and batch size (``--batches 64 256``), three rows of optimizer steps, each with its own peak of
``torch.cuda.max_memory_allocated()`` (reset between rows):

* ``compute``: synthetic tensors already on the device (the ceiling);
* ``jpeg``: SynthFER's image files through the REAL training loader, ``FERDataModule.train_dataloader()`` of the
  model's recipe (batch size and dataset overridden), with the loader settings the machine chooses
  (:func:`attnfer.hardware.loader_settings`: on a 16-core GPU machine 15 workers, pinned memory, persistent workers,
  4 batches prefetched per worker) and the recipe's augmentation where the recipe puts it (``data.augment_on:
  auto``: on the device on CUDA, so the uint8 batch is moved with Lightning's own ``move_data_to_device``
  (``non_blocking=True`` from pinned memory) and ``dm.on_after_batch_transfer(batch, 0)`` augments and normalises it
  there, as Lightning calls it); for FERAtt this row is its composited training data (``data.compositing``, which
  stays on the CPU: faces pasted on procedural backgrounds, with the attention target ``x_org``);
* ``store``: the same over the compiled uint8 store at the model's input size (224; FERAtt has no such row: its
  compositing needs the image files and their masks).

The models: ``patt_lite`` (trunk trainable, ``freeze_backbone=False`` as in the CPU table; note that the recipe's
phase 2 keeps the trunk's BatchNorm statistics frozen: ``benchmarks/epoch_time.py`` measures that phase exactly),
``patt_lite_frozen`` (the default, phase 1), ``emonet``, ``sa_fer`` and ``feratt``, each with its recipe's
constructor options (``pretrained: false``). The augmentation is the recipe's (SA-FER's: its augmented second phase,
rotation and colour jitter). The loss is the engine's: ``model.forward_train`` + ``model.loss`` (FERAtt: CE +
attention reconstruction + Gaussian representation loss; the others cross-entropy), under ``torch.autocast`` in the
precision ``auto`` resolves (bf16-mixed on a BF16 GPU), AdamW over the trainable parameters, model and inputs in
channels_last. Warm-up steps are excluded: ``--warmup`` for compute (default 3), and for the loader rows at least
one batch per worker plus two (the workers' first batches arrive together), timed over at least 6 batches per
worker (``--data-rounds``), so bursts of ready batches do not inflate the figure; ``torch.cuda.synchronize()`` before
every clock read. ``ratio`` = data-path images/s over compute images/s of the same model and batch. cuDNN's
benchmark mode is left as Lightning leaves it (off). ``--compile`` (or ``--paths ... compile``) adds torch.compile of
the compute-only step (``torch.compile(model.forward_train)``, what ``trainer.compile: true`` does): the compile time
(``compile_s``: the first step, compilation of forward and backward included), the steady-state images/s
(``compiled``) and the speedup over eager (``compute``, else ``compile_eager`` measured in the same process). Writes
``train_throughput_cuda.json`` on CUDA (``train_throughput_cpu_loader.json`` on the CPU), with
:func:`attnfer.hardware.describe_machine` (GPU name included), the torch/CUDA versions and the loader settings; each
row is written as soon as it is measured, and ``--append`` merges rows into an existing file (the GPU suite runs
one process per group of rows).

    python benchmarks/train_throughput.py --device cuda --data-dir /tmp/attnfer_gpu_data [--models patt_lite emonet]
        [--batches 64 256] [--paths compute store jpeg] [--compile] [--append] [--out DIR]
    uv run python benchmarks/train_throughput.py --device cpu --batches 8 --steps 3 --models emonet   # a test
    python benchmarks/train_throughput.py --prepare-only --data-dir DIR [--n 15339]   # SynthFER + store, cached

SynthFER: ``--n`` images (default 15,339: RAF-DB's 12,271 train + 3,068 test with ``test_fraction=0.2``; 10% of
train is carved as validation) generated at ``--synth-size`` (112: RAF-DB's aligned faces are 100x100; the loader
stretches them to 224), compiled to a 224 store; kept in ``--data-dir`` between runs (a temporary folder otherwise).
On 2 CPU cores SynthFER is generated at about 127 images/s per core at 112 px (45 at 224) and compiled to 224 at
about 340 images/s per thread.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import tempfile
import time
import traceback
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader

BATCH = {"patt_lite": 32, "emonet": 32, "sa_fer": 32, "feratt": 8}
#: model variant -> (registered model, recipe in attnfer/configs, constructor overrides)
VARIANTS: dict[str, tuple[str, str, dict[str, Any]]] = {
    "patt_lite": ("patt_lite", "patt_lite_rafdb.yaml", {"freeze_backbone": False}),
    "patt_lite_frozen": ("patt_lite", "patt_lite_rafdb.yaml", {}),
    "emonet": ("emonet", "emonet_rafdb.yaml", {}),
    "sa_fer": ("sa_fer", "sa_fer_rafdb.yaml", {}),
    "feratt": ("feratt", "feratt_ckplus.yaml", {}),
}
RAFDB_N = 15_339  # RAF-DB basic: 12,271 train + 3,068 test
STORE_SIZE = 224


# ------------------------------------------------------------------------------------------------
# the CPU table (README figures)
# ------------------------------------------------------------------------------------------------
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


def cpu_table(args: argparse.Namespace) -> None:
    if args.workers is None:
        args.workers = 0 if not torch.cuda.is_available() and (os.cpu_count() or 1) <= 2 else 2
    args.steps = args.steps or 12
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


# ------------------------------------------------------------------------------------------------
# SynthFER of RAF-DB's size and its compiled store (shared with benchmarks/epoch_time.py)
# ------------------------------------------------------------------------------------------------
def prepare_data(
    data_dir: str | Path,
    n: int = RAFDB_N,
    synth_size: int = 112,
    store_sizes: tuple[int, ...] = (STORE_SIZE,),
    workers: int | None = None,
    val_fraction: float = 0.1,
) -> dict[str, Any]:
    """SynthFER (``n`` images, RAF-DB layout, ``test_fraction=0.2``) and its compiled stores under ``data_dir``,
    made once and reused (a folder is complete when its marker file is there). Returns the paths, the split counts
    and how long each part took (0 when reused)."""
    from attnfer.data import load_dataset
    from attnfer.data.compiled import compile_dataset, is_compiled
    from attnfer.data.synthfer import generate

    workers = workers or max(1, os.cpu_count() or 1)
    data_dir = Path(data_dir)
    data_dir.mkdir(parents=True, exist_ok=True)
    tree = data_dir / f"synthfer-n{n}-s{synth_size}"
    info: dict[str, Any] = {"n": n, "synth_size": synth_size, "tree": str(tree), "stores": {}, "seconds": {}}
    t = time.perf_counter()
    if not (tree / "synthfer.json").is_file():
        generate(tree, n=n, size=synth_size, test_fraction=0.2, workers=workers)
        info["seconds"]["generate"] = round(time.perf_counter() - t, 1)
    data = None
    for size in store_sizes:
        store = data_dir / f"store-n{n}-s{synth_size}-{size}"
        info["stores"][str(size)] = str(store)
        if not is_compiled(store):
            t = time.perf_counter()
            data = data or load_dataset("synthfer", tree, val_fraction=val_fraction)
            compile_dataset(data, store, size=size, workers=workers)
            info["seconds"][f"compile_{size}"] = round(time.perf_counter() - t, 1)
    counts = (
        json.loads((Path(info["stores"][str(store_sizes[0])]) / "meta.json").read_text())["splits"]
        if store_sizes
        else {}
    )
    info["counts"] = {split: v["count"] for split, v in counts.items()}
    return info


# ------------------------------------------------------------------------------------------------
# the device suite
# ------------------------------------------------------------------------------------------------
def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _write_json(path: Path, record: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(record, indent=2) + "\n")
    os.replace(tmp, path)


def recipe_config(variant: str, batch: int, root: str, augment_on: str):
    """The model's recipe with the benchmark's dataset, batch size and ``pretrained: false``."""
    from importlib.resources import as_file, files

    from attnfer.engine.config import load_config

    _, recipe, _ = VARIANTS[variant]
    overrides: dict[str, Any] = {
        "data.name": "synthfer",
        "data.root": root,
        "data.options": {},  # e.g. CK+'s folds, EMO-Net's non-aligned images: SynthFER has aligned faces only
        "data.subsets": {},
        "data.batch_size": batch,
        "model.pretrained": False,
    }
    with as_file(files("attnfer") / "configs" / recipe) as path:
        cfg = load_config(path, overrides)
    if augment_on != "auto" and not cfg.data.compositing:  # composited data is CPU-only (the schema refuses device)
        cfg.data.augment_on = augment_on
    return cfg


def training_augment(cfg):
    """The augmentation of the recipe's last phase that sets one (SA-FER's augmented phase), else the run's."""
    return next((p.augment for p in reversed(cfg.phases) if p.augment is not None), None)


class _Autocast:
    """Precision ``auto`` as Lightning applies it: autocast to bf16/fp16, a GradScaler for 16-mixed."""

    def __init__(self, precision: str, device: torch.device) -> None:
        self.precision, self.device = precision, device
        self.dtype = torch.bfloat16 if precision.startswith("bf16") else torch.float16
        self.enabled = precision in ("bf16-mixed", "16-mixed")
        self.scaler = torch.amp.GradScaler(device.type) if precision == "16-mixed" else None

    def __call__(self):
        return torch.autocast(self.device.type, dtype=self.dtype) if self.enabled else nullcontext()


def timed_steps(model, forward, batches, steps: int, warmup: int, device: torch.device, amp: _Autocast) -> dict:
    """Optimizer steps (the engine's forward_train + loss, AdamW) on ``batches``: images/s over ``steps`` after
    ``warmup``, and the seconds of the first step (compilation, when ``forward`` is compiled)."""
    from attnfer.engine.module import split_batch

    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    model.train()
    n, t0, first = 0, 0.0, 0.0
    _sync(device)
    start = time.perf_counter()
    for s in range(warmup + steps):
        if s == warmup:
            _sync(device)
            t0 = time.perf_counter()
        x, y, extras = split_batch(next(batches))
        x = x.contiguous(memory_format=torch.channels_last)
        with amp():
            out = forward(x)
            loss, _ = model.loss(out, y, extras)
        opt.zero_grad(set_to_none=True)
        if amp.scaler is not None:
            amp.scaler.scale(loss).backward()
            amp.scaler.step(opt)
            amp.scaler.update()
        else:
            loss.backward()
            opt.step()
        if s == 0:
            _sync(device)
            first = time.perf_counter() - start
        if s >= warmup:
            n += len(x)
    _sync(device)
    seconds = time.perf_counter() - t0
    del opt
    return {"img_s": round(n / seconds, 1), "steps": steps, "warmup": warmup, "first_step_s": round(first, 3)}


def synthetic(model, batch: int, device: torch.device, target_image: bool = False):
    """One pre-made batch on the device, reused every step: inputs, targets and, with ``target_image``, what
    FERAtt's loss reads from its composited data (the face on black ``x_org``, the mask)."""
    x = torch.randn(batch, *model.cfg.input_size, device=device).contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, model.num_classes, (batch,), device=device)
    extras = {}
    if target_image:
        extras = {"x_org": torch.randn_like(x), "mask": torch.ones(batch, 1, *x.shape[-2:], device=device)}
    batch_ = [x, y, extras] if extras else [x, y]
    while True:
        yield batch_


def _shutdown(loader: DataLoader) -> None:
    """Stop a loader's persistent workers now (not whenever the garbage collector gets to them)."""
    it = getattr(loader, "_iterator", None)
    if it is not None and hasattr(it, "_shutdown_workers"):
        it._shutdown_workers()
    loader._iterator = None


def loader_batches(dm, loader: DataLoader, device: torch.device):
    """The training loader's batches as Lightning hands them to ``training_step``: per epoch ``set_epoch`` on the
    sampler, the batch moved by Lightning's ``move_data_to_device`` (non-blocking from pinned memory on CUDA), then
    ``dm.on_after_batch_transfer(batch, 0)`` (augmentation on the device, when that is where it runs)."""
    from lightning.fabric.utilities.apply_func import move_data_to_device

    epoch = 0
    while True:
        loader.sampler.set_epoch(epoch)
        for batch in loader:
            yield dm.on_after_batch_transfer(move_data_to_device(batch, device), 0)
        epoch += 1


def _bench_datamodule(device: torch.device):
    from attnfer.engine.data import FERDataModule

    class BenchDataModule(FERDataModule):
        """The engine's data module as it is inside a Trainer on ``device`` (without one it would plan for the
        CPU): the machine's loader settings for that device and ``augment_on: auto`` resolved for it."""

        def _device(self) -> torch.device:
            return device

    return BenchDataModule


def measure(
    variant: str, batch: int, args, device: torch.device, precision: str, roots: dict, cache: dict, publish
) -> dict:
    """One model at one batch size: the compute, jpeg and store measurements (those ``args.paths`` names, in its
    order), each with its peak memory, and ``compile`` when asked; ``publish(row)`` after each of them."""
    import attnfer

    name, _, model_kw = VARIANTS[variant]
    amp = _Autocast(precision, device)
    cfg = recipe_config(variant, batch, roots["jpeg"], args.augment_on)
    model = attnfer.create_model(name, num_classes=7, pretrained=False, **{**cfg.model.kwargs, **model_kw})
    model.configure_loss(**cfg.loss)
    model = model.to(device).to(memory_format=torch.channels_last)
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    row: dict[str, Any] = {
        "model": variant,
        "input": model.cfg.input_size[-1],
        "batch": batch,
        "trainable_params": trainable,
        "precision": precision,
        "loss": "forward_train + model.loss"
        + (" (CE + attention + representation)" if name == "feratt" else " (cross-entropy)"),
    }
    for path in args.paths:
        try:
            if path == "compute":
                measure_compute(row, "compute", model.forward_train, model, cfg, args, device, amp)
            elif path == "compile":
                measure_compile(row, model, cfg, args, device, amp)
            else:
                measure_loader(row, path, model, variant, args, device, amp, roots, cache)
        except Exception as e:  # e.g. out of memory, a loader that runs out of shared memory: recorded, go on
            traceback.print_exc()
            row[f"{path}_error"] = f"{type(e).__name__}: {(str(e).splitlines() or [''])[0][:300]}"
        publish(row)
    del model
    if device.type == "cuda":
        torch.cuda.empty_cache()
    return row


def _peak_reset(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)


def _peak(device: torch.device) -> float | None:
    """GiB: the peak of ``torch.cuda.max_memory_allocated`` since the last reset (None off CUDA)."""
    return round(torch.cuda.max_memory_allocated(device) / 2**30, 3) if device.type == "cuda" else None


def measure_compute(row: dict, key: str, forward, model, cfg, args, device: torch.device, amp: _Autocast) -> dict:
    """Synthetic tensors on the device: images/s in ``row[key]``, peak memory in ``row[key + "_peak_gib"]``."""
    _peak_reset(device)
    warmup = args.warmup if key == "compute" else max(args.warmup, 3)  # compiled: recompilations settle
    r = timed_steps(
        model, forward, synthetic(model, row["batch"], device, cfg.data.compositing), args.steps, warmup, device, amp
    )
    row[key] = r["img_s"]
    row[f"{key}_peak_gib"] = _peak(device)
    print(json.dumps({"model": row["model"], "batch": row["batch"], "path": key, **r}), flush=True)
    return r


def measure_compile(row: dict, model, cfg, args, device: torch.device, amp: _Autocast) -> None:
    """torch.compile of the compute-only step (``torch.compile(model.forward_train)``, as ``trainer.compile: true``):
    the first step's seconds (compilation of forward and backward) and the steady images/s, against the eager
    figure of this process (``compute``, else measured here as ``compile_eager``)."""
    from torch import _dynamo

    eager = row.get("compute")
    if eager is None:
        eager = measure_compute(row, "compile_eager", model.forward_train, model, cfg, args, device, amp)["img_s"]
    _dynamo.reset()
    try:
        compiled = torch.compile(model.forward_train)
        r = measure_compute(row, "compiled", compiled, model, cfg, args, device, amp)
        row["compile_s"] = r["first_step_s"]
        row["compile_speedup"] = round(r["img_s"] / eager, 3)
    except Exception as e:  # a missing compiler or an unsupported op: reported, the other rows go on
        row["compile_error"] = f"{type(e).__name__}: {str(e).splitlines()[0][:300] if str(e) else ''}"
    print(json.dumps({k: v for k, v in row.items() if k.startswith("compile")}), flush=True)
    _dynamo.reset()


def measure_loader(
    row: dict,
    path: str,
    model,
    variant: str,
    args,
    device: torch.device,
    amp: _Autocast,
    roots,
    cache,
) -> None:
    """The real training loader over the image files (``jpeg``) or the compiled store (``store``)."""
    from attnfer.engine.data import load_run_data

    batch = row["batch"]
    cfg_p = recipe_config(variant, batch, roots[path], args.augment_on)
    if path == "store" and cfg_p.data.compositing:
        row["store_note"] = "none: composited training data needs the image files and their masks"
        return
    if roots[path] not in cache:
        cache[roots[path]] = load_run_data(cfg_p)
    dm = _bench_datamodule(device)(cfg_p, cache[roots[path]], model.cfg)
    dm.set_augment(training_augment(cfg_p))
    loader = dm.train_dataloader()
    settings = dm.loader_settings()
    workers = int(settings.get("num_workers", 0))
    warmup = max(args.warmup, workers + 2)
    steps = args.data_steps or max(args.steps, args.data_rounds * max(workers, 1))
    label = "composite" if cfg_p.data.compositing else path
    _peak_reset(device)
    try:
        r = timed_steps(model, model.forward_train, loader_batches(dm, loader, device), steps, warmup, device, amp)
    finally:
        _shutdown(loader)
    row[path] = r["img_s"]
    row[f"{path}_peak_gib"] = _peak(device)
    if "compute" in row:
        row[f"{path}_ratio"] = round(r["img_s"] / row["compute"], 3)
    row[f"{path}_data"] = {
        "kind": label,
        "augment_on": "device" if dm.augment_on_device() else "cpu",
        "augment": repr(dm.augment) if not cfg_p.data.compositing else "compositing (data.compositing)",
        "source_size": list(dm.source_size()) if dm.augment_on_device() else None,
        "train_images": len(cache[roots[path]]["train"]),
        "epoch_batches": math.ceil(len(cache[roots[path]]["train"]) / batch),
        "loader": {k: v for k, v in settings.items()},
        "steps": steps,
        "warmup": warmup,
    }
    print(json.dumps({"model": variant, "batch": batch, "path": path, **r}), flush=True)


def _row_key(row: dict) -> tuple:
    return row["model"], row["batch"]


def device_suite(args: argparse.Namespace) -> None:
    import attnfer
    from attnfer.hardware import describe_machine, resolve_precision

    device = torch.device(args.device)
    cuda = device.type == "cuda"
    if cuda and not torch.cuda.is_available():
        raise SystemExit("--device cuda: no CUDA device here")
    args.steps = args.steps or (30 if cuda else 3)
    precision = resolve_precision("auto", "cuda" if cuda else "cpu")
    out = args.out / ("train_throughput_cuda.json" if cuda else "train_throughput_cpu_loader.json")
    record: dict[str, Any] = {}
    if args.append and out.is_file():
        record = json.loads(out.read_text())
    machine = describe_machine()
    record.update(
        {
            "machine": machine,
            "device": str(device),
            "versions": {"attnfer": attnfer.__version__, "torch": torch.__version__, "cuda": torch.version.cuda},
            "precision_auto": precision,
            "channels_last": True,
            "cudnn_benchmark": torch.backends.cudnn.benchmark,
            "method": "optimizer steps (forward_train + model.loss, AdamW) after warm-up, synchronised clocks; "
            "rows: compute = synthetic tensors on the device; jpeg / store = FERDataModule's real training loader "
            "(machine's loader settings, recipe's augmentation where data.augment_on auto puts it)",
        }
    )
    rows: list[dict] = record.setdefault("rows", [])
    tmp = None
    if args.data_dir is None:
        tmp = tempfile.TemporaryDirectory()
        args.data_dir = Path(tmp.name)
    t = time.perf_counter()
    data = prepare_data(args.data_dir, n=args.n, synth_size=args.synth_size, workers=args.prepare_workers)
    data["prepare_s"] = round(time.perf_counter() - t, 1)
    previous = record.get("data", {})
    if previous.get("tree") == data["tree"] and not data["seconds"]:
        data["seconds"] = previous.get("seconds", {})  # reused: keep how long making it took
    record["data"] = data
    roots = {"jpeg": data["tree"], "store": data["stores"][str(STORE_SIZE)]}
    print(json.dumps({"data": data}), flush=True)
    cache: dict = {}

    def publish(row: dict) -> None:
        """Merge ``row`` into the row of the same model and batch (a later process may add paths), ratios against
        the compute figure of either, and write the file."""
        old = next((r for r in rows if _row_key(r) == _row_key(row)), None)
        if old is None:
            rows.append(row)
        elif old is not row:
            old.update(row)
            row = old
        for path in ("jpeg", "store"):
            if path in row and row.get("compute"):
                row[f"{path}_ratio"] = round(row[path] / row["compute"], 3)
        _write_json(out, record)

    try:
        for variant in args.models:
            for batch in args.batches:
                row = measure(variant, batch, args, device, precision, roots, cache, publish)
                publish(row)
    finally:
        if tmp is not None:
            tmp.cleanup()
    print_table(record)
    print(f"-> {out}")


def print_table(record: dict) -> None:
    m = record["machine"]
    where = m.get("gpu") or f"{m['cpu']} ({m['cores']} cores)"
    print(f"\n{where}; precision {record['precision_auto']}, channels_last")

    def cell(r: dict, key: str) -> str:
        if f"{key}_error" in r:
            return "error"
        if key not in r:
            return "-"
        ratio = f" ({r[key + '_ratio']:.2f})" if f"{key}_ratio" in r else ""
        return f"{r[key]:.1f}{ratio}"

    def mem(r: dict) -> str:
        vals = [r.get(f"{k}_peak_gib") for k in ("compute", "jpeg", "store")]
        return "/".join("-" if v is None else f"{v:.1f}" for v in vals)

    header = f"{'model':<17}{'batch':>6}{'compute img/s':>15}{'jpeg img/s (ratio)':>21}{'store img/s (ratio)':>21}"
    header += f"{'peak GiB c/j/s':>16}{'compiled img/s (s)':>20}"
    print(header)
    for r in record["rows"]:
        comp = "-"
        if "compiled" in r and "compile_s" in r:
            comp = f"{r['compiled']:.1f} ({r['compile_s']:.0f})"
        elif "compile_error" in r or "compiled_error" in r:
            comp = "error"
        jpeg = cell(r, "jpeg") + (" c" if r.get("jpeg_data", {}).get("kind") == "composite" else "")
        print(
            f"{r['model']:<17}{r['batch']:>6}{cell(r, 'compute'):>15}{jpeg:>21}{cell(r, 'store'):>21}"
            f"{mem(r):>16}{comp:>20}"
        )
    if any(r.get("jpeg_data", {}).get("kind") == "composite" for r in record["rows"]):
        print("c: FERAtt's composited training data (data.compositing, on the CPU)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--device",
        default=None,
        help="cuda or cpu: the device suite; default: the suite on CUDA, the CPU table on a machine without it",
    )
    ap.add_argument("--models", nargs="+", default=None, help=f"of {', '.join(VARIANTS)}")
    ap.add_argument("--steps", type=int, default=None, help="timed steps (CPU table 12; suite: 30 on CUDA, 3 on CPU)")
    ap.add_argument(
        "--workers",
        type=int,
        default=None,
        help="CPU table: DataLoader workers (default: 0 on a CPU-only machine with <= 2 cores, where worker processes "
        "would compete with the compute threads; else 2). The suite uses the machine's loader settings",
    )
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    suite = ap.add_argument_group("device suite")
    suite.add_argument("--batches", nargs="+", type=int, default=[64, 256])
    suite.add_argument(
        "--paths",
        nargs="+",
        default=["compute", "jpeg", "store"],
        choices=["compute", "jpeg", "store", "compile"],
        help="in this order; compile: torch.compile of the compute-only step (as --compile)",
    )
    suite.add_argument("--warmup", type=int, default=3, help="warm-up steps (loader rows: at least workers + 2)")
    suite.add_argument("--data-steps", type=int, default=None, help="timed steps of the loader rows")
    suite.add_argument(
        "--data-rounds", type=int, default=6, help="loader rows: at least this many timed batches per worker"
    )
    suite.add_argument("--augment-on", default="auto", choices=["auto", "cpu", "device"], help="data.augment_on")
    suite.add_argument("--compile", action="store_true", help="also torch.compile the compute-only step (after it)")
    suite.add_argument("--append", action="store_true", help="merge rows into an existing JSON in --out")
    suite.add_argument("--data-dir", type=Path, default=None, help="SynthFER and its store, made once (else a temp)")
    suite.add_argument("--n", type=int, default=RAFDB_N, help="SynthFER images (RAF-DB's 15,339 by default)")
    suite.add_argument("--synth-size", type=int, default=112)
    suite.add_argument("--prepare-workers", type=int, default=None, help="SynthFER/compile workers (all CPUs)")
    suite.add_argument("--prepare-only", action="store_true", help="make SynthFER and the store in --data-dir, exit")
    args = ap.parse_args()
    if args.prepare_only:
        if args.data_dir is None:
            ap.error("--prepare-only needs --data-dir")
        t = time.perf_counter()
        info = prepare_data(args.data_dir, n=args.n, synth_size=args.synth_size, workers=args.prepare_workers)
        info["prepare_s"] = round(time.perf_counter() - t, 1)
        print(json.dumps(info), flush=True)
        return
    if args.device is None and not torch.cuda.is_available():
        args.models = args.models or ["patt_lite", "emonet", "sa_fer", "feratt"]
        cpu_table(args)
        return
    args.device = args.device or "cuda"
    args.models = args.models or list(VARIANTS)
    if args.compile and "compile" not in args.paths:
        at = args.paths.index("compute") + 1 if "compute" in args.paths else len(args.paths)
        args.paths.insert(at, "compile")
    unknown = [m for m in args.models if m not in VARIANTS]
    if unknown:
        ap.error(f"unknown model(s) {', '.join(unknown)}; choose from {', '.join(VARIANTS)}")
    device_suite(args)


if __name__ == "__main__":
    main()
