"""The ``attnfer`` command line."""

import json
import subprocess
import sys
from pathlib import Path

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
    import attnfer

    result = runner.invoke(app, ["models", "--card", "sa_fer"])
    assert result.exit_code == 0
    card = json.loads(result.output)
    assert card["num_params"] == 3_273_363
    assert {k: card[k] for k in attnfer.create_model("sa_fer").cfg.to_dict()} == attnfer.create_model(
        "sa_fer"
    ).cfg.to_dict()
    result = runner.invoke(app, ["models", "--filter", "vit*"])
    assert result.exit_code == 1 and "no model matches" in result.output
    result = runner.invoke(app, ["models", "--card", "nope"], terminal_width=300)
    assert result.exit_code == 2 and "unknown model 'nope'" in result.output


def test_help_lists_the_registry_and_the_quickstart_recipe():
    import yaml

    import attnfer

    result = runner.invoke(app, ["models", "--help"], terminal_width=400)
    assert result.exit_code == 0
    text = " ".join(result.output.split())
    for name in attnfer.list_models():
        assert name in text
    result = runner.invoke(app, ["quickstart", "--help"], terminal_width=400)
    recipe = yaml.safe_load((Path(attnfer.__file__).parent / "configs" / "quickstart.yaml").read_text())
    text = " ".join(result.output.split())
    assert result.exit_code == 0 and f"the recipe's model, {recipe['model']['name']}, from scratch" in text


def test_report_of_a_folder_without_run_files_fails_cleanly(tmp_path):
    result = runner.invoke(app, ["report", str(tmp_path)])
    assert result.exit_code == 2 and "not an attnfer run or evaluation directory" in result.output
    result = runner.invoke(app, ["report", str(tmp_path / "missing")])
    assert result.exit_code == 2 and "is not a directory" in result.output


def test_console_entry_point_runs():
    out = subprocess.run([sys.executable, "-m", "attnfer", "--version"], capture_output=True, text=True)
    assert out.returncode == 0 and out.stdout.startswith("attnfer ")
