"""The LightningModule: the recipes' optimisers, schedules and metrics around the model's own loss.

The model owns its loss (``model.forward_train`` + ``model.loss``) and its per-phase settings
(``model.apply_phase_settings``); this module names no model family.
"""

from __future__ import annotations

import random

import lightning as L
import numpy as np
import torch
import torch.nn as nn
from torchmetrics.classification import MulticlassAccuracy

from .config import PhaseConfig, TrainConfig
from .schedule import SchedulePlan, lr_factor

__all__ = ["FERModule", "split_batch"]


def split_batch(batch) -> tuple[torch.Tensor, torch.Tensor, dict[str, torch.Tensor]]:
    """(x, y) or (x, y, extras): extras is a dict of what some training data adds for the loss (e.g. a target
    image); evaluation uses x and y only."""
    x, y, *rest = batch
    extras = rest[0] if rest and isinstance(rest[0], dict) else {}
    return x, y, extras


class FERModule(L.LightningModule):
    def __init__(self, model: nn.Module, cfg: TrainConfig, class_weights: torch.Tensor | None = None) -> None:
        super().__init__()
        self.model, self.cfg = model, cfg
        self.num_classes = model.num_classes
        self.phase: PhaseConfig = cfg.phases[0]
        self.schedule_plan = SchedulePlan(epochs=self.phase.epochs, steps_per_epoch=0)
        self.register_buffer("class_weights", class_weights if class_weights is not None else torch.ones(0))
        self.train_acc = MulticlassAccuracy(self.num_classes, average="micro")
        self.val_acc = MulticlassAccuracy(self.num_classes, average="micro")
        self.val_bacc = MulticlassAccuracy(self.num_classes, average="macro")
        model.configure_loss(**cfg.loss)  # the recipe's loss options; unknown ones fail here, before training

    def set_phase(self, phase: PhaseConfig, plan: SchedulePlan | None = None) -> None:
        """The phase to train next and its schedule plan (default: the recipe's epochs, no budget)."""
        self.phase = phase
        self.schedule_plan = plan or SchedulePlan(epochs=phase.epochs, steps_per_epoch=0)

    def forward(self, x: torch.Tensor):
        return self.model(x)

    def _loss(self, out: dict, y: torch.Tensor, extras: dict) -> tuple[torch.Tensor, dict]:
        weight = self.class_weights if self.phase.class_weights and self.class_weights.numel() else None
        return self.model.loss(out, y, extras, label_smoothing=self.cfg.label_smoothing, class_weight=weight)

    def training_step(self, batch, batch_idx: int) -> torch.Tensor:
        x, y, extras = split_batch(batch)
        if self.cfg.trainer.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        out = self.model.forward_train(x)
        loss, parts = self._loss(out, y, extras)
        hard = y if y.dim() == 1 else y.argmax(1)
        self.train_acc(out["logits"].detach(), hard)
        self.log("train/loss", loss, on_step=True, on_epoch=True, prog_bar=True, batch_size=len(x))
        self.log("train/acc", self.train_acc, on_step=False, on_epoch=True, prog_bar=True, batch_size=len(x))
        for k, v in parts.items():
            self.log(f"train/{k}", v, on_step=False, on_epoch=True, batch_size=len(x))
        return loss

    def validation_step(self, batch, batch_idx: int) -> None:
        x, y, extras = split_batch(batch)
        out = self.model.forward_train(x)
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
        if o.name == "adam":
            opt = torch.optim.Adam(params, lr=o.lr, weight_decay=o.weight_decay)
        elif o.name == "adamw":
            opt = torch.optim.AdamW(params, lr=o.lr, weight_decay=o.weight_decay)
        elif o.name == "sgd":
            opt = torch.optim.SGD(params, lr=o.lr, momentum=o.momentum, weight_decay=o.weight_decay)
        else:
            raise ValueError(f"optim.name must be adam, adamw or sgd, got {o.name!r}")
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
