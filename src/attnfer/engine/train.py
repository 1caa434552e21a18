"""Training driver: phases of a recipe on Lightning, validation-selected checkpoints, final evaluation.

Run directory layout::

    config.yaml          the resolved recipe           environment.json  versions, git commit, device
    data.json            split counts and provenance   state.json        completed phases
    best/ last/          safetensors + config + metrics (best = highest validation accuracy over all phases)
    lightning/phaseK/    Lightning checkpoints for exact resume (optimizer, scheduler, epoch, the loader's place in it):
                         last.ckpt and the one before it, last.previous.ckpt (see "Crash safety" below)
    schedule_phaseK.json the epochs planned to fit a phase's max_minutes (attnfer.engine.schedule)
    logs/phaseK/metrics.csv, tb/      CSV and TensorBoard logs
    curves.json, curves.png           training curves of all phases (from the CSV logs)
    evaluation.json, confusion_<which>_<split>.png, samples.json, samples/   (attnfer.engine.evaluate)
    report.html                       a view of the files above (attnfer.engine.report)
    train.log                         the libraries' messages and warnings (the console shows one line per epoch)

Crash safety (tests/test_crash_safety.py proves each point):

- Lightning checkpoints are written at every epoch end and every ``ATTNFER_CHECKPOINT_EVERY_MINUTES`` (default 30)
  or ``ATTNFER_CHECKPOINT_EVERY_N_STEPS`` within an epoch (the recipe keys ``trainer.checkpoint_every_minutes`` /
  ``trainer.checkpoint_every_n_steps`` take precedence), with the training loader's place
  in its epoch: after a kill -9, ``--resume`` continues from the last of them and ends as the uninterrupted run does.
- Each checkpoint is written whole (temporary file, fsync, rename) and the previous one is kept until the new one is
  complete; a damaged ``last.ckpt`` is reported in one line and the run resumes from ``last.previous.ckpt``.
- ``best/`` and ``last/`` are swapped in by renames that a resume completes or undoes, whatever step a kill hit.
- SIGTERM and SIGINT finish the current step, stop every DDP rank at the same step, write one checkpoint, print the
  command that continues and exit with 143 / 130; a second Ctrl+C stops at once.
- A resumed run that had not reached its first checkpoint starts again from the recipe's pretrained weights.
- Nothing is written before the recipe, the data, the model and the optimiser settings are checked.
"""

from __future__ import annotations

import csv
import importlib.util
import json
import os
import time
import warnings
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import lightning as L
import torch
import yaml
from lightning.pytorch.callbacks import EarlyStopping, LearningRateMonitor, ModelCheckpoint, RichProgressBar
from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger
from lightning.pytorch.utilities.exceptions import SIGTERMException

from ..data.sampling import class_weights
from ..files import UserError, atomic_write, write_json
from ..hardware import resolve_precision, use_channels_last
from ..models import create_model
from .callbacks import (
    AtomicCheckpointIO,
    IntervalCheckpoint,
    SafetensorsCheckpoint,
    SignalStop,
    StopAfterEpochs,
    StopSignals,
    TrainingInterrupted,
    agree_on_signal,
    previous_checkpoint,
    recover_model_dir,
)
from .config import TrainConfig, load_config, to_dict
from .console import EpochLine, library_noise_to
from .data import FERDataModule, load_run_data
from .evaluate import environment, evaluate_checkpoints
from .module import FERModule, check_phases
from .schedule import SAFETY_FACTOR, SchedulePlan, TimeBudget

__all__ = [
    "ResumeError",
    "TrainingInterrupted",
    "checkpoint_interval",
    "evaluate_run_dir",
    "plot_curves",
    "quickstart",
    "resume",
    "resume_checkpoint",
    "train",
    "training_curves",
    "write_curves",
]

SELECTION = "best = highest validation accuracy over all phases; test never used for selection"

#: checkpoints within an epoch (every epoch end has one): every N training steps and/or every M minutes of training,
#: from the recipe's ``trainer.checkpoint_every_n_steps`` / ``trainer.checkpoint_every_minutes``, else from these
#: environment variables; 0 turns one off. Without any: every DEFAULT minutes.
CHECKPOINT_STEPS_ENV = "ATTNFER_CHECKPOINT_EVERY_N_STEPS"
CHECKPOINT_MINUTES_ENV = "ATTNFER_CHECKPOINT_EVERY_MINUTES"
DEFAULT_CHECKPOINT_MINUTES = 30.0


class ResumeError(UserError, ValueError):
    """A run that cannot be resumed as it is; the message says what to do."""


def checkpoint_interval(cfg: TrainConfig) -> tuple[int | None, float | None]:
    """(every N steps, every M minutes) for the checkpoints within an epoch; None: not by that measure."""

    def read(key: str, env: str, cast: type) -> Any:
        value = getattr(cfg.trainer, key, None)
        if value is None and os.environ.get(env, "").strip():
            try:
                value = cast(os.environ[env])
            except ValueError:
                raise ValueError(f"{env}: expected a number, got {os.environ[env]!r}") from None
            if value < 0:
                raise ValueError(f"{env}: must be >= 0 (0 turns it off), got {os.environ[env]!r}")
        return value

    steps = read("checkpoint_every_n_steps", CHECKPOINT_STEPS_ENV, int)
    minutes = read("checkpoint_every_minutes", CHECKPOINT_MINUTES_ENV, float)
    if steps is None and minutes is None:
        minutes = DEFAULT_CHECKPOINT_MINUTES
    return (steps or None), (minutes or None)


def _first_process() -> bool:
    """This process is rank 0 of the run (a DDP worker launched by Lightning, torchrun or SLURM has a rank set)."""
    return all(os.environ.get(v, "0").strip() in ("", "0") for v in ("LOCAL_RANK", "NODE_RANK", "RANK", "SLURM_PROCID"))


def _read_checkpoint(path: Path) -> tuple[dict | None, str | None]:
    """The checkpoint at ``path``, or None and what is wrong with it (one line)."""
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # a truncated or otherwise damaged file: torch says so in many ways
        first = (str(e).strip().splitlines() or [""])[0]
        return None, f"{type(e).__name__}: {first}" if first else type(e).__name__
    missing = [
        k for k in ("state_dict", "loops", "epoch", "global_step") if not isinstance(ckpt, dict) or k not in ckpt
    ]
    if missing:
        return None, f"not a Lightning training checkpoint (no {', '.join(missing)})"
    return ckpt, None


def resume_checkpoint(run_dir: Path, k: int) -> Path | None:
    """The checkpoint phase ``k`` of ``run_dir`` resumes from: ``last.ckpt``, or, when that one is damaged, the one
    before it (``last.previous.ckpt``, with a warning; the damaged file is kept as ``last.ckpt.damaged``). None when
    the phase has none. Raises :class:`ResumeError` when there are checkpoints but none is complete."""
    ckpt_dir = Path(run_dir) / "lightning" / f"phase{k}"
    last = ckpt_dir / "last.ckpt"
    problems: list[str] = []
    for path in (last, previous_checkpoint(last)):
        if not path.is_file():
            continue
        ckpt, problem = _read_checkpoint(path)
        if ckpt is None:
            problems.append(f"{path.name}: {problem}")
            continue
        if problems:
            at = f"epoch {ckpt['epoch']}, global step {ckpt['global_step']}"
            warnings.warn(
                f"{last} is damaged ({problems[0].split(': ', 1)[1]}); resuming from the previous checkpoint, "
                f"{path.name} ({at}), kept as {last.name}.damaged",
                stacklevel=2,
            )
            if _first_process() and last.is_file():
                os.replace(last, last.with_name(last.name + ".damaged"))  # the next checkpoint must not keep it
        del ckpt
        return path
    if problems:
        raise ResumeError(
            f"cannot resume {run_dir}: no complete checkpoint of phase {k} in {ckpt_dir} ({'; '.join(problems)}); "
            f"remove that folder to train phase {k} again from its start"
        )
    return None


def _recover(run_dir: Path) -> None:
    """Undo what a kill left half done: a swap of best/ or last/, temporary files of checkpoints."""
    for name in ("best", "last"):
        recover_model_dir(run_dir / name)
    for tmp in (*run_dir.glob(".*.tmp"), *run_dir.glob("lightning/phase*/.*.tmp")):
        tmp.unlink(missing_ok=True)


def _other_ranks(trainer: L.Trainer) -> dict[int, int]:
    """On rank 0 of a DDP run Lightning launched: wait for the other local ranks to stop; their exit statuses."""
    import subprocess

    codes: dict[int, int] = {}
    procs = getattr(getattr(trainer.strategy, "launcher", None), "procs", None) or []
    for rank, proc in enumerate(procs, start=1):
        try:
            codes[rank] = proc.wait(timeout=120)
        except subprocess.TimeoutExpired:
            proc.kill()
            codes[rank] = proc.wait()
    return codes


def _loggers(run_dir: Path, version: str) -> list:
    """CSV logs (the curves, the report) always; TensorBoard's too where it is installed (it is a dependency of
    attnfer, but a bare GPU image may lack it: training must not depend on a viewer)."""
    loggers: list = [CSVLogger(run_dir, name="logs", version=version)]
    if importlib.util.find_spec("tensorboard") is not None or importlib.util.find_spec("tensorboardX") is not None:
        loggers.append(TensorBoardLogger(run_dir, name="tb", version=version, default_hp_metric=False))
    return loggers


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
        # the budget is planned (TimeBudget); this hard stop only guards against a much slower later epoch
        max_time={"minutes": phase.max_minutes * SAFETY_FACTOR} if phase.max_minutes else None,
        accelerator=t.accelerator,
        devices=t.devices,
        num_nodes=t.num_nodes,
        strategy=t.strategy,
        precision=resolve_precision(t.precision, t.accelerator),
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
        plugins=[AtomicCheckpointIO()],
        logger=_loggers(run_dir, version),
    )


def train(cfg: TrainConfig, run_dir: str | Path | None = None, _resume: bool = False) -> Path:
    """Train every phase of ``cfg``, then evaluate on test; returns the run directory.

    SIGTERM or SIGINT stop it with a checkpoint and raise :class:`TrainingInterrupted` (see the module's "Crash
    safety"); ``attnfer train --resume RUN_DIR`` (:func:`resume`) continues."""
    L.seed_everything(cfg.seed, workers=True, verbose=False)
    data = load_run_data(cfg)  # before anything is written: bad data leaves no half-made run directory
    if run_dir is None:  # DDP children re-run the command: they inherit rank 0's run directory
        run_dir = (
            os.environ.get("ATTNFER_RUN_DIR") or Path(cfg.output_dir) / f"{cfg.name}-{datetime.now():%Y%m%d-%H%M%S}"
        )
    run_dir = Path(run_dir)
    every_n_steps, every_minutes = checkpoint_interval(cfg)
    state_path = run_dir / "state.json"
    state = json.loads(state_path.read_text()) if _resume and state_path.is_file() else {"completed_phases": []}
    if _resume and _first_process():
        _recover(run_dir)
    todo = [k for k in range(len(cfg.phases)) if k not in state["completed_phases"]]
    first_ckpt = resume_checkpoint(run_dir, todo[0]) if _resume and todo else None
    # weights: a phase resumed from its checkpoint has them there, a later phase from the phase before it; the first
    # phase started afresh (also a resumed run killed before its first checkpoint) starts from the pretrained ones
    start_pretrained = bool(todo) and todo[0] == 0 and first_ckpt is None
    with warnings.catch_warnings():
        warnings.simplefilter("default")
        model = create_model(
            cfg.model.name,
            num_classes=len(data.class_names),
            pretrained=cfg.model.pretrained if start_pretrained else False,
            class_names=data.class_names,
            **cfg.model.kwargs,
        )
    # what the checkpoint was trained on travels in its config (predict, the service and the page show it)
    training = {"dataset": data.name, "run": run_dir.name, "recipe": cfg.name}
    model.cfg = model.cfg.replace(extra={**model.cfg.extra, "training": training})
    if use_channels_last(cfg.trainer.channels_last, cfg.trainer.accelerator):
        model = model.to(memory_format=torch.channels_last)
    module = FERModule(model, cfg, class_weights(data["train"]))  # checks the loss options
    check_phases(cfg)  # every phase's optimiser and schedule
    dm = FERDataModule(cfg, data, model.cfg)

    # the recipe, the data, the model and the optimisers are fine: now the run directory
    os.environ["ATTNFER_RUN_DIR"] = str(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    if not _resume:
        atomic_write(run_dir / "config.yaml", yaml.safe_dump(to_dict(cfg), sort_keys=False))
        write_json(run_dir / "environment.json", environment())
    write_json(run_dir / "data.json", data.summary())
    checkpoint_cb = SafetensorsCheckpoint(run_dir, "val/acc", "max")

    with StopSignals(run_dir) as signals:
        for k, phase in enumerate(cfg.phases):
            if k in state["completed_phases"]:
                continue
            ckpt_dir = run_dir / "lightning" / f"phase{k}"
            ckpt = first_ckpt if k == todo[0] else (resume_checkpoint(run_dir, k) if _resume else None)
            resuming_phase = ckpt is not None
            if k > 0 and not resuming_phase:
                from safetensors.torch import load_file

                model.load_state_dict(load_file(str(run_dir / f"phase{k - 1}_end.safetensors")))
            if not resuming_phase:
                (run_dir / "phase_best.safetensors").unlink(missing_ok=True)
                checkpoint_cb.phase_best = float("-inf")
            model.apply_phase_settings(phase.model)
            plan = SchedulePlan(epochs=phase.epochs, steps_per_epoch=0, budget_minutes=phase.max_minutes)
            module.set_phase(phase, plan)
            dm.set_augment(phase.augment)
            checkpoint_cb.phase = phase.name
            # Lightning checkpoints, all to last.ckpt: at every epoch end (after validation) and within epochs
            saved = {"dirpath": ckpt_dir, "filename": "last", "save_top_k": 1, "monitor": None}
            saved.update(enable_version_counter=False, auto_insert_metric_name=False)
            callbacks: list[L.Callback] = [
                checkpoint_cb,
                ModelCheckpoint(every_n_epochs=1, **saved),
                LearningRateMonitor(logging_interval="epoch"),
            ]
            if every_n_steps:
                callbacks.append(IntervalCheckpoint(every_n_train_steps=every_n_steps, **saved))
            if every_minutes:
                callbacks.append(IntervalCheckpoint(train_time_interval=timedelta(minutes=every_minutes), **saved))
            if phase.max_minutes:
                callbacks.append(TimeBudget(plan, run_dir, k))
            callbacks.append(EpochLine(phase.name))
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
            stop = SignalStop(signals, ckpt_dir / "last.ckpt")
            callbacks.append(stop)
            with library_noise_to(run_dir / "train.log"):  # Lightning's chatter in the run's log, ours on the console
                trainer = _trainer(cfg, run_dir, k, callbacks, phase.epochs)
                t0 = time.perf_counter()
                try:
                    trainer.fit(module, dm, ckpt_path=str(ckpt) if resuming_phase else None)
                except SIGTERMException:
                    if stop.saved is None:
                        raise
                    others = _other_ranks(trainer) if trainer.is_global_zero else {}
                    where = f"phase {k} '{phase.name}', {stop.where}"
                    if others:
                        where += "; the other ranks stopped too: " + ", ".join(
                            f"rank {r} exit {c}" for r, c in others.items()
                        )
                    raise TrainingInterrupted(
                        stop.signum or 15, run_dir, stop.saved, where=where, rank=trainer.global_rank
                    ) from None
                except TrainingInterrupted as e:
                    e.rank = trainer.global_rank
                    raise
                finally:
                    signals.fitting = False  # Lightning skips the callbacks' teardown when fit raises
            if trainer.interrupted:
                raise KeyboardInterrupt(f"training interrupted; continue with: attnfer train --resume {run_dir}")
            if slicer is not None and slicer.stopped:
                return run_dir  # checkpointed; `attnfer train --resume RUN_DIR` continues
            trainer.strategy.barrier()
            if es is not None and es.restore_best:
                checkpoint_cb.restore_phase_best(module)
            if trainer.is_global_zero:
                from safetensors.torch import save_file

                state_dict = {k2: v.detach().contiguous().cpu() for k2, v in model.state_dict().items()}
                atomic_write(run_dir / f"phase{k}_end.safetensors", lambda p, sd=state_dict: save_file(sd, str(p)))
                (run_dir / "phase_best.safetensors").unlink(missing_ok=True)
                state["completed_phases"].append(k)
                state.setdefault("phase_seconds", {})[str(k)] = round(time.perf_counter() - t0, 1)
                write_json(state_path, state)
            trainer.strategy.barrier()
            # a signal after the phase's last step (all ranks agree): the phase is complete and recorded
            signum = agree_on_signal(trainer, signals.requested)
            if signum:
                raise TrainingInterrupted(
                    signum,
                    run_dir,
                    note=f"phase {k} '{phase.name}' had finished and is recorded",
                    rank=trainer.global_rank,
                )

        if not (torch.distributed.is_available() and torch.distributed.is_initialized()) or (
            torch.distributed.get_rank() == 0
        ):
            evaluate_run_dir(run_dir, cfg, dm)
    return run_dir


def resume(run_dir: str | Path, overrides: list[str] | None = None) -> Path:
    """Continue an interrupted run exactly where it stopped (optimizer, scheduler, epoch, RNG state)."""
    run_dir = Path(run_dir)
    cfg = load_config(run_dir / "config.yaml", overrides)
    return train(cfg, run_dir, _resume=True)


def evaluate_run_dir(run_dir: Path, cfg: TrainConfig, dm: FERDataModule) -> dict[str, Any]:
    """After the last phase: the validation-selected (``best``) and the ``last`` model on test and the extra
    subsets, in the training precision; the training curves; the report."""
    from .report import render_report

    checkpoints = {w: run_dir / w for w in ("best", "last") if (run_dir / w / "model.safetensors").is_file()}
    result = evaluate_checkpoints(
        checkpoints,
        dm,
        run_dir,
        precision=resolve_precision(cfg.trainer.precision, cfg.trainer.accelerator),
        check_batch_invariance=cfg.evaluate_batch_invariance,
        samples=cfg.report_samples,
        selection=SELECTION,
    )
    write_curves(run_dir, [p.name for p in cfg.phases])
    render_report(run_dir)
    return result


def quickstart(output_dir: str | Path = "runs", overrides: dict[str, Any] | None = None) -> tuple[Path, dict[str, Any]]:
    """The main job on the built-in default: the packaged ``quickstart.yaml`` recipe (SynthFER, generated and cached
    on first use), training, evaluation and report. Returns the run directory and a summary: the recipe's model and
    dataset, the minutes it took, and accuracy / balanced accuracy of the best checkpoint per evaluated split."""
    from importlib.resources import as_file, files

    t = time.perf_counter()
    with as_file(files("attnfer") / "configs" / "quickstart.yaml") as recipe:
        cfg = load_config(recipe, {"output_dir": str(output_dir), **(overrides or {})})
    run = train(cfg)
    best = json.loads((run / "evaluation.json").read_text())["checkpoints"]["best"]
    summary = {
        "model": cfg.model.name,
        "dataset": cfg.data.name,
        "minutes": round((time.perf_counter() - t) / 60, 2),
        "splits": {
            split: {"accuracy": m["accuracy"], "balanced_accuracy": m["balanced_accuracy"]}
            for split, m in best.items()
            if isinstance(m, dict) and "accuracy" in m
        },
        "report": str(run / "report.html"),
    }
    return run, summary


# ------------------------------------------------------------------------------------------------
# training curves
# ------------------------------------------------------------------------------------------------
CURVE_KEYS = {"train/loss_epoch": "train/loss", "val/loss": "val/loss", "train/acc": "train/acc", "val/acc": "val/acc"}


def training_curves(run_dir: str | Path, phase_names: list[str] | None = None) -> dict[str, Any] | None:
    """Per-epoch training and validation loss and accuracy of all phases from the Lightning CSV logs, on one epoch
    axis (a phase's epochs follow the previous phase's); a resumed phase's later parts are read after its first.
    None when there are no logs."""
    logs = Path(run_dir) / "logs"
    series: dict[str, dict[int, float]] = {}
    phases = []
    offset = 0
    for phase in sorted(
        {p.parent.name.split("-")[0] for p in logs.glob("phase*/metrics.csv")}, key=lambda n: int(n[5:])
    ):
        last_epoch = -1
        # the first part of a phase, then the parts logged after each resume (epochs are absolute in a phase)
        for log in sorted(logs.glob(f"{phase}*/metrics.csv"), key=lambda p: (len(p.parent.name), p)):
            if log.parent.name != phase and not log.parent.name.startswith(f"{phase}-"):
                continue
            with log.open() as f:
                for row in csv.DictReader(f):
                    if not row.get("epoch"):
                        continue
                    last_epoch = max(last_epoch, int(row["epoch"]))
                    for key, name in CURVE_KEYS.items():
                        if row.get(key):
                            series.setdefault(name, {})[int(row["epoch"]) + offset] = float(row[key])
        k = int(phase[5:])
        name = phase_names[k] if phase_names and k < len(phase_names) else phase
        phases.append({"phase": k, "name": name, "first_epoch": offset, "epochs": last_epoch + 1})
        offset += last_epoch + 1
    if not series:
        return None
    return {
        "x": "epoch (all phases)",
        "phases": phases,
        "series": {name: [[e, v] for e, v in sorted(pts.items())] for name, pts in series.items()},
    }


def plot_curves(curves: dict[str, Any], path: str | Path) -> Path:
    """Loss and accuracy panels of :func:`training_curves` as a PNG (written atomically), phase starts dashed."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(9, 3.2), dpi=100)
    for key, ax in (("loss", axes[0]), ("acc", axes[1])):
        for name, pts in curves["series"].items():
            if name.split("/")[1].startswith(key) and pts:
                xs, ys = zip(*pts, strict=True)
                ax.plot(xs, ys, marker="o", ms=3, label=name)
        for phase in curves["phases"][1:]:
            ax.axvline(phase["first_epoch"] - 0.5, color="grey", ls="--", lw=0.8)
        ax.set_xlabel(curves["x"])
        ax.set_title(key)
        ax.legend(fontsize=8)
        ax.grid(alpha=0.3)
    fig.tight_layout()
    try:
        atomic_write(path, lambda p: fig.savefig(p, format="png"))
    finally:
        plt.close(fig)
    return Path(path)


def write_curves(run_dir: str | Path, phase_names: list[str] | None = None) -> dict[str, Any] | None:
    """``curves.json`` and ``curves.png`` of :func:`training_curves` in the run directory (nothing without logs)."""
    run_dir = Path(run_dir)
    curves = training_curves(run_dir, phase_names)
    if curves is None:
        return None
    write_json(run_dir / "curves.json", curves)
    plot_curves(curves, run_dir / "curves.png")
    return curves
