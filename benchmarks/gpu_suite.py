"""Every GPU measurement in one run, most important first, inside a wall-time budget; a tiny CPU version for tests.

On the GPU machine (a copy of the working tree, the image's ``python3`` with torch, no network), from the repo root::

    bash benchmarks/gpu_suite.sh [--budget 540]          # = PYTHONPATH=src python3 benchmarks/gpu_suite.py ...

Here, to test every step on the CPU (batches of 4 and 2, one or two timed steps, a 300-image SynthFER, the GPU's
data path with ``--augment-on device``; about 12 minutes on 2 busy cores, budget 1800 s)::

    uv run python benchmarks/gpu_suite.py --smoke        # writes under $OUT (default ./gpu_out)

``--only NAME ...`` runs some steps (names as in ``gpu_suite.json``), ``--no-compile`` leaves out the last one.

Preparation, here, before the GPU run (the image lacks pydantic and its dependencies; the other packages are carried
too in case an image lacks them, and are installed there only when their import fails)::

    uv run python benchmarks/gpu_suite.py --fetch-wheels  # fills .gpu_wheels/ (ignored by git): 14 wheels, 5.3 MiB

which runs ``python -m pip download --only-binary=:all: --python-version 3.12 --implementation cp --platform
manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 -d .gpu_wheels`` for
:data:`WHEELS` at the versions of ``uv.lock`` (pydantic, pydantic-core, annotated-types, typing-inspection,
typing-extensions, pyyaml, typer, rich, click, shellingham, markdown-it-py, mdurl, pygments and what pip adds for them:
annotated-doc). Not carried: torch and what the image has (scikit-learn and scipy, which SynthFER's validation carve
needs, matplotlib, jinja2, tensorboard: listed in the image by the device notes); TensorBoard is optional in
``attnfer.engine.train`` and this suite's training ends before the report (no matplotlib either).

What runs, in order, each step a subprocess with its own timeout (the smaller of its cap and the budget left; a step
is skipped when less than its minimum is left), its output appended to ``$OUT/gpu_suite.log`` and its status to
``$OUT/gpu_suite.json`` as soon as it ends (a killed run still leaves what finished):

0. ``wheels``: the imports the benchmarks need; for each that fails, ``python -m pip install --no-index
   --find-links .gpu_wheels <distribution>`` (then ``--target`` a folder put on PYTHONPATH, if the environment
   refuses installs);
1. ``prepare``: SynthFER of RAF-DB's size (15,339 images at 112 px, all CPUs) and its 224 store, in ``--data-dir``
   (default a folder in the temp dir; not under $OUT, whose files come back);
1b. ``augment_batch.py``: the batched augmentation alone at batch 256, images/s per recipe augmentation, every call
   under ``torch.cuda.set_sync_debug_mode("error")`` (a host-device synchronisation fails its row;
   ``augment_batch_cuda.json``);
2-4. ``train_throughput.py`` at batch 256: PAtt-Lite trunk trainable, then EMO-Net, then SA-FER (compute-only, the
   compiled store with the recipe's augmentation on the device, then the JPEG path);
5. the same three at batch 64;
6. frozen PAtt-Lite and FERAtt (its composited data on the CPU) at 256 and 64;
7. ``inference.py --device cuda`` (``inference_gpu.json``);
8. ``epoch_time.py``: one epoch of the PAtt-Lite RAF-DB recipe's phase 2 at batch 256, image files and store;
9. ``train_throughput.py --paths compile``: torch.compile of PAtt-Lite's (trunk trainable) compute-only step at 256
   (compile seconds, steady images/s, speedup over eager).

Files under $OUT (at most 8 come back from the device): ``gpu_suite.log``, ``gpu_suite.json``,
``train_throughput_cuda.json`` (every throughput row, merged), ``augment_batch_cuda.json``, ``inference_gpu.json``,
``epoch_time_cuda.json`` (``--smoke``: the ``_cpu`` names and ``inference.json``).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import selectors
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
WHEEL_DIR = ROOT / ".gpu_wheels"
#: import name -> distribution, for the wheels carried to the GPU machine (installed there only if the import fails)
WHEELS = {
    "pydantic": "pydantic",
    "pydantic_core": "pydantic-core",
    "annotated_types": "annotated-types",
    "typing_inspection": "typing-inspection",
    "typing_extensions": "typing-extensions",
    "yaml": "pyyaml",
    "typer": "typer",
    "rich": "rich",
    "click": "click",
    "shellingham": "shellingham",
    "markdown_it": "markdown-it-py",
    "mdurl": "mdurl",
    "pygments": "pygments",
}
#: what the benchmarks import (a failure after the installs names what is still missing)
CHECK = ["attnfer.engine.train", "attnfer.engine.data", "attnfer.preprocess.augment", "attnfer.data.compiled"]


class Suite:
    def __init__(self, out: Path, budget: float) -> None:
        self.out, self.budget, self.t0 = out, budget, time.monotonic()
        self.out.mkdir(parents=True, exist_ok=True)
        self.log_path = out / "gpu_suite.log"
        self.status: dict[str, Any] = {"budget_s": budget, "started": time.strftime("%Y-%m-%d %H:%M:%S"), "steps": []}
        self.env = dict(os.environ)
        paths = [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
        self.env["PYTHONPATH"] = os.pathsep.join(dict.fromkeys([str(ROOT / "src"), *paths]))
        self.env["PYTHONUNBUFFERED"] = "1"

    def left(self) -> float:
        return self.budget - (time.monotonic() - self.t0)

    def log(self, text: str) -> None:
        print(text, flush=True)
        with self.log_path.open("a") as f:
            f.write(text + "\n")

    def save(self) -> None:
        self.status["elapsed_s"] = round(time.monotonic() - self.t0, 1)
        tmp = self.out / "gpu_suite.json.tmp"
        tmp.write_text(json.dumps(self.status, indent=2) + "\n")
        os.replace(tmp, self.out / "gpu_suite.json")

    def record(self, name: str, **info: Any) -> None:
        self.status["steps"].append({"name": name, **info})
        self.save()

    def step(self, name: str, argv: list[str], cap: float, minimum: float) -> int | None:
        """Run ``argv`` (a Python script and its arguments) with a timeout of min(cap, budget left); None when
        skipped for lack of time. The whole process group is killed at the timeout (loader workers included)."""
        left = self.left()
        if left < minimum:
            self.log(f"\n=== {name}: skipped ({left:.0f} s left, needs {minimum:.0f})")
            self.record(name, status="skipped", left_s=round(left, 1))
            return None
        timeout = max(1.0, min(cap, left))
        cmd = [sys.executable, *argv]
        self.log(f"\n=== {name} (timeout {timeout:.0f} s, {left:.0f} s left): {' '.join(cmd)}")
        t = time.monotonic()
        with self.log_path.open("ab") as f:
            proc = subprocess.Popen(
                cmd, cwd=ROOT, env=self.env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True
            )
            fd = proc.stdout.fileno()

            def echo(chunk: bytes) -> None:
                sys.stdout.buffer.write(chunk)
                sys.stdout.flush()
                f.write(chunk)
                f.flush()

            deadline, timed_out = t + timeout, False
            with selectors.DefaultSelector() as sel:
                sel.register(fd, selectors.EVENT_READ)
                while True:  # the step's output as it comes (chunks: a line without its end never blocks this)
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        timed_out = True
                        break
                    if sel.select(timeout=min(remaining, 1.0)):
                        chunk = os.read(fd, 1 << 16)
                        if not chunk:
                            break
                        echo(chunk)
                    elif proc.poll() is not None:
                        break
            if timed_out:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(proc.pid, signal.SIGTERM)
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.wait(timeout=10)
            else:
                proc.wait()
            with contextlib.suppress(ProcessLookupError, PermissionError):  # what is left of the step's process
                os.killpg(proc.pid, signal.SIGKILL)  # group (e.g. loader workers): ours, ended
            rc = proc.wait()
            while chunk := os.read(fd, 1 << 16):  # every writer has ended: this reaches the end
                echo(chunk)
            proc.stdout.close()
        seconds = round(time.monotonic() - t, 1)
        status = "timeout" if timed_out else ("ok" if rc == 0 else "failed")
        self.log(f"=== {name}: {status} (rc {rc}) in {seconds} s")
        self.record(name, status=status, rc=rc, seconds=seconds, cmd=" ".join(argv))
        return rc


# ------------------------------------------------------------------------------------------------
# wheels
# ------------------------------------------------------------------------------------------------
def _failing_imports(env: dict, names: list[str]) -> dict[str, str]:
    """The imports of ``names`` that fail in a fresh interpreter, with their error (one line)."""
    code = (
        "import importlib, json, sys\n"
        "bad = {}\n"
        "for m in sys.argv[1:]:\n"
        "    try:\n"
        "        importlib.import_module(m)\n"
        "    except Exception as e:\n"
        "        bad[m] = f'{type(e).__name__}: {e}'.splitlines()[0]\n"
        "print(json.dumps(bad))\n"
    )
    r = subprocess.run([sys.executable, "-c", code, *names], cwd=ROOT, env=env, capture_output=True, text=True)
    try:
        return json.loads(r.stdout.strip().splitlines()[-1])
    except (IndexError, json.JSONDecodeError):
        return {n: (r.stderr.strip().splitlines() or ["?"])[-1] for n in names}


def _missing_module(error: str) -> str | None:
    m = re.search(r"No module named '([^'.]+)", error)
    return m.group(1) if m else None


def install_wheels(suite: Suite) -> None:
    """Install from .gpu_wheels/ what fails to import (the carried distributions, then whatever the benchmarks'
    imports still name), with pip into the environment, else into a folder put on PYTHONPATH."""
    t = time.monotonic()
    info: dict[str, Any] = {"wheel_dir": str(WHEEL_DIR), "installed": [], "errors": []}
    wheels = sorted(p.name for p in WHEEL_DIR.glob("*.whl")) if WHEEL_DIR.is_dir() else []
    info["carried"] = len(wheels)

    def have_wheel(dist: str) -> bool:
        norm = dist.lower().replace("-", "_")
        return any(w.lower().startswith(norm + "-") for w in wheels)

    def pip_install(dists: list[str]) -> bool:
        base = [sys.executable, "-m", "pip", "install", "--no-index", "--find-links", str(WHEEL_DIR), "-q"]
        base += ["--disable-pip-version-check", "--no-cache-dir"]
        r = subprocess.run([*base, *dists], capture_output=True, text=True, env=suite.env)
        if r.returncode == 0:
            return True
        info["errors"].append(f"pip install {' '.join(dists)}: {(r.stderr.strip().splitlines() or ['?'])[-1]}")
        site = Path(tempfile.gettempdir()) / "attnfer_gpu_site"
        r = subprocess.run([*base, "--target", str(site), *dists], capture_output=True, text=True, env=suite.env)
        if r.returncode != 0:
            info["errors"].append(f"pip --target: {(r.stderr.strip().splitlines() or ['?'])[-1]}")
            return False
        paths = suite.env["PYTHONPATH"].split(os.pathsep)
        if str(site) not in paths:
            suite.env["PYTHONPATH"] = os.pathsep.join([paths[0], str(site), *paths[1:]])
        return True

    missing = _failing_imports(suite.env, list(WHEELS))
    info["missing_before"] = sorted(missing)
    todo = [WHEELS[m] for m in missing if have_wheel(WHEELS[m])]
    if todo and pip_install(todo):
        info["installed"] += todo
    failing = _failing_imports(suite.env, CHECK)
    for _ in range(5):  # what the benchmarks' own imports still lack
        names = {_missing_module(e) for e in failing.values()} - {None}
        dists = [WHEELS.get(n, n.replace("_", "-")) for n in names]
        dists = [d for d in dists if have_wheel(d) and d not in info["installed"]]
        if not dists or not pip_install(dists):
            break
        info["installed"] += dists
        failing = _failing_imports(suite.env, CHECK)
    info["still_failing"] = failing
    info["pythonpath"] = suite.env["PYTHONPATH"]
    info["seconds"] = round(time.monotonic() - t, 1)
    suite.log(f"\n=== wheels: {json.dumps(info)}")
    suite.record("wheels", status="ok" if not failing else "failed", **info)


def fetch_wheels() -> None:
    """Fill .gpu_wheels/ with the Python 3.12 manylinux x86_64 wheels of :data:`WHEELS` (uv.lock's versions)."""
    lock = (ROOT / "uv.lock").read_text() if (ROOT / "uv.lock").is_file() else ""
    specs = []
    for dist in dict.fromkeys(WHEELS.values()):
        m = re.search(rf'^name = "{re.escape(dist)}"\nversion = "([^"]+)"', lock, re.M)
        specs.append(f"{dist}=={m.group(1)}" if m else dist)
    WHEEL_DIR.mkdir(exist_ok=True)
    cmd = [sys.executable, "-m", "pip", "download", "--only-binary=:all:", "--python-version", "3.12"]
    cmd += ["--implementation", "cp", "--platform", "manylinux_2_28_x86_64", "--platform", "manylinux_2_17_x86_64"]
    cmd += ["--platform", "manylinux2014_x86_64", "--disable-pip-version-check", "-d", str(WHEEL_DIR), *specs]
    print(" ".join(cmd), flush=True)
    subprocess.run(cmd, check=True)
    files = sorted(WHEEL_DIR.glob("*.whl"))
    total = sum(p.stat().st_size for p in files)
    for p in files:
        print(f"{p.stat().st_size / 2**20:8.2f} MiB  {p.name}")
    print(f"{total / 2**20:8.2f} MiB in {len(files)} wheels in {WHEEL_DIR}")


# ------------------------------------------------------------------------------------------------
# the steps
# ------------------------------------------------------------------------------------------------
def machine_facts(suite: Suite) -> None:
    facts: dict[str, Any] = {"python": sys.version.split()[0], "executable": sys.executable, "cpus": os.cpu_count()}
    if Path("/dev/shm").is_dir():  # DataLoader workers hand batches over through it
        facts["dev_shm_gib"] = round(shutil.disk_usage("/dev/shm").total / 2**30, 1)
    if shutil.which("nvidia-smi"):
        r = subprocess.run(
            ["nvidia-smi", "--query-gpu=name,driver_version,memory.total", "--format=csv,noheader"],
            capture_output=True,
            text=True,
        )
        facts["nvidia_smi"] = r.stdout.strip()
    suite.status["machine"] = facts
    suite.log(f"=== machine: {json.dumps(facts)}")


def plan(args: argparse.Namespace, out: Path, data_dir: Path) -> list[tuple[str, list[str], float, float]]:
    """(name, argv, timeout cap s, minimum s left to start) per step, most important first."""
    smoke = args.smoke
    dev = "cpu" if smoke else "cuda"
    big, small = (4, 2) if smoke else (256, 64)
    n = ["--n", "300"] if smoke else []
    tt = ["benchmarks/train_throughput.py", "--device", dev, "--data-dir", str(data_dir), *n, "--append"]
    tt += ["--out", str(out)]
    if smoke:  # the least that runs every line, and the GPU's path (augmentation on the device) on the CPU
        tt += ["--steps", "1", "--warmup", "1", "--data-steps", "2", "--augment-on", "device"]
    paths = ["--paths", "compute", "store", "jpeg"]
    steps = [
        ("prepare", ["benchmarks/train_throughput.py", "--prepare-only", "--data-dir", str(data_dir), *n], 150, 30),
        (f"throughput_b{big}_patt_lite", [*tt, "--models", "patt_lite", "--batches", str(big), *paths], 120, 30),
        (f"throughput_b{big}_emonet", [*tt, "--models", "emonet", "--batches", str(big), *paths], 120, 30),
        (f"throughput_b{big}_sa_fer", [*tt, "--models", "sa_fer", "--batches", str(big), *paths], 120, 30),
        (
            f"throughput_b{small}",
            [*tt, "--models", "patt_lite", "emonet", "sa_fer", "--batches", str(small), *paths],
            150,
            40,
        ),
        (
            "throughput_frozen_feratt",
            [*tt, "--models", "patt_lite_frozen", "feratt", "--batches", str(big), str(small), *paths],
            180,
            40,
        ),
    ]
    augment = ["benchmarks/augment_batch.py", "--device", dev, "--out", str(out)]
    steps.insert(1, ("augment_batch", [*augment, "--batch", "8" if smoke else "256"], 60, 15))
    inference = ["benchmarks/inference.py", "--device", dev, "--out", str(out)]
    if smoke:
        inference += ["--models", "patt_lite"]
    steps.append(("inference", inference, 150, 40))
    epoch = ["benchmarks/epoch_time.py", "--device", dev, "--data-dir", str(data_dir), *n, "--out", str(out)]
    if smoke:
        epoch += ["--batch", "8", "--epochs", "1", "--limit-train-batches", "2", "--limit-val-batches", "1"]
    steps.append(("epoch_time", epoch, 200, 60))
    if smoke:  # a loaded 2-core CPU: EMO-Net's bf16 step alone took 12 s there
        steps = [(name, argv, cap * 3, minimum) for name, argv, cap, minimum in steps]
    if not args.no_compile:
        compile_ = [*tt, "--models", "patt_lite", "--batches", str(big), "--paths", "compile"]
        steps.append(("compile", compile_, 300, 90 if not smoke else 30))
    return steps


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--budget", type=float, default=None, help="wall seconds for everything (540; --smoke 1800)")
    ap.add_argument("--out", type=Path, default=None, help="default: $OUT, else ./gpu_out")
    ap.add_argument("--data-dir", type=Path, default=None, help="SynthFER and its store (default: in the temp dir)")
    ap.add_argument("--smoke", action="store_true", help="every step tiny, on the CPU (a test)")
    ap.add_argument("--only", nargs="+", default=None, help="run only these steps (names as in gpu_suite.json)")
    ap.add_argument("--no-compile", action="store_true", help="leave out the torch.compile step")
    ap.add_argument("--fetch-wheels", action="store_true", help="here: fill .gpu_wheels/ for the GPU machine, exit")
    args = ap.parse_args()
    if args.fetch_wheels:
        fetch_wheels()
        return
    out = (args.out or Path(os.environ.get("OUT") or "gpu_out")).resolve()
    budget = args.budget or (1800.0 if args.smoke else 540.0)
    data_dir = args.data_dir or Path(tempfile.gettempdir()) / ("attnfer_gpu_data" + ("_smoke" if args.smoke else ""))
    suite = Suite(out, budget)
    suite.status["smoke"] = args.smoke
    suite.log(f"=== gpu_suite: budget {budget:.0f} s, out {out}, data {data_dir}, smoke {args.smoke}")
    machine_facts(suite)
    install_wheels(suite)
    for name, argv, cap, minimum in plan(args, out, data_dir.resolve()):
        if args.only and name not in args.only:
            continue
        suite.step(name, argv, cap, minimum)
    suite.status["finished"] = time.strftime("%Y-%m-%d %H:%M:%S")
    suite.save()
    suite.log("\n=== summary")
    for s in suite.status["steps"]:
        suite.log(f"{s['name']:<28}{s['status']:>9}{s.get('seconds', ''):>8}")
    suite.log(f"elapsed {suite.status['elapsed_s']} s of {budget:.0f}; files in {out}:")
    for p in sorted(out.iterdir()):
        suite.log(f"  {p.name} ({p.stat().st_size} bytes)")


if __name__ == "__main__":
    main()
