"""One input contract, declared once: for every registered model, the tensor the data pipeline's evaluation gives
for a face-crop file is what inference feeds the model, through the torch runtime, the ONNX runtime and the web
service (``attnfer serve --detector none``), to within one uint8 step.

The two crops are colour PNGs of 37x41 (upsized to the input) and 300x260 (downsized), so a grey model, the
resize kernel and the geometry (the whole image stretched to the input, never squared or padded) all matter.
"""

from __future__ import annotations

import socket
import threading
import time
from pathlib import Path

import cv2
import httpx
import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

import attnfer
from attnfer.data import BASIC7
from attnfer.inference import Recognizer
from attnfer.inference.faces import Face, crop_face
from attnfer.inference.onnx_export import export_onnx
from attnfer.preprocess import preprocess
from conftest import build

CROPS = {"small": (41, 37), "large": (260, 300)}  # name -> (height, width): 37x41 and 300x260 pixels


def _smooth_colour(h: int, w: int, seed: int) -> np.ndarray:
    """Random but smooth colour content: a coarse random colour grid upsampled bicubically, plus gradients."""
    rng = np.random.default_rng(seed)
    coarse = rng.uniform(0, 255, (5, 6, 3)).astype(np.float32)
    img = cv2.resize(coarse, (w, h), interpolation=cv2.INTER_CUBIC)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    img[..., 0] += 40 * xx / w
    img[..., 2] -= 40 * yy / h
    return np.clip(img, 0, 255).round().astype(np.uint8)


@pytest.fixture(scope="module")
def faces(tmp_path_factory) -> tuple[Path, dict[str, Path]]:
    """A `folder`-format dataset whose test split holds the two crops (train: two more per class)."""
    root = tmp_path_factory.mktemp("contract") / "data"
    files = {}
    for split, cls, name, (h, w), seed in [
        ("test", "happy", "small", CROPS["small"], 1),
        ("test", "happy", "large", CROPS["large"], 2),
        *[("train", c, f"t{i}", (48, 48), 10 + i + 5 * k) for k, c in enumerate(("happy", "sad")) for i in range(4)],
    ]:
        path = root / split / cls / f"{name}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(_smooth_colour(h, w, seed)).save(path)
        if split == "test":
            files[name] = path
    return root, files


@pytest.fixture(scope="module", params=attnfer.list_models())
def saved(request, tmp_path_factory):
    """(registry name, model directory with its fp32 ONNX export), built once per model."""
    name = request.param
    directory = tmp_path_factory.mktemp(name) / "model"
    build(name, class_names=list(BASIC7)).save(directory)
    export_onnx(directory, directory / "model.onnx")
    return name, directory


def _pipeline_inputs(name: str, root: Path, model) -> dict[str, np.ndarray]:
    """(a): the evaluation input of each test file, through the recipe's data path (FERDataModule)."""
    from attnfer.engine import load_config
    from attnfer.engine.data import FERDataModule, load_run_data

    cfg = load_config(overrides={"model.name": name, "data.name": "folder", "data.root": str(root)})
    data = load_run_data(cfg)
    ds = FERDataModule(cfg, data, model.cfg).dataset("test", train=False)
    return {ds.ids[i]: ds[i][0].numpy() for i in range(len(ds))}


def _record_inputs(model) -> list[np.ndarray]:
    """The inputs the model is called with, recorded by a forward pre-hook. Its computation is skipped (logits of
    zeros) to keep the test fast: what matters here is its input, and the ONNX runtime runs the real graph."""
    seen: list[np.ndarray] = []
    model.register_forward_pre_hook(lambda _, args: seen.append(args[0].detach().cpu().numpy().copy()))
    model.forward = lambda x: x.new_zeros(len(x), model.num_classes)
    return seen


def _torch_inputs(directory: Path, files: dict[str, Path]) -> tuple[dict[str, np.ndarray], Recognizer]:
    """(b): what the torch runtime feeds the model (a forward pre-hook on the loaded model)."""
    rec = Recognizer.from_checkpoint(directory, detector="none", runtime="torch")
    seen = _record_inputs(rec.runtime.model)
    out = {}
    for key, path in files.items():
        assert len(rec.predict(path)) == 1
        (out[key],) = seen.pop()
    return out, rec


class _SessionSpy:
    def __init__(self, session) -> None:
        self.session, self.inputs = session, []

    def run(self, names, feeds):
        self.inputs.append(feeds["input"].copy())
        return self.session.run(names, feeds)


def _onnx_inputs(directory: Path, files: dict[str, Path]) -> dict[str, np.ndarray]:
    """(c): what the ONNX runtime feeds ONNX Runtime (a spy on the session's run)."""
    rec = Recognizer.from_checkpoint(directory, detector="none", runtime="onnx")
    spy = rec.runtime.session = _SessionSpy(rec.runtime.session)
    out = {}
    for key, path in files.items():
        assert len(rec.predict(path)) == 1
        (out[key],) = spy.inputs.pop()
    return out


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _serve_inputs(directory: Path, files: dict[str, Path], monkeypatch) -> dict[str, np.ndarray]:
    """(d): what `attnfer serve --checkpoint DIR --detector none` feeds the model: the CLI builds the app, which
    runs here in uvicorn on a loopback port, with a forward pre-hook on the served model."""
    import uvicorn

    from attnfer.cli import app as cli

    built = {}
    monkeypatch.setattr(uvicorn, "run", lambda web, **_: built.setdefault("app", web))
    r = CliRunner().invoke(cli, ["serve", "--checkpoint", str(directory), "--detector", "none"])
    assert r.exit_code == 0 and "app" in built, r.output
    web = built["app"]
    rec = web.state.recognizer
    assert rec.detector.name == "none"
    seen = _record_inputs(rec.runtime.model)
    port = _free_port()
    server = uvicorn.Server(uvicorn.Config(web, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    out = {}
    try:
        for _ in range(200):
            if server.started:
                break
            time.sleep(0.05)
        for key, path in files.items():
            r = httpx.post(
                f"http://127.0.0.1:{port}/v1/predict",
                files={"file": (path.name, path.read_bytes(), "image/png")},
                timeout=60,
            )
            assert r.status_code == 200, r.text
            assert len(r.json()["faces"]) == 1
            (out[key],) = seen.pop()
    finally:
        server.should_exit = True
        thread.join(10)
    return out


def test_every_consumer_feeds_what_the_data_pipeline_gives(saved, faces, monkeypatch):
    name, directory = saved
    root, files = faces
    torch_in, rec = _torch_inputs(directory, files)
    model = rec.runtime.model  # as loaded from the saved directory
    cfg = model.cfg.preprocess
    step = np.asarray(cfg.scale, np.float32)[:, None, None] + 1e-5  # one uint8 step, per channel
    reference = _pipeline_inputs(name, root, model)
    assert set(reference) == set(files)
    consumers = {
        "torch": torch_in,
        "onnx": _onnx_inputs(directory, files),
        "serve": _serve_inputs(directory, files, monkeypatch),
    }
    for key in files:
        a = reference[key]
        assert a.shape == cfg.input_size
        for consumer, inputs in consumers.items():
            x = inputs[key]
            assert x.shape == a.shape, (consumer, key)
            diff = np.abs(x - a)
            assert (diff <= step).all(), f"{name} {consumer} {key}: max |difference| {diff.max():.4g} > one step"

    # the 37x41 crop is stretched as it is, never squared or padded: exactly the one preprocessing definition
    image = np.asarray(Image.open(files["small"]).convert("RGB"))
    np.testing.assert_array_equal(torch_in["small"], preprocess(image, cfg))
    # ... which a square crop with a margin (the geometry of a detected face) would not give
    h, w = image.shape[:2]
    squared = preprocess(crop_face(image, Face((0, 0, w, h), 1.0), rec.margin), cfg)
    assert np.abs(squared - reference["small"]).max() > 10 * step.max()


def test_a_batch_dependent_model_is_fed_one_face_at_a_time():
    from attnfer.preprocess import PreprocessConfig

    batches = []

    def runtime(x):
        batches.append(len(x))
        return np.zeros((len(x), 7), np.float32)

    crops = [_smooth_colour(40, 30, i) for i in range(5)]
    pre = PreprocessConfig(input_size=(3, 32, 32)).to_dict()
    rec = Recognizer(runtime, list(BASIC7), {"preprocess": pre, "batch_dependent": True}, None)
    assert rec.classify(crops).shape == (5, 7) and batches == [1] * 5
    batches.clear()
    Recognizer(runtime, list(BASIC7), {"preprocess": pre, "batch_dependent": False}, None).classify(crops)
    assert batches == [5]


def test_the_margin_comes_from_the_config():
    from attnfer.inference.faces import NoDetector
    from attnfer.preprocess import PreprocessConfig

    rec = Recognizer(None, list(BASIC7), PreprocessConfig(crop_margin=0.5), NoDetector())
    assert rec.margin == 0.5 and Recognizer(None, ["a"], PreprocessConfig(), None, margin=0.1).margin == 0.1
    image = _smooth_colour(41, 37, 0)
    assert rec.crop(image, Face((0, 0, 37, 41), 1.0)) is image  # detector "none": the image is the face
