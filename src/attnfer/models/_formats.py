"""Importers for the original authors' checkpoint files, behind one registry.

Each family file registers the save formats of its original code beside the model (``@register_format``): a
reader that turns the authors' file into an attnfer model built with :func:`~._registry.create_model`, with the
original's class order (mapped onto canonical names) and preprocessing in its config. :func:`convert_checkpoint`
runs a reader and applies the options every format shares (``class_names``); ``attnfer convert`` lists the formats
from here and saves the result as a normal checkpoint (safetensors + config).

Files are never unpickled: state dicts go through ``torch.load(weights_only=True)``, Keras HDF5 through h5py.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn

from ..files import sha256_file
from .io import CheckpointError, state_dict_mismatch

__all__ = [
    "CheckpointFormat",
    "OfficialFormatError",
    "convert_checkpoint",
    "get_format",
    "list_formats",
    "load_torch_file",
    "register_format",
    "resolve_class_names",
]


class OfficialFormatError(CheckpointError):
    """An original-format file is missing, foreign, truncated or does not fit the format; the message names it."""


@dataclass(frozen=True)
class CheckpointFormat:
    """One original save format.

    Attributes:
        name: format name (``attnfer convert --from NAME``).
        model: the registered model the format converts to.
        description: one line: which original code saves it, and how.
        options: names of the reader's own keyword options (e.g. ``shortcut_weight``).
        reader: ``reader(path, **options) -> model`` (built with ``create_model``, weights loaded, the original's
            class names and preprocessing set; the rules it applied, e.g. where a setting came from, in
            ``model.import_notes``, a list of sentences).
    """

    name: str
    model: str
    description: str
    options: tuple[str, ...]
    reader: Callable[..., nn.Module]


_formats: dict[str, CheckpointFormat] = {}


def register_format(
    name: str, *, model: str, description: str, options: Sequence[str] = ()
) -> Callable[[Callable[..., nn.Module]], Callable[..., nn.Module]]:
    """Decorator: register ``reader(path, **options) -> model`` as the importer of format ``name``."""

    def decorate(fn: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        _formats[name] = CheckpointFormat(name, model, description, tuple(options), fn)
        return fn

    return decorate


def list_formats() -> list[str]:
    return sorted(_formats)


def get_format(name: str) -> CheckpointFormat:
    if name not in _formats:
        import difflib

        close = difflib.get_close_matches(name, list(_formats), n=1)
        hint = f"; did you mean '{close[0]}'?" if close else ""
        raise ValueError(f"unknown checkpoint format '{name}'{hint} Known formats: {', '.join(list_formats())}")
    return _formats[name]


def resolve_class_names(names: Sequence[str], num_classes: int, source: str = "--class-names") -> list[str]:
    """Canonical names for ``num_classes`` outputs; a wrong count, an unknown or a repeated name is an error."""
    from ..data.labels import normalize_name

    names = [n for n in names if n.strip()]
    if len(names) != num_classes:
        raise ValueError(f"{source}: {len(names)} class names for a model with {num_classes} outputs: {names}")
    out = []
    for n in names:
        try:
            out.append(normalize_name(n))
        except ValueError as e:
            raise ValueError(f"{source}: {e}") from None
    dup = sorted({n for n in out if out.count(n) > 1})
    if dup:
        raise ValueError(f"{source}: class name(s) {', '.join(dup)} given twice: {names}")
    return out


def load_torch_file(path: Path, what: str) -> Any:
    """``torch.load(path, weights_only=True)`` on CPU; a foreign, truncated or pickled-object file is a clear error."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # zipfile / unpickling / EOF errors all mean: not this format
        msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise OfficialFormatError(
            f"{path}: not readable as {what} (a torch.save file of tensors, loaded with weights_only=True): "
            f"{type(e).__name__}: {msg[:200]}"
        ) from e


def state_dict_of(obj: Any, path: Path, keys: Sequence[str], what: str) -> dict[str, torch.Tensor]:
    """The state dict inside ``obj`` (under the first of ``keys`` present, or ``obj`` itself), 'module.' stripped."""
    sd = obj
    if isinstance(obj, dict):
        for k in keys:
            if isinstance(obj.get(k), dict):
                sd = obj[k]
                break
    if not isinstance(sd, dict) or not sd or not all(isinstance(v, torch.Tensor) for v in sd.values()):
        top = ", ".join(map(str, list(obj)[:6])) if isinstance(obj, dict) else type(obj).__name__
        raise OfficialFormatError(f"{path}: not {what} (no state dict of tensors in it; top-level: {top})")
    if all(k.startswith("module.") for k in sd):
        sd = {k[len("module.") :]: v for k, v in sd.items()}
    return dict(sd)


def load_mapped(model: nn.Module, mapped: dict[str, torch.Tensor], path: Path, fmt: str) -> None:
    """Strictly load ``mapped`` (our key names) into ``model``: every tensor of ours filled, shapes equal."""
    own = model.state_dict()
    problem = state_dict_mismatch(own, mapped)
    if problem:
        raise OfficialFormatError(f"{path} does not fit the {fmt} layout: {problem}")
    model.load_state_dict({k: v.to(own[k].dtype) for k, v in mapped.items()}, strict=True)


def convert_checkpoint(
    src: str | Path, fmt: str, *, class_names: Sequence[str] | None = None, **options: Any
) -> nn.Module:
    """Import an original checkpoint file: the attnfer model (eval mode) with the original's weights, class order
    (or ``class_names``) and preprocessing, and ``model.cfg.extra["imported"]`` saying what was read and which
    rules applied. Save it with :func:`~.io.save_model`."""
    spec = get_format(fmt)
    path = Path(src)
    if not path.is_file():
        raise OfficialFormatError(f"{path}: file not found (expected a {fmt} file: {spec.description})")
    unknown = sorted(k for k, v in options.items() if v is not None and k not in spec.options)
    if unknown:
        accepted = ", ".join(spec.options) or "none"
        raise ValueError(f"format {fmt} takes no option(s) {', '.join(unknown)} (its options: {accepted})")
    model = spec.reader(path, **{k: v for k, v in options.items() if v is not None})
    notes = list(getattr(model, "import_notes", []))
    if class_names is not None:
        model.class_names = resolve_class_names(class_names, model.num_classes)
        notes.append(f"class names given by the user: {', '.join(model.class_names)}")
    elif not getattr(model, "class_names", None):
        raise OfficialFormatError(
            f"{path}: the original's class order for {model.num_classes} classes is not known; give the "
            f"{model.num_classes} class names in the head's order (--class-names)"
        )
    model.cfg = model.cfg.replace(
        class_names=tuple(model.class_names),
        extra={
            **model.cfg.extra,
            "imported": {"format": fmt, "file": path.name, "sha256": sha256_file(path), "notes": notes},
        },
    )
    return model.eval()
