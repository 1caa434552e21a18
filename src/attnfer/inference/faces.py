"""Face detection backends behind one interface, and face cropping for the classifiers.

Backends (``create_detector(name)``):

* ``ssd``: OpenCV's ResNet-10 SSD (``res10_300x300_ssd_iter_140000.caffemodel`` + ``deploy.prototxt``), with
  non-maximum suppression (the raw network returns overlapping boxes). Weights come from local files
  (``model=``, ``config=``), the cache (``~/.cache/attnfer/detectors``), or are downloaded from OpenCV's own
  locations on first use and sha256-checked;
* ``haar``: OpenCV's frontal-face Haar cascade shipped inside ``opencv-python-headless`` 4.x (offline fallback);
* ``none``: the input already is a face crop (RAF-DB aligned, FER2013): one box over the whole image;
* ``auto`` (default): ``ssd`` when its files are available offline, else ``haar``. ``detector.name`` says which ran.
"""

from __future__ import annotations

import hashlib
import os
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

__all__ = ["Face", "FaceDetector", "HaarDetector", "NoDetector", "SSDDetector", "create_detector", "crop_face"]

SSD_MODEL_URL = (
    "https://raw.githubusercontent.com/opencv/opencv_3rdparty/dnn_samples_face_detector_20170830/"
    "res10_300x300_ssd_iter_140000.caffemodel"
)
SSD_MODEL_SHA256 = "2a56a11a57a4a295956b0660b4a3d76bbdca2206c4961cea8efe7d95c7cb2f2d"
SSD_CONFIG_URL = "https://raw.githubusercontent.com/opencv/opencv/4.x/samples/dnn/face_detector/deploy.prototxt"


class DetectorError(RuntimeError):
    """A detector's files are missing or wrong; the message names the file needed."""


@dataclass(frozen=True)
class Face:
    """A detected face: box (x, y, w, h) in pixels of the input image and the detector's score."""

    box: tuple[int, int, int, int]
    score: float


class FaceDetector:
    name: str = "base"

    def detect(self, image: np.ndarray) -> list[Face]:
        """Faces in an RGB uint8 image (H, W, 3), highest score first."""
        raise NotImplementedError


class NoDetector(FaceDetector):
    name = "none"

    def detect(self, image: np.ndarray) -> list[Face]:
        h, w = image.shape[:2]
        return [Face((0, 0, w, h), 1.0)]


class HaarDetector(FaceDetector):
    name = "haar"

    def __init__(self, min_size: float = 0.05, min_neighbors: int = 5) -> None:
        path = Path(cv2.data.haarcascades) / "haarcascade_frontalface_default.xml"
        if not path.is_file():
            raise DetectorError(f"{path} is missing: opencv-python-headless 5.x ships no Haar cascades (pin <5)")
        self.cascade = cv2.CascadeClassifier(str(path))
        self.min_size, self.min_neighbors = min_size, min_neighbors

    def detect(self, image: np.ndarray) -> list[Face]:
        grey = cv2.equalizeHist(cv2.cvtColor(image, cv2.COLOR_RGB2GRAY))
        side = max(16, int(self.min_size * min(grey.shape)))
        boxes, _, weights = self.cascade.detectMultiScale3(
            grey, scaleFactor=1.1, minNeighbors=self.min_neighbors, minSize=(side, side), outputRejectLevels=True
        )
        faces = [Face(tuple(int(v) for v in b), float(s)) for b, s in zip(boxes, np.ravel(weights), strict=True)]
        return sorted(faces, key=lambda f: -f.score)


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _cache_dir() -> Path:
    return Path(os.environ.get("ATTNFER_CACHE", Path.home() / ".cache" / "attnfer")) / "detectors"


def _fetch(url: str, name: str, sha256: str | None) -> Path:
    """Cached download with checksum; a clear error naming the file when offline."""
    target = _cache_dir() / name
    if target.is_file() and (sha256 is None or _sha256(target) == sha256):
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_suffix(target.suffix + ".part")
    try:
        with urllib.request.urlopen(url, timeout=20) as r, tmp.open("wb") as f:
            f.write(r.read())
    except OSError as e:
        tmp.unlink(missing_ok=True)
        raise DetectorError(
            f"could not download {name} from {url} ({e}); put the file at {target} or pass it as a local file"
        ) from e
    if sha256 is not None and _sha256(tmp) != sha256:
        tmp.unlink(missing_ok=True)
        raise DetectorError(f"{name} from {url} has an unexpected sha256")
    os.replace(tmp, target)
    return target


class SSDDetector(FaceDetector):
    name = "ssd"

    def __init__(
        self,
        model: str | Path | None = None,
        config: str | Path | None = None,
        threshold: float = 0.5,
        nms: float = 0.4,
        download: bool = True,
    ) -> None:
        model = (
            Path(model)
            if model
            else self._local_or_fetch(SSD_MODEL_URL, "res10_300x300_ssd.caffemodel", SSD_MODEL_SHA256, download)
        )
        config = (
            Path(config) if config else self._local_or_fetch(SSD_CONFIG_URL, "res10_deploy.prototxt", None, download)
        )
        for p in (model, config):
            if not p.is_file():
                raise DetectorError(f"{p} not found")
        if _sha256(model) != SSD_MODEL_SHA256:
            raise DetectorError(f"{model}: not OpenCV's res10_300x300_ssd_iter_140000.caffemodel (sha256 differs)")
        try:
            self.net = cv2.dnn.readNetFromCaffe(str(config), str(model))
        except cv2.error as e:
            raise DetectorError(f"{config}: not a readable Caffe deploy.prototxt for the SSD ({e})") from e
        self.threshold, self.nms = threshold, nms

    @staticmethod
    def _local_or_fetch(url: str, name: str, sha256: str | None, download: bool) -> Path:
        cached = _cache_dir() / name
        if cached.is_file() or not download:
            return cached
        return _fetch(url, name, sha256)

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
        side = max(h, w)
        square = np.empty((side, side, 3), np.uint8)
        square[:] = (123, 177, 104)  # RGB order of the BGR mean (104, 177, 123)
        square[:h, :w] = image
        bgr = cv2.cvtColor(cv2.resize(square, (300, 300), interpolation=cv2.INTER_AREA), cv2.COLOR_RGB2BGR)
        blob = cv2.dnn.blobFromImage(bgr, 1.0, (300, 300), (104.0, 177.0, 123.0))
        h = w = side
        self.net.setInput(blob)
        out = self.net.forward()[0, 0]  # (N, 7): image id, class, score, x1, y1, x2, y2 (relative)
        out = out[out[:, 2] >= self.threshold]
        boxes, scores = [], []
        for _, _, score, x1, y1, x2, y2 in out:
            x1, y1 = max(0, int(x1 * w)), max(0, int(y1 * h))
            x2, y2 = min(image.shape[1], int(x2 * w)), min(image.shape[0], int(y2 * h))
            if x2 - x1 >= 8 and y2 - y1 >= 8:
                boxes.append([x1, y1, x2 - x1, y2 - y1])
                scores.append(float(score))
        keep = cv2.dnn.NMSBoxes(boxes, scores, self.threshold, self.nms) if boxes else []
        faces = sorted((Face(tuple(boxes[i]), scores[i]) for i in np.ravel(keep)), key=lambda f: -f.score)
        # the SSD also fires on a face's sub-part (eyes + nose) with IoU below any sane NMS threshold: drop boxes
        # overlapping a higher-scoring one by 30% of their area
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


def create_detector(name: str = "auto", **kwargs) -> FaceDetector:
    """``auto`` | ``ssd`` | ``haar`` | ``none``; ``auto`` picks the best backend available offline."""
    if name == "auto":
        if kwargs.get("model") or SSDDetector.available_offline():
            return SSDDetector(download=False, **kwargs)
        return HaarDetector()
    if name == "ssd":
        return SSDDetector(**kwargs)
    if name == "haar":
        return HaarDetector(**kwargs)
    if name == "none":
        return NoDetector()
    raise ValueError(f"unknown detector '{name}'; choose auto, ssd, haar or none")


def crop_face(image: np.ndarray, face: Face, margin: float = 0.2) -> np.ndarray:
    """A square crop around the box, enlarged by ``margin`` of its size, padded with edge pixels at borders."""
    x, y, w, h = face.box
    side = int(max(w, h) * (1 + margin))
    cx, cy = x + w / 2, y + h / 2
    x0, y0 = round(cx - side / 2), round(cy - side / 2)
    H, W = image.shape[:2]
    pad = max(0, -x0, -y0, x0 + side - W, y0 + side - H)
    if pad:
        image = cv2.copyMakeBorder(image, pad, pad, pad, pad, cv2.BORDER_REPLICATE)
        x0, y0 = x0 + pad, y0 + pad
    return image[y0 : y0 + side, x0 : x0 + side]
