"""The LightningModule: the recipes' optimisers, schedules and metrics around the model's own loss.

The model owns its loss (``model.forward_train`` + ``model.loss``) and its per-phase settings
(``model.apply_phase_settings``); this module names no model family.

The training metrics of an epoch (loss, accuracy, the loss's parts) accumulate in torchmetrics objects whose state is
saved with the module in Lightning's checkpoints: a run resumed within an epoch reports the same epoch metrics as one
that never stopped.
"""

from __future__ import annotations

import random

import lightning as L
import numpy as np
import torch
import torch.nn as nn
from torchmetrics import MeanMetric
from torchmetrics.classification import MulticlassAccuracy

from ..hardware import use_channels_last
from .config import PhaseConfig, TrainConfig
from .schedule import SchedulePlan, lr_factor

__all__ = ["FERModule", "build_optimizer", "check_phases", "split_batch"]

#: the training metrics whose state is in the module's state dict (the loss parts' metrics, made at the first step,
#: are kept in the checkpoint beside it, so that the state dict has the same keys from the start: EMA copies it then)
TRAIN_METRICS = ("train_acc", "train_loss")


def build_optimizer(phase: PhaseConfig, params) -> torch.optim.Optimizer:
    """The torch optimiser of a phase's ``optim`` settings."""
    o = phase.optim
    if o.name == "adam":
        return torch.optim.Adam(params, lr=o.lr, weight_decay=o.weight_decay)
    if o.name == "adamw":
        return torch.optim.AdamW(params, lr=o.lr, weight_decay=o.weight_decay)
    if o.name == "sgd":
        return torch.optim.SGD(params, lr=o.lr, momentum=o.momentum, weight_decay=o.weight_decay)
    raise ValueError(f"optim.name must be adam, adamw or sgd, got {o.name!r}")


SCHEDULES = ("none", "plateau", "inverse_time", "cosine", "onecycle")


def check_phases(cfg: TrainConfig) -> None:
    """Build every phase's optimiser (on a stand-in parameter) and check its schedule name: bad settings fail here,
    before a run directory is made, instead of when the phase starts."""
    for k, phase in enumerate(cfg.phases):
        try:
            build_optimizer(phase, [nn.Parameter(torch.zeros(1))])
            if phase.schedule.name not in SCHEDULES:
                raise ValueError(f"schedule.name must be one of {', '.join(SCHEDULES)}, got {phase.schedule.name!r}")
        except ValueError as e:
            raise ValueError(f"phases.{k}: {e}") from None


def split_batch(batch) -> tuple[torch.Tensor, torch.Tensor, dict[str, torch.Tensor]]:
    """(x, y) or (x, y, extras): extras is a dict of what some training data adds for the loss (e.g. a target
    image); evaluation uses x and y only."""
    x, y, *rest = batch
    extras = rest[0] if rest and isinstance(rest[0], dict) else {}
    return x, y, extras


def _mean(persistent: bool = True) -> MeanMetric:
    """A batch-size-weighted epoch mean (NaN kept, as Lightning's mean does), its state in the state dict or not."""
    metric = MeanMetric(nan_strategy="disable")
    metric.persistent(persistent)
    return metric


def _module_states(checkpoint: dict) -> list[dict]:
    """The module state dicts in a Lightning checkpoint: ``state_dict`` and, with weight averaging (EMA), the
    current (not averaged) model's ``current_model_state``."""
    return [checkpoint[k] for k in ("state_dict", "current_model_state") if isinstance(checkpoint.get(k), dict)]


class FERModule(L.LightningModule):
    def __init__(self, model: nn.Module, cfg: TrainConfig, class_weights: torch.Tensor | None = None) -> None:
        super().__init__()
        self.model, self.cfg = model, cfg
        self.num_classes = model.num_classes
        self.phase: PhaseConfig = cfg.phases[0]
        self.schedule_plan = SchedulePlan(epochs=self.phase.epochs, steps_per_epoch=0)
        self.register_buffer("class_weights", class_weights if class_weights is not None else torch.ones(0))
        self.train_acc = MulticlassAccuracy(self.num_classes, average="micro")
        self.train_acc.persistent(True)
        self.train_loss = _mean()
        self.train_parts = nn.ModuleDict()  # a MeanMetric per part of the model's loss, made at its first step
        self._reported_metrics: dict[str, torch.Tensor] = {}
        self.val_acc = MulticlassAccuracy(self.num_classes, average="micro")
        self.val_bacc = MulticlassAccuracy(self.num_classes, average="macro")
        model.configure_loss(**cfg.loss)  # the recipe's loss options; unknown ones fail here, before training
        self.channels_last = use_channels_last(cfg.trainer.channels_last, cfg.trainer.accelerator)
        self._compiled = None  # the compiled training forward (trainer.compile), made in setup

    def set_phase(self, phase: PhaseConfig, plan: SchedulePlan | None = None) -> None:
        """The phase to train next and its schedule plan (default: the recipe's epochs, no budget)."""
        self.phase = phase
        self.schedule_plan = plan or SchedulePlan(epochs=phase.epochs, steps_per_epoch=0)

    def forward(self, x: torch.Tensor):
        return self.model(x)

    def _loss(self, out: dict, y: torch.Tensor, extras: dict) -> tuple[torch.Tensor, dict]:
        weight = self.class_weights if self.phase.class_weights and self.class_weights.numel() else None
        return self.model.loss(out, y, extras, label_smoothing=self.cfg.label_smoothing, class_weight=weight)

    def setup(self, stage: str) -> None:
        t = self.cfg.trainer
        if t.compile:  # the training forward only: checkpoints keep the plain module's keys
            mode = None if t.compile is True else str(t.compile)
            self._compiled = torch.compile(self.model.forward_train, mode=mode)

    def _forward(self, x: torch.Tensor, compiled: bool = True) -> dict:
        """The model's training forward (compiled for training steps when ``trainer.compile``; validation runs the
        plain one: other batch sizes and eval mode would recompile it)."""
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)  # a no-op for BatchAugment's channels-last output
        forward = self._compiled if compiled and self._compiled is not None else self.model.forward_train
        return forward(x)

    def training_step(self, batch, batch_idx: int) -> torch.Tensor:
        x, y, extras = split_batch(batch)
        out = self._forward(x)
        loss, parts = self._loss(out, y, extras)
        hard = y if y.dim() == 1 else y.argmax(1)
        self.train_acc(out["logits"].detach(), hard)
        # the epoch's mean loss weighted by batch size, as Lightning's on_epoch mean: train/loss_step, train/loss_epoch
        self.train_loss.update(loss.detach(), weight=len(x))
        self.log("train/loss_step", loss, on_step=True, on_epoch=False, prog_bar=True, batch_size=len(x))
        self.log("train/loss_epoch", self.train_loss, on_step=False, on_epoch=True, batch_size=len(x))
        self.log("train/acc", self.train_acc, on_step=False, on_epoch=True, prog_bar=True, batch_size=len(x))
        for k, v in parts.items():
            if k not in self.train_parts:
                self.train_parts[k] = _mean(persistent=False).to(self.device)
            v = v.detach() if torch.is_tensor(v) else torch.tensor(float(v), device=self.device)
            self.train_parts[k].update(v, weight=len(x))
            self.log(
                f"train/{k}",
                self.train_parts[k],
                on_step=False,
                on_epoch=True,
                batch_size=len(x),
                metric_attribute=f"train_parts.{k}",  # made after Lightning listed the module's metrics
            )
        return loss

    # ---- checkpoints: the training metrics of an unfinished epoch travel with the weights ----------------
    def _epoch_finished(self) -> bool:
        trainer = self.trainer
        return trainer.fit_loop.epoch_loop.batch_progress.current.processed >= trainer.num_training_batches

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        if self._trainer is None:
            return
        # the training metrics Lightning reports until the next epoch ends (best/ and last/ record them)
        reported = {k: v for k, v in self.trainer.callback_metrics.items() if k.startswith("train/")}
        checkpoint["attnfer_train_metrics"] = {k: v.detach().float().cpu() for k, v in reported.items()}
        finished = self._epoch_finished()
        checkpoint["attnfer_train_parts"] = {  # this epoch's means of the loss's parts so far
            part: {} if finished else {s: getattr(m, s).detach().cpu().clone() for s in m._defaults}
            for part, m in self.train_parts.items()
        }
        if not finished:
            return
        # an epoch that is complete: the next epoch starts its metrics afresh (Lightning resets them after the
        # epoch-end hooks, after the epoch's checkpoint is taken)
        modules = dict(self.named_modules())
        for state in _module_states(checkpoint):
            for key in [k for k in state if k.split(".", 1)[0] in TRAIN_METRICS]:
                name, _, attr = key.rpartition(".")
                default = getattr(modules.get(name), "_defaults", {}).get(attr)
                if isinstance(default, torch.Tensor):
                    state[key] = default.detach().clone()

    def on_train_start(self) -> None:
        if self._reported_metrics:  # a resumed run reports what the interrupted one reported at that point
            self.trainer.callback_metrics.update({k: v.to(self.device) for k, v in self._reported_metrics.items()})
            self._reported_metrics = {}

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        self._reported_metrics = dict(checkpoint.get("attnfer_train_metrics") or {})
        for part, saved in (checkpoint.get("attnfer_train_parts") or {}).items():
            metric = self.train_parts[part] if part in self.train_parts else _mean(persistent=False).to(self.device)
            metric.reset()
            for name, value in saved.items():
                setattr(metric, name, value.to(self.device))
            self.train_parts[part] = metric
        states = _module_states(checkpoint)
        for state in states:  # a checkpoint from before these metrics were saved
            for key, value in self.state_dict().items():
                if key.split(".", 1)[0] in TRAIN_METRICS and key not in state:
                    state[key] = value

    def validation_step(self, batch, batch_idx: int) -> None:
        x, y, extras = split_batch(batch)
        out = self._forward(x, compiled=False)
        loss, _ = self._loss(out, y, extras)
        logits = out["logits"]
        self.val_acc(logits, y)
        self.val_bacc(logits, y)
        self.log("val/loss", loss, on_epoch=True, prog_bar=False, batch_size=len(x), sync_dist=True)
        self.log("val/acc", self.val_acc, on_epoch=True, prog_bar=True, batch_size=len(x))
        self.log("val/bacc", self.val_bacc, on_epoch=True, batch_size=len(x))

    # ---- optimisers ----------------------------------------------------------------------------
    def configure_optimizers(self):
        o, s = self.phase.optim, self.phase.schedule
        params = [p for p in self.model.parameters() if p.requires_grad]
        opt = build_optimizer(self.phase, params)
        if s.name == "none":
            return opt
        if s.name == "plateau":
            sched = torch.optim.lr_scheduler.ReduceLROnPlateau(
                opt,
                mode="max" if s.monitor.endswith("acc") else "min",
                factor=s.factor,
                patience=s.patience,
                threshold=s.min_delta,
                threshold_mode="abs",
                min_lr=s.min_lr,
            )
            return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "monitor": s.monitor, "interval": "epoch"}}
        if s.name == "inverse_time":  # Keras InverseTimeDecay(lr, decay_steps, 1) applied per epoch
            sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda e: 1.0 / (1.0 + e / s.decay_epochs))
            return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "epoch"}}
        if s.name not in ("cosine", "onecycle"):
            raise ValueError(f"schedule.name must be none, plateau, inverse_time, cosine or onecycle, got {s.name!r}")
        # a step schedule over the phase's plan: epochs x steps per epoch, refitted by TimeBudget under max_minutes
        plan = self.schedule_plan
        if not plan.planned:
            plan.steps_per_epoch = max(1, int(self.trainer.estimated_stepping_batches) // max(1, plan.epochs))
        min_factor = s.min_lr / o.lr

        def factor(step: int) -> float:
            return lr_factor(s.name, step, plan.total_steps, s.warmup_fraction, min_factor)

        sched = torch.optim.lr_scheduler.LambdaLR(opt, factor)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}

    def configure_gradient_clipping(self, optimizer, gradient_clip_val=None, gradient_clip_algorithm=None) -> None:
        if self.phase.optim.clip_norm:
            self.clip_gradients(optimizer, gradient_clip_val=self.phase.optim.clip_norm, gradient_clip_algorithm="norm")

    # ---- exact resume: the randomness of a step is a function of (seed, step) -------------------
    def on_train_batch_start(self, batch, batch_idx: int) -> None:
        """Reseed before each step, so dropout depends on the global step only and a resumed run matches."""
        step_seed = (self.cfg.seed * 1_000_003 + self.global_step * 7919 + self.global_rank) % (2**63)
        torch.manual_seed(step_seed)
        np.random.seed(step_seed % (2**32))
        random.seed(step_seed)
