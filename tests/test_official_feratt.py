"""FERAtt's official checkpoint container (format ``feratt_official``) against the original's outputs.

The fixture folder (``$ATTNFER_OFFICIAL_FIXTURES/feratt_official``) holds the official state-dict layout, a fill
rule, a script that writes the ~185 MB container the trainer saves, inputs and the official forward's outputs for
those weights. The container is written once per module into a temporary folder. Nothing is assumed about the
fixture beyond its format: class count, image size and the number of samples are read from its files.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from attnfer.data import CANONICAL
from attnfer.models import FERAtt, create_model, load_model, save_model
from attnfer.models._formats import OfficialFormatError, convert_checkpoint, get_format
from official import official_dir

FORMAT = "feratt_official"
OUTPUTS = {  # forward_train key -> expected file (the official forward's y, att, g_att, g_ft)
    "logits": "expected_logits.npy",
    "attention_image": "expected_attention_image.npy",
    "attention_map": "expected_attention_map.npy",
    "features": "expected_features.npy",
}
RTOL = 1e-4  # of max |expected|


@pytest.fixture(scope="module")
def fixture_dir() -> Path:
    folder = official_dir(FORMAT)
    assert (folder / "make_official_container.py").is_file(), f"{folder} lacks make_official_container.py"
    return folder


@pytest.fixture(scope="module")
def layout(fixture_dir) -> dict:
    return json.loads((fixture_dir / "keys_shapes.json").read_text())


@pytest.fixture(scope="module")
def container(fixture_dir, tmp_path_factory) -> Path:
    """The official container, written by the fixture's own script (run from another directory, as documented)."""
    out = tmp_path_factory.mktemp("feratt_official") / "model_best.pth.tar"
    subprocess.run(
        [sys.executable, str(fixture_dir / "make_official_container.py"), str(out)],
        cwd=out.parent,
        check=True,
        capture_output=True,
    )
    return out


@pytest.fixture(scope="module")
def converted(container) -> FERAtt:
    return convert_checkpoint(container, FORMAT)


@pytest.fixture(scope="module")
def inputs(fixture_dir) -> torch.Tensor:
    return torch.from_numpy(np.load(fixture_dir / "inputs.npy"))


def _close(got: torch.Tensor, expected: np.ndarray, what: str) -> float:
    got = got.detach().float().numpy()
    assert got.shape == expected.shape, f"{what}: shape {got.shape} vs expected {expected.shape}"
    diff = float(np.abs(got - expected).max())
    scale = float(np.abs(expected).max())
    assert diff <= RTOL * scale, f"{what}: max |diff| {diff:.3g} > {RTOL} x max |expected| {scale:.3g}"
    return diff


def test_format_registered():
    spec = get_format(FORMAT)
    assert spec.model == "feratt" and spec.options == ()
    assert "model_best.pth.tar" in spec.description


def test_outputs_match_official(converted, inputs, fixture_dir):
    assert not converted.training
    with torch.no_grad():
        out = converted.forward_train(inputs)
        logits = converted(inputs)
    for key, name in OUTPUTS.items():
        _close(out[key], np.load(fixture_dir / name), key)
    torch.testing.assert_close(logits, out["logits"], rtol=0, atol=0)
    assert "embedding" not in out  # the official netclass has no representation layer


def test_each_sample_alone_matches_the_batch(converted, inputs, fixture_dir):
    expected = {key: np.load(fixture_dir / name) for key, name in OUTPUTS.items()}
    with torch.no_grad():
        for i in range(inputs.shape[0]):
            out = converted.forward_train(inputs[i : i + 1])
            for key in OUTPUTS:
                _close(out[key], expected[key][i : i + 1], f"{key}[{i}] alone")


def test_model_config_and_notes(converted, layout, inputs):
    n, size = layout["num_classes"], layout["imsize"]
    assert converted.num_classes == n and converted.layout == "code" and converted.representation_dim is None
    assert tuple(inputs.shape[1:]) == (3, size, size)
    assert converted.class_names == list(CANONICAL[:n])
    pre = converted.cfg.preprocess
    assert pre.input_size == (3, size, size) and converted.input_size == size
    assert pre.interpolation == "bilinear" and not pre.antialias and pre.crop_pct == 1.0 and pre.grayscale
    assert pre.mean == (0.0, 0.0, 0.0) and pre.std == (1.0, 1.0, 1.0)
    imported = converted.cfg.extra["imported"]
    assert imported["format"] == FORMAT and imported["file"] == "model_best.pth.tar"
    notes = " ".join(imported["notes"])
    assert "epoch" in notes and "prec" in notes and "optimizer state was ignored" in notes


def test_roundtrip_through_save_and_load(converted, inputs, layout, tmp_path):
    save_model(converted, tmp_path / "model")
    loaded = load_model(tmp_path / "model").eval()
    with torch.no_grad():
        assert torch.equal(loaded(inputs), converted(inputs))
    n, size = layout["num_classes"], layout["imsize"]
    pre = loaded.cfg.preprocess
    assert pre.input_size == (3, size, size) and pre.grayscale and not pre.antialias
    assert pre.mean == (0.0, 0.0, 0.0) and pre.std == (1.0, 1.0, 1.0)
    assert loaded.class_names == list(CANONICAL[:n]) and loaded.cfg.class_names == tuple(CANONICAL[:n])
    assert loaded.cfg.extra["imported"]["format"] == FORMAT


# ---- files that are not the container --------------------------------------------------------------------------
def _small_container(**changes) -> dict:
    ck = {
        "epoch": 3,
        "arch": "ferattention",
        "imsize": 64,
        "num_output_channels": 32,
        "num_input_channels": 3,
        "num_classes": 8,
        "state_dict": {"conv_input.weight": torch.zeros(8, 3, 9, 9)},
        "prec": torch.tensor(50.0),
        "optimizer": {},
    }
    ck.update(changes)
    return ck


def _expect_error(path: Path, *fragments: str) -> None:
    with pytest.raises(OfficialFormatError) as info:
        convert_checkpoint(path, FORMAT)
    msg = str(info.value)
    assert path.name in msg
    for fragment in fragments:
        assert fragment in msg, msg


def test_truncated_container(container, tmp_path):
    cut = tmp_path / "chk000010.pth.tar"
    with open(container, "rb") as src:
        cut.write_bytes(src.read(container.stat().st_size // 2))
    _expect_error(cut, "not readable")


def test_foreign_files(tmp_path):
    other = tmp_path / "resnet_state.pth"
    torch.save(torch.nn.Linear(4, 2).state_dict(), other)
    _expect_error(other, "not a ferattention training checkpoint")
    text = tmp_path / "notes.pth.tar"
    text.write_text("not a checkpoint\n")
    _expect_error(text, "not readable")
    missing = tmp_path / "absent.pth.tar"
    _expect_error(missing, "not found")


@pytest.mark.parametrize(
    ("changes", "fragment"),
    [
        ({"arch": "ferattentiongmm"}, "'ferattentiongmm'"),
        ({"num_input_channels": 1}, "num_input_channels 1"),
        ({"imsize": 48}, "imsize 48"),
        ({"state_dict": {"conv_input.weight": torch.zeros(8, 3, 9, 9)}}, "not in the file"),
        ({"state_dict": {"netclass.fc.weight": torch.zeros(8, 512)}}, "netclass.fc.weight"),
    ],
)
def test_containers_that_do_not_fit(tmp_path, changes, fragment):
    path = tmp_path / "chk000003.pth.tar"
    torch.save(_small_container(**changes), path)
    _expect_error(path, fragment)


def test_alias_keys_must_equal_their_tensor(tmp_path):
    sd = {"attention_map.encoder.conv1.weight": torch.zeros(2), "attention_map.conv1.0.weight": torch.ones(2)}
    path = tmp_path / "chk000001.pth.tar"
    torch.save(_small_container(state_dict=sd), path)
    _expect_error(path, "attention_map.conv1.0.weight", "differ")


# ---- the pooling rule at non-default sizes (spec 2(e): pool 4 in the paper era, 2 at HEAD) -----------------------
@pytest.mark.parametrize(("layout_name", "size", "seen"), [("code", 128, 64), ("paper", 64, 16), ("code", 64, 32)])
def test_attention_image_is_pooled_by_the_layouts_factor(layout_name, size, seen):
    m = create_model("feratt", num_classes=3, layout=layout_name, representation_dim=None).eval()
    got = {}

    def record(module, args):
        got["x"] = args[0]

    handle = m.classifier.conv1.register_forward_pre_hook(record)
    with torch.no_grad():
        _, _, I_att = m.forward_attention(torch.rand(1, 3, size, size))
        m(torch.rand(1, 3, size, size))
    handle.remove()
    assert got["x"].shape == (1, 3, seen, seen)
    k = size // seen
    bridged = m._bridge(I_att)
    if layout_name == "code":
        I_att = I_att * m.bridge_scale + m.bridge_shift
    torch.testing.assert_close(bridged, torch.nn.functional.avg_pool2d(I_att, k))


def test_seven_class_container_gets_the_bu3dfe_class_order(tmp_path):
    """A 7-class (BU-3DFE) container written from one of our models through the inverse of the importer's table,
    with the alias keys and the unused fc the trainer also saves: same outputs, the first 7 canonical names."""
    from attnfer.models.feratt import _OFFICIAL_ALIASES, _official_module_table

    ours = create_model("feratt", num_classes=7, layout="code", representation_dim=None).eval()
    to_official = {v: k for k, v in _official_module_table().items()}
    sd = {}
    for key, value in ours.state_dict().items():
        module, _, leaf = key.rpartition(".")
        sd[f"{to_official[module]}.{leaf}"] = value.clone()
    for alias, canonical in _OFFICIAL_ALIASES.items():
        for key in [k for k in sd if k.startswith(canonical)]:
            sd[alias + key[len(canonical) :]] = sd[key]
    sd["attention_map.encoder.fc.weight"] = torch.zeros(1000, 512)
    sd["attention_map.encoder.fc.bias"] = torch.zeros(1000)
    path = tmp_path / "chk000007.pth.tar"
    torch.save(_small_container(num_classes=7, state_dict=sd, epoch=7), path)
    model = convert_checkpoint(path, FORMAT)
    assert model.class_names == list(CANONICAL[:7]) and "contempt" not in model.class_names
    x = torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(model(x), ours(x))
    assert "epoch 7" in " ".join(model.cfg.extra["imported"]["notes"])


# ---- the command line on the converted checkpoint: convert, predict, export (parity), evaluate --------------------
@pytest.fixture(scope="module")
def converted_dir(container, tmp_path_factory) -> Path:
    from typer.testing import CliRunner

    from attnfer.cli import app

    out = tmp_path_factory.mktemp("feratt_cli") / "ckpt"
    result = CliRunner().invoke(app, ["convert", str(container), "--from", FORMAT, "--out", str(out)])
    assert result.exit_code == 0, result.output
    return out


def test_converted_checkpoint_exports_with_parity(converted_dir, inputs, tmp_path):
    import onnxruntime as ort

    from attnfer.inference.onnx_export import export_onnx

    model = load_model(converted_dir).eval()
    with torch.no_grad():
        ref = model(inputs).numpy()
    sess = ort.InferenceSession(
        str(export_onnx(converted_dir, tmp_path / "m.onnx")), providers=["CPUExecutionProvider"]
    )
    got = sess.run(None, {sess.get_inputs()[0].name: inputs.numpy()})[0]
    assert float(np.abs(got - ref).max()) <= 1e-4 * max(1.0, float(np.abs(ref).max()))


def test_converted_checkpoint_predicts_and_evaluates_on_a_7_class_set(converted_dir, tmp_path):
    from typer.testing import CliRunner

    from attnfer.cli import app
    from attnfer.data.synthfer import generate

    runner = CliRunner()
    names = json.loads((converted_dir / "config.json").read_text())["class_names"]
    face = tmp_path / "face.png"
    from PIL import Image

    Image.fromarray(np.random.default_rng(0).integers(0, 255, (90, 80, 3), dtype=np.uint8)).save(face)
    result = runner.invoke(
        app, ["predict", str(face), "-m", str(converted_dir), "--detector", "none", "--out", str(tmp_path / "p")]
    )
    assert result.exit_code == 0, result.output
    (row,) = json.loads((tmp_path / "p" / "predictions.json").read_text())["rows"]
    assert list(row["probabilities"]) == names and row["label"] in names
    if "contempt" not in names:
        return
    root = generate(tmp_path / "synthfer", n=28, size=64, seed=2, workers=1)  # 7 classes, attnfer's order
    out = tmp_path / "eval"
    args = ["evaluate", str(converted_dir), "--data", "synthfer", "--root", str(root), "--split", "test"]
    result = runner.invoke(app, [*args, "--samples", "2", "--out", str(out)])
    assert result.exit_code == 0, result.output
    text = json.dumps(json.loads((out / "evaluation.json").read_text()))
    assert "contempt" in text  # reported as left out of the decision
    assert "contempt" in (out / "report.html").read_text()
