"""One epoch of PAtt-Lite's phase 2 (trunk trainable) on RAF-DB-sized data, through the real training path.

The run is ``src/attnfer/configs/patt_lite_rafdb.yaml`` as :func:`attnfer.engine.train` runs it, with these overrides
only: SynthFER in RAF-DB layout as the dataset (``generate(n=15339, test_fraction=0.2)``: 12,271 training and 3,068
test images as RAF-DB basic, 10% of training carved as validation as the recipe does; the JSON records the real
counts), ``data.batch_size`` and ``data.eval_batch_size`` 256 (``--batch``), ``model.pretrained: false`` (no network
there; the weights' values do not change the time), ``trainer.progress_bar: false``, phase 0 (frozen trunk) cut to
its minimum of one epoch and phase 1 (``finetune-backbone``: ``unfreeze_last_n: 36``, the trunk's BatchNorm
statistics frozen, Adam 1e-5, clipping 3.0) given ``--epochs`` + 1 epochs, ending after ``--epochs`` of them with
``trainer.stop_after_epochs`` (the engine's own way to end an invocation early: checkpointed as always, no final
evaluation). Everything else is the recipe's and the machine's: precision ``auto`` (bf16-mixed on a BF16 GPU),
``channels_last: auto``, ``data.num_workers: auto`` (attnfer.hardware.loader_settings), ``data.augment_on: auto``
(the uint8 batch is augmented on the GPU), validation after every epoch, a Lightning checkpoint and the
validation-selected model written at every epoch end.

Timing: the run's own per-epoch console callback (:class:`attnfer.engine.console.EpochLine`, which prints the epoch
time rounded to seconds) is replaced, for this process only, by a subclass that reads a synchronised clock at the
epoch's start, its first batch, the start and end of its validation and its end; nothing else in the path changes.
Per epoch the JSON has ``epoch_s`` (train epoch start to end, validation included: what the console line reports),
``period_s`` (start to the next epoch's start: also the checkpoints and whatever runs between epochs), ``train_s``
(start to the validation's start), ``first_batch_s`` (start to the first batch: worker start-up and prefetch) and
``val_s``. The first epoch of a phase carries the warm-up (workers, cuDNN, allocator): ``--epochs 2`` (default)
gives a steady one too. ``--paths jpeg store``: the image files, and/or the compiled uint8 store at 224
(``attnfer data compile``).

    python benchmarks/epoch_time.py --device cuda --data-dir /tmp/attnfer_gpu_data [--paths jpeg store] [--epochs 2]
    uv run python benchmarks/epoch_time.py --device cpu --n 300 --batch 8 --epochs 1 --limit-train-batches 3 \\
        --limit-val-batches 2 --out /tmp/out     # a test of the path

Writes ``epoch_time_<cuda|cpu>.json`` in ``--out`` (default benchmarks/results), after each path.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from train_throughput import RAFDB_N, STORE_SIZE, _write_json, prepare_data

RECIPE = "patt_lite_rafdb.yaml"


def timed_epoch_line(records: list[dict]):
    """The engine's EpochLine with synchronised timestamps of each epoch's parts appended to ``records``."""
    from attnfer.engine.console import EpochLine

    def now(pl_module) -> float:
        if pl_module.device.type == "cuda":
            torch.cuda.synchronize(pl_module.device)
        return time.perf_counter()

    class TimedEpochLine(EpochLine):
        def __init__(self, phase: str, stream: Any = None) -> None:
            super().__init__(phase, stream)
            self.current: dict[str, Any] | None = None

        def _close(self, t_next: float) -> None:
            if self.current is not None and "period_s" not in self.current:
                self.current["period_s"] = round(t_next - self.current.pop("_t0"), 3)

        def on_train_epoch_start(self, trainer, pl_module) -> None:
            t = now(pl_module)
            self._close(t)
            dm = trainer.datamodule
            self.current = {
                "phase": self.phase,
                "epoch": trainer.current_epoch,
                "_t0": t,
                "batches": int(trainer.num_training_batches),
                "train_images": len(dm.data["train"]),
                "trainable_params": sum(p.numel() for p in pl_module.parameters() if p.requires_grad),
            }
            if not any(r.get("phase") == self.phase for r in records):  # once per phase: the settings in force
                self.current["loader"] = dm.loader_settings()
                self.current["augment_on"] = "device" if dm.augment_on_device() else "cpu"
                self.current["precision"] = str(trainer.precision)
            records.append(self.current)
            super().on_train_epoch_start(trainer, pl_module)

        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx: int) -> None:
            if self.current is not None and "first_batch_s" not in self.current:
                self.current["first_batch_s"] = round(now(pl_module) - self.current["_t0"], 3)

        def on_validation_epoch_start(self, trainer, pl_module) -> None:
            if self.current is not None and trainer.state.fn == "fit":
                self.current["_tv"] = now(pl_module)
                self.current["train_s"] = round(self.current["_tv"] - self.current["_t0"], 3)

        def on_validation_epoch_end(self, trainer, pl_module) -> None:
            if self.current is not None and "_tv" in self.current:
                self.current["val_s"] = round(now(pl_module) - self.current.pop("_tv"), 3)

        def on_train_epoch_end(self, trainer, pl_module) -> None:
            if self.current is not None:
                t = now(pl_module)
                self.current["epoch_s"] = round(t - self.current["_t0"], 3)
                if "train_s" not in self.current:
                    self.current["train_s"] = self.current["epoch_s"]
                self.current["train_img_s"] = round(
                    min(self.current["batches"] * trainer.datamodule.cfg.data.batch_size, self.current["train_images"])
                    / self.current["train_s"],
                    1,
                )
            super().on_train_epoch_end(trainer, pl_module)

        def on_train_end(self, trainer, pl_module) -> None:
            self._close(now(pl_module))

    return TimedEpochLine


def run_path(path: str, root: str, args: argparse.Namespace, work: Path) -> dict[str, Any]:
    import importlib
    from importlib.resources import as_file, files

    from attnfer.engine.config import load_config, to_dict

    engine_train = importlib.import_module("attnfer.engine.train")  # the module (attnfer.engine.train is shadowed by
    # the function of that name that attnfer.engine exports)

    cuda = args.device == "cuda"
    overrides: dict[str, Any] = {
        "name": f"epoch_time_{path}",
        "output_dir": str(work),
        "data.name": "synthfer",
        "data.root": root,
        "data.options": {},
        "data.batch_size": args.batch,
        "data.eval_batch_size": args.batch,
        "model.pretrained": False,
        "phases.0.epochs": 1,
        "phases.1.epochs": args.epochs + 1,
        "trainer.stop_after_epochs": args.epochs,
        "trainer.progress_bar": False,
        "trainer.accelerator": "gpu" if cuda else "cpu",
    }
    if args.limit_train_batches is not None:
        overrides["trainer.limit_train_batches"] = args.limit_train_batches
    if args.limit_val_batches is not None:
        overrides["trainer.limit_val_batches"] = args.limit_val_batches
    if args.compile:
        overrides["trainer.compile"] = True
    with as_file(files("attnfer") / "configs" / RECIPE) as recipe:
        cfg = load_config(recipe, overrides)
    records: list[dict] = []
    original = engine_train.EpochLine
    engine_train.EpochLine = timed_epoch_line(records)
    t = time.perf_counter()
    try:
        run_dir = engine_train.train(cfg, run_dir=work / f"run_{path}")
    finally:
        engine_train.EpochLine = original
    wall = time.perf_counter() - t
    for r in records:
        r.pop("_t0", None)
        r.pop("_tv", None)
    state = json.loads((run_dir / "state.json").read_text()) if (run_dir / "state.json").is_file() else {}
    data_json = json.loads((run_dir / "data.json").read_text())
    phase2 = [r for r in records if r["phase"] == cfg.phases[1].name]
    result = {
        "path": path,
        "root": root,
        "counts": {split: c["total"] for split, c in data_json["counts"].items()},
        "validation_source": data_json.get("validation_source"),
        "overrides": overrides,
        "phase_names": [p.name for p in cfg.phases],
        "phase2_model_settings": to_dict(cfg)["phases"][1]["model"],
        "epochs": records,
        "phase0_fit_s": state.get("phase_seconds", {}).get("0"),
        "train_call_s": round(wall, 1),
    }
    if phase2:
        last = phase2[-1]
        result["phase2_epoch_s"] = last.get("period_s", last.get("epoch_s"))
        result["phase2_train_img_s"] = last.get("train_img_s")
    return result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="auto", help="cuda, cpu or auto (cuda when there is one)")
    ap.add_argument("--paths", nargs="+", default=["jpeg", "store"], choices=["jpeg", "store"])
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--epochs", type=int, default=2, help="phase-2 epochs timed (the first carries the warm-up)")
    ap.add_argument("--data-dir", type=Path, default=None, help="SynthFER and its store, made once (else a temp)")
    ap.add_argument("--n", type=int, default=RAFDB_N)
    ap.add_argument("--synth-size", type=int, default=112)
    ap.add_argument("--limit-train-batches", type=int, default=None, help="trainer.limit_train_batches (tests)")
    ap.add_argument("--limit-val-batches", type=int, default=None, help="trainer.limit_val_batches (tests)")
    ap.add_argument("--compile", action="store_true", help="trainer.compile: true")
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    args = ap.parse_args()
    if args.device == "auto":
        args.device = "cuda" if torch.cuda.is_available() else "cpu"
    import attnfer
    from attnfer.hardware import describe_machine

    out = args.out / f"epoch_time_{args.device}.json"
    record: dict[str, Any] = {
        "machine": describe_machine(),
        "versions": {"attnfer": attnfer.__version__, "torch": torch.__version__, "cuda": torch.version.cuda},
        "recipe": RECIPE,
        "what": "one epoch of phase 2 (index 1, finetune-backbone) through attnfer.engine.train; phase 0 cut to 1 "
        "epoch, phase 1 stopped after --epochs epochs by trainer.stop_after_epochs (no final evaluation)",
        "rafdb_reference": {"train": 12271, "test": 3068},
        "results": [],
    }
    with tempfile.TemporaryDirectory() as tmp:
        data_dir = args.data_dir or Path(tmp) / "data"
        t = time.perf_counter()
        data = prepare_data(data_dir, n=args.n, synth_size=args.synth_size)
        data["prepare_s"] = round(time.perf_counter() - t, 1)
        record["data"] = data
        print(json.dumps({"data": data}), flush=True)
        roots = {"jpeg": data["tree"], "store": data["stores"][str(STORE_SIZE)]}
        for path in args.paths:
            result = run_path(path, roots[path], args, Path(tmp) / "runs")
            record["results"].append(result)
            _write_json(out, record)
            print(json.dumps({k: v for k, v in result.items() if k != "overrides"}), flush=True)
    print(f"\n{record['machine'].get('gpu') or record['machine']['cpu']}: {RECIPE}, batch {args.batch}")
    print(
        f"{'path':<7}{'epoch':>6}{'phase':>20}{'epoch s':>9}{'period s':>10}{'train s':>9}{'1st batch s':>12}"
        f"{'val s':>7}{'train img/s':>13}"
    )
    for res in record["results"]:
        for r in res["epochs"]:
            print(
                f"{res['path']:<7}{r['epoch']:>6}{r['phase']:>20}{r.get('epoch_s', 0):>9.2f}"
                f"{r.get('period_s', 0):>10.2f}"
                f"{r.get('train_s', 0):>9.2f}{r.get('first_batch_s', 0):>12.2f}{r.get('val_s', 0):>7.2f}"
                f"{r.get('train_img_s', 0):>13.1f}"
            )
    print(f"-> {out}")


if __name__ == "__main__":
    main()
