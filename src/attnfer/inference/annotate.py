"""Drawing recognition results onto images and video frames: boxes, labels and probability bars (OpenCV)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np

from ..images import display_name
from .recognizer import FaceResult
from .video import OpenCVPath

__all__ = ["AnnotatedVideoWriter", "draw_faces"]

# one colour per class index (RGB), readable on photos
PALETTE = [
    (230, 57, 70),
    (106, 153, 78),
    (131, 56, 236),
    (255, 190, 11),
    (58, 134, 255),
    (255, 0, 110),
    (160, 160, 160),
    (251, 133, 0),
    (0, 180, 216),
    (120, 90, 60),
]


def draw_faces(image: np.ndarray, faces: Sequence[FaceResult], bars: bool = True) -> np.ndarray:
    """A copy of the RGB ``image`` with each face's box, its label and score, and a bar per class probability."""
    out = np.ascontiguousarray(image).copy()
    H, W = out.shape[:2]
    scale = max(0.35, min(W, H) / 900)  # font scale that stays readable from 320 px to 4k
    thick = max(1, round(scale * 2))
    font = cv2.FONT_HERSHEY_SIMPLEX
    for face in faces:
        names = list(face.probabilities)
        k = names.index(face.label) if face.label in names else 0
        colour = PALETTE[k % len(PALETTE)]
        x, y, w, h = face.box
        cv2.rectangle(out, (x, y), (x + w, y + h), colour, max(2, thick))
        text = f"{face.label} {face.probabilities.get(face.label, 0.0):.2f}"
        (tw, th), base = cv2.getTextSize(text, font, scale, thick)
        ty = y - 4 if y - th - base - 4 >= 0 else y + h + th + 4
        cv2.rectangle(out, (x, ty - th - base), (x + tw + 4, ty + base - 2), colour, -1)
        cv2.putText(out, text, (x + 2, ty - 2), font, scale, (255, 255, 255), thick, cv2.LINE_AA)
        if bars:
            _bars(out, face, names, (x, y, w, h), scale, font)
    return out


def _bars(out: np.ndarray, face: FaceResult, names: list[str], box, scale: float, font: int) -> None:
    """A panel under the box (inside the frame), as wide as the box: one bar per class, longest = most likely."""
    H, W = out.shape[:2]
    x, y, w, h = box
    s = scale * 0.6
    (_, th), base = cv2.getTextSize("Ag", font, s, 1)
    row = th + base + 3
    label_w = max(cv2.getTextSize(n, font, s, 1)[0][0] for n in names) + 6
    panel_w = max(w, label_w + 40)
    panel_h = row * len(names) + 4
    label_h = round(30 * scale)
    candidates = [  # below the box, right of it, left of it, above its label; the first that fits the image
        (min(max(0, x), W - panel_w), y + h + 2),
        (x + w + 4, min(max(0, y), H - panel_h)),
        (x - panel_w - 4, min(max(0, y), H - panel_h)),
        (min(max(0, x), W - panel_w), y - label_h - panel_h - 2),
    ]
    fits = [(cx, cy) for cx, cy in candidates if cx >= 0 and cy >= 0 and cx + panel_w <= W and cy + panel_h <= H]
    px, py = fits[0] if fits else (max(0, min(x, W - panel_w)), max(0, min(y + h + 2, H - panel_h)))
    roi = out[py : py + panel_h, px : px + panel_w]
    roi[:] = (roi * 0.3).astype(np.uint8)  # darken behind the panel
    bar_w = panel_w - label_w - 4
    for i, name in enumerate(names):
        p = float(face.probabilities[name])
        ry = py + 2 + i * row
        cv2.putText(out, name, (px + 3, ry + th + 1), font, s, (255, 255, 255), 1, cv2.LINE_AA)
        bx = px + label_w
        cv2.rectangle(out, (bx, ry + 2), (bx + bar_w, ry + row - 2), (70, 70, 70), -1)
        colour = PALETTE[i % len(PALETTE)]
        cv2.rectangle(out, (bx, ry + 2), (bx + round(bar_w * p), ry + row - 2), colour, -1)


class AnnotatedVideoWriter:
    """MP4 (``mp4v``) writer for annotated frames that appears at ``path`` only when closed without error.

    OpenCV writes a temporary file beside ``path`` with a UTF-8 name (``.STEM.part.mp4``, the stem as
    :func:`~attnfer.images.display_name` writes it), reached through :class:`~.video.OpenCVPath` when the folder's
    name is not UTF-8; ``close`` renames it to ``path`` (any name)."""

    def __init__(self, path: str | Path, fps: float, size: tuple[int, int]) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        suffix = self.path.suffix if display_name(self.path.suffix) == self.path.suffix else ".mp4"
        self.tmp = self.path.with_name(f".{display_name(self.path.stem)}.part{suffix}")
        self._cv_path = OpenCVPath(self.tmp, create=True)
        self.writer = cv2.VideoWriter(self._cv_path.name, cv2.VideoWriter_fourcc(*"mp4v"), fps, size)
        if not self.writer.isOpened():
            self._cv_path.close()
            raise OSError(f"{display_name(self.path)}: OpenCV cannot write an mp4v video here")
        self.frames = 0

    def write(self, rgb: np.ndarray) -> None:
        self.writer.write(cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
        self.frames += 1

    def close(self, keep: bool = True) -> None:
        self.writer.release()
        self._cv_path.close()
        if keep and self.frames:
            self.tmp.replace(self.path)
        else:
            self.tmp.unlink(missing_ok=True)
