"""Which checkpoint a command means, and what a checkpoint was trained on.

* :func:`resolve_checkpoint` turns what a user typed into a path, the one place every command does it: a path is
  itself (an error naming the two ways to get a checkpoint when it does not exist), and ``latest`` is the newest run's
  ``best/`` under the default runs folder (``runs`` in the current directory, where ``attnfer quickstart`` and
  ``attnfer train`` write), or with ``runtime="onnx"`` that run's ``best/model.onnx``, exported on first use.
* :func:`model_origin` reads what a checkpoint's config says about where its weights come from:
  ``extra["training"]`` (dataset, run, recipe: written by the training engine) or ``extra["imported"]`` (written by
  ``attnfer convert``). A model trained on SynthFER gets a plain warning: it is not meant for real photos.

No torch is imported here (the ONNX path needs none), except to export ``latest`` to ONNX on first use.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

__all__ = [
    "DEFAULT_RUNS_DIR",
    "LATEST",
    "CheckpointNotFoundError",
    "ModelOrigin",
    "latest_run",
    "model_origin",
    "resolve_checkpoint",
]

#: where ``attnfer quickstart`` and ``attnfer train`` put runs by default (``output_dir``), relative to the current
#: directory
DEFAULT_RUNS_DIR = "runs"
#: the word that means the newest run's best checkpoint
LATEST = "latest"
_WEIGHTS = "model.safetensors"  # attnfer.models.io.WEIGHTS_NAME, without importing torch
_GET_ONE = (
    "get one with `attnfer quickstart` (trains a model on SynthFER, the built-in dataset) or "
    "`attnfer convert FILE --from FORMAT --out DIR` (imports the original authors' checkpoints)"
)


class CheckpointNotFoundError(FileNotFoundError):
    """There is no checkpoint where the user pointed; the message says how to get one."""


def latest_run(runs_dir: str | Path | None = None) -> Path:
    """The most recently modified run directory under ``runs_dir`` (default ``runs``) that has
    ``best/model.safetensors``."""
    root = Path(runs_dir if runs_dir is not None else DEFAULT_RUNS_DIR)
    runs = [d for d in root.iterdir() if (d / "best" / _WEIGHTS).is_file()] if root.is_dir() else []
    if not runs:
        raise CheckpointNotFoundError(f"`{LATEST}`: no run with best/{_WEIGHTS} in {root.resolve()}; {_GET_ONE}")
    return max(runs, key=lambda d: (d.stat().st_mtime, d.name))


def resolve_checkpoint(
    spec: str | Path,
    runtime: str = "torch",
    runs_dir: str | Path | None = None,
    out: TextIO | None = None,
) -> Path:
    """The checkpoint ``spec`` means for ``runtime`` (``torch`` or ``onnx``).

    ``latest``: the newest run's ``best/`` (:func:`latest_run`); with ``runtime="onnx"`` its ``best/model.onnx``,
    exported on first use (and again when ``best/`` was saved after the export), with one line on ``out``
    (stderr). Any other spec is a path, returned as it is when it exists (``./latest`` or ``Path("latest")``
    names a folder called latest). Raises :class:`CheckpointNotFoundError` saying how to get a checkpoint otherwise."""
    if runtime not in ("torch", "onnx"):
        raise ValueError(f"runtime must be torch or onnx, got {runtime!r}")
    if isinstance(spec, str) and spec == LATEST:  # a Path("latest") is a folder of that name
        best = latest_run(runs_dir) / "best"
        if runtime == "torch":
            return best
        onnx = best / "model.onnx"
        if not onnx.is_file() or onnx.stat().st_mtime < (best / _WEIGHTS).stat().st_mtime:
            from .onnx_export import export_onnx

            out = sys.stderr if out is None else out
            out.write(f"attnfer: exporting {best} to {onnx.name} (first use with the onnx runtime) ...\n")
            out.flush()
            export_onnx(best, onnx)
        return onnx
    if not str(spec):
        raise CheckpointNotFoundError(f"no checkpoint given (a saved model directory, or `{LATEST}`); {_GET_ONE}")
    path = Path(spec)
    if not path.exists():
        what = (
            f"{path} not found (an exported model: `attnfer export CHECKPOINT` writes one)"
            if path.suffix == ".onnx"
            else f"{path / 'config.json'} not found: no checkpoint at {path} (a saved model is a folder with "
            f"config.json and {_WEIGHTS})"
        )
        raise CheckpointNotFoundError(f"{what}; {_GET_ONE}; `{LATEST}` means the newest run under {DEFAULT_RUNS_DIR}/")
    return path


SYNTHFER_WARNING = (
    "this model was trained on SynthFER, synthetic drawn faces: it is not meant for real photos and its labels on "
    "them mean little; for a real-face model train a recipe on a real dataset, or `attnfer convert` the authors' "
    "checkpoints (README: Using the authors' checkpoints)"
)


@dataclass(frozen=True)
class ModelOrigin:
    """Where a model's weights come from, as its config records it.

    Attributes:
        family: the registered model name ("" when unknown).
        training: ``{"dataset", "run", "recipe"}`` of a model trained by attnfer, or None.
        imported: ``{"format", "file", "sha256", "notes"}`` of a converted checkpoint, or None.
        recorded_in: where ``training`` was read: ``config`` (the checkpoint's) or ``run`` (the run directory's
            config.yaml, for checkpoints saved before the config recorded it).
    """

    family: str = ""
    training: dict[str, Any] | None = None
    imported: dict[str, Any] | None = None
    recorded_in: str = "config"

    @property
    def dataset(self) -> str | None:
        return (self.training or {}).get("dataset") or None

    @property
    def run(self) -> str | None:
        return (self.training or {}).get("run") or None

    @property
    def description(self) -> str:
        """``NAME trained on synthfer (run quickstart-..., recipe quickstart)``, ``... imported from FILE
        (FORMAT)`` or ``... (training data not recorded)``."""
        name = self.family or "model"
        if self.training:
            details = [f"{k} {self.training[k]}" for k in ("run", "recipe") if self.training.get(k)]
            return f"{name} trained on {self.dataset or 'an unrecorded dataset'}" + (
                f" ({', '.join(details)})" if details else ""
            )
        if self.imported:
            return f"{name} imported from {self.imported.get('file', '?')} ({self.imported.get('format', '?')})"
        return f"{name} (training data not recorded in its config)"

    @property
    def warning(self) -> str | None:
        """A plain warning when the model is not meant for real photos (trained on SynthFER), else None."""
        return SYNTHFER_WARNING if (self.dataset or "").lower() == "synthfer" else None

    def to_dict(self) -> dict[str, Any]:
        return {
            "family": self.family,
            "description": self.description,
            "training": self.training,
            "imported": self.imported,
            "run": self.run,
            "warning": self.warning,
        }


def model_origin(model_name: str, config: dict[str, Any], checkpoint: str | Path | None = None) -> ModelOrigin:
    """The :class:`ModelOrigin` of a model from its config (dict form, with ``extra``). A checkpoint saved inside a
    training run before the config recorded its data (``RUN/best``, ``RUN/best/model.onnx``) gets it from the
    run's ``config.yaml``."""
    extra = (config or {}).get("extra") or {}
    training = extra.get("training") if isinstance(extra.get("training"), dict) else None
    imported = extra.get("imported") if isinstance(extra.get("imported"), dict) else None
    if training or imported or checkpoint is None:
        return ModelOrigin(model_name, training, imported)
    run_training = _from_run_dir(Path(checkpoint))
    return ModelOrigin(model_name, run_training, None, "run") if run_training else ModelOrigin(model_name)


def _from_run_dir(checkpoint: Path) -> dict[str, Any] | None:
    folder = checkpoint.parent if checkpoint.suffix == ".onnx" else checkpoint
    run = folder.resolve().parent
    recipe = run / "config.yaml"
    if folder.name not in ("best", "last") or not recipe.is_file():
        return None
    try:
        import yaml

        cfg = yaml.safe_load(recipe.read_text()) or {}
        dataset = (cfg.get("data") or {}).get("name")
    except (OSError, ValueError, AttributeError, yaml.YAMLError):
        return None
    return {"dataset": dataset, "run": run.name, "recipe": cfg.get("name")} if dataset else None
