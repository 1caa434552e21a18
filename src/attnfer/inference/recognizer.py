"""Expression recognition on real images: detect faces, crop, preprocess as the model's config says, classify.

    >>> from attnfer.inference import Recognizer
    >>> rec = Recognizer.from_checkpoint("runs/quickstart-.../best", detector="auto", runtime="torch")
    >>> for face in rec.predict("photo.jpg"):
    ...     print(face.box, face.label, face.probabilities)

Both runtimes preprocess through :mod:`attnfer.preprocess` (its numpy backend) from the model's
:class:`~attnfer.preprocess.PreprocessConfig`: the torch runtime reads it from the saved model's config, the ONNX
runtime (``runtime="onnx"``: an exported ``model.onnx``, or a directory holding one) from the ONNX metadata, so
that path needs no torch. ``device`` (``cpu``, ``cuda``, ``cuda:N``, ``auto``: :mod:`.device`) chooses where the model
runs: the torch module's device, or ONNX Runtime's execution providers; faces are always detected, cropped and
preprocessed on the CPU. A detected face is cropped square with the config's ``crop_margin`` around its box; with
``detector="none"`` the whole image is the face and goes to the preprocessing as it is (stretched to the input
size, as the data pipeline does).

A :class:`Recognizer` may be shared by threads: see its docstring.
"""

from __future__ import annotations

import contextlib
import json
import threading
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np

from ..files import UserError
from ..images import ImageReadError, read_rgb
from ..preprocess import PreprocessConfig, as_preprocess, preprocess_batch
from .checkpoints import ModelOrigin, model_origin, resolve_checkpoint
from .device import CUDA_PROVIDER, onnx_device_id, onnx_providers, parse_device, resolve_device
from .faces import Face, FaceDetector, create_detector, crop_face
from .video import BoxTracker, VideoSource

__all__ = ["FaceResult", "FrameResult", "ImageReadError", "Recognizer", "read_rgb"]


@dataclass
class FaceResult:
    source: str
    box: tuple[int, int, int, int]
    detector_score: float
    label: str
    probabilities: dict[str, float] = field(default_factory=dict)
    frame: int | None = None
    timestamp: float | None = None

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["box"] = list(self.box)
        return d


@dataclass
class FrameResult:
    """The faces of one video frame; ``image`` (RGB) is kept only when asked for (annotation)."""

    source: str
    frame: int
    timestamp: float
    faces: list[FaceResult]
    detected: bool  # whether the detector ran on this frame (else its boxes were tracked)
    image: np.ndarray | None = None


class Recognizer:
    """Faces in, expressions out, for one model behind a runtime (a callable: float32 (N, 3, H, W) -> logits (N, C)).

    Args:
        runtime: the model; ``from_checkpoint`` builds a torch or an ONNX Runtime one.
        class_names: names of the C outputs.
        config: the model's config: its dict form (``ModelCfg.to_dict()``, as in ``config.json`` and the ONNX
            metadata), a ``ModelCfg``, or only a :class:`~attnfer.preprocess.PreprocessConfig` (or its dict).
        detector: the face detector.
        margin: margin around a detected face box (fraction of its larger side); None: the config's
            ``crop_margin``.
        model_name: the registered model's name (shown by the service).
        checkpoint: the path it was loaded from (``from_checkpoint``), or None.

    Attributes:
        config: the model's whole config as a dict (``{"preprocess": ...}`` at least).
        pre_cfg: its :class:`~attnfer.preprocess.PreprocessConfig`, the only preprocessing there is.
        batch_dependent: the model's outputs depend on the rest of the batch; it is fed one face at a time.
        device: where the model runs (``cpu``, ``cuda:0``; a custom runtime's ``device`` attribute, else ``cpu``).
        origin: what the model was trained on or imported from (:class:`~.checkpoints.ModelOrigin`: its
            ``description`` and, for a SynthFER model, a ``warning``), read from the config.
        detector: the face detector; after ``auto`` fell back from BlazeFace, ``detector.fallback_reason`` says why
            and ``detector.hint`` how to fix it.

    Threads: one Recognizer may be shared by any number of threads (a web server's workers, a thread pool over a
    folder): ``predict``, ``predict_video`` and ``classify`` keep no state between calls, and each call's results
    are what the same call gives alone. The detectors and runtimes attnfer builds are thread-safe (the Haar cascade is
    one OpenCV classifier per thread, the SSD runs one call at a time, BlazeFace and the ONNX runtime are ONNX
    Runtime sessions, the torch runtime is a module in eval mode under ``no_grad``). A detector or runtime of your
    own is called by one thread at a time unless it has ``thread_safe = True``. Calls in parallel share the CPU
    cores: throughput grows only while the runtime's own threads leave cores idle.
    """

    def __init__(
        self,
        runtime: Any,
        class_names: list[str],
        config: Any,
        detector: FaceDetector,
        margin: float | None = None,
        model_name: str = "",
        checkpoint: str | Path | None = None,
    ) -> None:
        if isinstance(config, PreprocessConfig):
            config = {"preprocess": config.to_dict()}
        elif not isinstance(config, dict):
            config = config.to_dict()  # a ModelCfg
        self.pre_cfg = as_preprocess(config)
        if "preprocess" not in config:  # the dict of a PreprocessConfig alone
            config = {"preprocess": self.pre_cfg.to_dict()}
        self.config = dict(config)
        self.batch_dependent = bool(config.get("batch_dependent", False))
        self.runtime, self.class_names, self.detector = runtime, list(class_names), detector
        self.margin = self.pre_cfg.crop_margin if margin is None else float(margin)
        self.model_name = model_name
        self.checkpoint = Path(checkpoint) if checkpoint is not None else None
        self.origin: ModelOrigin = model_origin(model_name, self.config, self.checkpoint)
        self._detect_lock, self._runtime_lock = threading.Lock(), threading.Lock()

    @staticmethod
    def _serialised(part: Any, lock: threading.Lock) -> contextlib.AbstractContextManager:
        """No lock for a part that says it is ``thread_safe``, else ``lock`` (one call at a time)."""
        return contextlib.nullcontext() if getattr(part, "thread_safe", False) else lock

    def detect(self, image: np.ndarray) -> list[Face]:
        """The detector's faces in an RGB image (safe to call from several threads)."""
        with self._serialised(self.detector, self._detect_lock):
            return self.detector.detect(image)

    @classmethod
    def from_checkpoint(
        cls,
        path: str | Path,
        detector: str | FaceDetector = "auto",
        runtime: str = "torch",
        device: str = "auto",
        margin: float | None = None,
    ) -> Recognizer:
        """A recognizer for a saved model directory (``runtime="torch"``) or an exported ONNX file or a directory
        holding ``model.onnx`` (``runtime="onnx"``); ``latest`` is the newest run's best checkpoint
        (:func:`~.checkpoints.resolve_checkpoint`). ``margin`` overrides the config's ``crop_margin``.

        ``device``: ``cpu``, ``cuda``, ``cuda:N`` or ``auto`` (CUDA when there is a GPU, else the CPU), as
        :func:`~.device.resolve_device` (torch) and :func:`~.device.onnx_providers` (ONNX Runtime) read it; asking
        for CUDA where there is none is a :class:`~attnfer.files.UserError`, checked before the model is loaded."""
        if runtime not in ("torch", "onnx"):
            raise ValueError(f"runtime must be torch or onnx, got {runtime!r}")
        parse_device(device)  # a bad value fails before any work
        path = resolve_checkpoint(path, runtime)
        rt: _TorchRuntime | _OnnxRuntime
        rt = (
            _OnnxRuntime(path / "model.onnx" if path.is_dir() else path, device)
            if runtime == "onnx"
            else _TorchRuntime(path, device)
        )
        # after the model: no download. The detectors stay on the CPU whatever ``device`` says: they are small
        # (BlazeFace's ONNX Runtime session, OpenCV's SSD and Haar) and run on the whole image, which is on the CPU.
        det = create_detector(detector) if isinstance(detector, str) else detector
        return cls(rt, rt.class_names, rt.config, det, margin, model_name=rt.model_name, checkpoint=path)

    @property
    def runtime_name(self) -> str:
        """``torch``, ``onnx``, or the class name of a custom runtime."""
        return getattr(self.runtime, "name", type(self.runtime).__name__)

    @property
    def device(self) -> str:
        """Where the model runs: ``cpu``, ``cuda:0``, ... (a custom runtime's ``device`` attribute, else ``cpu``)."""
        return str(getattr(self.runtime, "device", "cpu"))

    # ---- faces and preprocessing -----------------------------------------------------------------
    def crop(self, image: np.ndarray, face: Face) -> np.ndarray:
        """The face image to classify: the whole image when the detector does not detect (``detector="none"``),
        else the square crop with ``margin`` around the box (eyes levelled when the detector gives keypoints)."""
        if getattr(self.detector, "whole_image", False):
            return image
        return crop_face(image, face, self.margin)

    def preprocess(self, crops: list[np.ndarray]) -> np.ndarray:
        """RGB uint8 face images -> (N, 3, H, W) float32, by :func:`attnfer.preprocess.preprocess_batch` with the
        model's config (the same pixels training and evaluation see)."""
        return preprocess_batch(crops, self.pre_cfg)

    def predict(self, image: str | Path | np.ndarray, source: str | None = None) -> list[FaceResult]:
        """One result per detected face (an empty list when there is none)."""
        if isinstance(image, (str, Path)):
            source = source or str(image)
            image = read_rgb(image)
        faces = self.detect(image)
        if not faces:
            return []
        probs = self.classify([self.crop(image, f) for f in faces])
        return self._results(source or "array", faces, probs)

    def predict_video(
        self,
        video: str | Path | int | VideoSource,
        stride: int = 1,
        detect_every: int = 3,
        batch_size: int = 32,
        keep_images: bool = False,
        max_frames: int | None = None,
    ) -> Iterator[FrameResult]:
        """Per-frame results of a video file or camera index, in frame order.

        Every ``stride``-th frame is processed; the detector runs on every ``detect_every``-th processed frame and
        boxes are tracked in between (``detect_every=1``: detect on every frame). Faces of consecutive frames are
        classified together in batches of up to ``batch_size``. A :class:`~.video.VideoSource` brings its own
        ``stride`` and ``max_frames``. A detector that takes the whole image as the face runs on every frame.
        Raises :class:`~.video.VideoReadError` when the video cannot be decoded.
        """
        if detect_every < 1:
            raise ValueError(f"detect_every must be >= 1, got {detect_every}")
        src = video if isinstance(video, VideoSource) else VideoSource(video, stride=stride, max_frames=max_frames)
        tracker = BoxTracker()
        pending: list[tuple[Any, list[Face], bool]] = []  # frames whose faces are not classified yet
        n_faces, faces = 0, []
        for k, frame in enumerate(src):
            detect = k % detect_every == 0 or getattr(self.detector, "whole_image", False)
            if detect:
                faces = self.detect(frame.image)
                tracker.reset(frame.image)
            else:
                faces = tracker.update(frame.image, faces)
            pending.append((frame, faces, detect))
            n_faces += len(faces)
            if n_faces >= batch_size:
                yield from self._flush(src.name, pending, keep_images)
                pending, n_faces = [], 0
        yield from self._flush(src.name, pending, keep_images)

    def _flush(self, source: str, pending: list, keep_images: bool) -> Iterator[FrameResult]:
        crops = [self.crop(fr.image, f) for fr, faces, _ in pending for f in faces]
        probs = self.classify(crops) if crops else np.zeros((0, len(self.class_names)), np.float32)
        i = 0
        for fr, faces, detected in pending:
            results = self._results(source, faces, probs[i : i + len(faces)], fr.index, fr.timestamp)
            i += len(faces)
            yield FrameResult(source, fr.index, fr.timestamp, results, detected, fr.image if keep_images else None)

    def _results(
        self, source: str, faces: list[Face], probs: np.ndarray, frame: int | None = None, ts: float | None = None
    ) -> list[FaceResult]:
        return [
            FaceResult(
                source=source,
                box=f.box,
                detector_score=round(f.score, 4),
                label=self.class_names[int(p.argmax())],
                probabilities={c: round(float(v), 5) for c, v in zip(self.class_names, p, strict=True)},
                frame=frame,
                timestamp=ts,
            )
            for f, p in zip(faces, probs, strict=True)
        ]

    def classify(self, crops: list[np.ndarray], batch_size: int = 32) -> np.ndarray:
        """Class probabilities (N, C) of face images, in batches of up to ``batch_size``.

        A batch-dependent model (``config["batch_dependent"]``: its outputs depend on the other samples of the
        batch) is fed one face per forward pass, which is what its original implementation gives for one image
        (``predict`` on a single face), so a face's result never depends on the other faces of the photo.
        """
        step = 1 if self.batch_dependent else max(1, batch_size)
        out = []
        for i in range(0, len(crops), step):
            x = self.preprocess(crops[i : i + step])
            with self._serialised(self.runtime, self._runtime_lock):
                logits = np.asarray(self.runtime(x), np.float64)
            e = np.exp(logits - logits.max(1, keepdims=True))
            out.append((e / e.sum(1, keepdims=True)).astype(np.float32))
        return np.concatenate(out) if out else np.zeros((0, len(self.class_names)), np.float32)


class _TorchRuntime:
    """A saved model directory run by PyTorch on ``device`` (:func:`~.device.resolve_device`); its config is the
    one saved with it (``model.cfg``).

    A call takes the preprocessed batch (CPU, float32), sends it to the device as one tensor (from pinned memory,
    asynchronously, on CUDA) and brings the logits back to the CPU. A batch-dependent model
    (``cfg.batch_dependent``) gets one face per forward pass whatever batch it is called with, on every device."""

    name = "torch"
    thread_safe = True  # eval mode under no_grad: forward passes keep no state that the results depend on

    def __init__(self, path: Path, device: str = "auto") -> None:
        import torch

        from ..models import load_model

        self.torch, self.device = torch, resolve_device(device)  # before loading: a bad device fails first
        self.model = load_model(path).eval().to(self.device)
        self.config = self.model.cfg.to_dict()
        self.batch_dependent = bool(self.model.cfg.batch_dependent)
        self.class_names = self.model.output_names
        self.model_name = self.model.model_name

    def __call__(self, x: np.ndarray) -> np.ndarray:
        torch = self.torch
        xt = torch.from_numpy(np.ascontiguousarray(x, np.float32))
        if self.device.type == "cuda":
            xt = xt.pin_memory().to(self.device, non_blocking=True)
        with torch.no_grad():
            if self.batch_dependent and len(xt) > 1:
                logits = torch.cat([self.model(xt[i : i + 1]) for i in range(len(xt))])
            else:
                logits = self.model(xt)
            return logits.float().cpu().numpy()


class _OnnxRuntime:
    """An exported ONNX file run by ONNX Runtime (no torch); its config comes from the file's metadata.

    ``device`` chooses the execution providers (:func:`~.device.onnx_providers`): CUDA first when asked for (or
    ``auto``) and installed (``onnxruntime-gpu``), else the CPU. ``device`` is then where the session really runs:
    ``cuda:N`` when ONNX Runtime took the CUDA provider, else ``cpu`` (an explicit ``cuda`` that ONNX Runtime could
    not start is an error, not a CPU run). A batch-dependent model gets one face per ``run``."""

    name = "onnx"
    thread_safe = True  # InferenceSession.run may be called from several threads

    def __init__(self, path: Path, device: str = "auto") -> None:
        import onnxruntime as ort

        providers = onnx_providers(device)  # before reading the file: a bad device fails first
        if not path.is_file():
            raise FileNotFoundError(f"{path} not found: export it with `attnfer export CHECKPOINT`")
        self.path = path
        options = [{"device_id": str(onnx_device_id(device))} if p == CUDA_PROVIDER else {} for p in providers]
        opts = ort.SessionOptions()
        # classifying alternates with decoding, detection and tracking: idle threads sleep instead of spinning on
        # the cores the rest of the pipeline needs (benchmarks/video.py)
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self.session = ort.InferenceSession(str(path), opts, providers=providers, provider_options=options)
        on_cuda = CUDA_PROVIDER in self.session.get_providers()
        if parse_device(device)[0] == "cuda" and not on_cuda:
            raise UserError(
                f"--device {device}: ONNX Runtime could not start its CUDAExecutionProvider (see its log above: a "
                "missing CUDA/cuDNN library or no GPU); use --device cpu or --device auto"
            )
        self.device = f"cuda:{onnx_device_id(device)}" if on_cuda else "cpu"
        meta = self.session.get_modelmeta().custom_metadata_map
        self.config = onnx_model_config(meta, path)
        self.batch_dependent = bool(self.config.get("batch_dependent", False))
        self.class_names = json.loads(meta["attnfer.class_names"])
        self.model_name = meta.get("attnfer.model", "")

    def __call__(self, x: np.ndarray) -> np.ndarray:
        if self.batch_dependent and len(x) > 1:
            return np.concatenate([self.session.run(None, {"input": x[i : i + 1]})[0] for i in range(len(x))])
        return self.session.run(None, {"input": x})[0]


def onnx_model_config(meta: dict[str, str], path: str | Path = "model.onnx") -> dict[str, Any]:
    """The model config (dict) in an attnfer ONNX file's metadata (``attnfer.config``). Files exported before the
    whole config was stored carry ``attnfer.preprocessing`` (input size, mean, std, colour order, interpolation)
    and ``attnfer.batch_dependent``: their config is built from those, with the defaults for the rest."""
    if "attnfer.config" in meta:
        try:
            config = json.loads(meta["attnfer.config"])
            PreprocessConfig.from_dict(config["preprocess"])
        except (json.JSONDecodeError, KeyError, TypeError, ValueError) as e:
            raise ValueError(f"{path}: metadata 'attnfer.config' is not a valid model config ({e})") from e
        return config
    if "attnfer.preprocessing" not in meta or "attnfer.class_names" not in meta:
        raise ValueError(f"{path}: no attnfer metadata (export it with `attnfer export`)")
    old = json.loads(meta["attnfer.preprocessing"])
    known = {f.name for f in fields(PreprocessConfig)}
    pre = PreprocessConfig.from_dict({k: v for k, v in old.items() if k in known})
    return {"preprocess": pre.to_dict(), "batch_dependent": json.loads(meta.get("attnfer.batch_dependent", "false"))}
