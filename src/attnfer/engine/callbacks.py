"""Callbacks: safetensors checkpoints selected on validation (never on test), and the crash safety of a run.

Crash safety (what the engine guarantees, see the README): a model folder (``best/``, ``last/``) is swapped in so that
at every instant a complete one exists or can be put back (:func:`recover_model_dir`); Lightning checkpoints are
written whole through :class:`AtomicCheckpointIO`, which keeps the previous one until the new one is complete; they
are written at every epoch end and, optionally, every N steps or minutes (:class:`IntervalCheckpoint`); SIGTERM and
SIGINT finish the current step, stop every rank at the same step and write one checkpoint (:class:`SignalStop`).
"""

from __future__ import annotations

import math
import os
import shutil
import signal
import uuid
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import Checkpoint, ModelCheckpoint
from lightning.pytorch.plugins.io import TorchCheckpointIO
from lightning.pytorch.utilities.exceptions import SIGTERMException
from safetensors.torch import load_file, save_file

from ..files import atomic_write, write_json

__all__ = [
    "AtomicCheckpointIO",
    "IntervalCheckpoint",
    "SafetensorsCheckpoint",
    "SignalStop",
    "StopAfterEpochs",
    "StopSignals",
    "TrainingInterrupted",
    "agree_on_signal",
    "previous_checkpoint",
    "recover_model_dir",
    "save_model_dir",
]


# ------------------------------------------------------------------------------------------------
# model folders (best/, last/): swapped in whole
# ------------------------------------------------------------------------------------------------
def recover_model_dir(directory: Path) -> None:
    """Finish or undo a swap of :func:`save_model_dir` that a kill interrupted, so that ``directory`` is complete.

    ``NAME.old`` beside ``NAME`` means the kill came between the two renames (no ``NAME``: the previous folder is put
    back) or during the removal of the previous folder (``NAME`` is the new one: the rest of the old is removed).
    A ``NAME.tmp`` is a folder whose writing was interrupted: removed.
    """
    directory = Path(directory)
    old = directory.with_name(directory.name + ".old")
    if old.exists():
        if directory.exists():
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(old, directory)
    shutil.rmtree(directory.with_name(directory.name + ".tmp"), ignore_errors=True)


def save_model_dir(model: Any, directory: Path, metrics: dict[str, Any]) -> None:
    """Write model (safetensors + config) and metrics.json into ``directory`` atomically (rename a temp dir).

    The steps: write ``NAME.tmp``; rename ``NAME`` to ``NAME.old``; rename ``NAME.tmp`` to ``NAME``; remove
    ``NAME.old``. A kill at any step leaves a state :func:`recover_model_dir` (called first, and when a run resumes)
    turns into a complete folder.
    """
    directory = Path(directory)
    recover_model_dir(directory)
    tmp = directory.with_name(directory.name + ".tmp")
    model.save(tmp)
    write_json(tmp / "metrics.json", metrics)
    old = directory.with_name(directory.name + ".old")
    if directory.exists():
        os.replace(directory, old)
    os.replace(tmp, directory)
    shutil.rmtree(old, ignore_errors=True)


# ------------------------------------------------------------------------------------------------
# Lightning checkpoints: whole or not at all, the previous one kept
# ------------------------------------------------------------------------------------------------
def previous_checkpoint(path: Path) -> Path:
    """Where :class:`AtomicCheckpointIO` keeps the checkpoint that ``path`` replaced: ``last.ckpt`` ->
    ``last.previous.ckpt``."""
    path = Path(path)
    return path.with_name(f"{path.stem}.previous{path.suffix}")


def _save_synced(checkpoint: dict[str, Any], path: Path) -> None:
    with open(path, "wb") as f:
        torch.save(checkpoint, f)
        f.flush()
        os.fsync(f.fileno())  # on disk before the rename makes it the checkpoint (a power cut keeps a whole file)


class AtomicCheckpointIO(TorchCheckpointIO):
    """Lightning's checkpoint writer, made crash safe: the new checkpoint is written to a temporary file, synced and
    renamed over the old one, whose content is first kept as :func:`previous_checkpoint` (a hard link, or a copy
    where links are not supported). At every instant ``last.ckpt`` is a complete checkpoint, old or new, and
    ``last.previous.ckpt`` the one before it: a damaged ``last.ckpt`` (a full disk, a copy cut short) falls back to
    it on resume."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path: Any, storage_options: Any | None = None) -> None:
        if storage_options is not None:
            raise TypeError(f"{type(self).__name__} takes no storage_options, got {storage_options!r}")
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.is_file():
            keep = previous_checkpoint(path)
            tmp = keep.with_name(f".{keep.name}.{uuid.uuid4().hex[:8]}.tmp")
            try:
                try:
                    os.link(path, tmp)
                except OSError:
                    shutil.copyfile(path, tmp)
                os.replace(tmp, keep)
            finally:
                tmp.unlink(missing_ok=True)
        atomic_write(path, lambda p: _save_synced(checkpoint, p))


class IntervalCheckpoint(ModelCheckpoint):
    """A ``ModelCheckpoint`` every N training steps or minutes, within an epoch. It skips an epoch's last batch:
    the epoch's own checkpoint follows its validation (a checkpoint taken before that validation would resume
    past it)."""

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs, batch, batch_idx) -> None:
        if batch_idx + 1 >= trainer.num_training_batches:
            return
        super().on_train_batch_end(trainer, pl_module, outputs, batch, batch_idx)


# ------------------------------------------------------------------------------------------------
# SIGTERM / SIGINT: finish the step, stop every rank at the same step, write one checkpoint
# ------------------------------------------------------------------------------------------------
SIGNAL_NAMES = {signal.SIGTERM: "SIGTERM", signal.SIGINT: "SIGINT"}


class TrainingInterrupted(BaseException):
    """Training stopped by SIGTERM or SIGINT. ``checkpoint`` is the checkpoint written for it (None when the signal
    came outside a training step, when the checkpoints on disk are already complete, or at a second Ctrl+C);
    ``exit_code`` is the shell's convention, 128 + the signal number (143 for SIGTERM, 130 for SIGINT). ``str(e)``
    is one line that says what was written and the command that continues the run. A BaseException, as
    KeyboardInterrupt: ``except Exception`` does not swallow it."""

    def __init__(
        self,
        signum: int,
        run_dir: Path | None = None,
        checkpoint: Path | None = None,
        where: str = "",
        rank: int = 0,
        note: str = "",
    ) -> None:
        self.signum, self.run_dir, self.checkpoint, self.where, self.rank, self.note = (
            int(signum),
            run_dir,
            checkpoint,
            where,
            rank,
            note,
        )
        super().__init__(self.message)

    @property
    def exit_code(self) -> int:
        return 128 + self.signum

    @property
    def resume_command(self) -> str | None:
        if self.run_dir is None or not (Path(self.run_dir) / "config.yaml").is_file():
            return None
        import shlex

        return f"attnfer train --resume {shlex.quote(str(self.run_dir))}"

    @property
    def message(self) -> str:
        name = SIGNAL_NAMES.get(self.signum, f"signal {self.signum}")
        if self.checkpoint is not None:
            where = f" ({self.where})" if self.where else ""
            what = f"checkpoint written: {self.checkpoint}{where}"
        elif self.note:
            what = self.note
        else:
            what = "no training step was running; the run's checkpoints are complete"
        command = self.resume_command
        tail = f"; continue with: {command}" if command else "; the run had not started: nothing to resume"
        return f"stopped by {name}: {what}{tail}"

    def __str__(self) -> str:
        return self.message


class StopSignals:
    """SIGTERM and SIGINT handlers for the duration of a run (a context manager; main thread only).

    While a training step runs (:class:`SignalStop` marks it) a signal is recorded and training stops after the step
    with a checkpoint; a second Ctrl+C then stops at once. Outside training (data loading, evaluation) a signal
    raises :class:`TrainingInterrupted` at once: what is on disk is complete.
    """

    def __init__(self, run_dir: Path | None = None) -> None:
        self.run_dir = run_dir
        self.requested: int | None = None
        self.fitting = False
        self._saved: dict[int, Any] = {}

    def __enter__(self) -> StopSignals:
        import threading

        if threading.current_thread() is threading.main_thread():
            for signum in SIGNAL_NAMES:
                self._saved[signum] = signal.getsignal(signum)
                signal.signal(signum, self.handle)
        return self

    def __exit__(self, *exc: Any) -> None:
        for signum, handler in self._saved.items():
            signal.signal(signum, handler if handler is not None else signal.SIG_DFL)
        self._saved.clear()

    def install(self) -> None:
        """Handle the signals again (Lightning installs its own SIGTERM handler when fit starts)."""
        if self._saved:
            for signum in SIGNAL_NAMES:
                signal.signal(signum, self.handle)

    def handle(self, signum: int, frame: Any) -> None:
        if not self.fitting:
            raise TrainingInterrupted(signum, self.run_dir)
        if self.requested is None:
            self.requested = signum
            name = SIGNAL_NAMES.get(signum, str(signum))
            more = " (Ctrl+C again stops at once, without it)" if signum == signal.SIGINT else ""
            # os.write: safe inside a signal handler, whatever the main thread was printing
            os.write(2, f"\n{name}: finishing this step, then writing a checkpoint{more}\n".encode())
        elif signum == signal.SIGINT:
            raise TrainingInterrupted(
                signum, self.run_dir, note="stopped at once (Ctrl+C twice): no checkpoint of the current step"
            )


def agree_on_signal(trainer: L.Trainer, signum: int | None) -> int:
    """The signal any rank recorded (0: none), the same on every rank: a max all-reduce under DDP, so that a signal
    that reached one rank stops all of them at the same step. Every rank must call it at the same point."""
    signum = int(signum or 0)
    if trainer.world_size > 1 and torch.distributed.is_available() and torch.distributed.is_initialized():
        flag = torch.tensor([signum], device=trainer.strategy.root_device)
        torch.distributed.all_reduce(flag, op=torch.distributed.ReduceOp.MAX)
        signum = int(flag.item())
    return signum


class SignalStop(Checkpoint):
    """Stop training at a step boundary when :class:`StopSignals` recorded a signal on any rank, and write one
    checkpoint (``path``) for ``--resume``.

    After each step that is not an epoch's last (and after each epoch, once its validation ran) the ranks agree on
    the signal (a max all-reduce, so a signal that reached one rank stops all of them at the same step). Then
    Lightning's own SIGTERM path stops the loop at its next safe point, and this callback writes the checkpoint
    there (``on_exception``); Lightning's loops keep their position, the training loader its place in the epoch.
    A Checkpoint callback, so that Lightning runs it after the others (EMA, budgets, the interval checkpoints).
    """

    def __init__(self, signals: StopSignals, path: Path) -> None:
        self.signals, self.path = signals, Path(path)
        self.signum: int | None = None
        self.saved: Path | None = None
        self.where = ""

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.signals.install()  # over Lightning's SIGTERM handler, which would stop inside a validation
        self.signals.fitting = True

    def _agree(self, trainer: L.Trainer) -> None:
        signum = agree_on_signal(trainer, self.signals.requested)
        if signum:
            self.signum = signum
            trainer._signal_connector.received_sigterm = True  # Lightning stops at its next step or epoch boundary

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs, batch, batch_idx) -> None:
        if batch_idx + 1 < trainer.num_training_batches:  # an epoch's last step: its validation comes first
            self._agree(trainer)

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._agree(trainer)

    def on_exception(self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException) -> None:
        if not isinstance(exception, SIGTERMException):
            return
        if self.signum is None:  # Lightning's own handler caught a SIGTERM before training started
            self.signum = self.signals.requested or signal.SIGTERM
        trainer.save_checkpoint(self.path)  # every rank takes part; rank 0 writes
        self.saved = self.path
        done, per_epoch = trainer.fit_loop.epoch_loop.batch_progress.current.completed, trainer.num_training_batches
        if done >= per_epoch:
            self.where = f"end of epoch {trainer.current_epoch}, global step {trainer.global_step}"
        else:
            self.where = (
                f"epoch {trainer.current_epoch + 1}, step {done} of {per_epoch}, global step {trainer.global_step}"
            )

    def teardown(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        self.signals.fitting = False


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
