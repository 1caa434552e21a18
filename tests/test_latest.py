"""`latest`: the newest run's best checkpoint wherever a command takes one (its ONNX file with the onnx runtime,
exported on first use); the error without one names the two ways to get one. And what a checkpoint was trained on,
read from its config, with the plain warning for a SynthFER model."""

import inspect
import io
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from attnfer.cli import app
from attnfer.data import BASIC7
from attnfer.inference.checkpoints import (
    DEFAULT_RUNS_DIR,
    CheckpointNotFoundError,
    latest_run,
    model_origin,
    resolve_checkpoint,
)
from conftest import build

runner = CliRunner()
TRAINING = {"dataset": "synthfer", "run": "quickstart-20260101-120000", "recipe": "quickstart"}


def _run(runs, name: str, mtime: float, source=None):
    """runs/NAME with best/ (a copy of ``source``'s model files, or placeholders), modified at ``mtime``."""
    best = runs / name / "best"
    best.mkdir(parents=True)
    for f in ("config.json", "model.safetensors"):
        if source is not None:
            shutil.copy(source / f, best / f)
        else:
            (best / f).write_text("{}")
    os.utime(runs / name, (mtime, mtime))
    return runs / name


def test_latest_is_the_most_recently_modified_run_with_a_best_model(tmp_path, monkeypatch):
    runs = tmp_path / "runs"
    old = _run(runs, "quickstart-20260101-120000", 1_000_000)
    new = _run(runs, "emotions-20250101-090000", 2_000_000)  # an older name, but modified later
    unfinished = runs / "quickstart-20260102-120000"  # the newest folder has no best/ yet
    (unfinished / "last").mkdir(parents=True)
    os.utime(unfinished, (3_000_000, 3_000_000))
    assert latest_run(runs) == new and resolve_checkpoint("latest", runs_dir=runs) == new / "best"
    os.utime(old, (4_000_000, 4_000_000))
    assert resolve_checkpoint("latest", runs_dir=runs) == old / "best"
    monkeypatch.chdir(tmp_path)  # the default: runs/ in the current directory, where quickstart and train write
    assert resolve_checkpoint("latest").resolve() == (old / "best").resolve()
    assert resolve_checkpoint(str(new / "best")) == new / "best"  # any other spec is a path
    (tmp_path / "latest").mkdir()
    assert resolve_checkpoint("./latest") == resolve_checkpoint(Path("latest")) == Path("latest")  # a folder


def test_the_default_runs_folder_is_where_quickstart_and_train_write():
    from attnfer import cli
    from attnfer.engine.config import TrainConfig

    assert TrainConfig().output_dir == DEFAULT_RUNS_DIR
    assert inspect.signature(cli.quickstart).parameters["output_dir"].default == DEFAULT_RUNS_DIR


def test_latest_with_the_onnx_runtime_is_exported_on_first_use_and_reused(tmp_path, checkpoint):
    runs = tmp_path / "runs"
    run = _run(runs, "quickstart-20260101-120000", 1_000_000, source=checkpoint)
    out = io.StringIO()
    onnx = resolve_checkpoint("latest", "onnx", runs_dir=runs, out=out)
    assert onnx == run / "best" / "model.onnx" and onnx.is_file()
    assert out.getvalue().count("\n") == 1 and "exporting" in out.getvalue()
    stamp = onnx.stat().st_mtime_ns
    again = io.StringIO()
    assert resolve_checkpoint("latest", "onnx", runs_dir=runs, out=again) == onnx
    assert onnx.stat().st_mtime_ns == stamp and again.getvalue() == ""  # reused, not exported again
    assert latest_run(runs) == run


def test_no_checkpoint_names_the_quickstart_and_convert(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for spec in ("latest", "runs/nothing/best"):
        with pytest.raises(CheckpointNotFoundError) as e:
            resolve_checkpoint(spec)
        assert "`attnfer quickstart`" in str(e.value) and "`attnfer convert" in str(e.value)
    (tmp_path / "runs" / "broken" / "best").mkdir(parents=True)  # a run without a saved model does not count
    with pytest.raises(CheckpointNotFoundError, match="no run with best/model.safetensors"):
        resolve_checkpoint("latest")
    photo = tmp_path / "a.png"
    Image.new("RGB", (32, 32)).save(photo)
    for args in (
        ["predict", str(photo), "-m", "latest"],
        ["predict", str(photo), "-m", "latest", "--runtime", "onnx"],
        ["explain", str(photo), "-m", "latest"],
        ["serve", "-m", "latest"],
        ["evaluate", "latest"],
        ["export", "latest"],
        ["predict", str(photo), "-m", "no/such/dir"],
    ):
        result = runner.invoke(app, args, terminal_width=400)
        assert result.exit_code == 2, (args, result.output)
        assert result.output.count("\n") == 1 and result.output.startswith("error: "), result.output
        assert "`attnfer quickstart`" in result.output and "`attnfer convert" in result.output


def test_predict_latest_names_the_model_by_its_config_and_warns_about_synthfer(tmp_path, monkeypatch):
    model = build("patt_lite", class_names=list(BASIC7))
    model.cfg = model.cfg.replace(extra={**model.cfg.extra, "training": TRAINING})
    model.save(tmp_path / "runs" / TRAINING["run"] / "best")
    photo = tmp_path / "face.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (96, 96, 3), dtype=np.uint8)).save(photo)
    monkeypatch.chdir(tmp_path)
    args = ["predict", str(photo), "--checkpoint", "latest", "--detector", "none", "--out", "out"]
    result = runner.invoke(app, args, terminal_width=120)
    assert result.exit_code == 0, result.output
    summary = next(line for line in result.output.splitlines() if line.startswith("1 inputs"))
    assert "1 faces" in summary
    assert f"model: patt_lite trained on synthfer (run {TRAINING['run']}, recipe quickstart)" in summary
    warning = next(line for line in result.output.splitlines() if line.startswith("warning:"))
    assert "SynthFER" in warning and "not meant for real photos" in warning and "attnfer convert" in warning
    doc = json.loads((tmp_path / "out" / "predictions.json").read_text())
    assert doc["model"]["training"] == TRAINING and doc["model"]["family"] == "patt_lite"


def test_the_origin_of_imported_old_and_run_checkpoints(tmp_path):
    imported = {"format": "emonet_official", "file": "best.pth", "sha256": "ab" * 32, "notes": []}
    origin = model_origin("some_model", {"extra": {"imported": imported}})
    assert origin.description == "some_model imported from best.pth (emonet_official)" and origin.warning is None
    real = model_origin("m", {"extra": {"training": {"dataset": "rafdb", "run": "r1", "recipe": "rafdb"}}})
    assert real.description == "m trained on rafdb (run r1, recipe rafdb)" and real.warning is None
    assert model_origin("m", {"extra": {}}).description == "m (training data not recorded in its config)"
    # a checkpoint saved in a run before the config recorded it: the run's recipe says what it was trained on
    run = tmp_path / "quickstart-20250101-000000"
    (run / "best").mkdir(parents=True)
    (run / "config.yaml").write_text("name: quickstart\ndata:\n  name: synthfer\n")
    old = model_origin("m", {"extra": {}}, run / "best")
    assert old.training == {"dataset": "synthfer", "run": run.name, "recipe": "quickstart"} and old.recorded_in == "run"
    assert old.warning and model_origin("m", {}, run / "best" / "model.onnx").dataset == "synthfer"
