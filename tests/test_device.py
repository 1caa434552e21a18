"""Where inference runs: ``--device`` (cpu, cuda, cuda:N, auto) for the torch runtime, ONNX Runtime's providers,
explain, evaluate and serve; a batch-dependent model keeps one face per forward pass on every device.

This machine has no GPU: the CUDA branches are tested through their decision functions (with CUDA made to look
present or absent), and a CUDA request where there is none must be a one-line error, never a silent CPU run."""

import json

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from attnfer.cli import app
from attnfer.data import BASIC7
from attnfer.files import UserError
from attnfer.inference import Recognizer
from attnfer.inference.device import onnx_providers, parse_device, resolve_device
from conftest import build

CPU, CUDA = "CPUExecutionProvider", "CUDAExecutionProvider"
runner = CliRunner()


@pytest.fixture
def no_cuda(monkeypatch):
    """CUDA absent, whatever this machine has (torch and ONNX Runtime alike)."""
    import onnxruntime

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(onnxruntime, "get_available_providers", lambda: ["AzureExecutionProvider", CPU])


# ------------------------------------------------------------------------------------------------ resolve_device
def test_resolve_device_cpu_and_auto_without_cuda(no_cuda):
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("auto") == torch.device("cpu")  # a CPU-only machine: auto is exactly cpu
    assert resolve_device(" CPU ") == torch.device("cpu")


def test_resolve_device_cuda_without_cuda_says_so_and_what_to_use(no_cuda):
    for spec in ("cuda", "cuda:0", "CUDA:1"):
        with pytest.raises(UserError) as e:
            resolve_device(spec)
        message = str(e.value)
        assert "CUDA is not available" in message and "--device cpu" in message and "--device auto" in message
        assert "\n" not in message


def test_resolve_device_with_cuda_present(monkeypatch):
    """The CUDA branch by construction: no GPU is touched (torch.device objects only)."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert resolve_device("auto") == torch.device("cuda", 0)
    assert resolve_device("cuda") == torch.device("cuda", 0)
    assert resolve_device("cuda:1") == torch.device("cuda", 1)
    assert resolve_device("cpu") == torch.device("cpu")  # an explicit cpu stays on the CPU
    with pytest.raises(UserError, match=r"only 2 CUDA devices here \(cuda:0 to cuda:1\)"):
        resolve_device("cuda:2")


@pytest.mark.parametrize("spec", ["gpu", "cuda:", "cuda:x", "cuda0", "", "mps", "cuda:-1"])
def test_bad_device_names_the_expected_values(spec):
    with pytest.raises(UserError, match=r"--device must be cpu, cuda, cuda:N or auto, got"):
        resolve_device(spec)
    with pytest.raises(UserError, match=r"--device must be cpu, cuda, cuda:N or auto"):
        onnx_providers(spec, [CUDA, CPU])
    assert parse_device("cuda:3") == ("cuda", 3)


# ------------------------------------------------------------------------------------------------ onnx_providers
def test_onnx_providers_choice():
    with_cuda = ["TensorrtExecutionProvider", CUDA, CPU]
    cpu_only = ["AzureExecutionProvider", CPU]
    assert onnx_providers("cpu", with_cuda) == [CPU]  # cpu means cpu even where CUDA is installed
    assert onnx_providers("cpu", cpu_only) == [CPU]
    assert onnx_providers("auto", with_cuda) == [CUDA, CPU]
    assert onnx_providers("auto", cpu_only) == [CPU]
    assert onnx_providers("cuda", with_cuda) == [CUDA, CPU]
    assert onnx_providers("cuda:1", with_cuda) == [CUDA, CPU]
    for spec in ("cuda", "cuda:0"):
        with pytest.raises(UserError, match="onnxruntime-gpu") as e:
            onnx_providers(spec, cpu_only)
        assert "--device cpu" in str(e.value) and "AzureExecutionProvider" in str(e.value)


def test_onnx_providers_default_reads_onnxruntime(monkeypatch):
    import onnxruntime

    monkeypatch.setattr(onnxruntime, "get_available_providers", lambda: [CUDA, CPU])
    assert onnx_providers("auto") == [CUDA, CPU]
    monkeypatch.setattr(onnxruntime, "get_available_providers", lambda: [CPU])
    assert onnx_providers("auto") == [CPU]
    with pytest.raises(UserError, match="onnxruntime-gpu"):
        onnx_providers("cuda")


# ------------------------------------------------------------------------------------------------ command line
def _predict(checkpoint, image, out, *extra):
    args = ["predict", str(image), "-m", str(checkpoint), "--detector", "haar", "--out", str(out), *extra]
    r = runner.invoke(app, args)
    assert r.exit_code == 0, (r.output, r.exception)
    return json.loads((out / "predictions.json").read_text())


@pytest.mark.network
@pytest.mark.parametrize("runtime", ["torch", "onnx"])
def test_predict_device_cpu_gives_what_the_default_gives(checkpoint, tmp_path, runtime, no_cuda):
    from assets import SINGLE_FACE, fetch

    image = fetch(SINGLE_FACE)
    model = checkpoint / "model.onnx" if runtime == "onnx" else checkpoint
    default = _predict(model, image, tmp_path / "default", "--runtime", runtime)
    cpu = _predict(model, image, tmp_path / "cpu", "--runtime", runtime, "--device", "cpu")
    assert default["device"] == cpu["device"] == "cpu"
    assert [r["status"] for r in cpu["rows"]] == ["ok"] and cpu["rows"][0]["label"] in BASIC7
    for run in (default, cpu):  # the summary's wall time is the one thing allowed to differ
        assert run["summary"].pop("seconds") >= 0
    assert default == cpu  # header, rows (boxes, labels, probabilities) and summary


def _one_error_line(result, *words):
    assert result.exit_code == 2, (result.exit_code, result.output, result.exception)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert "Traceback" not in result.output
    for w in words:
        assert w in lines[0], (w, lines[0])


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["predict", "x.jpg", "-m", "{ckpt}", "--device", "cuda"], ["--device cuda", "CUDA is not available"]),
        (["predict", "x.jpg", "-m", "{ckpt}", "--device", "cuda:1"], ["--device cpu", "--device auto"]),
        (["predict", "x.jpg", "-m", "{ckpt}", "--runtime", "onnx", "--device", "cuda"], ["onnxruntime-gpu"]),
        (["predict", "x.jpg", "-m", "{ckpt}", "--device", "tpu"], ["cpu, cuda, cuda:N or auto", "'tpu'"]),
        (["explain", "x.jpg", "-m", "{ckpt}", "--out", "{tmp}/x", "--device", "cuda"], ["CUDA is not available"]),
        (["evaluate", "{ckpt}", "--device", "cuda"], ["CUDA is not available"]),
        (["serve", "-m", "{ckpt}", "--device", "cuda"], ["CUDA is not available"]),
        (["serve", "-m", "{ckpt}", "--runtime", "onnx", "--device", "cuda"], ["onnxruntime-gpu"]),
    ],
)
def test_cuda_asked_for_without_cuda_is_one_error_line(tmp_path, args, words, no_cuda):
    """Before any work: the checkpoint given here does not even exist, and nothing is written."""
    ckpt = tmp_path / "missing-model"
    result = runner.invoke(app, [a.format(ckpt=ckpt, tmp=tmp_path) for a in args])
    _one_error_line(result, *words)
    assert not (tmp_path / "x").exists()


# ---------------------------------------------------------------------------------------- Python API and service
def test_recognizer_reports_its_device(checkpoint, no_cuda):
    torch_rec = Recognizer.from_checkpoint(checkpoint, detector="none", device="auto")
    onnx_rec = Recognizer.from_checkpoint(checkpoint, detector="none", runtime="onnx", device="cpu")
    assert (torch_rec.device, onnx_rec.device) == ("cpu", "cpu")
    assert next(torch_rec.runtime.model.parameters()).device == torch.device("cpu")
    assert onnx_rec.runtime.session.get_providers() == [CPU]
    with pytest.raises(UserError, match="CUDA is not available"):
        Recognizer.from_checkpoint(checkpoint, detector="none", device="cuda")
    with pytest.raises(UserError, match="onnxruntime-gpu"):
        Recognizer.from_checkpoint(checkpoint, detector="none", runtime="onnx", device="cuda")


def test_service_reports_the_device(checkpoint, no_cuda):
    from fastapi.testclient import TestClient

    from attnfer.serve import create_app

    rec = Recognizer.from_checkpoint(checkpoint, detector="none", device="cpu")
    info = TestClient(create_app(rec)).get("/v1/model").json()
    assert info["device"] == "cpu" and info["runtime"] == "torch"


def test_evaluate_checks_the_device_before_any_work(tmp_path, no_cuda):
    from attnfer.engine.evaluate import evaluate_checkpoints

    with pytest.raises(UserError, match="CUDA is not available"):
        evaluate_checkpoints(tmp_path / "missing", {"name": "synthfer"}, tmp_path / "out", device="cuda")
    assert not (tmp_path / "out").exists()


# ------------------------------------------------------------------------------------------------ batch dependence
def _faces(n: int, size: int = 64) -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    return [rng.integers(0, 256, (size, size, 3), dtype=np.uint8) for _ in range(n)]


@pytest.fixture(scope="module")
def batch_ckpt(tmp_path_factory):
    """A PAtt-Lite with the original's attention across the batch (config flagged batch_dependent), its BatchNorm
    calibrated on the test faces so that batch-mates visibly change each other's outputs (as trained features do;
    see test_models' batch-independence check)."""
    from attnfer.preprocess import preprocess_batch

    model = build("patt_lite", class_names=list(BASIC7), attention="batch", resize_to=112).eval()  # small: fast
    x = torch.from_numpy(preprocess_batch(_faces(3), model.cfg.preprocess))
    with torch.no_grad():
        h = torch.relu(model.pre_fc(model.forward_features(x).mean((2, 3))))  # (B, 32) pre-BN features
        bn, var = model.pre_bn, h.var(0) + 1e-12  # unit-scale features; eps is not saved, so the weight says it
        bn.running_mean.copy_(h.mean(0))
        bn.running_var.copy_(var)
        bn.weight.copy_(0.3 * (var + bn.eps).sqrt() / var.sqrt())
        bn.bias.fill_(1.0)
        batched, alone = model(x), torch.cat([model(x[i : i + 1]) for i in range(3)])
    assert (batched - alone).abs().max() > 0.05  # the model really mixes the faces of a batch
    d = model.save(tmp_path_factory.mktemp("b") / "m")
    assert json.loads((d / "config.json").read_text())["config"]["batch_dependent"] is True
    return d


def _batch_sizes(model: torch.nn.Module) -> list[int]:
    sizes: list[int] = []
    model.register_forward_hook(lambda _m, args, _out: sizes.append(int(args[0].shape[0])))
    return sizes


def test_batch_dependent_model_gets_one_face_per_forward_pass(batch_ckpt, checkpoint, no_cuda):
    faces = _faces(3)
    rec = Recognizer.from_checkpoint(batch_ckpt, detector="none", device="cpu")
    assert rec.batch_dependent and rec.runtime.batch_dependent
    sizes = _batch_sizes(rec.runtime.model)
    together = rec.classify(faces)
    assert sizes == [1, 1, 1]
    alone = np.concatenate([rec.classify([f]) for f in faces])
    np.testing.assert_array_equal(together, alone)  # a face's result never depends on the other faces
    with torch.no_grad():  # which it would in one batch
        mixed = rec.runtime.model(torch.from_numpy(rec.preprocess(faces))).softmax(1).numpy()
    assert np.abs(mixed - together).max() > 0.01
    # the runtime itself splits a batch too (a caller that hands it one, e.g. a custom classify)
    sizes.clear()
    rec.runtime(rec.preprocess(faces))
    assert sizes == [1, 1, 1]
    # and the check can fail: a batch-independent model gets the faces as one batch
    plain = Recognizer.from_checkpoint(checkpoint, detector="none", device="cpu")
    plain_sizes = _batch_sizes(plain.runtime.model)
    plain.classify(faces)
    assert not plain.batch_dependent and plain_sizes == [3]


def test_batch_dependent_model_in_onnx_is_run_one_face_at_a_time(batch_ckpt, tmp_path, no_cuda):
    from attnfer.inference.onnx_export import export_onnx

    faces = _faces(3)
    path = export_onnx(batch_ckpt, tmp_path / "model.onnx")
    rec = Recognizer.from_checkpoint(path, detector="none", runtime="onnx", device="auto")
    assert rec.batch_dependent and rec.device == "cpu"
    x = rec.preprocess(faces)
    batched = rec.runtime.session.run(None, {"input": x})[0]  # the graph really mixes the faces of a batch
    alone = np.concatenate([rec.runtime.session.run(None, {"input": x[i : i + 1]})[0] for i in range(3)])
    assert np.abs(batched - alone).max() > 0.05
    np.testing.assert_allclose(rec.runtime(x), alone, rtol=0, atol=0)


def test_explain_runs_on_the_models_device(checkpoint, tmp_path, no_cuda):
    from attnfer.inference.explain import explain_files

    image = tmp_path / "face.png"
    Image.fromarray(_faces(1, 96)[0]).save(image)
    rec = Recognizer.from_checkpoint(checkpoint, detector="none", device="cpu")
    summary = explain_files(rec, [image], tmp_path / "out")
    assert [p.name for p, _ in summary.written] == ["face_face1.png"] and not summary.errors


# ------------------------------------------------------------------------------------------------ INT8 export speed
def test_int8_convolutions_sharing_a_bias_are_all_quantised(tmp_path):
    """The exporter stores equal tensors once (zero biases); a convolution whose bias is shared with an Add used to
    stay float in the INT8 model (DequantizeLinear -> Conv -> QuantizeLinear; PAtt-Lite's stem: 17% of its INT8
    time). The export gives each node its own copy, so ONNX Runtime runs every convolution as a QLinearConv."""
    import warnings
    from collections import Counter

    import onnx
    import onnxruntime as ort

    from attnfer.inference.onnx_export import _quantize

    class Tiny(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv, self.conv2 = torch.nn.Conv2d(3, 8, 3, 2), torch.nn.Conv2d(8, 8, 3)
            self.fc = torch.nn.Linear(8, 8)
            for m in (self.conv, self.conv2, self.fc):
                torch.nn.init.zeros_(m.bias)

        def forward(self, x):  # a Linear on tokens: MatMul + Add, the Add's constant being the shared zero bias
            return self.fc(torch.relu(self.conv2(torch.relu(self.conv(x)))).flatten(2).transpose(1, 2)).mean(1)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            Tiny().eval(),
            (torch.zeros(2, 3, 32, 32),),
            str(tmp_path / "fp32.onnx"),
            input_names=["input"],
            output_names=["logits"],
            dynamic_axes={"input": {0: "batch"}},
            opset_version=17,
            dynamo=False,
        )
    graph = onnx.load(str(tmp_path / "fp32.onnx")).graph
    inits = {t.name for t in graph.initializer}
    assert max(Counter(i for n in graph.node for i in n.input if i in inits).values()) > 1  # the shared bias
    calibration = np.random.default_rng(0).standard_normal((8, 3, 32, 32)).astype(np.float32)
    _quantize(tmp_path / "fp32.onnx", tmp_path / "int8.onnx", calibration)
    options = ort.SessionOptions()
    options.optimized_model_filepath = str(tmp_path / "optimized.onnx")
    ort.InferenceSession(str(tmp_path / "int8.onnx"), options, providers=[CPU])
    ops = Counter(n.op_type for n in onnx.load(str(tmp_path / "optimized.onnx")).graph.node)
    assert ops["QLinearConv"] == 2 and ops["Conv"] == 0, ops
