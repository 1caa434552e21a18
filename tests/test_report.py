"""The report is a view of a run directory's files; the evaluation writes those files."""

import base64
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from attnfer.engine.report import render_report
from conftest import build

CLASSES = ["neutral", "happiness", "surprise"]


def _png(path: Path, colour: tuple[int, int, int], size: int = 8) -> bytes:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((size, size, 3), colour, np.uint8)).save(path)
    return path.read_bytes()


def _metrics(acc: float, n: int = 16) -> dict:
    return {
        "n": n,
        "accuracy": acc,
        "balanced_accuracy": 0.7031,
        "macro_precision": 0.7123,
        "macro_recall": 0.7031,
        "macro_f1": 0.6987,
        "per_class": {
            "neutral": {"precision": 0.6667, "recall": 0.8, "f1": 0.7273, "support": 5},
            "happiness": {"precision": 0.9, "recall": 0.75, "f1": 0.8182, "support": 8},
            "surprise": {"precision": 0.5, "recall": 0.3333, "f1": 0.4, "support": 3},
        },
        "confusion": [[4, 1, 0], [1, 6, 1], [1, 1, 1]],
        "confusion_normalized": [[0.8, 0.2, 0.0], [0.125, 0.75, 0.125], [0.3333, 0.3333, 0.3333]],
    }


@pytest.fixture
def run_dir(tmp_path) -> Path:
    """A run directory made by hand: what training and evaluation write, no training."""
    d = tmp_path / "demo-run"
    d.mkdir()
    (d / "config.yaml").write_text("name: demo-run\nmodel:\n  name: demo_net\ndata:\n  name: demo_faces\nseed: 7\n")
    (d / "environment.json").write_text(
        json.dumps({"attnfer": "9.9.9", "torch": "2.99", "device": "Test CPU", "git_commit": "abc1234"})
    )
    (d / "data.json").write_text(
        json.dumps(
            {
                "dataset": "demo_faces",
                "class_names": CLASSES,
                "validation_source": "carved 10% of train (seeded)",
                "counts": {
                    "train": {"neutral": 41, "happiness": 52, "surprise": 13, "total": 106},
                    "test": {"neutral": 5, "happiness": 8, "surprise": 3, "total": 16},
                },
                "skipped": 0,
                "notes": ["a note with <script>markup</script>"],
            }
        )
    )
    evaluation = {
        "selection": "best = highest validation accuracy over all phases; test never used for selection",
        "dataset": "demo_faces",
        "model": "demo_net",
        "class_names": CLASSES,
        "splits": ["test", "occlusion"],
        "precision": "bf16-mixed",
        "device": "cpu",
        "checkpoints": {
            "best": {
                "batch_dependent": False,
                "test": _metrics(0.8125),
                "occlusion": _metrics(0.5625),
                "batch_invariance": {
                    "samples": 16,
                    "large_batch": 64,
                    "accuracy_batch_1": 0.8125,
                    "accuracy_batch_64": 0.8125,
                    "changed_predictions": 0,
                    "max_probability_difference": 1e-7,
                    "passed": True,
                },
            },
            "last": {
                "batch_dependent": True,
                "warning": "outputs depend on batch-mates",
                "test": _metrics(0.4375),
                "occlusion": _metrics(0.3125),
                "batch_invariance": {
                    "samples": 16,
                    "large_batch": 64,
                    "accuracy_batch_1": 0.375,
                    "accuracy_batch_64": 0.4375,
                    "changed_predictions": 5,
                    "max_probability_difference": 0.4,
                    "passed": False,
                },
            },
        },
        "samples": "samples.json",
    }
    (d / "evaluation.json").write_text(json.dumps(evaluation))
    _png(d / "confusion_best_test.png", (0, 0, 200))
    _png(d / "confusion_best_occlusion.png", (0, 200, 0))
    _png(d / "curves.png", (200, 0, 0))
    (d / "curves.json").write_text(
        json.dumps(
            {
                "x": "epoch (all phases)",
                "phases": [
                    {"phase": 0, "name": "head", "first_epoch": 0, "epochs": 2},
                    {"phase": 1, "name": "finetune", "first_epoch": 2, "epochs": 1},
                ],
                "series": {
                    "train/loss": [[0, 1.9], [1, 1.4], [2, 1.2345]],
                    "val/acc": [[0, 0.3], [1, 0.5], [2, 0.6789]],
                },
            }
        )
    )
    rows = []
    for k, (true, pred) in enumerate([("happiness", "happiness"), ("surprise", "neutral")]):
        _png(d / "samples" / f"{k}.png", (k * 100, 50, 50), size=16)
        rows.append(
            {
                "file": f"samples/{k}.png",
                "index": k,
                "id": f"img{k}",
                "true": true,
                "predicted": pred,
                "probability": 0.91 if k == 0 else 0.47,
                "correct": true == pred,
                "attention": "demo attention map",
            }
        )
    (d / "samples.json").write_text(json.dumps({"checkpoint": "best", "split": "test", "seed": 0, "samples": rows}))
    return d


def _check_sections(d: Path, html: str) -> None:
    # header
    for text in ("demo-run", "demo_net", "demo_faces", "9.9.9", "2.99", "Test CPU", "abc1234", "bf16-mixed"):
        assert text in html, text
    # batch dependence, results, batch invariance
    assert "Warning (last):" in html and "outputs depend on batch-mates" in html
    assert "Warning (best)" not in html
    for number in ("0.8125", "0.5625", "0.4375", "0.3125", "0.7031", "0.7123", "0.6987"):
        assert number in html, number
    assert "test never used for selection" in html
    assert "Batch invariance (best)" in html and "changed predictions 0 of 16" in html and "passed" in html
    assert "Batch invariance (last)" in html and "changed predictions 5 of 16" in html and "FAILED" in html
    # confusion matrices of the selected checkpoint, embedded
    assert "Confusion matrix (best)" in html
    for name in ("confusion_best_test.png", "confusion_best_occlusion.png", "curves.png", "samples/0.png"):
        assert base64.b64encode((d / name).read_bytes()).decode() in html, name
    # per class on test
    assert "Per class (best, test)" in html and "0.667" in html and "0.818" in html and "0.333" in html
    # curves
    assert "Training curves" in html and "head: epochs 0" in html and "finetune: epochs 2" in html
    assert "1.2345" in html and "0.6789" in html
    # samples with attention
    assert "Sample test predictions with attention" in html and "demo attention map" in html
    assert "(true surprise)" in html and "neutral 0.47" in html and "happiness 0.91" in html
    # data and notes (escaped), recipe
    assert "carved 10% of train (seeded)" in html and ">106<" in html and ">13<" in html
    assert "&lt;script&gt;markup&lt;/script&gt;" in html and "<script>" not in html
    assert "Recipe" in html and "seed: 7" in html


def test_report_renders_every_section_from_the_files(run_dir):
    out = render_report(run_dir)
    assert out == run_dir / "report.html"
    html = out.read_text()
    _check_sections(run_dir, html)
    assert 'src="samples/' not in html and "src='" not in html  # one self-contained file: every image is inline
    assert not [p for p in run_dir.iterdir() if p.name.endswith(".tmp")]


def test_report_is_a_view_it_loads_no_recipe_model_or_dataset(run_dir, monkeypatch):
    import attnfer.data
    import attnfer.engine
    import attnfer.engine.config
    import attnfer.engine.data
    import attnfer.models
    import attnfer.models.io

    def forbidden(*args, **kwargs):
        raise AssertionError("the report must only read the run directory's files")

    for module, name in [
        (attnfer.models, "load_model"),
        (attnfer.models.io, "load_model"),
        (attnfer.data, "load_dataset"),
        (attnfer.engine.data, "load_dataset"),
        (attnfer.engine.data, "load_run_data"),
        (attnfer.engine.config, "load_config"),
        (attnfer.engine, "load_config"),
    ]:
        monkeypatch.setattr(module, name, forbidden)
    html = render_report(run_dir).read_text()
    _check_sections(run_dir, html)


def test_a_run_dir_without_optional_files_renders_without_their_sections(run_dir, tmp_path):
    for name in ("curves.json", "curves.png", "samples.json", "data.json", "config.yaml", "environment.json"):
        (run_dir / name).unlink()
    html = render_report(run_dir).read_text()
    assert "Results" in html and "0.8125" in html and "Confusion matrix (best)" in html
    for section in ("Training curves", "Sample test predictions", "<h2>Data</h2>", "Recipe"):
        assert section not in html, section
    only_recipe = tmp_path / "fresh"
    only_recipe.mkdir()
    (only_recipe / "config.yaml").write_text("model: {name: demo_net}\ndata: {name: demo_faces}\n")
    html = render_report(only_recipe).read_text()
    assert "demo_net" in html and "demo_faces" in html and "Recipe" in html and "<h2>Results</h2>" not in html


def test_report_refuses_a_directory_without_run_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="not an attnfer run or evaluation directory"):
        render_report(tmp_path)
    with pytest.raises(FileNotFoundError, match="is not a directory"):
        render_report(tmp_path / "missing")


# ------------------------------------------------------------------------------------------------
def _splits(n_test: int = 12):
    from attnfer.data import DatasetSplits, FERDataset

    rng = np.random.default_rng(0)

    def ds(split, n):
        return FERDataset(
            name="memfaces",
            split=split,
            class_names=CLASSES,
            targets=np.arange(n) % 3,
            ids=[f"{split}{i}" for i in range(n)],
            images=rng.integers(0, 256, (n, 48, 48, 3), dtype=np.uint8),
        )

    return DatasetSplits(
        name="memfaces",
        class_names=CLASSES,
        splits={"train": ds("train", 6), "validation": ds("validation", 6), "test": ds("test", n_test)},
        validation_source="given",
    )


def test_evaluation_writes_what_the_report_shows(tmp_path):
    from attnfer.engine.evaluate import evaluate_checkpoints

    model = build("patt_lite", num_classes=3, class_names=CLASSES)
    saved = model.save(tmp_path / "best")
    data = _splits()
    out = tmp_path / "eval"
    result = evaluate_checkpoints(saved, data, out, samples=4, invariance_samples=8)
    ev = json.loads((out / "evaluation.json").read_text())
    assert ev == json.loads(json.dumps(result))
    entry = ev["checkpoints"]["best"]
    assert ev["model"] == "patt_lite" and ev["dataset"] == "memfaces" and ev["splits"] == ["test"]
    assert entry["test"]["n"] == 12 and sum(map(sum, entry["test"]["confusion"])) == 12
    assert entry["batch_invariance"]["passed"] and entry["batch_invariance"]["samples"] == 8
    assert (out / "confusion_best_test.png").is_file()
    assert json.loads((out / "data.json").read_text())["counts"]["test"]["total"] == 12
    assert "torch" in json.loads((out / "environment.json").read_text())
    samples = json.loads((out / "samples.json").read_text())
    assert len(samples["samples"]) == 4 and len({s["index"] for s in samples["samples"]}) == 4
    h, w = model.cfg.input_size[1:]
    for s in samples["samples"]:
        with Image.open(out / s["file"]) as img:
            assert img.size == (w, h) and img.mode == "RGB"
        assert s["true"] == CLASSES[s["index"] % 3] and s["predicted"] in CLASSES
        assert s["attention"] == model.attention_maps(torch.zeros(1, *model.cfg.input_size))[0].title
    # seeded: the same samples again
    again = evaluate_checkpoints(saved, data, tmp_path / "again", samples=4, check_batch_invariance=False)
    assert "batch_invariance" not in again["checkpoints"]["best"]
    assert json.loads((tmp_path / "again" / "samples.json").read_text())["samples"] == samples["samples"]
    # and the report views it
    html = render_report(out).read_text()
    assert "patt_lite" in html and "memfaces" in html and "Sample test predictions with attention" in html
    assert f"{entry['test']['accuracy']:.4f}" in html


def test_evaluation_refuses_mismatched_classes_and_a_file_as_output(tmp_path):
    from attnfer.engine.evaluate import evaluate_checkpoints

    saved = build("patt_lite", num_classes=3, class_names=["a", "b", "c"]).save(tmp_path / "m")
    with pytest.raises(ValueError, match="the model predicts"):
        evaluate_checkpoints(saved, _splits(), None)
    (tmp_path / "file").write_text("x")
    with pytest.raises(NotADirectoryError):
        evaluate_checkpoints(saved, _splits(), tmp_path / "file")
