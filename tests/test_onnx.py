"""ONNX export: parity with PyTorch, dynamic batch, metadata, INT8 graph, CLI."""

import numpy as np
import onnxruntime as ort
import pytest
import torch
from typer.testing import CliRunner

from attnfer.cli import app
from attnfer.inference.onnx_export import export_onnx, read_metadata
from attnfer.models import logits_of
from conftest import build

CASES = [("patt_lite", {}, 224), ("emonet", {}, 224), ("sa_fer", {}, 224), ("feratt", {"layout": "code"}, 64)]


@pytest.mark.parametrize("name,kwargs,size", CASES, ids=[c[0] for c in CASES])
def test_fp32_export_matches_torch_for_any_batch(tmp_path, name, kwargs, size):
    model = build(name, num_classes=3, class_names=["anger", "happiness", "neutral"], **kwargs).eval()
    model.save(tmp_path / "m")
    path = export_onnx(tmp_path / "m", tmp_path / "m.onnx")
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    for batch in (1, 5):
        x = torch.randn(batch, 3, size, size)
        with torch.no_grad():
            ref = logits_of(model(x)).numpy()
        got = session.run(None, {"input": x.numpy()})[0]
        assert got.shape == (batch, 3)
        assert np.abs(got - ref).max() <= 1e-4
    meta = read_metadata(path)
    assert meta["class_names"] == ["anger", "happiness", "neutral"] and meta["model"] == name
    assert meta["preprocessing"]["input_size"] == [3, size, size]


def test_int8_export_runs_smaller_and_keeps_metadata(tmp_path):
    build("patt_lite").save(tmp_path / "m")
    r = CliRunner().invoke(app, ["export", str(tmp_path / "m"), "--int8"])
    assert r.exit_code == 0, r.output
    q = tmp_path / "m" / "model.int8.onnx"
    f = export_onnx(tmp_path / "m", tmp_path / "fp32.onnx")
    assert q.stat().st_size < 0.5 * f.stat().st_size
    assert read_metadata(q)["quantization"].startswith("int8")
    x = np.random.default_rng(0).standard_normal((4, 3, 224, 224)).astype(np.float32)
    out = ort.InferenceSession(str(q), providers=["CPUExecutionProvider"]).run(None, {"input": x})[0]
    assert out.shape == (4, 7) and np.isfinite(out).all()
    r = CliRunner().invoke(app, ["export", str(tmp_path / "missing")])
    assert r.exit_code == 2 and "config.json not found" in r.output
