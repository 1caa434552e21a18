"""Which model and resolution the quickstart should train: each candidate is the packaged quickstart recipe with
overrides, run as `attnfer quickstart` would run it (same budget, SynthFER's test split, selected on validation),
timed from start to report. Prints a table, writes JSON and a PNG of the candidates' validation curves.

    uv run python benchmarks/quickstart_candidates.py                    # every candidate, this CPU as it is
    uv run python benchmarks/quickstart_candidates.py --avx2 emonet_96   # AVX2 proxy: kernels and flags restricted

``--avx2`` restricts the kernels (ATEN_CPU_CAPABILITY=avx2, ONEDNN_MAX_CPU_ISA=AVX2) and the capability rule
(ATTNFER_CPU_CAPS=avx2, so precision auto picks fp32), to measure an AVX2 CPU without BF16 on a newer one.
``--fresh`` deletes the cached SynthFER first, so generation is part of the time, as on a fresh machine.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
#: name -> recipe overrides (dotted keys of the quickstart recipe)
EMONET = {"model.name": "emonet", "data.batch_size": 64, "phases.0.optim.lr": 3.0e-3}
CANDIDATES: dict[str, dict] = {
    "patt_lite_224": {},  # the packaged recipe: PAtt-Lite from scratch at 224 (its patch grid needs 224)
    "emonet_64": {**EMONET, "model.kwargs": {"img_size": 64}},  # no patch grid: intact at any size
    "emonet_96": {**EMONET, "model.kwargs": {"img_size": 96}},
}

RUNNER = """
import json, sys, time
t = time.perf_counter()
from attnfer.engine import quickstart
run, summary = quickstart(sys.argv[1], json.loads(sys.argv[2]))
summary["wall_minutes"] = round((time.perf_counter() - t) / 60, 2)
print("RESULT " + json.dumps({"run": str(run), **summary}))
"""


def run_candidate(name: str, overrides: dict, out: Path, env: dict) -> dict:
    t = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-c", RUNNER, str(out / name), json.dumps(overrides)],
        env=env,
        capture_output=True,
        text=True,
    )
    wall = (time.perf_counter() - t) / 60
    line = next((ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")), None)
    if proc.returncode != 0 or line is None:
        return {"name": name, "error": proc.stderr[-2000:], "wall_minutes": round(wall, 2)}
    result = json.loads(line[len("RESULT ") :])
    run = Path(result["run"])
    curves = json.loads((run / "curves.json").read_text()) if (run / "curves.json").is_file() else None
    plans = [json.loads(p.read_text()) for p in sorted(run.glob("schedule_phase*.json"))]
    env_json = json.loads((run / "environment.json").read_text())
    evaluation = json.loads((run / "evaluation.json").read_text())
    return {
        "name": name,
        "overrides": overrides,
        "process_wall_minutes": round(wall, 2),
        **result,
        "precision": evaluation.get("precision"),
        "machine": env_json.get("machine"),
        "plan": plans,
        "val_acc": (curves or {}).get("series", {}).get("val/acc"),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("names", nargs="*", help=f"candidates (default: all): {', '.join(CANDIDATES)}")
    ap.add_argument("--avx2", action="store_true", help="restrict kernels and flags to an AVX2 CPU without BF16")
    ap.add_argument("--fresh", action="store_true", help="generate SynthFER again (delete the cached set first)")
    ap.add_argument("--out", default="/tmp/attnfer-quickstart-candidates", help="where the runs go")
    ap.add_argument("--json", default=str(HERE / "results" / "quickstart_candidates.json"))
    args = ap.parse_args()
    env = dict(os.environ)
    if args.avx2:
        env.update(ATEN_CPU_CAPABILITY="avx2", ONEDNN_MAX_CPU_ISA="AVX2", ATTNFER_CPU_CAPS="avx2")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    results_path = Path(args.json)
    results = json.loads(results_path.read_text()) if results_path.is_file() else {"runs": []}
    for name in args.names or list(CANDIDATES):
        if args.fresh:
            from attnfer.files import cache_dir

            for d in cache_dir().glob("synthfer-*"):
                shutil.rmtree(d, ignore_errors=True)
        r = run_candidate(name, CANDIDATES[name], out, env)
        r["avx2_proxy"] = args.avx2
        r["fresh_synthfer"] = args.fresh
        results["runs"] = [x for x in results["runs"] if (x["name"], x.get("avx2_proxy")) != (name, args.avx2)]
        results["runs"].append(r)
        results_path.parent.mkdir(parents=True, exist_ok=True)
        results_path.write_text(json.dumps(results, indent=2) + "\n")
        test = (r.get("splits") or {}).get("test", {}).get("accuracy")
        print(
            f"{name:<16} {'AVX2 proxy' if args.avx2 else 'native':<11} {r.get('wall_minutes', '?'):>6} min  "
            f"test {test if test is None else f'{test:.4f}'}  {r.get('precision')}  {r.get('error', '')[-300:]}",
            flush=True,
        )
    plot(results, results_path.with_suffix(".png"))


def plot(results: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4), dpi=100)
    for r in results["runs"]:
        if r.get("val_acc"):
            xs, ys = zip(*r["val_acc"], strict=True)
            test = r["splits"]["test"]["accuracy"]
            label = (
                f"{r['name']}{' (AVX2 proxy)' if r.get('avx2_proxy') else ''}: test {test:.3f}, {r['wall_minutes']} min"
            )
            ax.plot([x + 1 for x in xs], ys, marker="o", ms=3, label=label)
    ax.axhline(0.75, color="grey", ls="--", lw=0.8)
    ax.set_xlabel("epoch")
    ax.set_ylabel("validation accuracy")
    ax.set_title("quickstart candidates on SynthFER (validation curves)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


if __name__ == "__main__":
    main()
