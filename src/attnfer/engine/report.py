"""``attnfer report RUN_DIR``: one self-contained HTML page (images embedded) for a training run."""

from __future__ import annotations

import base64
import csv
import html
import io
import json
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml

__all__ = ["attention_overlay", "render_report"]


def _png(fig) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def _file_png(path: Path) -> str:
    return "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode()


def _curves(run_dir: Path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    series: dict[str, dict[int, float]] = {}
    offset = 0
    phases = sorted({p.parent.name.split("-")[0] for p in (run_dir / "logs").glob("phase*/metrics.csv")})
    for phase in phases:
        last_epoch = -1
        # the first part of a phase, then the parts logged after each resume (epochs are absolute in a phase)
        for log in sorted((run_dir / "logs").glob(f"{phase}*/metrics.csv"), key=lambda p: (len(p.parent.name), p)):
            with log.open() as f:
                for row in csv.DictReader(f):
                    if not row.get("epoch"):
                        continue
                    last_epoch = max(last_epoch, int(row["epoch"]))
                    for key in ("train/loss_epoch", "val/loss", "train/acc", "val/acc"):
                        if row.get(key):
                            series.setdefault(key, {})[int(row["epoch"]) + offset] = float(row[key])
        offset += last_epoch + 1
    if not series:
        return None
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.2), dpi=100)
    for key, ax in (("loss", axes[0]), ("acc", axes[1])):
        for name, pts in series.items():
            if name.split("/")[1].startswith(key):
                xs, ys = zip(*sorted(pts.items()), strict=True)
                ax.plot(xs, ys, marker="o", ms=3, label=name.replace("_epoch", ""))
        ax.set_xlabel("epoch (all phases)")
        ax.set_title(key)
        ax.legend(fontsize=8)
        ax.grid(alpha=0.3)
    fig.tight_layout()
    out = _png(fig)
    plt.close(fig)
    return out


@torch.no_grad()
def attention_overlay(model: torch.nn.Module, x: torch.Tensor) -> np.ndarray | None:
    """The model's first attention heat map for one preprocessed image (1, 3, H, W), or None."""
    model.eval()
    maps = [m for m in model.attention_maps(x) if m.overlay]
    return maps[0].data if maps else None


def _samples(run_dir: Path, n: int) -> str | None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from ..models import load_model
    from ..preprocess.torch_ops import build_transform
    from .config import load_config
    from .data import load_run_data

    if not (run_dir / "best" / "model.safetensors").is_file() or n <= 0:
        return None
    cfg = load_config(run_dir / "config.yaml")
    if cfg.data.compositing:
        return None
    data = load_run_data(cfg)
    model = load_model(run_dir / "best").eval()
    tf = build_transform(model.cfg)
    test = data["test"]
    idx = np.random.default_rng(0).choice(len(test), size=min(n, len(test)), replace=False)
    cols = 6
    rows = int(np.ceil(len(idx) / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(2.0 * cols, 2.3 * rows), dpi=90, squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, i in zip(axes.flat, idx, strict=False):
        img = test.load_image(int(i))
        x = tf(torch.from_numpy(np.array(img)).permute(2, 0, 1))[None]
        with torch.no_grad():
            p = model(x).softmax(1)[0]
        pred, true = test.class_names[int(p.argmax())], test.class_names[int(test.targets[i])]
        shown = np.asarray(
            torch.nn.functional.interpolate(
                torch.from_numpy(np.array(img)).permute(2, 0, 1)[None].float(), size=x.shape[-2:], mode="bilinear"
            )[0]
            .permute(1, 2, 0)
            .clamp(0, 255)
            .byte()
        )
        ax.imshow(shown)
        att = attention_overlay(model, x)
        if att is not None:
            ax.imshow(att, cmap="jet", alpha=0.35, vmin=0, vmax=1)
        ax.set_title(
            f"{pred} {float(p.max()):.2f}\n(true {true})", fontsize=8, color="green" if pred == true else "red"
        )
    fig.tight_layout()
    out = _png(fig)
    plt.close(fig)
    return out


def _table(rows: list[list[Any]], header: list[str]) -> str:
    head = "".join(f"<th>{html.escape(str(h))}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in r) + "</tr>" for r in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def render_report(run_dir: str | Path, samples: int | None = None) -> Path:
    run_dir = Path(run_dir)
    if not (run_dir / "config.yaml").is_file():
        raise FileNotFoundError(f"{run_dir} is not an attnfer run directory (no config.yaml)")
    config = yaml.safe_load((run_dir / "config.yaml").read_text())
    data = json.loads((run_dir / "data.json").read_text()) if (run_dir / "data.json").is_file() else {}
    evaluation = (
        json.loads((run_dir / "evaluation.json").read_text()) if (run_dir / "evaluation.json").is_file() else {}
    )
    env = json.loads((run_dir / "environment.json").read_text()) if (run_dir / "environment.json").is_file() else {}
    parts = [
        f"<h1>attnfer run: {html.escape(run_dir.name)}</h1>",
        f"<p>model <b>{html.escape(config['model']['name'])}</b> on <b>{html.escape(config['data']['name'])}</b>; "
        f"attnfer {env.get('attnfer', '?')}, torch {env.get('torch', '?')}, "
        f"device {html.escape(str(env.get('device', '?')))}, "
        f"commit {env.get('git_commit') or 'n/a'}</p>",
    ]
    for which, entry in evaluation.get("checkpoints", {}).items():
        if entry.get("batch_dependent"):
            parts.append(f"<p class='red'><b>Warning ({which}):</b> {html.escape(entry.get('warning', ''))}</p>")
    # results
    rows = []
    for which, entry in evaluation.get("checkpoints", {}).items():
        for split, m in entry.items():
            if isinstance(m, dict) and "accuracy" in m:
                rows.append(
                    [
                        which,
                        split,
                        m["n"],
                        f"{m['accuracy']:.4f}",
                        f"{m['balanced_accuracy']:.4f}",
                        f"{m['macro_precision']:.4f}",
                        f"{m['macro_recall']:.4f}",
                        f"{m['macro_f1']:.4f}",
                    ]
                )
    parts.append("<h2>Results</h2><p>" + html.escape(evaluation.get("selection", "")) + "</p>")
    parts.append(
        _table(rows, ["checkpoint", "split", "n", "accuracy", "balanced acc", "macro P", "macro R", "macro F1"])
    )
    for which, entry in evaluation.get("checkpoints", {}).items():
        bi = entry.get("batch_invariance")
        if bi:
            cls = "green" if bi["passed"] else "red"
            parts.append(
                f"<p class='{cls}'>Batch invariance ({which}): accuracy at batch 1 = {bi['accuracy_batch_1']:.4f}, "
                f"at batch 64 = {bi.get('accuracy_batch_64', float('nan')):.4f}, changed predictions "
                f"{bi['changed_predictions']} of {bi['samples']}: {'passed' if bi['passed'] else 'FAILED'}</p>"
            )
    if (run_dir / "confusion_best_test.png").is_file():
        parts.append(
            f"<h2>Confusion matrix (best, test)</h2><img src='{_file_png(run_dir / 'confusion_best_test.png')}'>"
        )
    best_test = evaluation.get("checkpoints", {}).get("best", {}).get("test")
    if best_test:
        pc = [
            [name, f"{v['precision']:.3f}", f"{v['recall']:.3f}", f"{v['f1']:.3f}", v["support"]]
            for name, v in best_test["per_class"].items()
        ]
        parts.append("<h2>Per class (best, test)</h2>" + _table(pc, ["class", "precision", "recall", "F1", "support"]))
    curves = _curves(run_dir)
    if curves:
        parts.append(f"<h2>Training curves</h2><img src='{curves}'>")
    sample_png = _samples(run_dir, config.get("report_samples", 12) if samples is None else samples)
    if sample_png:
        parts.append(
            "<h2>Sample test predictions with attention</h2>"
            "<p>overlay: attention over the 2x2 patch tokens (PAtt-Lite, SA-FER) or FERAtt's map</p>"
            f"<img src='{sample_png}'>"
        )
    if data:
        counts = data.get("counts", {})
        classes = data.get("class_names", [])
        crow = [[s, *[c.get(k, 0) for k in classes], c.get("total", 0)] for s, c in counts.items()]
        parts.append("<h2>Data</h2>" + _table(crow, ["split", *classes, "total"]))
        parts.append(f"<p>validation split: {html.escape(str(data.get('validation_source')))}</p>")
        for note in data.get("notes", []):
            parts.append(f"<p>{html.escape(note)}</p>")
    parts.append("<h2>Recipe</h2><pre>" + html.escape(yaml.safe_dump(config, sort_keys=False)) + "</pre>")
    style = (
        "body{font-family:sans-serif;max-width:1100px;margin:2em auto;color:#222} table{border-collapse:collapse;"
        "margin:.5em 0} td,th{border:1px solid #ccc;padding:3px 8px;text-align:right} .red{color:#b00}"
        ".green{color:#070} pre{background:#f6f6f6;padding:1em;font-size:12px} img{max-width:100%}"
    )
    head = f"<meta charset='utf-8'><title>attnfer report</title><style>{style}</style>"
    page = f"<!doctype html><html><head>{head}</head><body>{''.join(parts)}</body></html>"
    out = run_dir / "report.html"
    tmp = out.with_name("report.html.tmp")
    tmp.write_text(page)
    tmp.replace(out)
    return out
