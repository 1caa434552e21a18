"""Learning-rate schedules whose length is a plan, and the plan that fits a phase into its time budget.

A step schedule (``cosine``, ``onecycle``) is a function of ``step / total_steps``. Without a budget the total is the
recipe's epochs times the steps of an epoch. With ``max_minutes``, :class:`TimeBudget` plans how many whole epochs
fit the budget: first from the time of a few early training steps (plus an allowance for validation), so that even
a first epoch that takes most of the budget runs on the right schedule, then again from the first epoch as it ran
(training and validation). The schedule's total becomes that many epochs, so warm-up, peak and anneal all happen
inside the budget instead of being cut.
The plan is written to ``schedule_phaseK.json`` in the run directory, shown in the report, and kept in the Lightning
checkpoint, so ``--resume`` continues the same plan without measuring again.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import lightning as L

from ..files import write_json

__all__ = ["SchedulePlan", "TimeBudget", "lr_factor"]

#: torch's OneCycleLR defaults: start at max_lr / 25, end at start / 1e4, cosine annealing
ONECYCLE_DIV, ONECYCLE_FINAL_DIV = 25.0, 1e4
#: the hard stop, as a multiple of the budget, should a later epoch be much slower than the first
SAFETY_FACTOR = 1.25
#: the clock a TimeBudget reads by default (seconds); tests replace it
CLOCK: Callable[[], float] = time.monotonic
#: early estimate: steps skipped (start-up), steps timed, and validation as a fraction of an epoch's training time
SKIP_STEPS, TIMED_STEPS, VALIDATION_ALLOWANCE = 3, 10, 0.1


@dataclass
class SchedulePlan:
    """How long a phase's step schedule is: ``total_steps`` over ``epochs`` epochs of ``steps_per_epoch``."""

    epochs: int
    steps_per_epoch: int
    budget_minutes: float | None = None
    measured: dict[str, float] = field(default_factory=dict)  # first epoch's seconds: train+val, val
    planned: bool = False  # True once fitted to the budget

    @property
    def total_steps(self) -> int:
        return max(2, self.epochs * self.steps_per_epoch)

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "total_steps": self.total_steps}


def _cos(start: float, end: float, pct: float) -> float:
    return end + (start - end) / 2.0 * (math.cos(math.pi * min(max(pct, 0.0), 1.0)) + 1.0)


def lr_factor(name: str, step: int, total: int, warmup_fraction: float = 0.1, min_factor: float = 0.0) -> float:
    """The learning rate at ``step`` of ``total`` as a fraction of the recipe's ``lr``.

    ``onecycle``: cosine warm-up from lr/25 to lr over ``warmup_fraction`` of the steps, then cosine anneal to
    lr/25/1e4 (the learning-rate curve of torch's ``OneCycleLR``; momentum is not cycled). ``cosine``: cosine anneal
    from lr to ``min_factor`` x lr.
    """
    last = max(1, total - 1)
    if name == "onecycle":
        start = 1.0 / ONECYCLE_DIV
        end = start / ONECYCLE_FINAL_DIV
        warm_end = max(1.0, warmup_fraction * total - 1.0)
        if step <= warm_end:
            return _cos(start, 1.0, step / warm_end)
        return _cos(1.0, end, (step - warm_end) / max(1.0, last - warm_end))
    if name == "cosine":
        return _cos(1.0, min_factor, step / last)
    raise ValueError(f"no step schedule named {name!r}")


class TimeBudget(L.Callback):
    """Fit a phase's schedule into ``budget_minutes``: time the first epoch, then plan whole epochs (see module).

    ``clock`` returns seconds (default :data:`CLOCK`, ``time.monotonic``; tests inject one). ``plan`` is shared with
    the module's learning-rate function, which reads ``plan.total_steps`` at every step.
    """

    def __init__(
        self, plan: SchedulePlan, run_dir: Path, phase_index: int, clock: Callable[[], float] | None = None
    ) -> None:
        self.plan, self.run_dir, self.phase_index = plan, Path(run_dir), phase_index
        self.recipe_epochs = plan.epochs
        self.clock = clock or CLOCK
        self.t0: float | None = None
        self.val_t0: float | None = None
        self.t_timed: float | None = None

    @property
    def path(self) -> Path:
        return self.run_dir / f"schedule_phase{self.phase_index}.json"

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.plan.planned:  # resumed with its recorded plan
            trainer.fit_loop.max_epochs = self.plan.epochs
        self.t0 = self.clock()

    def _fit(self, trainer: L.Trainer, epochs: int) -> None:
        self.plan.epochs = max(1, min(self.plan.epochs, epochs))
        trainer.fit_loop.max_epochs = self.plan.epochs

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs, batch, batch_idx) -> None:
        """The early estimate, from ``TIMED_STEPS`` steps of the first epoch (when the epoch is long enough)."""
        if self.plan.planned or trainer.current_epoch != 0 or self.t0 is None:
            return
        spe = self.plan.steps_per_epoch
        if spe < 2 * (SKIP_STEPS + TIMED_STEPS):
            return  # a short epoch: its measured time (below) comes soon enough
        if batch_idx == SKIP_STEPS - 1:
            self.t_timed = self.clock()
        elif batch_idx == SKIP_STEPS + TIMED_STEPS - 1 and self.t_timed is not None:
            now = self.clock()
            step_s = (now - self.t_timed) / TIMED_STEPS
            epoch_s = step_s * spe * (1 + VALIDATION_ALLOWANCE)
            first = (now - self.t0) + step_s * (spe - batch_idx - 1) * (1 + VALIDATION_ALLOWANCE)
            budget_s = (self.plan.budget_minutes or 0.0) * 60.0
            self._fit(trainer, 1 + int(max(0.0, budget_s - first) // epoch_s))
            self.plan.measured = {"early_step_seconds": round(step_s, 4)}

    def on_validation_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.val_t0 = self.clock()

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.plan.planned or trainer.sanity_checking or self.t0 is None or self.val_t0 is None:
            return
        now = self.clock()
        epoch_s = now - self.t0  # the first epoch as it runs: loader start-up, training, validation
        budget_s = (self.plan.budget_minutes or 0.0) * 60.0
        fit = int(budget_s // epoch_s) if epoch_s > 0 else self.plan.epochs
        self.plan.epochs = self.recipe_epochs  # the early estimate may have lowered it; the measurement decides
        self._fit(trainer, fit)
        self.plan.measured = {
            **self.plan.measured,
            "first_epoch_seconds": round(epoch_s, 3),
            "validation_seconds": round(now - self.val_t0, 3),
        }
        self.plan.planned = True
        if trainer.is_global_zero:
            write_json(self.path, self.plan.to_dict())

    def state_dict(self) -> dict[str, Any]:
        return self.plan.to_dict()

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        for key in ("epochs", "steps_per_epoch", "budget_minutes", "measured", "planned"):
            if key in state_dict:
                setattr(self.plan, key, state_dict[key])
