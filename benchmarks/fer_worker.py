"""The ``fer`` package's side of ``benchmarks/video.py``: run inside fer's own throwaway virtual environment.

    python fer_worker.py VIDEO [--threads N] [--tflite-threads N] [--warmup 30] [--repeats 3 | --serve]

Builds ``fer.FER()`` with its defaults (OpenCV Haar cascade, ``mtcnn=False``, the quantized TFLite mini-Xception)
and runs one warm-up pass over the first ``--warmup`` frames before any clock starts; then, ``--repeats`` times,
reads every frame of the video with OpenCV and calls ``detector.detect_emotions(frame)`` on it (what fer's own
``Video.analyze`` does per frame with its default ``batch_size=1``, without its drawing and saving), timing only
that loop. One process, no worker pool. Prints one JSON line per pass and a last one with versions and threads.
``--serve``: after start-up prints ``{"ready": ...}`` and runs one pass per line read on stdin until EOF, so that
``video.py`` can interleave fer's passes with its own (both sides see the same background load; the waiting side
is idle). Needs nothing from attnfer.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("video")
    ap.add_argument("--threads", type=int, default=os.cpu_count(), help="OpenCV threads (cv2.setNumThreads)")
    ap.add_argument(
        "--tflite-threads", type=int, default=None, help="TFLite interpreter threads (default: fer's own, unset)"
    )
    ap.add_argument("--warmup", type=int, default=30)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--serve", action="store_true", help="one pass per line on stdin, until EOF")
    args = ap.parse_args()

    t_start = time.perf_counter()
    import cv2
    import numpy as np
    import tensorflow as tf

    cv2.setNumThreads(args.threads)
    if args.tflite_threads is not None:  # fer builds tf.lite.Interpreter(model_path=...) with no num_threads
        base = tf.lite.Interpreter

        class Interpreter(base):
            def __init__(self, *a, **kw):
                kw.setdefault("num_threads", args.tflite_threads)
                super().__init__(*a, **kw)

        tf.lite.Interpreter = Interpreter

    import fer
    from fer.fer import FER

    detector = FER()  # defaults: Haar cascade, mtcnn=False, use_tflite=True
    cap = cv2.VideoCapture(args.video)
    for _ in range(args.warmup):
        ok, frame = cap.read()
        if not ok:
            break
        detector.detect_emotions(frame)
    cap.release()
    startup = time.perf_counter() - t_start

    def one_pass() -> dict:
        cap = cv2.VideoCapture(args.video)
        frames = faces = 0
        t = time.perf_counter()
        while True:
            ok, frame = cap.read()
            if not ok:
                break
            faces += len(detector.detect_emotions(frame))
            frames += 1
        dt = time.perf_counter() - t
        cap.release()
        return {"frames": frames, "faces": faces, "seconds": round(dt, 3), "fps": round(frames / dt, 2)}

    if args.serve:
        print(json.dumps({"ready": True, "startup_seconds_excluded": round(startup, 2)}), flush=True)
        for _ in sys.stdin:
            print(json.dumps({"pass": one_pass()}), flush=True)
    else:
        for _ in range(args.repeats):
            p = one_pass()
            print(json.dumps({"pass": p}), flush=True)
            print(f"fer pass: {p['frames']} frames, {p['faces']} faces, {p['fps']} frames/s", file=sys.stderr)

    import importlib.metadata as md

    print(
        json.dumps(
            {
                "startup_seconds_excluded": round(startup, 2),
                "versions": {
                    "fer": fer.__version__,
                    "tensorflow": tf.__version__,
                    "tensorflow_package": next(
                        (f"{p}=={md.version(p)}" for p in ("tensorflow-cpu", "tensorflow") if _installed(md, p)), "?"
                    ),
                    "opencv": cv2.__version__,
                    "numpy": np.__version__,
                    "python": sys.version.split()[0],
                },
                "threads": {
                    "opencv": cv2.getNumThreads(),
                    "tflite_interpreter": args.tflite_threads if args.tflite_threads is not None else "fer default",
                    **{
                        k: os.environ.get(k)
                        for k in ("OMP_NUM_THREADS", "TF_NUM_INTRAOP_THREADS", "TF_NUM_INTEROP_THREADS")
                    },
                },
                "cpu_affinity": sorted(os.sched_getaffinity(0)),
                "pid": os.getpid(),
            }
        ),
        flush=True,
    )


def _installed(md, name: str) -> bool:
    try:
        md.version(name)
    except md.PackageNotFoundError:
        return False
    return True


if __name__ == "__main__":
    main()
