"""``attnfer report RUN_DIR``: one self-contained HTML page (images embedded) viewing a run or evaluation directory.

The report is a view: it reads only files in the directory, as training and :func:`attnfer.engine.evaluate.
evaluate_checkpoints` wrote them (``evaluation.json``, ``confusion_*.png``, ``samples.json`` + ``samples/``,
``curves.json`` + ``curves.png``, ``data.json``, ``environment.json``, ``config.yaml`` shown as text); it loads
no recipe, model or dataset. A missing optional file leaves its section out.

Classes: the evaluation maps the dataset's classes onto the model's outputs by name; the report says, per
checkpoint, when the model's classes are in another order than the dataset's (mapped by name) and which of the
model's classes were left out of the decision because the dataset lacks them (``left_out_classes``).
"""

from __future__ import annotations

import base64
import json
import math
from pathlib import Path
from typing import Any

import yaml

from ..files import atomic_write, check_output_path

__all__ = ["render_report"]

#: files whose presence makes a directory something to report on
REPORTED = ("evaluation.json", "config.yaml", "curves.json", "data.json")


def _data_uri(path: Path) -> str | None:
    if not path.is_file():
        return None
    return "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode("ascii")


def _json(path: Path) -> Any:
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}: not valid JSON (line {e.lineno}: {e.msg})") from e


def _num(value: Any, digits: int = 4) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    return f"{float(value):.{digits}f}"


def _is_metrics(m: Any) -> bool:
    return isinstance(m, dict) and "accuracy" in m


def _class_notes(checkpoints: dict[str, Any], dataset_classes: list[str]) -> list[dict[str, Any]]:
    """Per checkpoint (not a ``same_as`` copy): the model's classes when their order differs from the dataset's, and
    the model's classes left out of the decision; checkpoints with neither give no note."""
    notes = []
    for which, e in checkpoints.items():
        if e.get("same_as"):
            continue
        model_classes = e.get("model_classes")
        left_out = list(e.get("left_out_classes") or [])
        if left_out or (model_classes and list(model_classes) != list(dataset_classes)):
            notes.append({"which": which, "model_classes": model_classes or [], "left_out": left_out})
    return notes


def _context(run_dir: Path) -> dict[str, Any]:
    recipe = (run_dir / "config.yaml").read_text() if (run_dir / "config.yaml").is_file() else None
    config = {}
    if recipe is not None:
        try:
            config = yaml.safe_load(recipe) or {}
        except yaml.YAMLError:
            config = {}
    data = _json(run_dir / "data.json") or {}
    env = _json(run_dir / "environment.json") or {}
    evaluation = _json(run_dir / "evaluation.json") or {}
    curves = _json(run_dir / "curves.json")
    samples = _json(run_dir / "samples.json")
    checkpoints: dict[str, Any] = evaluation.get("checkpoints", {})

    def cfg_name(section: str) -> str | None:
        part = config.get(section) if isinstance(config, dict) else None
        return part.get("name") if isinstance(part, dict) else None

    ctx: dict[str, Any] = {
        "title": run_dir.resolve().name,
        "model": evaluation.get("model") or cfg_name("model"),
        "dataset": evaluation.get("dataset") or cfg_name("data") or data.get("dataset"),
        "env": env,
        "precision": evaluation.get("precision"),
        "selection": evaluation.get("selection"),
        "recipe": recipe,
    }
    ctx["warnings"] = [
        {"which": w, "text": e.get("warning") or "the model's outputs depend on its batch-mates"}
        for w, e in checkpoints.items()
        if e.get("batch_dependent") and not e.get("same_as")
    ]
    ctx["class_notes"] = _class_notes(checkpoints, evaluation.get("class_names") or [])
    ctx["results"] = [
        {"which": w, "split": s, "m": m, "same_as": e.get("same_as")}
        for w, e in checkpoints.items()
        for s, m in e.items()
        if _is_metrics(m)
    ]
    ctx["invariance"] = []
    for w, e in checkpoints.items():
        bi = e.get("batch_invariance")
        if bi and not e.get("same_as"):
            large = bi.get("large_batch", 64)
            ctx["invariance"].append(
                {
                    "which": w,
                    "passed": bi["passed"],
                    "accuracy_1": bi.get("accuracy_batch_1"),
                    "large_batch": large,
                    "accuracy_large": bi.get(f"accuracy_batch_{large}"),
                    "changed": bi.get("changed_predictions"),
                    "samples": bi.get("samples"),
                }
            )
    phase_names = [p.get("name") for p in config.get("phases", [])] if isinstance(config, dict) else []
    ctx["schedule"] = []
    for path in sorted(run_dir.glob("schedule_phase*.json")):
        plan = _json(path) or {}
        k = int(path.stem.removeprefix("schedule_phase") or 0)
        name = phase_names[k] if k < len(phase_names) and phase_names[k] else f"phase {k}"
        ctx["schedule"].append({"phase": name, **plan})
    primary = next(iter(checkpoints), None)
    ctx["primary"] = primary
    ctx["confusion"], ctx["per_class"] = [], None
    if primary is not None:
        splits = [s for s, m in checkpoints[primary].items() if _is_metrics(m)]
        for s in splits:
            uri = _data_uri(run_dir / f"confusion_{primary}_{s}.png")
            if uri:
                ctx["confusion"].append({"which": primary, "split": s, "uri": uri})
        if splits:
            split = "test" if "test" in splits else splits[0]
            ctx["per_class"] = {"which": primary, "split": split, "rows": checkpoints[primary][split]["per_class"]}
    curves_uri = _data_uri(run_dir / "curves.png")
    if curves or curves_uri:
        series = (curves or {}).get("series", {})
        ctx["curves"] = {
            "uri": curves_uri,
            "phases": (curves or {}).get("phases", []),
            "final": {name: pts[-1][1] for name, pts in series.items() if pts},
            "last_epoch": max((pts[-1][0] for pts in series.values() if pts), default=None),
        }
    else:
        ctx["curves"] = None
    ctx["samples"] = None
    if samples and samples.get("samples"):
        items = [{**s, "uri": _data_uri(run_dir / s["file"])} for s in samples["samples"]]
        ctx["samples"] = {
            "faces": items,
            "count": len(items),
            "split": samples.get("split"),
            "checkpoint": samples.get("checkpoint"),
            "note": samples.get("note"),
            "left_out": samples.get("classes_left_out") or [],
            "attention": sorted({s["attention"] for s in items if s.get("attention")}),
        }
    ctx["data"] = (
        {
            "class_names": data.get("class_names", []),
            "counts": data.get("counts", {}),
            "validation_source": data.get("validation_source"),
            "notes": data.get("notes", []),
            "skipped": data.get("skipped", 0),
        }
        if data
        else None
    )
    return ctx


def render_report(run_dir: str | Path) -> Path:
    """Write ``run_dir/report.html`` (atomically) from the files in ``run_dir``; returns its path.

    Raises ``FileNotFoundError`` when ``run_dir`` holds none of the files a report shows,
    :class:`~attnfer.files.OutputPathError` when ``report.html`` cannot be written there. The file gets the usual
    permissions (0666 less the umask)."""
    from jinja2 import Environment, PackageLoader

    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise FileNotFoundError(f"{run_dir} is not a directory")
    if not any((run_dir / name).is_file() for name in REPORTED):
        raise FileNotFoundError(
            f"{run_dir} is not an attnfer run or evaluation directory (none of {', '.join(REPORTED)})"
        )
    check_output_path(run_dir / "report.html", "", "file")  # a directory in its place, no permission: fail now
    env = Environment(loader=PackageLoader("attnfer.engine", "templates"), autoescape=True)
    env.filters["num"] = _num
    page = env.get_template("report.html.j2").render(**_context(run_dir))
    return atomic_write(run_dir / "report.html", page)
