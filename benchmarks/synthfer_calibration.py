"""SynthFER difficulty calibration: raw-pixel logistic regression vs a small CNN.

SynthFER must be hard for a linear model on pixels (<= 45% test accuracy) and learnable from local cues by a
small CNN in a few CPU minutes (>= 85%). Also times the generator (10,000 images at 112x112, 2 workers).

    uv run python benchmarks/synthfer_calibration.py [--n 10000] [--minutes 4] [--out benchmarks/results]

Prints a table and writes ``synthfer_calibration.json``.
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import os
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F


def load_arrays(root: Path, size: int) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    import cv2

    from attnfer.data import load_dataset

    data = load_dataset("synthfer", root)
    out = {}
    for split in ("train", "validation", "test"):
        ds = data[split]
        x = np.stack([cv2.resize(ds.load_image(i), (size, size), interpolation=cv2.INTER_AREA) for i in range(len(ds))])
        out[split] = (x, ds.targets.copy())
    return out


def logistic_regression(arrays, size: int) -> float:
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    xtr, ytr = arrays["train"]
    xte, yte = arrays["test"]
    scaler = StandardScaler().fit(xtr.reshape(len(xtr), -1).astype(np.float32))
    clf = LogisticRegression(max_iter=300, C=0.01)
    clf.fit(scaler.transform(xtr.reshape(len(xtr), -1).astype(np.float32)), ytr)
    return float((clf.predict(scaler.transform(xte.reshape(len(xte), -1).astype(np.float32))) == yte).mean())


class SmallCNN(nn.Module):
    """Four conv-BN-ReLU-maxpool stages (24-48-96-160 channels), a 3x3 conv, global pooling, linear."""

    def __init__(self, num_classes: int = 7) -> None:
        super().__init__()
        chans = [3, 24, 48, 96, 160]
        layers: list[nn.Module] = []
        for cin, cout in itertools.pairwise(chans):
            layers += [nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]
            layers += [nn.MaxPool2d(2)]
        layers += [nn.Conv2d(chans[-1], chans[-1], 3, padding=1, bias=False), nn.BatchNorm2d(chans[-1]), nn.ReLU()]
        self.features = nn.Sequential(*layers)
        self.head = nn.Linear(chans[-1], num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x).mean((2, 3)))


def warmup_cosine(peak: float, frac: float, warmup: float) -> float:
    """The learning rate at ``frac`` (0-1) of a schedule: linear warm-up over ``warmup``, then cosine to zero."""
    return peak * min(1.0, frac / warmup) * 0.5 * (1 + math.cos(math.pi * frac))


def train_step(
    model: nn.Module,
    opt: torch.optim.Optimizer,
    xb: torch.Tensor,
    yb: torch.Tensor,
    lr: float,
    clip: float | None = None,
) -> torch.Tensor:
    """One step on an in-memory batch: random horizontal flip, label-smoothed cross-entropy, optional gradient clip."""
    flip = torch.rand(len(xb)) < 0.5
    xb[flip] = xb[flip].flip(-1)
    loss = F.cross_entropy(model(xb.contiguous(memory_format=torch.channels_last)), yb, label_smoothing=0.05)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    if clip is not None:
        torch.nn.utils.clip_grad_norm_(model.parameters(), clip)
    for group in opt.param_groups:
        group["lr"] = lr
    opt.step()
    return loss.detach()


def small_cnn(arrays, minutes: float, seed: int = 0) -> tuple[float, float, int]:
    torch.manual_seed(seed)
    xtr, ytr = arrays["train"]
    xva, yva = arrays["validation"]
    xte, yte = arrays["test"]

    def to_t(x):
        return torch.from_numpy(x).permute(0, 3, 1, 2).float().div(255).sub(0.5).div(0.25)

    Xtr, Ytr, Xva, Xte = to_t(xtr), torch.from_numpy(ytr), to_t(xva), to_t(xte)
    model = SmallCNN().to(memory_format=torch.channels_last)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=5e-4)
    budget = minutes * 60
    start = time.perf_counter()
    steps, bs, epoch, best, best_state = 0, 64, 0, -1.0, None

    def evaluate(X, y) -> float:
        model.eval()
        with torch.no_grad():
            pred = torch.cat([model(X[i : i + 256]).argmax(1) for i in range(0, len(X), 256)])
        model.train()
        return float((pred.numpy() == y).mean())

    max_lr = 3e-3
    while time.perf_counter() - start < budget:
        perm = torch.randperm(len(Xtr))
        for i in range(0, len(perm) - bs + 1, bs):
            idx = perm[i : i + bs]
            # learning rate follows the time budget: 5% warm-up, then cosine decay to zero
            frac = min(1.0, (time.perf_counter() - start) / budget)
            train_step(model, opt, Xtr[idx], Ytr[idx], warmup_cosine(max_lr, frac, 0.05))
            steps += 1
            if time.perf_counter() - start > budget:
                break
        epoch += 1
        acc = evaluate(Xva, yva)  # model selection on validation, never on test
        if acc > best:
            best, best_state = acc, {k: v.clone() for k, v in model.state_dict().items()}
    model.load_state_dict(best_state)
    return evaluate(Xte, yte), best, epoch


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=10_000)
    ap.add_argument("--minutes", type=float, default=5.0)
    ap.add_argument("--size", type=int, default=96, help="input size of the small CNN and the LR")
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    ap.add_argument("--data", type=Path, default=None, help="existing SynthFER root (else generated)")
    args = ap.parse_args()
    torch.set_num_threads(os.cpu_count() or 2)
    from attnfer.data.synthfer import generate

    tmp = tempfile.TemporaryDirectory()
    root = args.data
    gen_s = None
    if root is None:
        root = Path(tmp.name) / "synthfer"
        t = time.perf_counter()
        generate(root, n=args.n, size=112, seed=0, workers=2)
        gen_s = time.perf_counter() - t
    arrays = load_arrays(root, args.size)
    t = time.perf_counter()
    lr_acc = logistic_regression(arrays, args.size)
    lr_s = time.perf_counter() - t
    print(f"logistic regression test accuracy {lr_acc:.3f} ({lr_s:.0f} s)", flush=True)
    t = time.perf_counter()
    cnn_acc, cnn_val, epochs = small_cnn(arrays, args.minutes)
    cnn_s = time.perf_counter() - t
    result = {
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores",
        "n": args.n,
        "generate_s": gen_s,
        "input_size": args.size,
        "logreg_test_acc": lr_acc,
        "logreg_s": lr_s,
        "cnn_test_acc": cnn_acc,
        "cnn_best_val_acc": cnn_val,
        "cnn_epochs": epochs,
        "cnn_s": cnn_s,
        "bounds": {"logreg_max": 0.45, "cnn_min": 0.85},
    }
    print(f"{'measure':<34}{'value':>12}")
    if gen_s is not None:
        print(f"{'generate 10k @112 (2 workers), s':<34}{gen_s:>12.1f}")
    print(f"{'logistic regression, test acc':<34}{lr_acc:>12.3f}")
    print(f"{'small CNN, test acc (val-selected)':<34}{cnn_acc:>12.3f}")
    print(f"{'small CNN, train time s / epochs':<34}{cnn_s:>8.0f} / {epochs}")
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "synthfer_calibration.json").write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
