"""What a training run prints: the project's own lines on the console, the libraries' chatter in the run's log.

:func:`library_noise_to` sends Lightning's informational messages (device summaries, tips, ``limit_*_batches``
notes) and third-party warnings to ``RUN_DIR/train.log`` for the duration of a run; attnfer's own warnings still
reach the console. :class:`EpochLine` prints one line per epoch: loss, validation accuracy, the epoch's time and
the time left in the phase.
"""

from __future__ import annotations

import logging
import sys
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import lightning as L

__all__ = ["EpochLine", "library_noise_to"]

LIBRARY_LOGGERS = ("lightning.pytorch", "lightning.fabric", "lightning")
_PACKAGE_DIR = str(Path(__file__).resolve().parents[1])


@contextmanager
def library_noise_to(log_path: Path) -> Iterator[None]:
    """Within the block, Lightning's log records and warnings raised outside attnfer go to ``log_path``."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(log_path, encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(name)s %(levelname)s: %(message)s"))
    saved = []
    for name in LIBRARY_LOGGERS:
        logger = logging.getLogger(name)
        saved.append((logger, list(logger.handlers), logger.propagate))
        for h in list(logger.handlers):
            if isinstance(h, logging.StreamHandler) and not isinstance(h, logging.FileHandler):
                logger.removeHandler(h)
        logger.addHandler(handler)
        logger.propagate = False
    shown = warnings.showwarning

    def showwarning(message, category, filename, lineno, file=None, line=None) -> None:
        if str(filename).startswith(_PACKAGE_DIR):
            shown(message, category, filename, lineno, file, line)  # ours: on the console
        else:
            handler.stream.write(f"warning: {filename}:{lineno}: {category.__name__}: {message}\n")
            handler.flush()

    warnings.showwarning = showwarning
    try:
        yield
    finally:
        warnings.showwarning = shown
        for logger, handlers, propagate in saved:
            logger.removeHandler(handler)
            for h in handlers:
                if h not in logger.handlers:
                    logger.addHandler(h)
            logger.propagate = propagate
        handler.close()


def _duration(seconds: float) -> str:
    seconds = max(0, round(seconds))
    return f"{seconds // 60}m{seconds % 60:02d}s" if seconds >= 60 else f"{seconds}s"


class EpochLine(L.Callback):
    """One console line per epoch (rank 0): ``phase epoch k/n  loss  val acc  time  left``.

    The time left is the mean epoch time so far times the epochs still planned (a budgeted phase's plan included).
    """

    def __init__(self, phase: str, stream: Any = None) -> None:
        self.phase, self.stream = phase, stream
        self.t_epoch: float | None = None
        self.durations: list[float] = []

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.t_epoch = time.monotonic()

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.t_epoch is None or not trainer.is_global_zero:
            return
        took = time.monotonic() - self.t_epoch
        self.durations.append(took)
        m = {k: float(v) for k, v in trainer.callback_metrics.items() if v.numel() == 1}
        epoch, total = trainer.current_epoch + 1, trainer.max_epochs
        left = (sum(self.durations) / len(self.durations)) * max(0, total - epoch)
        parts = [f"{self.phase} epoch {epoch}/{total}"]
        if "train/loss_epoch" in m:
            parts.append(f"loss {m['train/loss_epoch']:.4f}")
        if "val/acc" in m:
            parts.append(f"val acc {m['val/acc']:.4f}")
        if "val/loss" in m:
            parts.append(f"val loss {m['val/loss']:.4f}")
        parts += [_duration(took), f"{_duration(left)} left"]
        line = "  ".join(parts)
        bar = trainer.progress_bar_callback
        console = getattr(bar, "_console", None)
        if console is not None:
            console.print(line, highlight=False)
        else:
            print(line, file=self.stream or sys.stderr, flush=True)
