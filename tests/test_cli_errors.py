"""Bad inputs on the command line: one line on stderr naming the file, key or option and what was expected, exit
code 2, no traceback, and nothing left behind (issue 18, item 10)."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image
from typer.testing import CliRunner

from attnfer.cli import app
from attnfer.data import BASIC7
from conftest import build

CONFIGS = Path(__file__).parents[1] / "configs"
runner = CliRunner()


def fails_in_one_line(result, *words: str) -> str:
    """The result is exit code 2 with one stderr line `error: ...` holding ``words``, and no traceback."""
    assert result.exit_code == 2, (result.exit_code, result.output, result.exception)
    assert "Traceback" not in result.output and "╭" not in result.output, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    for w in words:
        assert w in lines[0], (w, lines[0])
    return lines[0]


def listing(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory) -> Path:
    return build("patt_lite", class_names=list(BASIC7)).save(tmp_path_factory.mktemp("ckpt") / "model")


@pytest.fixture
def photo(tmp_path) -> Path:
    path = tmp_path / "inputs" / "face.png"
    path.parent.mkdir()
    Image.new("RGB", (64, 64), (120, 90, 60)).save(path)
    return path


# ------------------------------------------------------------------------------------------------ recipes
@pytest.mark.parametrize(
    ("override", "words"),
    [
        (["--phases.0.epochs", "-1"], ["phases.0.epochs", ">= 1", "-1"]),
        (["--model.kwargs.foo", "1"], ["model.kwargs.foo", "patt_lite", "expected one of", "attention"]),
        (["--model.kwargs.atention", "tokens"], ["model.kwargs.atention", "did you mean 'attention'"]),
        (["--phases.0.optim.lr", "-0.1"], ["phases.0.optim.lr", "> 0"]),
        (["--data.batch_size", "-4"], ["data.batch_size", ">= 1"]),
        (["--phases.0.optim.name", "lion"], ["phases.0.optim.name", "'adam'", "'lion'"]),
    ],
)
def test_bad_recipe_values_are_one_line_and_leave_no_run(tmp_path, override, words):
    out = tmp_path / "runs"
    r = runner.invoke(app, ["train", "-c", str(CONFIGS / "quickstart.yaml"), "--output_dir", str(out), *override])
    fails_in_one_line(r, *words)
    assert not out.exists()


def test_several_recipe_problems_are_still_one_line(tmp_path):
    r = runner.invoke(
        app,
        ["train", "-c", str(CONFIGS / "quickstart.yaml"), "--data.batch_size", "0", "--phases.0.epochs", "0"],
    )
    fails_in_one_line(r, "2 problems", "data.batch_size", "phases.0.epochs")


@pytest.mark.parametrize("top", ["- a\n- b\n", "[oops]\n", "just a string\n"])
def test_a_recipe_whose_top_level_is_not_a_mapping(tmp_path, top):
    recipe = tmp_path / "list.yaml"
    recipe.write_text(top)
    line = fails_in_one_line(runner.invoke(app, ["train", "-c", str(recipe)]), str(recipe), "must be a mapping")
    if top.startswith("["):
        assert "['oops']" in line  # the message's own brackets are printed, not taken for markup


def test_model_kwargs_are_checked_against_each_registered_model():
    from attnfer.engine import ConfigError, load_config

    ok = load_config(CONFIGS / "feratt_ckplus.yaml")  # every packaged recipe's kwargs are the model's options
    assert ok.model.name == "feratt"
    with pytest.raises(ConfigError, match=r"model\.kwargs\.drop_rate.*model 'feratt'.*representation_dim"):
        load_config(CONFIGS / "feratt_ckplus.yaml", {"model.kwargs.drop_rate": 0.1})
    for recipe in sorted(CONFIGS.glob("*.yaml")):
        load_config(recipe)


# ------------------------------------------------------------------------------------------------ output paths
def test_output_paths_in_the_way_fail_before_any_work(tmp_path, ckpt, photo):
    a_file = tmp_path / "a_file"
    a_file.write_text("keep me")
    a_dir = tmp_path / "a_dir"
    a_dir.mkdir()
    cases = [
        (["predict", str(photo), "-m", str(ckpt), "--detector", "none", "--out", str(a_file)], ["--out", "a_file"]),
        (["export", str(ckpt), "--out", str(a_dir)], ["--out", "a_dir", "is a directory"]),
        (["export", str(ckpt), "--out", str(a_file / "model.onnx")], ["--out", "a_file is a file"]),
        (["train", "-c", str(CONFIGS / "quickstart.yaml"), "--run-dir", str(a_file)], ["--run-dir", "a_file"]),
        (["quickstart", "--output-dir", str(a_file)], ["--output-dir", "a_file"]),
        (["data", "synth", str(a_file), "--n", "20"], ["OUT", "a_file", "not a directory"]),
        (["data", "compile", "rafdb", str(tmp_path / "nowhere"), str(a_file)], ["OUT", "a_file"]),
        (["evaluate", str(ckpt), "--out", str(a_file)], ["--out", "a_file", "not a directory"]),
        (["explain", str(photo), "-m", str(ckpt), "--detector", "none", "--out", str(a_file)], ["--out", "a_file"]),
        (["convert", str(photo), "--from", "pt", "--out", str(a_file)], ["--out", "a_file"]),
    ]
    before = listing(tmp_path)
    for args, words in cases:
        fails_in_one_line(runner.invoke(app, args), *words)
    assert listing(tmp_path) == before  # no .partial, .tmp, run or output directory
    assert a_file.read_text() == "keep me"


def test_evaluate_refuses_a_directory_in_the_place_of_its_files_before_evaluating(tmp_path, ckpt):
    """--out DIR where DIR/evaluation.json is a directory: refused at once, not after the whole evaluation (which
    wrote its confusion matrices and samples first), and no NAME.tmp is left."""
    from attnfer.data.synthfer import generate

    root = generate(tmp_path / "syn", n=20, size=48, workers=1)
    out = tmp_path / "eval"
    (out / "evaluation.json").mkdir(parents=True)
    r = runner.invoke(app, ["evaluate", str(ckpt), "--data", "synthfer", "--root", str(root), "--out", str(out)])
    fails_in_one_line(r, "--out", "evaluation.json is a directory")
    assert listing(out) == ["evaluation.json"]
    (out / "evaluation.json").rmdir()
    (out / "samples").write_text("not a directory")
    r = runner.invoke(app, ["evaluate", str(ckpt), "--data", "synthfer", "--root", str(root), "--out", str(out)])
    fails_in_one_line(r, "samples", "not a directory")
    assert listing(out) == ["samples"]


def test_report_into_a_directory_where_report_html_is_a_directory(tmp_path):
    (tmp_path / "evaluation.json").write_text(json.dumps({"checkpoints": {}, "splits": []}))
    (tmp_path / "report.html").mkdir()
    fails_in_one_line(runner.invoke(app, ["report", str(tmp_path)]), "report.html", "is a directory")
    assert listing(tmp_path) == ["evaluation.json", "report.html"]


def test_an_os_error_on_a_path_anywhere_in_a_command_is_one_line(tmp_path, monkeypatch):
    """The one place that turns expected errors into a line: a PermissionError deep inside a command (here from the
    generator itself) names its path; a bug (any other exception) still raises."""
    import attnfer.data.synthfer as synthfer

    def denied(out, **_):
        raise PermissionError(13, "Permission denied", str(Path(out) / "Image"))

    monkeypatch.setattr(synthfer, "generate", denied)
    fails_in_one_line(runner.invoke(app, ["data", "synth", str(tmp_path / "x")]), "x/Image", "permission denied")

    def bug(out, **_):
        raise RuntimeError("a bug")

    monkeypatch.setattr(synthfer, "generate", bug)
    r = runner.invoke(app, ["data", "synth", str(tmp_path / "x")])
    assert r.exit_code == 1 and isinstance(r.exception, RuntimeError)


# ------------------------------------------------------------------------------------------------ permissions
#: the commands run by one process that may not write into RO (as root: without CAP_DAC_OVERRIDE, via setpriv)
_UNWRITABLE = r"""
import json, sys
from typer.testing import CliRunner
from attnfer.cli import app
ro, ckpt, photo, configs, run_dir = sys.argv[1:6]
cases = {
    "train": ["train", "-c", f"{configs}/quickstart.yaml", "--run-dir", f"{ro}/run"],
    "quickstart": ["quickstart", "--output-dir", f"{ro}/runs"],
    "synth": ["data", "synth", f"{ro}/syn", "--n", "20"],
    "compile": ["data", "compile", "rafdb", f"{ro}/nowhere", f"{ro}/store"],
    "evaluate": ["evaluate", ckpt, "--out", f"{ro}/eval"],
    "export": ["export", ckpt, "--out", f"{ro}/model.onnx"],
    "export_default": ["export", ckpt],
    "predict": ["predict", photo, "-m", ckpt, "--detector", "none", "--out", f"{ro}/pred"],
    "explain": ["explain", photo, "-m", ckpt, "--detector", "none", "--out", f"{ro}/expl"],
    "convert": ["convert", photo, "--from", "pt", "--out", f"{ro}/conv"],
    "report": ["report", run_dir],
}
out = {}
for name, args in cases.items():
    r = CliRunner().invoke(app, args)
    out[name] = {"code": r.exit_code, "stderr": r.stderr, "output": r.output, "exception": repr(r.exception)}
print(json.dumps(out))
"""


def _without_write_permission() -> list[str] | None:
    if os.geteuid() != 0:
        return []
    setpriv = shutil.which("setpriv")
    return [setpriv, "--bounding-set", "-dac_override,-dac_read_search", "--"] if setpriv else None


def test_unwritable_output_directories_are_one_line_for_every_command(tmp_path, ckpt, photo):
    prefix = _without_write_permission()
    if prefix is None:
        pytest.skip("running as root without setpriv: cannot take away the permission to write")
    ro = tmp_path / "ro"
    ro.mkdir()
    model = tmp_path / "ro_model"  # export's default target is inside the checkpoint: make that one read-only too
    shutil.copytree(ckpt, model)
    run_dir = tmp_path / "ro_run"
    run_dir.mkdir()
    (run_dir / "evaluation.json").write_text(json.dumps({"checkpoints": {}, "splits": []}))
    for d in (ro, model, run_dir):
        d.chmod(0o555)
    try:
        script = [sys.executable, "-c", _UNWRITABLE, str(ro), str(model), str(photo), str(CONFIGS), str(run_dir)]
        env = {**os.environ, "ATTNFER_CACHE": str(tmp_path / "cache"), "COLUMNS": "400"}
        proc = subprocess.run(prefix + script, capture_output=True, text=True, env=env, timeout=600)
        assert proc.returncode == 0, proc.stderr[-3000:]
        results = json.loads(proc.stdout.strip().splitlines()[-1])
    finally:
        for d in (ro, model, run_dir):
            d.chmod(0o755)
    for name, r in results.items():
        assert r["code"] == 2, (name, r)
        lines = r["stderr"].strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: ") and "permission denied" in lines[0], (name, r)
        assert "Traceback" not in r["output"], (name, r)
    assert "--run-dir" in results["train"]["stderr"] and "--out" in results["evaluate"]["stderr"]
    assert "report.html" in results["report"]["stderr"] and "OUT" in results["synth"]["stderr"]
    assert os.listdir(ro) == [] and sorted(os.listdir(run_dir)) == ["evaluation.json"]
    assert not (tmp_path / "cache").exists()  # nothing was generated before the check
