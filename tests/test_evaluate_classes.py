"""Evaluation maps the dataset's classes onto the model's outputs by name, never by position."""

import json

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

import attnfer
from attnfer.data import BASIC7, DatasetSplits, FERDataset
from attnfer.engine.evaluate import class_mapping, evaluate_checkpoints
from attnfer.models.io import save_model
from attnfer.preprocess.torch_ops import build_transform

#: PAtt-Lite's head order: class folders sorted alphabetically (the issue's example)
ALPHABETICAL = ["anger", "disgust", "fear", "happiness", "neutral", "sadness", "surprise"]
N_TEST = 24


def _model(class_names: list[str]) -> torch.nn.Module:
    """A small real model (PreAct-ResNet-18 at 32x32) with ``class_names`` in its head order, logits spread out."""
    model = attnfer.create_model("preact_resnet18", num_classes=len(class_names), class_names=class_names)
    with torch.no_grad():  # wider logits: no near-ties between the batched evaluation and the hand computation
        model.get_classifier().weight.mul_(20)
    return model.eval()


def _images(n: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, 40, 40, 3), dtype=np.uint8)


def _logits(model: torch.nn.Module, images: np.ndarray) -> np.ndarray:
    """The model's logits (N, C) in its own output order, from its own preprocessing, one face at a time."""
    tf = build_transform(model.cfg)
    with torch.no_grad():
        return np.stack([model(tf(torch.from_numpy(img.copy()).permute(2, 0, 1))[None])[0].numpy() for img in images])


def _splits(test_images: np.ndarray, test_targets: np.ndarray) -> DatasetSplits:
    """A 7-class set in attnfer's canonical order (BASIC7: neutral, happiness, surprise, ...)."""

    def ds(split, images, targets):
        return FERDataset(
            name="memfaces",
            split=split,
            class_names=BASIC7,
            targets=np.asarray(targets),
            ids=[f"{split}{i}" for i in range(len(images))],
            images=images,
        )

    other = _images(7, seed=1)
    return DatasetSplits(
        name="memfaces",
        class_names=BASIC7,
        splits={
            "train": ds("train", other, np.arange(7)),
            "validation": ds("validation", other, np.arange(7)),
            "test": ds("test", test_images, test_targets),
        },
        validation_source="given",
    )


def _named_predictions(logits: np.ndarray, model_classes: list[str]) -> np.ndarray:
    """By hand: dataset class k is scored by the model output named BASIC7[k]; argmax over those outputs only."""
    index = [model_classes.index(name) for name in BASIC7]
    return logits[:, index].argmax(1)


def _targets(pred: np.ndarray) -> np.ndarray:
    """Targets that make the name-mapped accuracy exactly 1/2: right on even samples, wrong on odd ones."""
    return np.where(np.arange(len(pred)) % 2 == 0, pred, (pred + 1) % 7)


def test_class_mapping_rule():
    index, left_out = class_mapping(ALPHABETICAL, BASIC7)
    assert [ALPHABETICAL[i] for i in index] == list(BASIC7) and left_out == []
    # canonical spellings ("happy", "Angry") are the same class; the model's extra class is left out
    model = ["Angry", "disgust", "fear", "happy", "neutral", "sad", "surprise", "contempt"]
    index, left_out = class_mapping(model, BASIC7)
    assert index.tolist() == [4, 3, 6, 5, 0, 1, 2] and left_out == ["contempt"]
    # equal lists and an unnamed model of the right width: positional
    assert class_mapping(list(BASIC7), BASIC7)[0].tolist() == list(range(7))
    index, left_out = class_mapping(None, BASIC7, num_outputs=7)
    assert index.tolist() == list(range(7)) and left_out == []
    with pytest.raises(ValueError, match="8 unnamed outputs but memfaces has 7 classes"):
        class_mapping(None, BASIC7, num_outputs=8, dataset="memfaces")
    with pytest.raises(ValueError, match="'fear', which the model does not predict: the model predicts"):
        class_mapping([c for c in ALPHABETICAL if c != "fear"], BASIC7, dataset="memfaces")
    with pytest.raises(ValueError, match="names 'happiness' twice"):
        class_mapping(["happy", "happiness", *BASIC7[2:]], BASIC7)


def test_a_model_in_another_order_is_scored_by_name(tmp_path):
    model = _model(ALPHABETICAL)
    saved = save_model(model, tmp_path / "alphabetical")
    images = _images(N_TEST, seed=0)
    logits = _logits(model, images)
    pred = _named_predictions(logits, ALPHABETICAL)
    y = _targets(pred)
    positional = logits.argmax(1)  # what taking the head in the dataset's order would claim
    assert (positional == y).mean() != 0.5

    result = evaluate_checkpoints(saved, _splits(images, y), tmp_path / "eval", samples=4, invariance_samples=8)
    entry = result["checkpoints"]["alphabetical"]
    assert entry["test"]["accuracy"] == pytest.approx((pred == y).mean()) == pytest.approx(0.5)
    assert entry["model_classes"] == ALPHABETICAL and entry["left_out_classes"] == []
    assert entry["class_mapping"] == {c: ALPHABETICAL.index(c) for c in BASIC7}
    # confusion matrix and per-class table in the dataset's order
    cm = np.zeros((7, 7), int)
    np.add.at(cm, (y, pred), 1)
    assert entry["test"]["confusion"] == cm.tolist()
    assert list(entry["test"]["per_class"]) == list(BASIC7)
    assert entry["test"]["per_class"]["neutral"]["support"] == int((y == 0).sum())
    bi = entry["batch_invariance"]
    assert bi["passed"] and bi["accuracy_batch_1"] == pytest.approx(bi["accuracy_batch_64"])
    # the sample faces: labels in the dataset's names, predicted by name
    samples = json.loads((tmp_path / "eval" / "samples.json").read_text())
    for s in samples["samples"]:
        i = s["index"]
        assert s["true"] == BASIC7[y[i]] and s["predicted"] == BASIC7[pred[i]] and s["correct"] == (i % 2 == 0)
    assert samples["classes_left_out"] == []

    # the same model without names is positional (today's behaviour)
    model.class_names = None
    unnamed = evaluate_checkpoints(model, _splits(images, y), None, samples=0, check_batch_invariance=False)
    (entry,) = unnamed["checkpoints"].values()
    assert entry["model_classes"] is None and entry["test"]["accuracy"] == pytest.approx((positional == y).mean())


def test_a_model_class_the_dataset_lacks_is_left_out(tmp_path):
    classes = [*ALPHABETICAL, "contempt"]
    model = _model(classes)
    with torch.no_grad():  # contempt would win every face if it took part
        model.get_classifier().bias[7] = 1e4
    saved = save_model(model, tmp_path / "feratt_like")
    images = _images(N_TEST, seed=2)
    logits = _logits(model, images)
    assert (logits.argmax(1) == 7).all()
    pred = _named_predictions(logits, classes)
    y = _targets(pred)

    out = tmp_path / "eval"
    evaluate_checkpoints(saved, _splits(images, y), out, samples=3, invariance_samples=8)
    ev = json.loads((out / "evaluation.json").read_text())
    entry = ev["checkpoints"]["feratt_like"]
    assert entry["left_out_classes"] == ["contempt"] and entry["model_classes"] == classes
    assert "contempt" not in entry["class_mapping"] and ev["class_names"] == list(BASIC7)
    assert entry["test"]["accuracy"] == pytest.approx((pred == y).mean()) == pytest.approx(0.5)
    assert entry["batch_invariance"]["passed"]
    # probabilities over the classes that take part (renormalised without contempt)
    samples = json.loads((out / "samples.json").read_text())
    assert samples["classes_left_out"] == ["contempt"]
    index = [classes.index(c) for c in BASIC7]
    for s in samples["samples"]:
        z = logits[s["index"], index]
        p = np.exp(z - z.max()) / np.exp(z - z.max()).sum()
        assert s["probability"] == pytest.approx(p.max(), abs=2e-4) and s["predicted"] != "contempt"


def test_a_dataset_class_the_model_lacks_fails_before_any_inference(tmp_path, monkeypatch):
    import attnfer.engine.evaluate as ev

    good = save_model(_model(ALPHABETICAL), tmp_path / "good")
    lacking = save_model(_model([c for c in ALPHABETICAL if c != "fear"]), tmp_path / "lacking")

    def no_inference(*args, **kwargs):
        raise AssertionError("inference ran before the classes were checked")

    monkeypatch.setattr(ev, "predict_loader", no_inference)
    data = _splits(_images(4, seed=3), np.arange(4))
    with pytest.raises(ValueError) as e:
        evaluate_checkpoints({"good": good, "lacking": lacking}, data, tmp_path / "eval")
    message = str(e.value)
    assert "'fear'" in message and "memfaces" in message and "the model predicts" in message
    assert str(["anger", "disgust", "happiness", "neutral", "sadness", "surprise"]) in message
    assert not (tmp_path / "eval").exists()


def test_evaluate_command_reports_the_left_out_class(tmp_path):
    from attnfer.cli import app

    root = tmp_path / "faces"
    rng = np.random.default_rng(4)
    for split, per_class in (("train", 2), ("test", 2)):
        for name in BASIC7:
            (root / split / name).mkdir(parents=True)
            for k in range(per_class):
                img = rng.integers(0, 256, (40, 40, 3), dtype=np.uint8)
                Image.fromarray(img).save(root / split / name / f"{name}{k}.png")
    saved = save_model(_model([*ALPHABETICAL, "contempt"]), tmp_path / "ckpt")
    out = tmp_path / "eval"
    args = ["evaluate", str(saved), "--data", "folder", "--root", str(root), "--out", str(out), "--samples", "2"]
    r = CliRunner().invoke(app, args, terminal_width=200)
    assert r.exit_code == 0, r.output
    assert "left out of the decision" in r.output and "contempt" in r.output
    ev = json.loads((out / "evaluation.json").read_text())
    assert ev["checkpoints"]["ckpt"]["left_out_classes"] == ["contempt"]
    html = (out / "report.html").read_text()
    assert "Left out of the decision (the dataset lacks them): <b>contempt</b>" in html
    # a dataset class the model lacks: a clear message, exit code 2
    lacking = save_model(_model([c for c in ALPHABETICAL if c != "fear"]), tmp_path / "lacking")
    r = CliRunner().invoke(app, ["evaluate", str(lacking), "--data", "folder", "--root", str(root)])
    assert r.exit_code == 2 and "which the model does not predict" in r.output
