"""Does a seed architecture learn SynthFER from scratch at all? An in-memory probe, counted in images seen.

The quickstart has about 7 minutes of training on a 2-core CPU. Whether a model can reach 75% there depends on two
numbers: images per second (``train_throughput.py``, ``quickstart_candidates.py``) and how many images it needs. This
probe measures the second one without the data path: SynthFER is decoded once into memory at ``--size``, the model
trains with AdamW (or SGD) on a warm-up + cosine schedule laid out over ``--images`` images (so a busy machine slows
it down but does not change the curve), and validation accuracy is printed after every pass over the training split.
``--model small`` is SynthFER's calibration CNN (``synthfer_calibration.py``), the reference for "learnable".

    uv run python benchmarks/quickstart_probe.py --model emonet --size 64 --images 30000
    uv run python benchmarks/quickstart_probe.py --model small --size 64 --images 30000

``--zero-init`` zeroes the last BatchNorm of every EMO-Net block (each block starts as its weighted shortcut), a
standard remedy for slow starts of deep residual nets. Appends a row to ``quickstart_probe.json`` (``--out``).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from synthfer_calibration import SmallCNN, train_step, warmup_cosine  # noqa: E402  (a sibling script)


def synthfer_arrays(size: int) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """SynthFER's three splits as uint8 (N, size, size, 3) arrays and int targets (generated if not cached)."""
    from attnfer.data import load_dataset
    from attnfer.engine.data import synthfer_root
    from attnfer.preprocess import PreprocessConfig, resize_face

    data = load_dataset("synthfer", synthfer_root(10_000, 112, 0))  # the quickstart's SynthFER (made if not cached)
    stored = PreprocessConfig(input_size=(3, size, size))
    out = {}
    for split in ("train", "validation", "test"):
        ds = data[split]
        x = np.stack([resize_face(ds.load_image(i), stored) for i in range(len(ds))])
        out[split] = (x, np.asarray(ds.targets))
    return out


def build(name: str, size: int, zero_init: bool) -> torch.nn.Module:
    if name == "small":
        return SmallCNN()
    from attnfer.models import create_model

    kwargs = {"img_size": size} if name == "emonet" else {}
    if name == "patt_lite":
        kwargs = {"attention": "tokens", "freeze_backbone": False}
    model = create_model(name, num_classes=7, pretrained=False, **kwargs)
    if zero_init:
        blocks = [m for m in model.modules() if hasattr(m, "eca") and hasattr(m, "shortcut")]
        if not blocks:
            raise SystemExit(f"--zero-init applies to EMO-Net blocks; {name} has none")
        for block in blocks:
            torch.nn.init.zeros_(block.conv[-1].weight)  # projection BN gamma: the block starts as its shortcut
    return model


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="emonet", help="emonet, patt_lite, sa_fer or small (calibration CNN)")
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--images", type=int, default=30_000, help="length of the schedule in training images")
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--lr", type=float, default=3e-3)
    ap.add_argument("--opt", choices=("adamw", "sgd"), default="adamw")
    ap.add_argument("--weight-decay", type=float, default=0.01)
    ap.add_argument("--zero-init", action="store_true")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=HERE / "results")
    args = ap.parse_args()

    from attnfer.hardware import describe_machine

    torch.manual_seed(args.seed)
    arrays = synthfer_arrays(args.size)

    def tensor(x: np.ndarray) -> torch.Tensor:  # SynthFER statistics are not ImageNet's: centre on 0.5
        return torch.from_numpy(x).permute(0, 3, 1, 2).float().div(255).sub(0.5).div(0.25)

    xtr, ytr = tensor(arrays["train"][0]), torch.from_numpy(arrays["train"][1]).long()
    xva, yva = tensor(arrays["validation"][0]), arrays["validation"][1]
    model = build(args.model, args.size, args.zero_init).to(memory_format=torch.channels_last)
    if args.opt == "adamw":
        opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=args.weight_decay)
    else:
        opt = torch.optim.SGD(
            model.parameters(), lr=args.lr, momentum=0.9, nesterov=True, weight_decay=args.weight_decay
        )

    def validate() -> float:
        model.eval()
        with torch.no_grad():
            pred = torch.cat(
                [
                    model(xva[i : i + 256].contiguous(memory_format=torch.channels_last)).argmax(1)
                    for i in range(0, len(xva), 256)
                ]
            )
        model.train()
        return float((pred.numpy() == yva).mean())

    seen, curve, start = 0, [], time.perf_counter()
    print(f"{'images':>8} {'minutes':>8} {'loss':>6} {'val acc':>8}")
    while seen < args.images:
        perm = torch.randperm(len(xtr))
        for i in range(0, len(perm) - args.batch_size + 1, args.batch_size):
            idx = perm[i : i + args.batch_size]
            frac = min(1.0, seen / args.images)  # 10% warm-up, then cosine to zero over --images
            loss = train_step(model, opt, xtr[idx], ytr[idx], warmup_cosine(args.lr, frac, 0.1), clip=3.0)
            seen += len(idx)
            if seen >= args.images:
                break
        acc = validate()
        minutes = (time.perf_counter() - start) / 60
        curve.append([seen, round(minutes, 2), round(float(loss), 4), acc])
        print(f"{seen:>8} {minutes:>8.1f} {float(loss):>6.3f} {acc:>8.3f}", flush=True)

    row = {
        "args": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
        "curve [images, minutes, loss, val_acc]": curve,
        "machine": describe_machine(),
    }
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / "quickstart_probe.json"
    rows = json.loads(path.read_text())["runs"] if path.is_file() else []
    path.write_text(json.dumps({"runs": [*rows, row]}, indent=1) + "\n")
    print(f"wrote {path} and {plot(path)}")


def plot(path: Path) -> Path:
    """Validation accuracy against training images seen, one line per probe run in ``path``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 3.6))
    for row in json.loads(path.read_text())["runs"]:
        a = row["args"]
        curve = row["curve [images, minutes, loss, val_acc]"]
        label = f"{a['model']} {a['size']} px, {a['opt']} lr {a['lr']:g}, batch {a['batch_size']}"
        label += ", zero-init" if a["zero_init"] else ""
        ax.plot([c[0] for c in curve], [c[3] for c in curve], marker=".", label=label)
    ax.axhline(0.75, color="gray", ls="--", lw=0.8)
    ax.axhline(1 / 7, color="gray", ls=":", lw=0.8)
    ax.set(
        xlabel="training images seen",
        ylabel="validation accuracy",
        ylim=(0, 1),
        title="SynthFER from scratch: in-memory probe (chance dotted, quickstart bound dashed)",
    )
    ax.title.set_size(9)
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    out = path.with_suffix(".png")
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return out


if __name__ == "__main__":
    main()
