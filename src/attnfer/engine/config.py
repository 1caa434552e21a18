"""Training configuration: typed dataclasses, YAML recipes and ``--key.path value`` overrides.

A recipe is a YAML file whose keys mirror :class:`TrainConfig`. Unknown or mistyped keys are errors that name the
key and the closest valid one. The resolved config is written to ``config.yaml`` in the run directory.
"""

from __future__ import annotations

import dataclasses
import difflib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

__all__ = [
    "AugmentConfig",
    "ConfigError",
    "DataConfig",
    "ModelConfig",
    "OptimConfig",
    "PhaseConfig",
    "ScheduleConfig",
    "TrainConfig",
    "TrainerConfig",
    "apply_overrides",
    "load_config",
    "to_dict",
]


class ConfigError(ValueError):
    """A bad recipe or override; the message names the key."""


@dataclass
class DataConfig:
    name: str = "synthfer"  #: dataset format (attnfer.data.DATASETS)
    root: str | None = None  #: dataset root; for synthfer, None = generated into the cache
    options: dict[str, Any] = field(default_factory=dict)  #: loader options (label_mode, fold, ...)
    subsets: dict[str, str] = field(default_factory=dict)  #: extra evaluation splits: name -> list file
    val_fraction: float = 0.1  #: carved from train when the dataset has no validation split
    batch_size: int = 32
    eval_batch_size: int = 64
    num_workers: int = 2
    balanced_sampler: bool = False  #: draw classes equally often (AffectNet)
    compositing: bool = False  #: FERAtt's composited inputs (needs masks or landmarks)
    backgrounds: str | None = None  #: background images for compositing (else procedural)
    synth_n: int = 10_000  #: SynthFER size when generated
    synth_size: int = 112
    synth_seed: int = 0


@dataclass
class AugmentConfig:
    hflip: float = 0.5
    rotation: float = 0.0
    color_jitter: list[float] | None = None
    random_contrast: float = 0.0
    random_erasing: float = 0.0
    resized_crop_scale: list[float] | None = None


@dataclass
class ModelConfig:
    name: str = "patt_lite"
    pretrained: bool | str = False
    kwargs: dict[str, Any] = field(default_factory=dict)


@dataclass
class OptimConfig:
    name: str = "adam"  #: adam, adamw or sgd
    lr: float = 1e-3
    weight_decay: float = 0.0
    momentum: float = 0.9
    clip_norm: float | None = None  #: global gradient-norm clipping (Keras global_clipnorm)


@dataclass
class ScheduleConfig:
    name: str = "none"  #: none, plateau, inverse_time, cosine, onecycle
    monitor: str = "val/acc"
    patience: int = 3
    factor: float = 0.1
    min_delta: float = 0.0
    min_lr: float = 0.0
    decay_epochs: float = 80.0  #: inverse_time: lr / (1 + epoch / decay_epochs)
    warmup_fraction: float = 0.1  #: onecycle


@dataclass
class EarlyStoppingConfig:
    monitor: str = "val/acc"
    patience: int = 5
    min_delta: float = 0.0
    mode: str = "max"
    restore_best: bool = True


@dataclass
class PhaseConfig:
    name: str = "train"
    epochs: int = 10
    optim: OptimConfig = field(default_factory=OptimConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    early_stopping: EarlyStoppingConfig | None = None
    model: dict[str, Any] = field(default_factory=dict)  #: per-phase model settings (unfreeze_last_n, dropout)
    augment: AugmentConfig | None = None  #: overrides the run's augmentation in this phase
    class_weights: bool = False  #: sklearn 'balanced' class weights in the loss
    max_minutes: float | None = None  #: wall-clock budget of the phase


@dataclass
class TrainerConfig:
    accelerator: str = "auto"
    devices: Any = "auto"
    num_nodes: int = 1
    strategy: str = "auto"
    precision: str = "32-true"  #: e.g. bf16-mixed (CPU and GPU), 16-mixed (GPU)
    accumulate_grad_batches: int = 1
    deterministic: bool = False
    channels_last: bool = False
    ema_decay: float | None = None  #: exponential moving average of the weights
    limit_train_batches: float | int = 1.0
    limit_val_batches: float | int = 1.0
    log_every_n_steps: int = 10
    progress_bar: bool = True
    #: end this invocation after N epochs as if interrupted, checkpointed for --resume (time-sliced/preemptible jobs)
    stop_after_epochs: int | None = None


@dataclass
class TrainConfig:
    name: str = "run"
    output_dir: str = "runs"
    seed: int = 0
    label_smoothing: float = 0.0
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    phases: list[PhaseConfig] = field(default_factory=lambda: [PhaseConfig()])
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    loss: dict[str, float] = field(default_factory=dict)  #: FERAtt loss weights (ce, attention, representation)
    evaluate_batch_invariance: bool = True
    report_samples: int = 12


# ------------------------------------------------------------------------------------------------
def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _is_dataclass_type(tp: Any) -> type | None:
    if dataclasses.is_dataclass(tp):
        return tp
    for arg in typing.get_args(tp):
        if dataclasses.is_dataclass(arg):
            return arg
    return None


def _check_scalar(value: Any, tp: Any, where: str) -> Any:
    if tp is Any:
        return value
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        for arg in typing.get_args(tp):
            try:
                return _check_scalar(value, arg, where)
            except ConfigError:
                continue
        raise ConfigError(f"{where}: {value!r} is not a valid {tp}")
    if tp is type(None):
        if value is None:
            return None
        raise ConfigError(f"{where}: expected null")
    if origin in (list, dict):
        if not isinstance(value, origin):
            raise ConfigError(f"{where}: expected a {origin.__name__}, got {value!r}")
        return value
    if tp is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if tp is float and isinstance(value, str):  # PyYAML reads 1e-3 (no dot) as a string
        try:
            return float(value)
        except ValueError:
            pass
    if tp in (int, float, str, bool) and not (isinstance(value, tp) and not (tp is int and isinstance(value, bool))):
        raise ConfigError(f"{where}: expected {tp.__name__}, got {value!r}")
    return value


def _build(cls: type, raw: Any, where: str) -> Any:
    if not isinstance(raw, dict):
        raise ConfigError(f"{where or 'config'}: expected a mapping, got {raw!r}")
    hints = _hints(cls)
    kwargs = {}
    for key, value in raw.items():
        path = f"{where}.{key}" if where else key
        if key not in hints:
            close = difflib.get_close_matches(key, list(hints), n=1)
            hint = f"; did you mean '{(where + '.') if where else ''}{close[0]}'?" if close else ""
            raise ConfigError(f"unknown key '{path}'{hint}")
        tp = hints[key]
        sub = _is_dataclass_type(tp)
        if typing.get_origin(tp) is list and dataclasses.is_dataclass(typing.get_args(tp)[0]):
            if not isinstance(value, list):
                raise ConfigError(f"{path}: expected a list")
            item = typing.get_args(tp)[0]
            kwargs[key] = [_build(item, v, f"{path}.{i}") for i, v in enumerate(value)]
        elif sub is not None and (value is not None or type(None) not in typing.get_args(tp)):
            kwargs[key] = _build(sub, value, path)
        else:
            kwargs[key] = _check_scalar(value, tp, path)
    return cls(**kwargs)


def to_dict(cfg: Any) -> Any:
    return dataclasses.asdict(cfg)


def _set_path(raw: dict, path: str, value: Any) -> None:
    parts = path.split(".")
    node: Any = raw
    for i, part in enumerate(parts[:-1]):
        if isinstance(node, list):
            if not part.isdigit() or int(part) >= len(node):
                raise ConfigError(f"{path}: index {part} out of range (the list has {len(node)} items)")
            node = node[int(part)]
        else:
            node = node.setdefault(part, {} if not parts[i + 1].isdigit() else [])
    last = parts[-1]
    if isinstance(node, list):
        idx = int(last)
        if idx >= len(node):
            raise ConfigError(f"{path}: index {idx} out of range (the list has {len(node)} items)")
        node[idx] = value
    else:
        node[last] = value


def apply_overrides(raw: dict, overrides: list[str] | dict[str, Any]) -> dict:
    """Apply ``["--data.batch_size", "16", "--phases.0.epochs=2"]`` or ``{"data.batch_size": 16}``."""
    if isinstance(overrides, dict):
        pairs = list(overrides.items())
    else:
        pairs, items = [], list(overrides)
        i = 0
        while i < len(items):
            tok = items[i]
            if not tok.startswith("--"):
                raise ConfigError(f"override '{tok}' must look like --key.path value")
            if "=" in tok:
                k, v = tok[2:].split("=", 1)
                i += 1
            else:
                if i + 1 >= len(items):
                    raise ConfigError(f"override '{tok}' has no value")
                k, v = tok[2:], items[i + 1]
                i += 2
            pairs.append((k, yaml.safe_load(v) if isinstance(v, str) else v))
    for k, v in pairs:
        _set_path(raw, k, v)
    return raw


def load_config(path: str | Path | None = None, overrides: list[str] | dict[str, Any] | None = None) -> TrainConfig:
    """Read a YAML recipe (or the defaults), apply overrides, validate every key and type."""
    raw: dict = {}
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"recipe {path} not found")
        try:
            raw = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as e:
            raise ConfigError(f"{path}: not valid YAML: {e}") from e
    raw.setdefault("phases", [{}])  # so that --phases.0.key overrides reach the default phase
    raw = apply_overrides(raw, overrides or [])
    return _build(TrainConfig, raw, "")
