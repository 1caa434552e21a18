"""The ``attnfer`` command line."""

import json
import subprocess
import sys

from typer.testing import CliRunner

from attnfer.cli import app

runner = CliRunner()


def test_models_table_lists_every_model_with_counts():
    result = runner.invoke(app, ["models"], terminal_width=200)
    assert result.exit_code == 0, result.output
    for name, params in [
        ("patt_lite", "1,093,000"),
        ("emonet", "2,310,738"),
        ("sa_fer", "3,273,363"),
        ("feratt", "47,408,075"),
        ("preact_resnet18", "11,169,607"),
    ]:
        line = next(line for line in result.output.splitlines() if f" {name} " in line)
        assert params in line


def test_models_json_and_filter():
    result = runner.invoke(app, ["models", "--json", "--filter", "patt*", "--num-classes", "8"])
    assert result.exit_code == 0, result.output
    rows = json.loads(result.output)
    assert [r["name"] for r in rows] == ["patt_lite"]
    assert rows[0]["params"] == 1_093_033 and rows[0]["input_size"] == [3, 224, 224]
    assert 0.33 < rows[0]["gmacs"] < 0.34


def test_models_card_and_bad_filter():
    result = runner.invoke(app, ["models", "--card", "sa_fer"])
    assert result.exit_code == 0
    assert json.loads(result.output)["num_params"] == 3_273_363
    result = runner.invoke(app, ["models", "--filter", "vit*"])
    assert result.exit_code == 1 and "no model matches" in result.output


def test_console_entry_point_runs():
    out = subprocess.run([sys.executable, "-m", "attnfer", "--version"], capture_output=True, text=True)
    assert out.returncode == 0 and out.stdout.startswith("attnfer ")
