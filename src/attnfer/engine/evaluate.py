"""Evaluation: metrics a reviewer would trust, the batch-invariance check, and the files a report shows.

:func:`evaluate_checkpoints` is the one evaluation of attnfer, used after training and by ``attnfer evaluate``.
It writes into an output (run) directory everything :func:`attnfer.engine.report.render_report` shows::

    evaluation.json                  metrics per checkpoint and split (per-class table, confusion matrices),
                                     batch invariance, batch-dependence warnings
    confusion_<which>_<split>.png    normalised confusion matrix of each checkpoint and split
    samples.json, samples/<k>.png    seeded test faces at the model's input size with its first attention overlay
    data.json, environment.json      the data's counts and provenance, versions and device (when not there yet)

Classes are matched by name, never by position (:func:`class_mapping`): a model whose head is in another order (an
author's checkpoint imported as it was trained) is scored in the dataset's order, and the model's classes that the
dataset lacks are left out of the decision and recorded (``left_out_classes``). Every number and picture is in the
dataset's class order and names.
"""

from __future__ import annotations

import json
import platform
import subprocess
import sys
from collections.abc import Mapping, Sequence
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader

from ..files import _IsADirectoryOutputError, atomic_write, check_output_path, write_json
from ..hardware import resolve_precision

__all__ = [
    "batch_invariance",
    "check_evaluation_dir",
    "class_mapping",
    "classification_metrics",
    "environment",
    "evaluate_checkpoints",
    "plot_confusion",
    "predict_loader",
    "write_samples",
]

MAIN_SPLITS = ("train", "validation", "test")

#: the files an evaluation (and the report of it) writes into its directory under fixed names
OUTPUT_FILES = ("evaluation.json", "data.json", "environment.json", "samples.json", "report.html")


def check_evaluation_dir(out_dir: str | Path, what: str = "") -> Path:
    """Fail before any work when ``out_dir`` cannot take an evaluation's files: a file in its place, a directory
    where one of its files goes (``evaluation.json``, ``report.html``, ...), a file where ``samples/`` goes, or no
    permission to write (:class:`~attnfer.files.OutputPathError`). ``what`` names the option in the message."""
    out = check_output_path(out_dir, what)
    prefix = f"{what} " if what else ""
    for name in OUTPUT_FILES:
        if (out / name).is_dir():
            raise _IsADirectoryOutputError(
                f"{prefix}{out}: {out / name} is a directory; expected a file (or nothing) there"
            )
    check_output_path(out / "samples", prefix.strip())
    return out


def _name_key(name: str) -> str:
    """A class name as it is compared: its canonical expression name, else stripped and lower-cased."""
    from ..data.labels import normalize_name

    try:
        return normalize_name(str(name))
    except ValueError:
        return str(name).strip().lower()


def class_mapping(
    model_classes: Sequence[str] | None,
    dataset_classes: Sequence[str],
    *,
    num_outputs: int | None = None,
    dataset: str = "the dataset",
) -> tuple[np.ndarray, list[str]]:
    """Which model output scores each dataset class: the one rule by which every evaluation decides.

    Returns ``(index, left_out)``: ``index[k]`` is the model output of dataset class ``k`` (int64, one entry per
    dataset class, in the dataset's order) and ``left_out`` lists the model's classes that the dataset lacks, in the
    model's order.

    Rule: classes are matched by canonical name (:func:`attnfer.data.labels.normalize_name`, so "happy" is
    "happiness"; names that are no expression name are compared stripped and lower-cased), never by position. A head
    in another order (an author's checkpoint, e.g. an alphabetical anger, disgust, fear, ...) is scored in
    the dataset's order without being permuted. Model classes the dataset lacks (contempt on a 7-class set)
    take no part in the decision: a prediction is the argmax over the outputs ``index`` alone, and the
    probabilities shown are the softmax over those outputs alone (the model's probabilities renormalised over the
    classes that take part). A model without class names (``model_classes`` None) is positional: its
    ``num_outputs`` must equal the number of dataset classes.

    Raises ``ValueError`` when a dataset class is not among the model's classes (naming the class, the model's
    classes and ``dataset``), when the model names a class twice, or when an unnamed model's output count differs
    from the dataset's class count.
    """
    dataset_classes = [str(c) for c in dataset_classes]
    if model_classes is None:
        if num_outputs is None:
            raise ValueError("a model without class names needs num_outputs to be mapped positionally")
        if num_outputs != len(dataset_classes):
            raise ValueError(
                f"the model has {num_outputs} unnamed outputs but {dataset} has {len(dataset_classes)} classes "
                f"{dataset_classes}: without class names the outputs can only be taken in the dataset's order"
            )
        return np.arange(num_outputs, dtype=np.int64), []
    model_classes = [str(c) for c in model_classes]
    if num_outputs is not None and num_outputs != len(model_classes):
        raise ValueError(f"the model has {num_outputs} outputs but {len(model_classes)} class names {model_classes}")
    position: dict[str, int] = {}
    for i, name in enumerate(model_classes):
        key = _name_key(name)
        if key in position:
            raise ValueError(
                f"the model names '{key}' twice ({model_classes}): its outputs cannot be mapped onto classes by name"
            )
        position[key] = i
    missing = [c for c in dataset_classes if _name_key(c) not in position]
    if missing:
        raise ValueError(
            f"{dataset} has {', '.join(repr(c) for c in missing)}, which the model does not predict: "
            f"the model predicts {model_classes} but {dataset} has {dataset_classes}"
        )
    index = np.array([position[_name_key(c)] for c in dataset_classes], dtype=np.int64)
    taken = set(index.tolist())
    return index, [name for i, name in enumerate(model_classes) if i not in taken]


@torch.no_grad()
def predict_loader(
    model: torch.nn.Module, loader: DataLoader, device: str = "cpu", index: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """(probabilities (N, C), targets (N,)) in the loader's order; targets become hard labels.

    ``index`` (from :func:`class_mapping`): the probabilities are the softmax over those model outputs alone, column
    ``k`` for output ``index[k]`` (the dataset's class order); None: over all outputs in the model's order."""
    model.eval().to(device)
    cols = None if index is None else torch.as_tensor(np.asarray(index), dtype=torch.long, device=device)
    probs, targets = [], []
    for batch in loader:
        x, y = batch[0], batch[1]
        logits = model(x.to(device)).float()
        if cols is not None:
            logits = logits[:, cols]
        probs.append(logits.softmax(1).cpu())
        targets.append(y if y.dim() == 1 else y.argmax(1))
    return torch.cat(probs).numpy(), torch.cat(targets).numpy()


def classification_metrics(y_true: np.ndarray, y_pred: np.ndarray, class_names: list[str]) -> dict[str, Any]:
    """Accuracy, balanced accuracy, macro precision/recall/F1, per-class table, confusion matrices (scikit-learn)."""
    import warnings

    from sklearn.metrics import (
        accuracy_score,
        balanced_accuracy_score,
        confusion_matrix,
        precision_recall_fscore_support,
    )

    with warnings.catch_warnings():  # a test split may lack a class the model predicts
        warnings.filterwarnings("ignore", message="y_pred contains classes not in y_true")
        labels = list(range(len(class_names)))
        p, r, f, s = precision_recall_fscore_support(y_true, y_pred, labels=labels, zero_division=0)
        mp, mr, mf, _ = precision_recall_fscore_support(y_true, y_pred, labels=labels, average="macro", zero_division=0)
        cm = confusion_matrix(y_true, y_pred, labels=labels)
        with np.errstate(invalid="ignore", divide="ignore"):
            cm_norm = np.nan_to_num(cm / cm.sum(1, keepdims=True))
        present = np.unique(y_true)
        return {
            "n": len(y_true),
            "accuracy": float(accuracy_score(y_true, y_pred)),
            "balanced_accuracy": float(balanced_accuracy_score(y_true, y_pred)) if len(present) > 1 else float("nan"),
            "macro_precision": float(mp),
            "macro_recall": float(mr),
            "macro_f1": float(mf),
            "per_class": {
                name: {"precision": float(p[i]), "recall": float(r[i]), "f1": float(f[i]), "support": int(s[i])}
                for i, name in enumerate(class_names)
            },
            "confusion": cm.tolist(),
            "confusion_normalized": cm_norm.round(4).tolist(),
        }


def batch_invariance(
    model: torch.nn.Module,
    dataset: Any,
    max_samples: int = 512,
    device: str = "cpu",
    large_batch: int = 64,
    index: np.ndarray | None = None,
) -> dict[str, Any]:
    """Accuracy at batch size 1 vs ``large_batch`` on the same samples (shuffled, fixed seed).

    A model whose predictions depend on the batch (``cfg.batch_dependent``) fails: its accuracy and predictions
    differ. Passing requires identical predicted labels. ``index`` (from :func:`class_mapping`) decides as the
    evaluation does: labels are the argmax over those outputs (dataset order); None: positional, all outputs.
    """
    n = min(max_samples, len(dataset))
    order = torch.randperm(len(dataset), generator=torch.Generator().manual_seed(0))[:n].tolist()
    subset = torch.utils.data.Subset(dataset, order)
    p1, y = predict_loader(model, DataLoader(subset, batch_size=1), device, index)
    pb, _ = predict_loader(model, DataLoader(subset, batch_size=large_batch), device, index)
    changed = int((p1.argmax(1) != pb.argmax(1)).sum())
    return {
        "samples": n,
        "large_batch": large_batch,
        "accuracy_batch_1": float((p1.argmax(1) == y).mean()),
        f"accuracy_batch_{large_batch}": float((pb.argmax(1) == y).mean()),
        "changed_predictions": changed,
        "max_probability_difference": float(np.abs(p1 - pb).max()),
        "passed": changed == 0,
    }


def plot_confusion(cm_norm: list[list[float]], class_names: list[str], path: Path, title: str) -> Path:
    """The normalised confusion matrix as a PNG at ``path`` (written atomically)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cm = np.asarray(cm_norm)
    fig, ax = plt.subplots(figsize=(1.0 + 0.75 * len(class_names), 0.8 + 0.7 * len(class_names)), dpi=110)
    im = ax.imshow(cm, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(len(class_names)), class_names, rotation=45, ha="right")
    ax.set_yticks(range(len(class_names)), class_names)
    for i in range(cm.shape[0]):
        for j in range(cm.shape[1]):
            ax.text(
                j,
                i,
                f"{cm[i, j]:.2f}",
                ha="center",
                va="center",
                fontsize=8,
                color="white" if cm[i, j] > 0.5 else "black",
            )
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title, fontsize=10)
    fig.colorbar(im, ax=ax, fraction=0.046)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        atomic_write(path, lambda p: fig.savefig(p, format="png"))
    finally:
        plt.close(fig)
    return path


def environment() -> dict[str, Any]:
    """Versions, git commit, device and command line: what a run or an evaluation ran with."""
    try:
        commit = (
            subprocess.run(
                ["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5, cwd=Path(__file__).parent
            ).stdout.strip()
            or None
        )
    except (OSError, subprocess.SubprocessError):
        commit = None
    import lightning
    import timm
    import torchvision

    from .. import __version__
    from ..hardware import describe_machine

    return {
        "attnfer": __version__,
        "git_commit": commit,
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "timm": timm.__version__,
        "lightning": lightning.__version__,
        "cuda": torch.cuda.is_available(),
        "device": torch.cuda.get_device_name(0) if torch.cuda.is_available() else platform.processor() or "cpu",
        "cpu_threads": torch.get_num_threads(),
        "machine": describe_machine(),
        "command": sys.argv,
    }


# ------------------------------------------------------------------------------------------------
# sample predictions with attention
# ------------------------------------------------------------------------------------------------
def _overlay(face: np.ndarray, heat: np.ndarray | None, alpha: float = 0.4) -> np.ndarray:
    """uint8 face (h, w, 3) with a (H, W) heat map in [0, 1] drawn over it (jet colours), uint8."""
    if heat is None:
        return face
    import cv2
    import matplotlib

    heat = np.clip(np.asarray(heat, np.float32), 0.0, 1.0)
    if heat.shape != face.shape[:2]:
        heat = cv2.resize(heat, (face.shape[1], face.shape[0]), interpolation=cv2.INTER_LINEAR)
    colour = matplotlib.colormaps["jet"](heat)[..., :3]
    out = (1.0 - alpha) * face.astype(np.float32) / 255.0 + alpha * colour
    return np.clip(out * 255.0 + 0.5, 0, 255).astype(np.uint8)


def _clear_samples(out_dir: Path) -> None:
    (out_dir / "samples.json").unlink(missing_ok=True)
    for old in (out_dir / "samples").glob("*.png"):
        old.unlink()


@torch.no_grad()
def write_samples(
    model: torch.nn.Module,
    dataset: Any,
    out_dir: str | Path,
    n: int = 12,
    seed: int = 0,
    note: str | None = None,
    checkpoint: str | None = None,
) -> dict[str, Any] | None:
    """``n`` seeded samples of ``dataset`` (a plain :class:`~attnfer.data.FERDataset`: uint8 faces, labels) as
    ``samples/<k>.png`` (the face at the model's input size with the model's first overlay attention map) and
    ``samples.json`` (file, true and predicted label, probability, attention title). Each face is classified
    alone (batch of 1) from the model's own preprocessing. Returns the samples.json content (None when n <= 0).

    Classes are mapped by name (:func:`class_mapping` of the model's and the dataset's class names): the predicted
    label is a dataset class, and its probability is the softmax over the model outputs of the dataset's classes
    (renormalised without the model's classes the dataset lacks, listed as ``classes_left_out``)."""
    from PIL import Image

    from ..preprocess import resize_face
    from ..preprocess.torch_ops import build_transform

    names = list(dataset.class_names)
    index, left_out = class_mapping(
        model.class_names or None, names, num_outputs=model.num_classes, dataset=getattr(dataset, "name", "the dataset")
    )
    out_dir = Path(out_dir)
    _clear_samples(out_dir)  # a previous evaluation's
    if n <= 0 or len(dataset) == 0:
        return None
    (out_dir / "samples").mkdir(parents=True, exist_ok=True)
    model.eval()
    device = next(model.parameters()).device
    tf = build_transform(model.cfg)
    cols = torch.as_tensor(index, dtype=torch.long, device=device)
    idx = np.random.default_rng(seed).choice(len(dataset), size=min(n, len(dataset)), replace=False)
    rows = []
    for k, i in enumerate(int(j) for j in idx):
        image = dataset.load_image(i)
        x = tf(image)[None].to(device)
        p = model(x).float()[:, cols].softmax(1)[0].cpu()
        overlays = [m for m in model.attention_maps(x) if m.overlay]
        face = resize_face(np.ascontiguousarray(image), model.cfg.preprocess)
        shown = _overlay(face, overlays[0].data if overlays else None)
        name = f"samples/{k}.png"
        atomic_write(out_dir / name, lambda path, a=shown: Image.fromarray(a).save(path, format="PNG"))
        pred, true = int(p.argmax()), int(dataset.targets[i])
        rows.append(
            {
                "file": name,
                "index": i,
                "id": str(dataset.ids[i]) if getattr(dataset, "ids", None) is not None else str(i),
                "true": names[true],
                "predicted": names[pred],
                "probability": round(float(p[pred]), 4),
                "correct": pred == true,
                "attention": overlays[0].title if overlays else None,
            }
        )
    info = {
        "checkpoint": checkpoint,
        "split": getattr(dataset, "split", None),
        "seed": seed,
        "input_size": list(model.cfg.input_size),
        "note": note,
        "classes_left_out": left_out,
        "samples": rows,
    }
    write_json(out_dir / "samples.json", info)
    return info


# ------------------------------------------------------------------------------------------------
# the evaluation
# ------------------------------------------------------------------------------------------------
def _autocast(precision: str | None, device: str) -> torch.dtype | None:
    """The autocast dtype of a Lightning precision string (None: float32)."""
    p = str(precision or "32-true")
    if p.startswith("bf16"):
        return torch.bfloat16
    if p.startswith("16") and device.startswith("cuda"):
        return torch.float16
    return None


def _checkpoint_list(checkpoints: Any) -> list[tuple[str, Any]]:
    if isinstance(checkpoints, Mapping):
        return list(checkpoints.items())
    if isinstance(checkpoints, str | Path):
        return [(Path(checkpoints).name or "model", checkpoints)]
    return [(getattr(checkpoints, "model_name", "") or "model", checkpoints)]


def _same_checkpoint(a: dict[str, Any] | None, b: dict[str, Any] | None) -> bool:
    """Two saved models selected at the same (phase, epoch) of a run are the same weights."""
    if not a or not b or a.get("epoch") is None or b.get("epoch") is None:
        return False
    return (a.get("phase"), a.get("epoch")) == (b.get("phase"), b.get("epoch"))


def evaluate_checkpoints(
    checkpoints: Any,
    data: Any,
    out_dir: str | Path | None = None,
    *,
    splits: Sequence[str] | None = None,
    precision: str | None = None,
    check_batch_invariance: bool = True,
    invariance_samples: int = 256,
    samples: int = 12,
    selection: str | None = None,
    device: str | None = None,
) -> dict[str, Any]:
    """Evaluate models on a dataset's splits and write what a report shows into ``out_dir``.

    Args:
        checkpoints: a saved model directory or a model, or a mapping name -> either (e.g. ``{"best": run/"best",
            "last": run/"last"}``); a saved directory's ``metrics.json`` is recorded as ``selected_at``, and one
            selected at the same (phase, epoch) as an earlier checkpoint is recorded as ``same_as`` it.
        data: a :class:`~attnfer.engine.data.FERDataModule` (used as it is), a
            :class:`~attnfer.data.DatasetSplits` (default loader settings), a recipe
            (:class:`~attnfer.engine.config.TrainConfig`, whose data is loaded), or the settings of a recipe's
            ``data`` section (e.g. ``{"name": "rafdb", "root": "/data/RAF-DB/basic"}``, loaded likewise).
        out_dir: where the files go (created); None computes only.
        splits: splits to evaluate; default ``test`` and the dataset's extra evaluation subsets.
        precision: the training precision (Lightning string): evaluation runs in it (bf16 autocast for ``bf16*``);
            None or ``auto``: the machine's rule (:func:`attnfer.hardware.resolve_precision`).
            Batch invariance always runs in float32 (the check is about the model's arithmetic, not rounding).
        check_batch_invariance: run :func:`batch_invariance` on the first split.
        samples: number of seeded test faces written with their attention (0: none).
        selection: how the checkpoints were selected (shown in the report).
        device: where the models run: ``cpu``, ``cuda``, ``cuda:N`` or ``auto`` / None (CUDA when there is a GPU,
            else the CPU), as :func:`attnfer.inference.device.resolve_device` reads it (CUDA asked for where there
            is none: a :class:`~attnfer.files.UserError`, before any work). Recorded as ``device`` (``cpu``,
            ``cuda:0``, ...).

    Batch-dependent models (``model.cfg.batch_dependent``) are evaluated in shuffled fixed batches, never in
    class-sorted ones, and carry a warning. With composited training data (``cfg.data.compositing``) the metrics are
    on composited evaluation images as training validated on them, and the samples are the plain test faces: the
    model's input contract (compositing is a choice of training data).

    Classes are mapped by name (:func:`class_mapping`): the dataset's classes are looked up among the model's, so a
    head in another order is scored in the dataset's order; the model's classes the dataset lacks are left out of
    the decision (argmax over the others) and recorded per checkpoint (``model_classes``, ``class_mapping``:
    dataset class -> model output, ``left_out_classes``); a model without class names is taken positionally. Every
    checkpoint is checked before any inference.

    Returns the content of ``evaluation.json``; raises ``ValueError`` when a dataset class is not among a model's
    classes (or an unnamed model's output count differs from the dataset's), :class:`~attnfer.models.CheckpointError`
    for a bad saved directory.
    """
    from ..data import DatasetSplits
    from ..inference.device import resolve_device
    from ..models import load_model
    from ..models.io import read_config
    from .config import TrainConfig
    from .data import FERDataModule, load_run_data

    device = str(resolve_device(device or "auto"))  # before any work: CUDA asked for where there is none fails now
    out = check_evaluation_dir(out_dir) if out_dir is not None else None  # before any work
    items = _checkpoint_list(checkpoints)
    if not items:
        raise ValueError("no checkpoint to evaluate")
    configs: dict[str, dict[str, Any]] = {}
    for which, source in items:  # a bad checkpoint fails before any data is loaded
        if isinstance(source, str | Path):
            configs[which] = read_config(source)
    cfg: Any = None
    if isinstance(data, FERDataModule):
        cfg, splits_data = data.cfg, data.data
    elif isinstance(data, DatasetSplits):
        cfg, splits_data = TrainConfig(), data
    elif isinstance(data, TrainConfig | Mapping):
        cfg = data if isinstance(data, TrainConfig) else TrainConfig(data=dict(data))
        splits_data = load_run_data(cfg)
    else:
        raise TypeError(
            f"data must be a FERDataModule, DatasetSplits, TrainConfig or data settings, got {type(data).__name__}"
        )
    class_names = list(splits_data.class_names)
    if splits is None:
        splits = ["test", *[s for s in splits_data.splits if s not in MAIN_SPLITS]]
    splits = list(splits)
    for split in splits:
        splits_data[split]  # a KeyError naming the splits there are
    # the training precision, or the machine's rule (attnfer.hardware: bf16 only where it is native)
    precision = resolve_precision(precision or "auto", "cuda" if str(device).startswith("cuda") else "cpu")
    dtype = _autocast(precision, device)
    mappings: dict[str, tuple[np.ndarray, list[str], list[str] | None]] = {}
    for which, source in items:  # every checkpoint's classes are checked before any inference
        if which in configs:
            model_classes, num_outputs = configs[which].get("class_names"), configs[which]["num_classes"]
        else:
            model_classes, num_outputs = getattr(source, "class_names", None), source.num_classes
        model_classes = list(model_classes) if model_classes else None
        index, left_out = class_mapping(model_classes, class_names, num_outputs=num_outputs, dataset=splits_data.name)
        mappings[which] = (index, left_out, model_classes)

    report: dict[str, Any] = {
        "selection": selection or "",
        "dataset": splits_data.name,
        "class_names": class_names,
        "splits": splits,
        "precision": precision,
        "device": device,
        "model": None,
        "checkpoints": {},
    }
    primary = None  # the first checkpoint's model: its samples are written
    for which, source in items:
        path = Path(source) if isinstance(source, str | Path) else None
        selected_at = None
        if path is not None and (path / "metrics.json").is_file():
            selected_at = json.loads((path / "metrics.json").read_text())
        earlier = next(
            (name for name, e in report["checkpoints"].items() if _same_checkpoint(e.get("selected_at"), selected_at)),
            None,
        )
        if earlier is not None:
            report["checkpoints"][which] = {**report["checkpoints"][earlier], "same_as": earlier}
            continue
        model = load_model(path) if path is not None else source
        index, left_out, model_classes = mappings[which]
        report["model"] = report["model"] or getattr(model, "model_name", "") or type(model).__name__
        dm = data if isinstance(data, FERDataModule) else FERDataModule(cfg, splits_data, model.cfg)
        batch_dependent = bool(model.cfg.batch_dependent)
        entry: dict[str, Any] = {
            "batch_dependent": batch_dependent,
            "model_classes": model_classes,
            "class_mapping": {c: int(i) for c, i in zip(class_names, index, strict=True)},
            "left_out_classes": left_out,
        }
        if path is not None:
            entry["path"] = str(path)
        if selected_at is not None:
            entry["selected_at"] = selected_at
        for split in splits:
            # batch-dependent models: shuffled, fixed-size batches (never class-sorted ones)
            loader = dm.eval_loader(split, shuffle_seed=0 if batch_dependent else None)
            precision_ctx = torch.autocast(device.split(":")[0], dtype=dtype) if dtype is not None else nullcontext()
            with precision_ctx:
                probs, y = predict_loader(model, loader, device, index)
            metrics = classification_metrics(y, probs.argmax(1), class_names)
            entry[split] = metrics
            if out is not None and which == items[0][0] and split == splits[0]:  # the report's picture
                plot_confusion(
                    metrics["confusion_normalized"],
                    class_names,
                    out / f"confusion_{which}_{split}.png",
                    f"{report['model']} on {splits_data.name} {split} ({which})",
                )
        if check_batch_invariance:
            entry["batch_invariance"] = batch_invariance(
                model, dm.dataset(splits[0], train=False), max_samples=invariance_samples, device=device, index=index
            )
        if batch_dependent:
            entry["warning"] = (
                "the model's outputs depend on its batch-mates (cfg.batch_dependent); its numbers are not "
                "comparable to per-sample models"
            )
        report["checkpoints"][which] = entry
        if which == items[0][0]:
            primary = model

    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        if samples > 0 and primary is not None:
            split = "test" if "test" in splits_data.splits else splits[0]
            note = None
            if cfg is not None and cfg.data.compositing:
                note = "plain test faces (the model's input contract); the metrics are on composited evaluation images"
            write_samples(primary, splits_data[split], out, n=samples, seed=0, note=note, checkpoint=items[0][0])
            report["samples"] = "samples.json"
        else:  # no samples this time: none of an earlier evaluation's either
            _clear_samples(out)
        write_json(out / "evaluation.json", report)
        if not (out / "data.json").is_file():
            write_json(out / "data.json", splits_data.summary())
        if not (out / "environment.json").is_file():
            write_json(out / "environment.json", environment())
    return report
