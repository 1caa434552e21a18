"""Expression recognition on real images: detect faces, crop, preprocess as the model card says, classify.

    >>> from attnfer.inference import Recognizer
    >>> rec = Recognizer.from_checkpoint("runs/quickstart-.../best", detector="auto", runtime="torch")
    >>> for face in rec.predict("photo.jpg"):
    ...     print(face.box, face.label, face.probabilities)

``runtime="onnx"`` runs an exported ``model.onnx`` (or a directory holding one) with ONNX Runtime; its
preprocessing is read from the ONNX metadata and done with numpy/OpenCV, so that path needs no torch.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from ..images import ImageReadError, read_rgb
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
    def __init__(
        self,
        runtime: Any,
        class_names: list[str],
        preprocessing: dict[str, Any],
        detector: FaceDetector,
        margin: float = 0.2,
    ) -> None:
        self.runtime, self.class_names, self.pre = runtime, list(class_names), preprocessing
        self.detector, self.margin = detector, margin

    @classmethod
    def from_checkpoint(
        cls,
        path: str | Path,
        detector: str | FaceDetector = "auto",
        runtime: str = "torch",
        device: str = "cpu",
        margin: float = 0.2,
    ) -> Recognizer:
        det = create_detector(detector) if isinstance(detector, str) else detector
        path = Path(path)
        if runtime == "onnx":
            rt = _OnnxRuntime(path / "model.onnx" if path.is_dir() else path)
            return cls(rt, *rt.metadata(), det, margin)
        if runtime != "torch":
            raise ValueError(f"runtime must be torch or onnx, got {runtime!r}")
        rt = _TorchRuntime(path, device)
        return cls(rt, rt.class_names, rt.preprocessing, det, margin)

    # ---- preprocessing (numpy/OpenCV, identical for both runtimes) ------------------------------
    def preprocess(self, crops: list[np.ndarray]) -> np.ndarray:
        """RGB uint8 crops -> (N, 3, H, W) float32 as the card says (resize, [0, 1], mean/std)."""
        _, h, w = self.pre["input_size"]
        mean = np.asarray(self.pre["mean"], np.float32)[:, None, None]
        std = np.asarray(self.pre["std"], np.float32)[:, None, None]
        out = np.empty((len(crops), 3, h, w), np.float32)
        for i, c in enumerate(crops):
            interp = cv2.INTER_AREA if c.shape[0] > h else cv2.INTER_LINEAR
            r = cv2.resize(c, (w, h), interpolation=interp).astype(np.float32).transpose(2, 0, 1) / 255.0
            out[i] = (r - mean) / std
        return out

    def predict(self, image: str | Path | np.ndarray, source: str | None = None) -> list[FaceResult]:
        """One result per detected face (an empty list when there is none)."""
        if isinstance(image, (str, Path)):
            source = source or str(image)
            image = read_rgb(image)
        faces = self.detector.detect(image)
        if not faces:
            return []
        probs = self.classify([crop_face(image, f, self.margin) for f in faces])
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
        ``stride`` and ``max_frames``. Raises :class:`~.video.VideoReadError` when the video cannot be decoded.
        """
        if detect_every < 1:
            raise ValueError(f"detect_every must be >= 1, got {detect_every}")
        src = video if isinstance(video, VideoSource) else VideoSource(video, stride=stride, max_frames=max_frames)
        tracker = BoxTracker()
        pending: list[tuple[Any, list[Face], bool]] = []  # frames whose faces are not classified yet
        n_faces, faces = 0, []
        for k, frame in enumerate(src):
            detect = k % detect_every == 0
            if detect:
                faces = self.detector.detect(frame.image)
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
        crops = [crop_face(fr.image, f, self.margin) for fr, faces, _ in pending for f in faces]
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
        """Class probabilities (N, C) of face crops, in batches."""
        out = []
        for i in range(0, len(crops), batch_size):
            logits = self.runtime(self.preprocess(crops[i : i + batch_size]))
            e = np.exp(logits - logits.max(1, keepdims=True))
            out.append(e / e.sum(1, keepdims=True))
        return np.concatenate(out) if out else np.zeros((0, len(self.class_names)), np.float32)


class _TorchRuntime:
    def __init__(self, path: Path, device: str) -> None:
        import torch

        from ..models import load_model

        self.torch, self.device = torch, device
        self.model = load_model(path).eval().to(device)
        card = self.model.card.to_dict()
        self.preprocessing = {k: card[k] for k in ("input_size", "mean", "std", "color_order", "interpolation")}
        self.class_names = self.model.class_names or [f"class_{i}" for i in range(self.model.num_classes)]

    def __call__(self, x: np.ndarray) -> np.ndarray:
        from ..models import logits_of

        with self.torch.no_grad():
            return logits_of(self.model(self.torch.from_numpy(x).to(self.device))).float().cpu().numpy()


class _OnnxRuntime:
    def __init__(self, path: Path) -> None:
        import onnxruntime as ort

        if not path.is_file():
            raise FileNotFoundError(f"{path} not found: export it with `attnfer export CHECKPOINT`")
        self.path = path
        self.session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return self.session.run(None, {"input": x})[0]

    def metadata(self) -> tuple[list[str], dict[str, Any]]:
        meta = self.session.get_modelmeta().custom_metadata_map
        if "attnfer.preprocessing" not in meta:
            raise ValueError(f"{self.path}: no attnfer metadata (export it with `attnfer export`)")
        return json.loads(meta["attnfer.class_names"]), json.loads(meta["attnfer.preprocessing"])
