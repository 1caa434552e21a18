"""Training configuration: pydantic models, YAML recipes with ``extends:`` and ``--key.path value`` overrides.

A recipe is a YAML file whose keys mirror :class:`TrainConfig`. It may start from other recipes with
``extends: base.yaml`` (a path relative to the recipe's folder, or a list of them, applied in order): the parents are
deep-merged under the recipe (mappings merge key by key; lists and scalars replace the parent's, so ``phases`` is
replaced whole). Unknown, mistyped or out-of-range values are errors that name the dotted key path (and the closest
valid key for a typo). The resolved config, without ``extends``, is written to ``config.yaml`` in the run directory.
"""

from __future__ import annotations

import copy
import difflib
import inspect
import typing
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, model_validator
from pydantic_core import PydanticCustomError

from ..files import UserError

__all__ = [
    "AugmentConfig",
    "ConfigError",
    "DataConfig",
    "EarlyStoppingConfig",
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


class ConfigError(UserError, ValueError):
    """A bad recipe or override; the message (one line) names the key and what was expected."""


# ------------------------------------------------------------------------------------------------
# Scalar types. YAML is checked strictly: "fast" is not a float, true is not an int, 1 is not a bool. The one
# leniency is PyYAML's: it reads 1e-3 (no dot) as a string, so floats accept strings that parse as numbers.
def _wrong(kind: str, value: Any) -> PydanticCustomError:
    return PydanticCustomError("config_type", "expected {kind}, got {got}", {"kind": kind, "got": repr(value)})


def _str(v: Any) -> str:
    if not isinstance(v, str):
        raise _wrong("str", v)
    return v


def _int(v: Any) -> int:
    if isinstance(v, bool) or not isinstance(v, int):
        raise _wrong("int", v)
    return v


def _float(v: Any) -> float:
    if isinstance(v, (int, float)) and not isinstance(v, bool):
        return float(v)
    if isinstance(v, str):
        try:
            return float(v)
        except ValueError:
            pass
    raise _wrong("float", v)


def _bool(v: Any) -> bool:
    if not isinstance(v, bool):
        raise _wrong("bool", v)
    return v


def _bool_or_str(v: Any) -> bool | str:
    if not isinstance(v, (bool, str)):
        raise _wrong("bool or str", v)
    return v


def _auto_or(kind: str):
    """A validator for ``"auto"`` or a value of ``kind`` (``count``: an int >= 0, ``bool``)."""

    def check(v: Any) -> Any:
        if v == "auto":
            return v
        if kind == "bool" and isinstance(v, bool):
            return v
        if kind == "count" and isinstance(v, int) and not isinstance(v, bool) and v >= 0:
            return v
        raise _wrong(f"auto or {'an int >= 0' if kind == 'count' else kind}", v)

    return check


def _fraction_or_count(v: Any) -> float | int:
    """Lightning's limit_*_batches: a float is a fraction of the batches, an int a number of batches."""
    if isinstance(v, int) and not isinstance(v, bool):
        return v
    try:
        return _float(v)
    except PydanticCustomError:
        raise _wrong("float or int", v) from None


def _mapping(v: Any) -> dict:
    if not isinstance(v, dict):
        raise PydanticCustomError("config_type", "expected a mapping, got {got}", {"got": repr(v)})
    return v


def _list(v: Any) -> list:
    if not isinstance(v, (list, tuple)):
        raise PydanticCustomError("config_type", "expected a list, got {got}", {"got": repr(v)})
    return list(v)


Str = Annotated[str, BeforeValidator(_str)]
Int = Annotated[int, BeforeValidator(_int)]
Float = Annotated[float, BeforeValidator(_float)]
Bool = Annotated[bool, BeforeValidator(_bool)]
FloatList = Annotated[list[Float], BeforeValidator(_list)]
Options = Annotated[dict[str, Any], BeforeValidator(_mapping)]
StrMap = Annotated[dict[str, Str], BeforeValidator(_mapping)]

PositiveInt = Annotated[Int, Field(ge=1)]
Count = Annotated[Int, Field(ge=0)]
Probability = Annotated[Float, Field(ge=0.0, le=1.0)]
NonNegative = Annotated[Float, Field(ge=0.0)]
Positive = Annotated[Float, Field(gt=0.0)]


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


# ------------------------------------------------------------------------------------------------
class DataConfig(_Section):
    name: Str = "synthfer"  #: dataset format (attnfer.data.DATASETS)
    root: Str | None = None  #: dataset root; for synthfer, None = generated into the cache
    options: Options = Field(default_factory=dict)  #: loader options (label_mode, fold, ...)
    subsets: StrMap = Field(default_factory=dict)  #: extra evaluation splits: name -> list file
    val_fraction: Probability = 0.1  #: carved from train when the dataset has no validation split
    batch_size: PositiveInt = 32
    eval_batch_size: PositiveInt = 64
    #: loader workers; ``auto``: chosen by the machine (attnfer.hardware.loader_settings, with pinned memory,
    #: persistent workers and prefetch): 0 on a CPU with <= 2 cores, the free CPUs (<= 12) per GPU process
    num_workers: Annotated[int | str, BeforeValidator(_auto_or("count"))] = "auto"
    #: where training augmentation runs: ``cpu`` (per sample, in the loader), ``device`` (per-sample parameters
    #: drawn in the loader, applied to the uint8 batch on the training device: attnfer.preprocess.augment),
    #: ``auto`` (device when training on CUDA, except composited data, whose pipeline is CPU-only)
    augment_on: Literal["auto", "cpu", "device"] = "auto"
    balanced_sampler: Bool = False  #: draw classes equally often
    compositing: Bool = False  #: composited inputs: faces pasted on backgrounds (needs masks or landmarks)
    backgrounds: Str | None = None  #: background images for compositing (else procedural)
    synth_n: PositiveInt = 10_000  #: SynthFER size when generated
    synth_size: PositiveInt = 112
    synth_seed: Int = 0

    @model_validator(mode="after")
    def _augment_where(self) -> DataConfig:
        if self.augment_on == "device" and self.compositing:
            raise ValueError(
                "augment_on: device does not apply to composited data (compositing: true), whose pipeline runs on "
                "the CPU; use cpu or auto"
            )
        return self


class AugmentConfig(_Section):
    hflip: Probability = 0.5
    rotation: NonNegative = 0.0  #: degrees, +/-
    color_jitter: FloatList | None = None  #: brightness, contrast, saturation, hue
    random_contrast: NonNegative = 0.0
    random_erasing: Probability = 0.0
    resized_crop_scale: FloatList | None = None


class ModelConfig(_Section):
    name: Str  #: a registered model (attnfer.models); required: a recipe must name its model
    pretrained: Annotated[bool | str, BeforeValidator(_bool_or_str)] = False  #: True (the model's default) or a path
    kwargs: Options = Field(default_factory=dict)


class OptimConfig(_Section):
    name: Literal["adam", "adamw", "sgd"] = "adam"
    lr: Positive = 1e-3
    weight_decay: NonNegative = 0.0
    momentum: NonNegative = 0.9
    clip_norm: Positive | None = None  #: global gradient-norm clipping (Keras global_clipnorm)


class ScheduleConfig(_Section):
    name: Literal["none", "plateau", "inverse_time", "cosine", "onecycle"] = "none"
    monitor: Str = "val/acc"
    patience: Count = 3
    factor: Positive = 0.1
    min_delta: NonNegative = 0.0
    min_lr: NonNegative = 0.0
    decay_epochs: Positive = 80.0  #: inverse_time: lr / (1 + epoch / decay_epochs)
    warmup_fraction: Probability = 0.1  #: onecycle


class EarlyStoppingConfig(_Section):
    monitor: Str = "val/acc"
    patience: Count = 5
    min_delta: NonNegative = 0.0
    mode: Literal["min", "max"] = "max"
    restore_best: Bool = True


class PhaseConfig(_Section):
    name: Str = "train"
    epochs: PositiveInt = 10
    optim: OptimConfig = Field(default_factory=OptimConfig)
    schedule: ScheduleConfig = Field(default_factory=ScheduleConfig)
    early_stopping: EarlyStoppingConfig | None = None
    model: Options = Field(default_factory=dict)  #: per-phase model settings (unfreeze_last_n, dropout)
    augment: AugmentConfig | None = None  #: overrides the run's augmentation in this phase
    class_weights: Bool = False  #: sklearn 'balanced' class weights in the loss
    max_minutes: Positive | None = None  #: wall-clock budget of the phase


class TrainerConfig(_Section):
    accelerator: Str = "auto"
    devices: Any = "auto"
    num_nodes: PositiveInt = 1
    strategy: Str = "auto"
    #: ``auto`` (bf16-mixed on GPUs with BF16 and CPUs with native BF16, 16-mixed on older GPUs, else 32-true; see
    #: attnfer.hardware) or a Lightning precision string (32-true, bf16-mixed, 16-mixed)
    precision: Str = "auto"
    accumulate_grad_batches: PositiveInt = 1
    deterministic: Bool = False
    #: channels-last memory format of the model and its inputs; ``auto``: on CUDA (attnfer.hardware)
    channels_last: Annotated[bool | str, BeforeValidator(_auto_or("bool"))] = "auto"
    #: torch.compile the model's training forward (``true``, or a mode: ``max-autotune``...); off by default: it
    #: pays off on GPUs for long runs (benchmarks/train_throughput.py --compile measures it)
    compile: Annotated[bool | str, BeforeValidator(_bool_or_str)] = False
    ema_decay: Probability | None = None  #: exponential moving average of the weights
    limit_train_batches: Annotated[float | int, BeforeValidator(_fraction_or_count), Field(ge=0)] = 1.0
    limit_val_batches: Annotated[float | int, BeforeValidator(_fraction_or_count), Field(ge=0)] = 1.0
    log_every_n_steps: Count = 10
    progress_bar: Bool = True
    #: end this invocation after N epochs as if interrupted, checkpointed for --resume (time-sliced/preemptible jobs)
    stop_after_epochs: Count | None = None
    #: checkpoints within an epoch (every epoch end has one): every N steps / M minutes of training, 0 = off; unset:
    #: ATTNFER_CHECKPOINT_EVERY_N_STEPS / ATTNFER_CHECKPOINT_EVERY_MINUTES, else every 30 minutes (engine/train.py)
    checkpoint_every_n_steps: Count | None = None
    checkpoint_every_minutes: NonNegative | None = None


class TrainConfig(_Section):
    name: Str = "run"
    output_dir: Str = "runs"
    seed: Int = 0
    label_smoothing: Probability = 0.0
    data: DataConfig = Field(default_factory=DataConfig)
    #: required in a recipe (load_config); None only in configs built in code that never build a model
    model: ModelConfig | None = None
    augment: AugmentConfig = Field(default_factory=AugmentConfig)
    phases: Annotated[list[PhaseConfig], Field(min_length=1)] = Field(default_factory=lambda: [PhaseConfig()])
    trainer: TrainerConfig = Field(default_factory=TrainerConfig)
    #: loss options passed to the model's loss, e.g. weights of its terms
    loss: Annotated[dict[str, Float], BeforeValidator(_mapping)] = Field(default_factory=dict)
    evaluate_batch_invariance: Bool = True
    report_samples: Count = 12


# ------------------------------------------------------------------------------------------------
_BOUNDS = {"greater_than": ">", "greater_than_equal": ">=", "less_than": "<", "less_than_equal": "<="}
_BOUND_KEYS = {"greater_than": "gt", "greater_than_equal": "ge", "less_than": "lt", "less_than_equal": "le"}


def _section_at(parts: tuple) -> type[BaseModel] | None:
    """The model class that holds the keys at ``parts`` (list indices skipped), or None."""
    cls: type[BaseModel] | None = TrainConfig
    for part in parts:
        if isinstance(part, int):
            continue
        if cls is None or part not in cls.model_fields:
            return None
        cls = _model_in(cls.model_fields[part].annotation)
    return cls


def _model_in(tp: Any) -> type[BaseModel] | None:
    if isinstance(tp, type) and issubclass(tp, BaseModel):
        return tp
    for arg in typing.get_args(tp):
        found = _model_in(arg)
        if found is not None:
            return found
    return None


def _describe(err: Any) -> str:
    parts = tuple(err["loc"])
    path = ".".join(str(p) for p in parts) or "config"
    kind, value, ctx = err["type"], err.get("input"), err.get("ctx") or {}
    if kind == "extra_forbidden":
        section = _section_at(parts[:-1])
        close = difflib.get_close_matches(str(parts[-1]), list(section.model_fields), n=1) if section else []
        prefix = ".".join(str(p) for p in parts[:-1])
        hint = f"; did you mean '{prefix + '.' if prefix else ''}{close[0]}'?" if close else ""
        return f"unknown key '{path}'{hint}"
    if kind == "missing":
        return f"{path}: required"
    if kind in ("model_type", "model_attributes_type", "dict_type"):
        return f"{path}: expected a mapping, got {value!r}"
    if kind == "list_type":
        return f"{path}: expected a list, got {value!r}"
    if kind in _BOUNDS:
        return f"{path}: must be {_BOUNDS[kind]} {ctx[_BOUND_KEYS[kind]]}, got {value!r}"
    if kind == "literal_error":
        return f"{path}: expected one of {ctx['expected']}, got {value!r}"
    if kind == "too_short":
        return f"{path}: needs at least {ctx.get('min_length')} item(s)"
    if kind == "string_type" and parts and parts[-1] == "[key]":
        return f"{'.'.join(str(p) for p in parts[:-1])}: keys must be strings, got {value!r}"
    return f"{path}: {err['msg']}"


def _validate(raw: dict) -> TrainConfig:
    try:
        return TrainConfig.model_validate(raw)
    except ValidationError as e:
        problems = [_describe(err) for err in e.errors()]
        if len(problems) == 1:
            raise ConfigError(problems[0]) from None
        raise ConfigError(f"{len(problems)} problems in the config: " + "; ".join(problems)) from None


def _constructor_options(name: str) -> list[str] | None:
    """The keyword options the registered model ``name`` takes (its class's constructor, which the registry's
    entry point forwards ``**kwargs`` to), or None when unknown: not registered, or a constructor taking ``**kwargs``
    itself (then the model checks them when built)."""
    from ..models import is_model, model_entrypoint

    if not is_model(name):
        return None  # the engine names an unknown model when it builds it (with the closest registered name)
    fn = model_entrypoint(name)
    target: Any = fn
    params = inspect.signature(fn).parameters
    if any(p.kind is p.VAR_KEYWORD for p in params.values()):
        try:
            target = typing.get_type_hints(fn).get("return")
        except Exception:  # an annotation that does not resolve: leave the check to the model
            return None
        if not isinstance(target, type):
            return None
        params = inspect.signature(target.__init__).parameters
        if any(p.kind is p.VAR_KEYWORD for p in params.values()):
            return None
    # what the entry point fills itself: the class count and positional arguments without a default
    return [
        p.name
        for p in params.values()
        if p.name not in ("self", "num_classes")
        and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
        and p.default is not p.empty
    ]


def _check_model_kwargs(cfg: TrainConfig) -> None:
    """``model.kwargs`` keys the named model does not take: an error naming the key, the closest option and all of
    them (instead of a TypeError when the model is built)."""
    if cfg.model is None or not cfg.model.kwargs:
        return
    options = _constructor_options(cfg.model.name)
    if options is None:
        return
    unknown = [key for key in cfg.model.kwargs if key not in options]
    if not unknown:
        return
    problems = []
    for key in unknown:
        close = difflib.get_close_matches(str(key), options, n=1)
        problems.append(f"unknown key 'model.kwargs.{key}'" + (f" (did you mean '{close[0]}'?)" if close else ""))
    raise ConfigError(
        f"{', '.join(problems)}: model '{cfg.model.name}' takes no such option; expected one of {', '.join(options)}"
    )


def to_dict(cfg: BaseModel) -> dict[str, Any]:
    """The config as plain dicts, lists and scalars (YAML-safe), every default filled in."""
    return cfg.model_dump(mode="python")


# ------------------------------------------------------------------------------------------------
def _set_path(raw: dict, path: str, value: Any) -> None:
    parts = path.split(".")
    node: Any = raw
    for i, part in enumerate(parts[:-1]):
        if isinstance(node, list):
            if not part.isdigit() or int(part) >= len(node):
                raise ConfigError(f"{path}: index {part} out of range (the list has {len(node)} items)")
            node = node[int(part)]
        elif isinstance(node, dict):
            node = node.setdefault(part, {} if not parts[i + 1].isdigit() else [])
        else:
            raise ConfigError(f"{path}: '{'.'.join(parts[:i])}' is {node!r}, not a mapping or a list")
    last = parts[-1]
    if isinstance(node, list):
        if not last.isdigit() or int(last) >= len(node):
            raise ConfigError(f"{path}: index {last} out of range (the list has {len(node)} items)")
        node[int(last)] = value
    elif isinstance(node, dict):
        node[last] = value
    else:
        raise ConfigError(f"{path}: '{'.'.join(parts[:-1])}' is {node!r}, not a mapping or a list")


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


def _merge(base: Any, child: Any) -> Any:
    """``child`` over ``base``: mappings merge key by key; anything else in the child replaces the base."""
    if isinstance(base, dict) and isinstance(child, dict):
        out = dict(base)
        for key, value in child.items():
            out[key] = _merge(base[key], value) if key in base else copy.deepcopy(value)
        return out
    return copy.deepcopy(child)


def _read_recipe(path: Path, chain: tuple[Path, ...] = ()) -> dict:
    """A recipe's mapping with its ``extends:`` parents merged under it (recursively)."""
    key = path.resolve()
    if key in chain:
        cycle = " -> ".join(str(p) for p in (*chain[chain.index(key) :], key))
        raise ConfigError(f"extends cycle: {cycle}")
    if not path.is_file():
        via = f" (extended by {chain[-1]})" if chain else ""
        raise ConfigError(f"recipe {path} not found{via}")
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: not valid YAML: {e}") from e
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: the top level must be a mapping of keys, got {type(raw).__name__} {raw!r:.80}")
    parents = raw.pop("extends", None)
    if parents is None:
        return raw
    if isinstance(parents, str):
        parents = [parents]
    if not isinstance(parents, list) or not parents or not all(isinstance(p, str) for p in parents):
        raise ConfigError(f"{path}: extends: expected a recipe file name or a list of them, got {parents!r}")
    base: dict = {}
    for parent in parents:
        base = _merge(base, _read_recipe(path.parent / parent, (*chain, key)))
    return _merge(base, raw)


def load_config(path: str | Path | None = None, overrides: list[str] | dict[str, Any] | None = None) -> TrainConfig:
    """Read a YAML recipe (or the defaults), resolve ``extends``, apply overrides, validate every key and value."""
    raw = _read_recipe(Path(path)) if path is not None else {}
    raw.setdefault("phases", [{}])  # so that --phases.0.key overrides reach the default phase
    if raw.get("model") is None:
        raw["model"] = {}  # so that --model.name reaches it
    raw = apply_overrides(raw, overrides or [])
    if raw.get("model") is None:
        raw["model"] = {}  # a recipe must name its model: no model section reports model.name as required
    cfg = _validate(raw)
    _check_model_kwargs(cfg)
    return cfg
