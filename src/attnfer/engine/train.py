"""Training driver: phases of a recipe on Lightning, validation-selected checkpoints, final evaluation.

Run directory layout::

    config.yaml          the resolved recipe           environment.json  versions, git commit, device
    data.json            split counts and provenance   state.json        completed phases
    best/ last/          safetensors + config + metrics (best = highest validation accuracy over all phases)
    lightning/phaseK/    Lightning checkpoints for exact resume (optimizer, scheduler, epoch, RNG)
    logs/phaseK/metrics.csv, tb/      CSV and TensorBoard logs
    evaluation.json, confusion_*.png, report.html
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import time
import warnings
from datetime import datetime
from pathlib import Path
from typing import Any

import lightning as L
import torch
import yaml
from lightning.pytorch.callbacks import EarlyStopping, LearningRateMonitor, ModelCheckpoint, RichProgressBar
from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger

from .. import __version__
from ..data.sampling import class_weights
from ..models import create_model, load_model
from .callbacks import SafetensorsCheckpoint, StopAfterEpochs
from .config import TrainConfig, load_config, to_dict
from .data import FERDataModule, load_run_data
from .evaluate import batch_invariance, classification_metrics, plot_confusion, predict_loader, write_json
from .module import FERModule

__all__ = ["evaluate_run", "resume", "train"]


def _environment() -> dict[str, Any]:
    try:
        commit = (
            subprocess.run(
                ["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5, cwd=Path(__file__).parent
            ).stdout.strip()
            or None
        )
    except (OSError, subprocess.SubprocessError):
        commit = None
    import lightning
    import timm
    import torchvision

    return {
        "attnfer": __version__,
        "git_commit": commit,
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "timm": timm.__version__,
        "lightning": lightning.__version__,
        "cuda": torch.cuda.is_available(),
        "device": torch.cuda.get_device_name(0) if torch.cuda.is_available() else platform.processor() or "cpu",
        "cpu_threads": torch.get_num_threads(),
        "command": sys.argv,
    }


def _trainer(cfg: TrainConfig, run_dir: Path, k: int, callbacks: list, max_epochs: int) -> L.Trainer:
    t, phase = cfg.trainer, cfg.phases[k]
    version = f"phase{k}"
    n = 1
    while (run_dir / "logs" / version / "metrics.csv").exists():  # a resumed phase logs beside the first part
        version = f"phase{k}-resume{n}"
        n += 1
    return L.Trainer(
        default_root_dir=run_dir,
        max_epochs=max_epochs,
        max_time={"minutes": phase.max_minutes} if phase.max_minutes else None,
        accelerator=t.accelerator,
        devices=t.devices,
        num_nodes=t.num_nodes,
        strategy=t.strategy,
        precision=t.precision,
        accumulate_grad_batches=t.accumulate_grad_batches,
        deterministic=t.deterministic,
        limit_train_batches=t.limit_train_batches,
        limit_val_batches=t.limit_val_batches,
        log_every_n_steps=t.log_every_n_steps,
        enable_progress_bar=t.progress_bar,
        num_sanity_val_steps=0,
        use_distributed_sampler=False,
        enable_model_summary=False,
        callbacks=callbacks,
        logger=[
            CSVLogger(run_dir, name="logs", version=version),
            TensorBoardLogger(run_dir, name="tb", version=version, default_hp_metric=False),
        ],
    )


def train(cfg: TrainConfig, run_dir: str | Path | None = None, _resume: bool = False) -> Path:
    """Train every phase of ``cfg``, then evaluate on test; returns the run directory."""
    L.seed_everything(cfg.seed, workers=True, verbose=False)
    data = load_run_data(cfg)  # before anything is written: bad data leaves no half-made run directory
    if run_dir is None:  # DDP children re-run the command: they inherit rank 0's run directory
        run_dir = (
            os.environ.get("ATTNFER_RUN_DIR") or Path(cfg.output_dir) / f"{cfg.name}-{datetime.now():%Y%m%d-%H%M%S}"
        )
    run_dir = Path(run_dir)
    os.environ["ATTNFER_RUN_DIR"] = str(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    state_path = run_dir / "state.json"
    state = json.loads(state_path.read_text()) if _resume and state_path.is_file() else {"completed_phases": []}
    if not _resume:
        (run_dir / "config.yaml").write_text(yaml.safe_dump(to_dict(cfg), sort_keys=False))
        write_json(run_dir / "environment.json", _environment())

    write_json(run_dir / "data.json", data.summary())
    with warnings.catch_warnings():
        warnings.simplefilter("default")
        model = create_model(
            cfg.model.name,
            num_classes=len(data.class_names),
            pretrained=False if _resume else cfg.model.pretrained,  # a resumed run's weights come from its checkpoint
            class_names=data.class_names,
            **cfg.model.kwargs,
        )
    if cfg.trainer.channels_last:
        model = model.to(memory_format=torch.channels_last)
    module = FERModule(model, cfg, class_weights(data["train"]))
    dm = FERDataModule(cfg, data, model.cfg)
    checkpoint_cb = SafetensorsCheckpoint(run_dir, "val/acc", "max")

    for k, phase in enumerate(cfg.phases):
        if k in state["completed_phases"]:
            continue
        ckpt_dir = run_dir / "lightning" / f"phase{k}"
        ckpt = ckpt_dir / "last.ckpt"
        resuming_phase = _resume and ckpt.is_file()
        if k > 0 and not resuming_phase:
            from safetensors.torch import load_file

            model.load_state_dict(load_file(str(run_dir / f"phase{k - 1}_end.safetensors")))
        if not resuming_phase:
            (run_dir / "phase_best.safetensors").unlink(missing_ok=True)
            checkpoint_cb.phase_best = float("-inf")
        model.apply_phase_settings(phase.model)
        module.set_phase(phase)
        dm.set_augment(phase.augment)
        checkpoint_cb.phase = phase.name
        callbacks: list[L.Callback] = [
            checkpoint_cb,
            ModelCheckpoint(dirpath=ckpt_dir, save_last=True, save_top_k=0, every_n_epochs=1),
            LearningRateMonitor(logging_interval="epoch"),
        ]
        if cfg.trainer.progress_bar:
            callbacks.append(RichProgressBar())
        es = phase.early_stopping
        if es is not None:
            callbacks.append(
                EarlyStopping(monitor=es.monitor, patience=es.patience, min_delta=es.min_delta, mode=es.mode)
            )
        slicer = StopAfterEpochs(cfg.trainer.stop_after_epochs) if cfg.trainer.stop_after_epochs else None
        if slicer is not None:
            callbacks.append(slicer)
        if cfg.trainer.ema_decay:
            from lightning.pytorch.callbacks import EMAWeightAveraging

            callbacks.append(EMAWeightAveraging(decay=cfg.trainer.ema_decay))
        trainer = _trainer(cfg, run_dir, k, callbacks, phase.epochs)
        t0 = time.perf_counter()
        trainer.fit(module, dm, ckpt_path=str(ckpt) if resuming_phase else None)
        if trainer.interrupted:
            raise KeyboardInterrupt(f"training interrupted; continue with: attnfer train --resume {run_dir}")
        if slicer is not None and slicer.stopped:
            return run_dir  # checkpointed; `attnfer train --resume RUN_DIR` continues
        trainer.strategy.barrier()
        if es is not None and es.restore_best:
            checkpoint_cb.restore_phase_best(module)
        if trainer.is_global_zero:
            from safetensors.torch import save_file

            save_file(
                {k2: v.detach().contiguous().cpu() for k2, v in model.state_dict().items()},
                str(run_dir / f"phase{k}_end.safetensors"),
            )
            (run_dir / "phase_best.safetensors").unlink(missing_ok=True)
            state["completed_phases"].append(k)
            state.setdefault("phase_seconds", {})[str(k)] = round(time.perf_counter() - t0, 1)
            write_json(state_path, state)
        trainer.strategy.barrier()

    if not (torch.distributed.is_available() and torch.distributed.is_initialized()) or (
        torch.distributed.get_rank() == 0
    ):
        evaluate_run(run_dir, cfg, dm)
        from .report import render_report

        render_report(run_dir)
    return run_dir


def resume(run_dir: str | Path, overrides: list[str] | None = None) -> Path:
    """Continue an interrupted run exactly where it stopped (optimizer, scheduler, epoch, RNG state)."""
    run_dir = Path(run_dir)
    cfg = load_config(run_dir / "config.yaml", overrides)
    return train(cfg, run_dir, _resume=True)


def evaluate_run(run_dir: Path, cfg: TrainConfig, dm: FERDataModule) -> dict[str, Any]:
    """Evaluate the validation-selected (``best``) and the ``last`` model on test and the extra subsets."""
    device = "cuda" if torch.cuda.is_available() else "cpu"
    splits = ["test", *[s for s in dm.data.splits if s not in ("train", "validation", "test")]]
    report: dict[str, Any] = {
        "selection": "best = highest validation accuracy; test never used for selection",
        "class_names": dm.data.class_names,
        "checkpoints": {},
    }
    autocast = cfg.trainer.precision.startswith("bf16")  # evaluate in the precision the model was validated in
    for which in ("best", "last"):
        if not (run_dir / which / "model.safetensors").is_file():
            continue
        selected_at = json.loads((run_dir / which / "metrics.json").read_text())
        best_info = report["checkpoints"].get("best", {}).get("selected_at", {})
        if which == "last" and {k: selected_at.get(k) for k in ("phase", "epoch")} == {
            k: best_info.get(k) for k in ("phase", "epoch")
        }:
            report["checkpoints"]["last"] = {**report["checkpoints"]["best"], "same_as": "best"}
            continue
        model = load_model(run_dir / which)
        batch_dependent = model.cfg.batch_dependent
        entry: dict[str, Any] = {"batch_dependent": batch_dependent, "selected_at": selected_at}
        for split in splits:
            # batch-dependent models: shuffled, fixed-size batches (never class-sorted ones)
            loader = dm.eval_loader(split, shuffle_seed=0 if batch_dependent else None)
            with torch.autocast(device, dtype=torch.bfloat16, enabled=autocast):
                probs, y = predict_loader(model, loader, device)
            metrics = classification_metrics(y, probs.argmax(1), dm.data.class_names)
            entry[split] = metrics
            if which == "best" and split == "test":
                plot_confusion(
                    metrics["confusion_normalized"],
                    dm.data.class_names,
                    run_dir / "confusion_best_test.png",
                    f"{cfg.model.name} on {dm.data.name} test (best on validation)",
                )
        if cfg.evaluate_batch_invariance:  # float32: the check is about the model's arithmetic, not rounding
            entry["batch_invariance"] = batch_invariance(
                model, dm.dataset("test", train=False), max_samples=256, device=device
            )
        if batch_dependent:
            entry["warning"] = (
                "attention='batch': predictions depend on batch-mates; numbers are not comparable to per-sample models"
            )
        report["checkpoints"][which] = entry
    write_json(run_dir / "evaluation.json", report)
    return report
