"""``attnfer data`` commands, run through the real CLI."""

from typer.testing import CliRunner

from attnfer.cli import app

runner = CliRunner()


def test_synth_inspect_compile(tmp_path):
    out = tmp_path / "synth"
    r = runner.invoke(app, ["data", "synth", str(out), "--n", "35", "--size", "48", "--preview"], terminal_width=200)
    assert r.exit_code == 0, r.output
    assert (out / "preview.png").is_file() and "train 28, test 7" in r.output
    r = runner.invoke(app, ["data", "inspect", str(out), "--dataset", "synthfer"], terminal_width=200)
    assert r.exit_code == 0, r.output
    assert "validation split: carved from train" in r.output and "happiness" in r.output
    r = runner.invoke(app, ["data", "compile", "synthfer", str(out), str(tmp_path / "store"), "--size", "32"])
    assert r.exit_code == 0, r.output
    assert "compiled 35 images" in r.output and (tmp_path / "store" / "meta.json").is_file()


def test_errors_exit_non_zero_and_name_the_file(tmp_path):
    r = runner.invoke(app, ["data", "inspect", str(tmp_path), "--dataset", "rafdb"], terminal_width=300)
    assert r.exit_code == 2 and "not a RAF-DB root" in r.output
    r = runner.invoke(app, ["data", "compile", "nope", str(tmp_path), str(tmp_path / "o")], terminal_width=300)
    assert r.exit_code == 2 and "unknown dataset 'nope'" in r.output
    assert not (tmp_path / "o").exists()
