"""Inference speed per model, on the CPU or on a CUDA GPU (``--device``, default auto: the GPU when there is one).

    uv run python benchmarks/inference.py [--device auto|cpu|cuda|cuda:N] [--models patt_lite emonet sa_fer]
                                          [--threads 2]

CPU: ms per face for torch eager, ONNX Runtime fp32 and ONNX Runtime INT8 (``attnfer export --int8``: static QDQ,
per-channel weights) at batch 1 and 32, with ``--threads`` threads (default 2) for torch and ONNX Runtime alike; the
median of the timed repeats after two warm-up runs. Writes ``benchmarks/results/inference.json``.

CUDA: faces/s of the torch runtime (:class:`attnfer.inference.Recognizer`'s, from a saved model) at batch 32 and 256,
fp32 and bf16 autocast, after warm-up and with ``torch.cuda.synchronize()`` around the timed runs: ``faces_per_s``
from a preprocessed float32 batch on the CPU to logits on the CPU (pinned host memory, one batch per call, what
``Recognizer.classify`` does), and ``faces_per_s_on_device`` for the forward pass alone on a batch already on the
GPU. Writes ``benchmarks/results/inference_gpu.json``.

Both JSONs record the machine (``attnfer.hardware.describe_machine``: CPU model and flags, threads, and the GPU's
name where there is one), the versions and the 1-minute load average before and after the runs (timings taken
while other processes run are slower and noisier: compare ratios, or rerun on a quiet machine). Inputs are
preprocessed face crops at the model's input size (detection and decoding are not included here).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

MODELS = ["patt_lite", "emonet", "sa_fer"]


def ms_per_face(fn, x: np.ndarray, repeats: int) -> float:
    """Median wall time of ``fn(x)`` over ``repeats`` runs after two warm-up runs, in ms per face."""
    fn(x)
    fn(x)
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn(x)
        times.append(time.perf_counter() - t)
    return statistics.median(times) * 1000 / len(x)


def versions() -> dict[str, str]:
    import onnxruntime as ort

    import attnfer

    return {
        "attnfer": attnfer.__version__,
        "torch": torch.__version__,
        "onnxruntime": ort.__version__,
        "python": platform.python_version(),
    }


def bench_cpu(models: list[str], threads: int) -> dict:
    import onnxruntime as ort

    import attnfer
    from attnfer.inference.onnx_export import export_onnx

    torch.set_num_threads(threads)
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in models:
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
                repeats = 20 if batch == 1 else 5
                row = {"model": name, "batch": batch, "repeats": repeats}
                row["torch_ms"] = round(ms_per_face(eager, x, repeats), 3)
                row["onnx_fp32_ms"] = round(ms_per_face(lambda x, s=s32: s.run(None, {"input": x}), x, repeats), 3)
                row["onnx_int8_ms"] = round(ms_per_face(lambda x, s=s8: s.run(None, {"input": x}), x, repeats), 3)
                row["int8_speedup"] = round(row["onnx_fp32_ms"] / row["onnx_int8_ms"], 2)
                rows.append(row)
                print(json.dumps(row), flush=True)
    return {"rows": rows}


def bench_cuda(models: list[str], device: torch.device) -> dict:
    import attnfer
    from attnfer.inference.recognizer import _TorchRuntime

    torch.backends.cudnn.benchmark = True  # fixed input shapes: let cuDNN pick its fastest kernels
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in models:
            attnfer.create_model(name).save(Path(tmp) / name)
            runtime = _TorchRuntime(Path(tmp) / name, str(device))
            for batch in (32, 256):
                x = np.random.default_rng(0).standard_normal((batch, *runtime.model.cfg.input_size)).astype(np.float32)
                x_dev = torch.from_numpy(x).to(device)
                for precision in ("fp32", "bf16"):

                    def host(runtime=runtime, x=x, precision=precision):  # numpy in, numpy out (synchronises)
                        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=precision == "bf16"):
                            return runtime(x)

                    def on_device(model=runtime.model, x=x_dev, precision=precision):
                        with torch.no_grad(), torch.autocast("cuda", dtype=torch.bfloat16, enabled=precision == "bf16"):
                            return model(x)

                    row = {"model": name, "batch": batch, "precision": precision}
                    for key, fn in (("faces_per_s", host), ("faces_per_s_on_device", on_device)):
                        for _ in range(5):  # warm-up: cuDNN autotuning, allocator, lazy init
                            fn()
                        torch.cuda.synchronize(device)
                        repeats, t = 20, time.perf_counter()
                        for _ in range(repeats):
                            fn()
                        torch.cuda.synchronize(device)
                        row[key] = round(repeats * batch / (time.perf_counter() - t), 1)
                    rows.append(row)
                    print(json.dumps(row), flush=True)
            del runtime
            torch.cuda.empty_cache()
    return {"gpu": torch.cuda.get_device_name(device), "rows": rows}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="auto", help="cpu, cuda, cuda:N or auto (the GPU when there is one)")
    ap.add_argument("--models", nargs="+", default=MODELS)
    ap.add_argument("--threads", type=int, default=2, help="CPU: threads for torch and ONNX Runtime")
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    args = ap.parse_args()
    from attnfer.files import UserError
    from attnfer.hardware import describe_machine
    from attnfer.inference.device import resolve_device

    try:
        device = resolve_device(args.device)
    except UserError as e:
        sys.exit(f"error: {e}")
    load_before = os.getloadavg()  # other processes on the machine distort the timings: recorded with them
    if device.type == "cuda":
        result, target = bench_cuda(args.models, device), "inference_gpu.json"
    else:
        result, target = bench_cpu(args.models, args.threads), "inference.json"
    machine = describe_machine()  # after the runs: torch's thread count as benchmarked
    report = {"device": str(device), "machine": machine, "versions": versions(), **result}
    report["load_average_1min"] = {"before": round(load_before[0], 2), "after": round(os.getloadavg()[0], 2)}
    if device.type == "cuda":
        print(f"\n{result['gpu']} ({device}); faces/s, torch runtime (host to host / on device)")
        print(f"{'model':<11}{'batch':>6}{'precision':>10}{'faces/s':>10}{'on device':>11}")
        for r in result["rows"]:
            print(
                f"{r['model']:<11}{r['batch']:>6}{r['precision']:>10}{r['faces_per_s']:>10.0f}"
                f"{r['faces_per_s_on_device']:>11.0f}"
            )
    else:
        report["threads"] = args.threads
        print(f"\n{machine['cpu']} ({machine['isa']}, VNNI: {machine['vnni']}), {args.threads} threads; ms per face")
        print(f"{'model':<11}{'batch':>6}{'torch':>9}{'onnx fp32':>11}{'onnx int8':>11}{'int8 x':>8}")
        for r in result["rows"]:
            print(
                f"{r['model']:<11}{r['batch']:>6}{r['torch_ms']:>9.2f}{r['onnx_fp32_ms']:>11.2f}"
                f"{r['onnx_int8_ms']:>11.2f}{r['int8_speedup']:>8.2f}"
            )
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / target).write_text(json.dumps(report, indent=2) + "\n")
    print(f"-> {args.out / target}")


if __name__ == "__main__":
    main()
