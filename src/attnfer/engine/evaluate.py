"""Evaluation: metrics a reviewer would trust, the batch-invariance check, confusion-matrix plots."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader

from ..files import write_json  # noqa: F401  (the engine writes its JSON through this module)

__all__ = ["batch_invariance", "classification_metrics", "plot_confusion", "predict_loader"]

@torch.no_grad()
def predict_loader(model: torch.nn.Module, loader: DataLoader, device: str = "cpu") -> tuple[np.ndarray, np.ndarray]:
    """(probabilities (N, C), targets (N,)) in the loader's order; targets become hard labels."""
    model.eval().to(device)
    probs, targets = [], []
    for batch in loader:
        x, y = batch[0], batch[1]
        probs.append(model(x.to(device)).float().softmax(1).cpu())
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
    model: torch.nn.Module, dataset: Any, max_samples: int = 512, device: str = "cpu", large_batch: int = 64
) -> dict[str, Any]:
    """Accuracy at batch size 1 vs ``large_batch`` on the same samples (shuffled, fixed seed).

    A model whose predictions depend on the batch (PAtt-Lite's original attention) fails: its accuracy and
    predictions differ. Passing requires identical predicted labels.
    """
    n = min(max_samples, len(dataset))
    order = torch.randperm(len(dataset), generator=torch.Generator().manual_seed(0))[:n].tolist()
    subset = torch.utils.data.Subset(dataset, order)
    p1, y = predict_loader(model, DataLoader(subset, batch_size=1), device)
    pb, _ = predict_loader(model, DataLoader(subset, batch_size=large_batch), device)
    changed = int((p1.argmax(1) != pb.argmax(1)).sum())
    return {
        "samples": n,
        "accuracy_batch_1": float((p1.argmax(1) == y).mean()),
        f"accuracy_batch_{large_batch}": float((pb.argmax(1) == y).mean()),
        "changed_predictions": changed,
        "max_probability_difference": float(np.abs(p1 - pb).max()),
        "passed": changed == 0,
    }


def plot_confusion(cm_norm: list[list[float]], class_names: list[str], path: Path, title: str) -> Path:
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
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path
