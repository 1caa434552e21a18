"""ONNX export with the model's whole config in the metadata, and INT8 via ONNX Runtime.

``export_onnx(model_dir, out)`` writes the model's graph with a dynamic batch axis (input ``input`` (B, 3, H, W)
float32, already preprocessed as the model's config says; output ``logits`` (B, C)). Metadata keys:
``attnfer.config`` (JSON: the model's whole config, ``model.cfg.to_dict()``, whose ``preprocess`` is the
:class:`~attnfer.preprocess.PreprocessConfig` the ONNX runtime preprocesses with), ``attnfer.class_names`` (JSON
list), ``attnfer.model`` and ``attnfer.version``. ``int8=True`` adds static INT8 quantisation (QDQ, per-channel
weights) calibrated on the (preprocessed) images you pass, or on SynthFER faces rendered on the fly and preprocessed
by the model's evaluation transform.
"""

from __future__ import annotations

import json
import os
import tempfile
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn as nn

from .. import __version__
from ..files import apply_umask, check_output_path
from ..models import load_model

__all__ = ["export_onnx", "read_metadata"]


def _calibration_images(model: nn.Module, n: int, seed: int = 0) -> np.ndarray:
    """n SynthFER faces through the model's evaluation transform: (n, 3, H, W) float32."""
    from ..data.synthfer import render
    from ..preprocess.torch_ops import build_transform

    tf = build_transform(model.cfg)
    out = [tf(render(seed, i, size=112, person=i).image) for i in range(n)]
    return torch.stack(out).numpy().astype(np.float32)


def export_onnx(
    source: str | Path | nn.Module,
    out: str | Path,
    int8: bool = False,
    calibration: np.ndarray | None = None,
    opset: int = 17,
) -> Path:
    """Export a saved model directory (or a registry-built model) to ONNX at ``out``; returns ``out``.

    ``calibration``: preprocessed inputs (N, 3, H, W) for the INT8 calibration (default: 64 SynthFER faces).
    A directory at ``out``, or a file among its parents, fails before any work
    (:class:`~attnfer.files.OutputPathError`); the file gets the usual permissions (0666 less the umask).
    """
    import onnx

    out = check_output_path(out, "", "file")
    model = load_model(source) if not isinstance(source, nn.Module) else source
    model.eval()
    cfg = model.cfg
    out.parent.mkdir(parents=True, exist_ok=True)
    dummy = torch.zeros(2, *cfg.input_size, device=next(model.parameters()).device)
    with tempfile.TemporaryDirectory(dir=out.parent) as tmp:
        fp32 = Path(tmp) / "model.onnx"
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # tracer warnings about shape asserts, which hold for every batch size
            torch.onnx.export(
                model,
                (dummy,),
                str(fp32),
                input_names=["input"],
                output_names=["logits"],
                dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}},
                opset_version=opset,
                dynamo=False,
            )
        graph = onnx.load(str(fp32))
        meta = {
            "attnfer.model": getattr(model, "model_name", type(model).__name__),
            "attnfer.version": __version__,
            "attnfer.class_names": json.dumps(model.output_names),
            "attnfer.config": json.dumps(cfg.to_dict()),
        }
        for k, v in meta.items():
            entry = graph.metadata_props.add()
            entry.key, entry.value = k, v
        onnx.save(graph, str(fp32))
        final = fp32
        if int8:
            final = Path(tmp) / "model.int8.onnx"
            _quantize(fp32, final, calibration if calibration is not None else _calibration_images(model, 64))
            q = onnx.load(str(final))
            del q.metadata_props[:]
            for k, v in {**meta, "attnfer.quantization": "int8 static QDQ, per-channel weights"}.items():
                entry = q.metadata_props.add()
                entry.key, entry.value = k, v
            onnx.save(q, str(final))
        apply_umask(final)  # whatever the writers did, as a plain open() would have
        os.replace(final, out)
    return out


def _quantize(src: Path, dst: Path, calibration: np.ndarray) -> None:
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.batches = iter([{"input": calibration[i : i + 8]} for i in range(0, len(calibration), 8)])

        def get_next(self) -> dict | None:
            return next(self.batches, None)

    prepped = dst.with_name("prepped.onnx")
    quant_pre_process(str(src), str(prepped), skip_symbolic_shape=True)
    _unshare_initializers(prepped)
    quantize_static(
        str(prepped),
        str(dst),
        Reader(),
        quant_format=QuantFormat.QDQ,
        per_channel=True,
        activation_type=QuantType.QUInt8,
        weight_type=QuantType.QInt8,
    )


def _unshare_initializers(path: Path) -> int:
    """Give every node its own copy of each initializer it shares with another node; returns the copies made.

    The exporter and ONNX Runtime's pre-processing store equal tensors once (the zero biases of a fresh or
    BN-folded model, a ones vector). The quantiser then quantises the shared tensor for its first consumer (e.g. as
    an int8 weight of a Gemm) and a convolution that shares it as its bias loses its int32 bias, so ONNX Runtime
    cannot fuse it into a QLinearConv and runs it in float between a DequantizeLinear and a QuantizeLinear (measured:
    a MobileNetV1 trunk's stem convolution, 17% of the INT8 model's time at batch 32)."""
    import onnx

    model = onnx.load(str(path))
    graph = model.graph
    inits = {t.name: t for t in graph.initializer}
    seen: set[str] = set()
    copies = 0
    for node in graph.node:
        for k, name in enumerate(node.input):
            if name not in inits:
                continue
            if name not in seen:
                seen.add(name)
                continue
            copies += 1
            twin = onnx.TensorProto()
            twin.CopyFrom(inits[name])
            twin.name = f"{name}__attnfer_copy{copies}"
            graph.initializer.append(twin)
            node.input[k] = twin.name
    if copies:
        onnx.save(model, str(path))
    return copies


def read_metadata(path: str | Path) -> dict[str, Any]:
    """The attnfer metadata of an exported model (``config``, ``class_names``, ``model``, ...), JSON decoded."""
    import onnxruntime as ort

    meta = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).get_modelmeta().custom_metadata_map
    out: dict[str, Any] = {}
    for k, v in meta.items():
        if k.startswith("attnfer."):
            key = k.split(".", 1)[1]
            try:
                out[key] = json.loads(v)
            except json.JSONDecodeError:
                out[key] = v
    return out
