"""Callbacks: safetensors checkpoints selected on validation (never on test)."""

from __future__ import annotations

import math
import os
import shutil
from pathlib import Path
from typing import Any

import lightning as L
from safetensors.torch import load_file, save_file

from ..files import atomic_write, write_json

__all__ = ["SafetensorsCheckpoint", "StopAfterEpochs", "save_model_dir"]


def save_model_dir(model: Any, directory: Path, metrics: dict[str, Any]) -> None:
    """Write model (safetensors + config) and metrics.json into ``directory`` atomically (rename a temp dir)."""
    tmp = directory.with_name(directory.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    model.save(tmp)
    write_json(tmp / "metrics.json", metrics)
    old = directory.with_name(directory.name + ".old")
    if directory.exists():
        os.replace(directory, old)
    os.replace(tmp, directory)
    shutil.rmtree(old, ignore_errors=True)


class SafetensorsCheckpoint(L.Callback):
    """After every validation: ``last/`` always, ``best/`` when ``monitor`` improves (across all phases).

    Also keeps this phase's best weights (``phase_best.safetensors``) so that early stopping can restore them,
    as Keras' ``restore_best_weights`` does.
    """

    def __init__(self, run_dir: Path, monitor: str = "val/acc", mode: str = "max", phase: str = "train") -> None:
        self.run_dir, self.monitor, self.mode, self.phase = Path(run_dir), monitor, mode, phase
        self.best = -math.inf if mode == "max" else math.inf
        self.phase_best = self.best
        self.best_epoch: int | None = None

    def _better(self, value: float, ref: float) -> bool:
        return value > ref if self.mode == "max" else value < ref

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking:
            return
        metrics = {k: float(v) for k, v in trainer.callback_metrics.items() if v.numel() == 1}
        value = metrics.get(self.monitor)
        if value is None:
            return
        info = {"phase": self.phase, "epoch": trainer.current_epoch, **metrics}
        if trainer.is_global_zero:
            save_model_dir(pl_module.model, self.run_dir / "last", info)
            if self._better(value, self.phase_best):
                state = {k: v.detach().contiguous().cpu() for k, v in pl_module.model.state_dict().items()}
                atomic_write(self.run_dir / "phase_best.safetensors", lambda p: save_file(state, str(p)))
            if self._better(value, self.best):
                save_model_dir(pl_module.model, self.run_dir / "best", info)
        if self._better(value, self.phase_best):
            self.phase_best = value
        if self._better(value, self.best):
            self.best, self.best_epoch = value, trainer.current_epoch

    def restore_phase_best(self, pl_module: L.LightningModule) -> bool:
        path = self.run_dir / "phase_best.safetensors"
        if not path.is_file():
            return False
        pl_module.model.load_state_dict(load_file(str(path), device=str(pl_module.device)))
        return True

    def state_dict(self) -> dict[str, Any]:
        return {"best": self.best, "phase_best": self.phase_best, "best_epoch": self.best_epoch}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.best = state_dict["best"]
        self.phase_best = state_dict["phase_best"]
        self.best_epoch = state_dict["best_epoch"]


class StopAfterEpochs(L.Callback):
    """End ``fit`` after ``n`` epochs of this invocation (the checkpoints are written first) for a later resume."""

    def __init__(self, n: int) -> None:
        self.n, self.seen, self.stopped = n, 0, False

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.seen += 1
        if self.seen >= self.n and trainer.current_epoch + 1 < trainer.max_epochs:
            trainer.should_stop = True
            self.stopped = True
