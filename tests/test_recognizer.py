"""Recognition on real photos through the torch and ONNX runtimes, and `attnfer predict` with bad inputs."""

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from assets import MULTI_FACE, NO_FACE, SINGLE_FACE, SSD_CONFIG, SSD_MODEL, fetch
from attnfer.cli import app
from attnfer.data import BASIC7
from attnfer.inference import ImageReadError, Recognizer, read_rgb
from attnfer.inference.faces import SSDDetector

pytestmark = pytest.mark.network


@pytest.fixture(scope="module")
def ssd():
    return SSDDetector(model=fetch(SSD_MODEL), config=fetch(SSD_CONFIG), download=False)


def test_torch_and_onnx_runtimes_agree_on_a_group_photo(checkpoint, ssd):
    torch_rec = Recognizer.from_checkpoint(checkpoint, detector=ssd, runtime="torch")
    onnx_rec = Recognizer.from_checkpoint(checkpoint, detector=ssd, runtime="onnx")
    a, b = torch_rec.predict(fetch(MULTI_FACE)), onnx_rec.predict(fetch(MULTI_FACE))
    assert len(a) == len(b) == 5
    for fa, fb in zip(a, b, strict=True):
        assert fa.box == fb.box and fa.label == fb.label and set(fa.probabilities) == set(BASIC7)
        assert max(abs(fa.probabilities[c] - fb.probabilities[c]) for c in BASIC7) < 1e-4
        assert sum(fa.probabilities.values()) == pytest.approx(1.0, abs=1e-3)
    assert torch_rec.predict(fetch(NO_FACE)) == []


def test_numpy_preprocessing_matches_the_training_transform(checkpoint):
    import torch

    from attnfer.models import load_model
    from attnfer.preprocess.torch_ops import build_transform

    rec = Recognizer.from_checkpoint(checkpoint, detector="none")
    crop = read_rgb(fetch(SINGLE_FACE))[100:400, 150:450]
    ours = rec.preprocess([crop])[0]
    ref = build_transform(load_model(checkpoint).cfg)(torch.from_numpy(np.array(crop)).permute(2, 0, 1)).numpy()
    np.testing.assert_allclose(ours, ref, atol=1e-5)  # one preprocessing definition: the same pixels
    assert rec.margin == rec.pre_cfg.crop_margin and rec.config == load_model(checkpoint).cfg.to_dict()


def test_odd_image_files(tmp_path):
    rgba = tmp_path / "rgba.png"
    Image.fromarray(np.zeros((20, 30, 4), np.uint8)).save(rgba)
    assert read_rgb(rgba).shape == (20, 30, 3)
    grey16 = tmp_path / "g16.png"
    Image.fromarray((np.arange(600).reshape(20, 30) * 50).astype(np.uint16)).save(grey16)
    img = read_rgb(grey16)
    assert img.shape == (20, 30, 3) and img.max() == 255
    cmyk = tmp_path / "cmyk.jpg"
    Image.new("CMYK", (10, 12), (0, 0, 0, 0)).save(cmyk)
    assert read_rgb(cmyk).shape == (12, 10, 3)
    rotated = tmp_path / "exif.jpg"
    im = Image.new("RGB", (40, 20))
    exif = im.getexif()
    exif[0x0112] = 6  # orientation: rotate 90
    im.save(rotated, exif=exif)
    assert read_rgb(rotated).shape == (40, 20, 3)
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"\xff\xd8\xff not really")
    with pytest.raises(ImageReadError, match="bad.jpg: not a readable image"):
        read_rgb(bad)


def test_predict_command_on_a_folder_with_a_bad_file(checkpoint, tmp_path, monkeypatch):
    folder = tmp_path / "photos"
    (folder / "sub").mkdir(parents=True)
    (folder / "single.jpg").write_bytes(fetch(SINGLE_FACE).read_bytes())
    (folder / "sub" / "mountain.jpg").write_bytes(fetch(NO_FACE).read_bytes())
    (folder / "broken.png").write_bytes(b"\x89PNG truncated")
    r = CliRunner().invoke(
        app,
        ["predict", str(folder), "--checkpoint", str(checkpoint), "--detector", "haar", "--out", str(tmp_path / "out")],
    )
    assert r.exit_code == 1  # the bad file is reported, the others are processed
    rows = json.loads((tmp_path / "out" / "predictions.json").read_text())["rows"]
    status = {Path(r["source"]).name: r["status"] for r in rows}
    assert status == {"broken.png": "error", "single.jpg": "ok", "mountain.jpg": "no_face"}
    r = CliRunner().invoke(
        app,
        [
            "predict",
            str(folder / "single.jpg"),
            "--checkpoint",
            str(checkpoint / "model.onnx"),
            "--runtime",
            "onnx",
            "--detector",
            "haar",
            "--format",
            "csv",
            "--out",
            str(tmp_path / "csv"),
        ],
    )
    assert r.exit_code == 0, r.output
    lines = (tmp_path / "csv" / "predictions.csv").read_text().splitlines()
    assert lines[0].startswith("source,status,frame,timestamp,box,detector_score,label,neutral") and len(lines) == 2


def test_onnx_runtime_path_needs_no_torch(checkpoint, tmp_path):
    """`attnfer predict --runtime onnx` in a Python where importing torch fails."""
    import subprocess
    import sys

    code = (
        "import sys; sys.modules['torch'] = None\n"
        "from attnfer.cli import app\n"
        f"app(['predict', {str(fetch(SINGLE_FACE))!r}, '-m', {str(checkpoint / 'model.onnx')!r}, '--runtime', 'onnx',"
        f" '--detector', 'haar', '--out', {str(tmp_path)!r}])\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    rows = json.loads((tmp_path / "predictions.json").read_text())["rows"]
    assert [r["status"] for r in rows] == ["ok"] and rows[0]["label"] in BASIC7
