"""Inference speed per model: ms per face for torch eager, ONNX Runtime fp32 and INT8, at batch 1 and 32.

    uv run python benchmarks/inference.py [--models patt_lite emonet sa_fer] [--threads 2]

Prints a table and writes ``benchmarks/results/inference.json``. Inputs are preprocessed face crops at the card's
input size (detection and decoding are not included here).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
import torch


def ms_per_face(fn, x: np.ndarray, repeats: int) -> float:
    fn(x)  # warm-up
    fn(x)
    t = time.perf_counter()
    for _ in range(repeats):
        fn(x)
    return (time.perf_counter() - t) * 1000 / (repeats * len(x))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", nargs="+", default=["patt_lite", "emonet", "sa_fer"])
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 2)
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    args = ap.parse_args()
    import onnxruntime as ort

    import attnfer
    from attnfer.inference.onnx_export import export_onnx

    torch.set_num_threads(args.threads)
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = args.threads
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.models:
            model = attnfer.create_model(name).eval()
            model.save(Path(tmp) / name)
            fp32 = export_onnx(Path(tmp) / name, Path(tmp) / f"{name}.onnx")
            int8 = export_onnx(Path(tmp) / name, Path(tmp) / f"{name}.int8.onnx", int8=True)
            s32 = ort.InferenceSession(str(fp32), opts, providers=["CPUExecutionProvider"])
            s8 = ort.InferenceSession(str(int8), opts, providers=["CPUExecutionProvider"])

            def eager(x, model=model):
                with torch.no_grad():
                    return model(torch.from_numpy(x))

            for batch in (1, 32):
                x = np.random.default_rng(0).standard_normal((batch, *model.cfg.input_size)).astype(np.float32)
                repeats = 20 if batch == 1 else 3
                row = {"model": name, "batch": batch}
                row["torch_ms"] = round(ms_per_face(eager, x, repeats), 3)
                row["onnx_fp32_ms"] = round(ms_per_face(lambda x, s=s32: s.run(None, {"input": x}), x, repeats), 3)
                row["onnx_int8_ms"] = round(ms_per_face(lambda x, s=s8: s.run(None, {"input": x}), x, repeats), 3)
                rows.append(row)
                print(json.dumps(row), flush=True)
    machine = f"{platform.machine()} CPU, {os.cpu_count()} cores, {args.threads} threads"
    print(f"\n{machine}; ms per face")
    print(f"{'model':<11}{'batch':>6}{'torch':>9}{'onnx fp32':>11}{'onnx int8':>11}")
    for r in rows:
        print(
            f"{r['model']:<11}{r['batch']:>6}{r['torch_ms']:>9.2f}{r['onnx_fp32_ms']:>11.2f}{r['onnx_int8_ms']:>11.2f}"
        )
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "inference.json").write_text(json.dumps({"machine": machine, "rows": rows}, indent=2) + "\n")


if __name__ == "__main__":
    main()
