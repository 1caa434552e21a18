"""Attention explanations: each architecture's own maps, Grad-CAM against a hand computation, and `attnfer explain`."""

import numpy as np
import pytest
import torch
import torch.nn as nn
from typer.testing import CliRunner

from attnfer.cli import app
from attnfer.data import BASIC7
from attnfer.inference.explain import explain_face, gradcam, gradcam_layer
from conftest import build


@pytest.mark.parametrize(
    ("name", "kwargs", "size", "expected"),
    [
        ("patt_lite", {}, 224, ["PAtt-Lite token attention (2x2 patches)"]),
        ("sa_fer", {}, 224, [f"CBAM spatial map {i}" for i in range(1, 7)] + ["self-attention over 2x2 patch tokens"]),
        ("feratt", {"layout": "code"}, 64, ["FERAtt attention map sigmoid(A)", "FERAtt attention image I_att"]),
        ("emonet", {}, 224, []),
    ],
)
def test_each_model_gets_its_own_maps_and_gradcam(name, kwargs, size, expected):
    model = build(name, class_names=list(BASIC7), **kwargs).eval()
    x = np.random.default_rng(0).normal(size=(3, size, size)).astype(np.float32)
    panels, probs = explain_face(model, x, list(BASIC7))
    titles = [p.title.split(" (")[0] if p.title.startswith("CBAM") else p.title for p in panels]
    assert titles[:-1] == expected and titles[-1] == f"Grad-CAM: {BASIC7[int(probs.argmax())]}"
    assert probs.sum() == pytest.approx(1, abs=1e-5)
    for p in panels:
        assert p.data.shape[:2] == (size, size) and p.data.min() >= 0 and p.data.max() <= 1 + 1e-6
    assert not any(getattr(m, "record", False) for m in model.modules())  # recording switched off again
    if name == "patt_lite":
        grid = panels[0].data  # four constant quadrants, the largest = 1
        quads = [grid[:112, :112], grid[:112, 112:], grid[112:, :112], grid[112:, 112:]]
        assert all(q.std() == 0 for q in quads) and max(q[0, 0] for q in quads) == pytest.approx(1)


def test_gradcam_matches_the_hand_computed_map():
    class Tiny(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 4, 3, padding=1)
            self.fc = nn.Linear(4, 3)

        def forward(self, x):
            return self.fc(torch.relu(self.conv(x)).mean(dim=(2, 3)))

    torch.manual_seed(0)
    model = Tiny().eval()
    x = torch.randn(1, 3, 8, 8)
    assert gradcam_layer(model, (3, 8, 8)) is model.conv  # the probe finds the last 8x8 map
    got = gradcam(model, x.clone().requires_grad_(True), 2, model.conv)
    A = model.conv(x)[0]  # (4, 8, 8); through relu, d logit_2 / d A_k = w_2k * 1[A_k > 0] / 64
    grads = model.fc.weight[2][:, None, None] * (A > 0) / 64
    cam = torch.relu((grads.mean(dim=(1, 2))[:, None, None] * A).sum(0)).detach().numpy()
    np.testing.assert_allclose(got, cam / cam.max(), atol=1e-5)


def test_explain_command_writes_a_png_per_face(tmp_path):
    pytest.importorskip("cv2")
    from PIL import Image

    ckpt = tmp_path / "model"
    build("patt_lite", class_names=list(BASIC7)).save(ckpt)
    face = tmp_path / "crop.png"
    Image.fromarray(np.random.default_rng(1).integers(0, 255, (150, 120, 3), dtype=np.uint8)).save(face)
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"not an image")
    r = CliRunner().invoke(
        app, ["explain", str(face), str(bad), "-m", str(ckpt), "--detector", "none", "--out", str(tmp_path / "x")]
    )
    assert r.exit_code == 1 and "bad.jpg" in r.output
    png = tmp_path / "x" / "crop_face1.png"
    assert png.is_file() and Image.open(png).size[0] > 600
