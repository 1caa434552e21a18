"""The original authors' checkpoint files, imported and compared with the original code's outputs.

Fixtures (``official.py``): files saved the way each original saves them, the inputs, and what the original code
computed from them. Nothing here assumes more than the format: class counts, input sizes and file names are read
from the files (FERAtt's container has its own test file, test_official_feratt.py).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from typer.testing import CliRunner

from attnfer.cli import app
from attnfer.models import (
    OfficialFormatError,
    PretrainedWeightsError,
    convert_checkpoint,
    create_model,
    list_formats,
    load_model,
    save_model,
)
from attnfer.models.patt_lite import KERAS_MOBILENET_URL
from attnfer.models.pretrained import fetch_weight_file
from conftest import serving
from official import official_dir, only_file

runner = CliRunner()
TOL = 1e-4


def _max_diff(a, b) -> float:
    return float(np.abs(np.asarray(a, np.float64) - np.asarray(b, np.float64)).max())


# ------------------------------------------------------------------------------------------------
# PAtt-Lite: the notebook's model.h5 and Keras' ImageNet trunk file
# ------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def patt_dir() -> Path:
    return official_dir("patt_lite_keras")


@pytest.fixture(scope="module")
def patt_inputs(patt_dir) -> torch.Tensor:
    x = np.load(patt_dir / "inputs.npy")  # (N, H, W, 3) RGB pixels 0-255, as the notebook feeds them
    return torch.from_numpy(x).permute(0, 3, 1, 2).contiguous()


def test_patt_lite_keras_matches_the_original_batch_and_single(patt_dir, patt_inputs):
    model = convert_checkpoint(patt_dir / "model.h5", "patt_lite_keras")
    expected = np.load(patt_dir / "expected_probs.npy")
    n, h, w = patt_inputs.shape[0], patt_inputs.shape[2], patt_inputs.shape[3]
    assert model.num_classes == expected.shape[1] and model.cfg.input_size == (3, h, w)
    assert model.class_names == sorted(model.class_names)  # data-compile.ipynb: class folders in sorted order
    assert model.cfg.batch_dependent and model.cfg.mean is None  # raw pixels, scaled inside the model
    assert model.trunk == "keras" and model.attention_mode == "batch"
    with torch.no_grad():
        batch = model(patt_inputs).softmax(-1).numpy()
        single = torch.cat([model(patt_inputs[i : i + 1]) for i in range(n)]).softmax(-1).numpy()
    assert _max_diff(batch, expected) <= TOL
    assert _max_diff(single, np.load(patt_dir / "expected_probs_single.npy")) <= TOL
    # the batch attention is real: predictions of the batch differ from those of each sample alone
    assert _max_diff(batch, single) > 100 * TOL


def test_keras_trunk_takes_the_imagenet_file_and_matches_keras(patt_dir, patt_inputs):
    weights = only_file(patt_dir, "*no_top*.h5")
    model = create_model("patt_lite", trunk="keras", pretrained=weights)
    report = model.pretrained_report
    trunk = {k for k in model.state_dict() if k.startswith("backbone.")}
    assert trunk <= set(report.loaded) and not any(k.startswith("backbone.") for k in report.missing)
    assert len(trunk) == 18 + 18 * 5  # 18 convolutions, 18 BatchNorms (4 tensors and a count each)
    # only the file's layers after conv_dw_9_bn (conv_pw_9 ... conv_pw_13_bn) are left unused
    later = {f"conv_pw_9{s}" for s in ("", "_bn")} | {
        f"conv_{k}_{i}{s}" for k in ("dw", "pw") for i in range(10, 14) for s in ("", "_bn")
    }
    assert report.unused and {k.split("/")[0] for k in report.unused} <= later
    model.eval()
    x = patt_inputs
    if x.shape[-2:] != (224, 224):  # the notebook's Resizing(224, 224) before the trunk
        x = F.interpolate(x, size=(224, 224), mode="bilinear", align_corners=False)
    with torch.no_grad():
        out = model.backbone(x / 127.5 - 1).permute(0, 2, 3, 1).numpy()  # NHWC, as Keras
    expected = np.load(patt_dir / "expected_base_model.npy")
    assert out.shape == expected.shape and _max_diff(out, expected) <= TOL


def test_timm_trunk_differs_from_keras_with_the_same_layout_of_weights():
    """The two trunks are not the same function: Keras pads bottom/right and uses BN epsilon 1e-3."""
    torch.manual_seed(0)
    keras = create_model("patt_lite", trunk="keras").eval()
    timm_ = create_model("patt_lite").eval()
    assert sum(p.numel() for p in keras.backbone.parameters()) == sum(p.numel() for p in timm_.backbone.parameters())
    assert len(keras.backbone.weighted_layers()) == len(timm_.backbone.weighted_layers()) == 36
    x = torch.rand(2, 3, 224, 224)
    assert keras.backbone(x).shape == timm_.backbone(x).shape == (2, 512, 14, 14)
    assert keras.cfg.pretrained.url == KERAS_MOBILENET_URL and timm_.cfg.pretrained.timm == "mobilenetv1_100"
    assert not any("timm mobilenetv1_100" in d for d in keras.cfg.deviations)


def test_keras_weight_file_download_is_cached_and_checked(patt_dir, tmp_path, monkeypatch):
    """pretrained=True: the release file is fetched once into the cache, its sha256 recorded and checked after."""
    monkeypatch.setenv("ATTNFER_CACHE", str(tmp_path / "cache"))
    release_name = KERAS_MOBILENET_URL.rsplit("/", 1)[1]
    weights = tmp_path / "mirror" / release_name
    weights.parent.mkdir()
    shutil.copy(only_file(patt_dir, "*no_top*.h5"), weights)
    url = weights.as_uri()  # a file:// URL stands in for storage.googleapis.com (offline)
    path = fetch_weight_file(url, None)
    assert path == tmp_path / "cache" / "pretrained" / release_name
    assert path.read_bytes() == weights.read_bytes() and path.with_name(release_name + ".sha256").is_file()
    assert fetch_weight_file(url, None) == path  # cached
    with pytest.raises(PretrainedWeightsError, match="sha256"):
        fetch_weight_file(url, "0" * 64)  # a published hash that does not match
    # pretrained=True finds the release file in the cache: no network needed
    model = create_model("patt_lite", trunk="keras", pretrained=True)
    assert model.pretrained_report.source == KERAS_MOBILENET_URL and len(model.pretrained_report.loaded) == 108
    with open(path, "r+b") as f:  # a cached file changed since its download is noticed (recorded sha256)
        f.seek(path.stat().st_size // 2)
        f.write(b"\0" * 64)
    with pytest.raises(PretrainedWeightsError, match="differs from the recorded"):
        create_model("patt_lite", trunk="keras", pretrained=True)


def test_keras_weight_file_offline_error_names_the_file(tmp_path, monkeypatch):
    monkeypatch.setenv("ATTNFER_CACHE", str(tmp_path / "cache"))
    with pytest.raises(PretrainedWeightsError, match=r"mobilenet_1_0_224_tf_no_top\.h5.*pretrained="):
        fetch_weight_file("http://127.0.0.1:9/mobilenet_1_0_224_tf_no_top.h5", None)
    assert not list((tmp_path / "cache" / "pretrained").glob("*.h5"))  # nothing half-written


# ------------------------------------------------------------------------------------------------
# EMO-Net and SA-FER state dicts
# ------------------------------------------------------------------------------------------------
def test_emonet_official_matches_the_released_code(tmp_path):
    folder = official_dir("emonet_official")
    src = only_file(folder, "*.pth")
    # the fixture was computed by the released model/emoNet.py, which hard-codes lambda 0.8
    model = convert_checkpoint(src, "emonet_official", shortcut_weight=0.8)
    with torch.no_grad():
        logits = model(torch.from_numpy(np.load(folder / "inputs.npy"))).numpy()
    expected = np.load(folder / "expected_logits.npy")
    assert model.num_classes == expected.shape[1] and _max_diff(logits, expected) <= TOL
    assert model.cfg.preprocess.crop_pct == pytest.approx(224 / 256) and model.cfg.mean == (0.485, 0.456, 0.406)
    # the shortcut-weight rule: option, else the file name, else the released code's 0.8
    named = tmp_path / "RAFDB_a_0.5_0.913.pth"
    shutil.copy(src, named)
    from_name = convert_checkpoint(named, "emonet_official")
    assert from_name.shortcut_weight == 0.5 and "file name" in from_name.cfg.extra["imported"]["notes"][0]
    plain = tmp_path / "mobileNet-ECA-RAFDB.pth"
    shutil.copy(src, plain)
    default = convert_checkpoint(plain, "emonet_official")
    assert default.shortcut_weight == 0.8 and "hard-coded" in default.cfg.extra["imported"]["notes"][0]
    if model.num_classes == 7:  # the README's RAF-DB order
        assert default.class_names == ["surprise", "fear", "disgust", "happiness", "sadness", "anger", "neutral"]
        affectnet7 = tmp_path / "affectNet7_a_0.6_0.65457.pth"
        shutil.copy(src, affectnet7)
        assert convert_checkpoint(affectnet7, "emonet_official").class_names[:2] == ["neutral", "happiness"]


def test_sa_fer_notebook_matches_the_notebook(tmp_path):
    folder = official_dir("sa_fer_notebook")
    src = only_file(folder, "*.pth")
    model = convert_checkpoint(src, "sa_fer_notebook")
    x = torch.from_numpy(np.load(folder / "inputs.npy"))
    with torch.no_grad():
        logits = model(x).numpy()
    expected = np.load(folder / "expected_logits.npy")
    assert _max_diff(logits, expected) <= TOL
    assert model.cfg.mean == (0.0, 0.0, 0.0) and model.cfg.std == (1.0, 1.0, 1.0)
    # a bare state dict (what torch.save(model.state_dict()) gives) imports the same
    bare = tmp_path / "bare.pth"
    saved = torch.load(src, map_location="cpu", weights_only=True)
    torch.save(saved.get("model_state_dict", saved), bare)
    with torch.no_grad():
        assert torch.equal(convert_checkpoint(bare, "sa_fer_notebook")(x), torch.from_numpy(logits))


# ------------------------------------------------------------------------------------------------
# Bad files and bad class names: one clear error naming the file
# ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("folder", "pattern", "fmt"),
    [
        ("patt_lite_keras", "model.h5", "patt_lite_keras"),
        ("emonet_official", "*.pth", "emonet_official"),
        ("sa_fer_notebook", "*.pth", "sa_fer_notebook"),
    ],
)
def test_truncated_and_foreign_files_are_clear_errors(tmp_path, folder, pattern, fmt):
    src = only_file(official_dir(folder), pattern)
    truncated = tmp_path / f"truncated{src.suffix}"
    truncated.write_bytes(src.read_bytes()[: src.stat().st_size // 2])
    text = tmp_path / f"notes{src.suffix}"
    text.write_text("not a checkpoint\n")
    other = tmp_path / f"other{src.suffix}"
    torch.save({"layer.weight": torch.zeros(3)}, other)
    for bad in (truncated, text, other):
        with pytest.raises(OfficialFormatError) as e:
            convert_checkpoint(bad, fmt)
        assert str(bad) in str(e.value)


def test_a_file_of_another_format_is_refused():
    emonet = only_file(official_dir("emonet_official"), "*.pth")
    with pytest.raises(OfficialFormatError, match="not the SA-FER notebook model"):
        convert_checkpoint(emonet, "sa_fer_notebook")
    sa_fer = only_file(official_dir("sa_fer_notebook"), "*.pth")
    with pytest.raises(OfficialFormatError, match="not an EMO-Net state dict"):
        convert_checkpoint(sa_fer, "emonet_official")


def test_class_names_override_and_its_errors():
    src = only_file(official_dir("sa_fer_notebook"), "*.pth")
    n = convert_checkpoint(src, "sa_fer_notebook").num_classes
    names = ["Happy", "sad", "anger", "fear", "disgust", "surprise", "neutral", "contempt"][:n]
    model = convert_checkpoint(src, "sa_fer_notebook", class_names=names)
    assert model.class_names[:2] == ["happiness", "sadness"]
    with pytest.raises(ValueError, match=f"{n - 1} class names for a model with {n} outputs"):
        convert_checkpoint(src, "sa_fer_notebook", class_names=names[:-1])
    with pytest.raises(ValueError, match="'grumpy' is not an expression name"):
        convert_checkpoint(src, "sa_fer_notebook", class_names=["grumpy", *names[1:]])
    with pytest.raises(ValueError, match="given twice"):
        convert_checkpoint(src, "sa_fer_notebook", class_names=[names[0], *names[:-1]])
    with pytest.raises(ValueError, match="takes no option"):
        convert_checkpoint(src, "sa_fer_notebook", shortcut_weight=0.5)
    with pytest.raises(ValueError, match="unknown checkpoint format 'sa_fer_notebok'; did you mean"):
        convert_checkpoint(src, "sa_fer_notebok")


# ------------------------------------------------------------------------------------------------
# The command line: convert, then predict / evaluate / export / serve the converted checkpoint
# ------------------------------------------------------------------------------------------------
def test_convert_lists_the_registered_formats_and_fails_in_one_line(tmp_path):
    result = runner.invoke(app, ["convert", "--help"], terminal_width=400)
    assert result.exit_code == 0
    for name in list_formats():
        assert name in result.output
    assert {"patt_lite_keras", "emonet_official", "sa_fer_notebook", "feratt_official"} <= set(list_formats())
    bad = tmp_path / "model.h5"
    bad.write_text("nope")
    result = runner.invoke(app, ["convert", str(bad), "--from", "patt_lite_keras", "--out", str(tmp_path / "o")])
    assert result.exit_code == 2 and "error:" in result.output and str(bad) in result.output.replace("\n", "")
    assert "Traceback" not in result.output and not (tmp_path / "o").exists()


@pytest.fixture(scope="module")
def converted(tmp_path_factory) -> dict[str, Path]:
    """The three fixtures converted with `attnfer convert` into checkpoint folders."""
    out = tmp_path_factory.mktemp("converted")
    jobs = {
        "patt_lite_keras": only_file(official_dir("patt_lite_keras"), "model.h5"),
        "emonet_official": only_file(official_dir("emonet_official"), "*.pth"),
        "sa_fer_notebook": only_file(official_dir("sa_fer_notebook"), "*.pth"),
    }
    dirs = {}
    for fmt, src in jobs.items():
        result = runner.invoke(app, ["convert", str(src), "--from", fmt, "--out", str(out / fmt)])
        assert result.exit_code == 0, result.output
        assert "classes (head order)" in result.output
        dirs[fmt] = out / fmt
    return dirs


FIXTURE_INPUTS = {  # format -> (fixture folder, inputs as the model takes them: NCHW)
    "patt_lite_keras": ("patt_lite_keras", lambda a: a.transpose(0, 3, 1, 2)),  # NHWC pixels 0-255
    "emonet_official": ("emonet_official", lambda a: a),  # ImageNet-normalised
    "sa_fer_notebook": ("sa_fer_notebook", lambda a: a),  # [0, 1]
}


@pytest.mark.parametrize("fmt", list(FIXTURE_INPUTS))
def test_converted_checkpoint_reloads_and_exports_with_parity(converted, fmt, tmp_path):
    import onnxruntime as ort

    from attnfer.inference.onnx_export import export_onnx

    model = load_model(converted[fmt]).eval()
    saved = json.loads((converted[fmt] / "config.json").read_text())
    assert saved["config"]["extra"]["imported"]["format"] == fmt
    assert saved["class_names"] == model.class_names and len(model.class_names) == model.num_classes
    folder, layout = FIXTURE_INPUTS[fmt]
    x = np.ascontiguousarray(layout(np.load(official_dir(folder) / "inputs.npy")))
    assert x.shape[1:] == model.cfg.input_size
    with torch.no_grad():
        ref = model(torch.from_numpy(x)).numpy()
    onnx_path = export_onnx(converted[fmt], tmp_path / "model.onnx")
    sess = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    got = sess.run(None, {sess.get_inputs()[0].name: x})[0]
    assert _max_diff(got, ref) <= TOL


@pytest.mark.parametrize("fmt", ["patt_lite_keras", "emonet_official"])
def test_converted_checkpoint_predicts_in_the_originals_class_names(converted, fmt, tmp_path):
    from assets import SINGLE_FACE, fetch

    photo = fetch(SINGLE_FACE)
    out = tmp_path / "pred"
    args = ["predict", str(photo), "-m", str(converted[fmt]), "--detector", "none", "--out", str(out)]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    batch_dependent = json.loads((converted[fmt] / "config.json").read_text())["config"]["batch_dependent"]
    assert ("one face per forward pass" in result.output) == batch_dependent  # the summary line says so
    (face,) = json.loads((out / "predictions.json").read_text())["rows"]
    names = json.loads((converted[fmt] / "config.json").read_text())["class_names"]
    assert face["label"] in names and list(face["probabilities"]) == names


def test_converted_checkpoint_evaluates_on_a_dataset_in_attnfer_order(converted, tmp_path_factory):
    from attnfer.data.synthfer import generate

    root = generate(tmp_path_factory.mktemp("eval") / "synthfer", n=28, size=64, seed=2, workers=1)
    out = tmp_path_factory.mktemp("evalout") / "sa_fer"
    args = ["evaluate", str(converted["sa_fer_notebook"]), "--data", "synthfer", "--root", str(root)]
    result = runner.invoke(app, [*args, "--split", "test", "--samples", "2", "--out", str(out)])
    assert result.exit_code == 0, result.output
    evaluation = json.loads((out / "evaluation.json").read_text())
    assert evaluation["class_names"][:3] == ["neutral", "happiness", "surprise"]  # the dataset's order


def test_converted_batch_dependent_model_is_served_one_face_per_pass(converted, tmp_path):
    """`attnfer serve` on the imported PAtt-Lite (batch attention): a real server on loopback says the model is
    batch-dependent and answers with the original's class names."""
    import httpx
    from PIL import Image

    args = ["-m", str(converted["patt_lite_keras"]), "--detector", "none"]
    with serving(tmp_path, args) as url:
        info = httpx.get(f"{url}/v1/model").json()
        assert info["config"]["batch_dependent"] is True
        names = json.loads((converted["patt_lite_keras"] / "config.json").read_text())["class_names"]
        assert info["class_names"] == names
        rng = np.random.default_rng(0)
        img = tmp_path / "face.png"
        Image.fromarray(rng.integers(0, 255, (160, 160, 3), dtype=np.uint8)).save(img)
        r = httpx.post(f"{url}/v1/predict", files={"file": ("face.png", img.read_bytes(), "image/png")}, timeout=60)
        assert r.status_code == 200, r.text
        (face,) = r.json()["faces"]
        assert face["label"] in names and sum(face["probabilities"].values()) == pytest.approx(1, abs=1e-3)


def test_saved_and_reloaded_conversion_is_identical(tmp_path):
    folder = official_dir("emonet_official")
    model = convert_checkpoint(only_file(folder, "*.pth"), "emonet_official")
    save_model(model, tmp_path / "ckpt")
    again = load_model(tmp_path / "ckpt").eval()
    x = torch.from_numpy(np.load(folder / "inputs.npy"))
    with torch.no_grad():
        assert torch.equal(model(x), again(x))
    assert again.cfg == model.cfg and again.class_names == model.class_names
