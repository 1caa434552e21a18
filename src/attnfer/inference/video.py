"""Video and webcam input: a decoding thread, frame striding, and box tracking between detections.

Detection is the expensive step of video recognition (OpenCV's SSD takes ~19 ms per 640x360 frame on 2 CPU cores,
the classifier ~3 ms per face). ``Recognizer.predict_video`` therefore detects on every ``detect_every``-th processed
frame (default 3) and moves the boxes in between with :class:`BoxTracker` (pyramidal Lucas-Kanade optical flow of
corner points inside each box; the median displacement and spread give the new box). ``detect_every=1`` detects on
every frame. Decoding runs in its own thread (OpenCV releases the GIL) with a bounded queue, so memory stays flat
whatever the video's length.

OpenCV's Python bindings crash the interpreter (SIGSEGV, no exception) when given a path whose text is not UTF-8: a
file name with bytes that are not UTF-8, which Python carries as lone surrogates. Such a path never reaches OpenCV
here: :class:`OpenCVPath` gives OpenCV a UTF-8 name that leads to the same file.
"""

from __future__ import annotations

import contextlib
import errno
import os
import queue
import shutil
import tempfile
import threading
import time
import weakref
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from ..images import display_name
from .faces import Face

__all__ = ["VIDEO_SUFFIXES", "BoxTracker", "OpenCVPath", "VideoReadError", "VideoSource", "opencv_safe"]

VIDEO_SUFFIXES = (".mp4", ".mov", ".avi", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg", ".wmv")


class VideoReadError(ValueError):
    """A video or camera that cannot be opened or decoded; the message names it and why."""


def opencv_safe(path: str | os.PathLike) -> bool:
    """Whether OpenCV can be given ``path`` as it is: its text is valid UTF-8 (no lone surrogates)."""
    try:
        os.fspath(path).encode("utf-8")
    except (UnicodeEncodeError, AttributeError):  # AttributeError: a bytes path
        return False
    return True


def _cleanup(tmpdir: str | None, fd: int | None) -> None:
    if fd is not None:
        with contextlib.suppress(OSError):
            os.close(fd)
    if tmpdir is not None:
        shutil.rmtree(tmpdir, ignore_errors=True)


class OpenCVPath:
    """A name for ``path`` that OpenCV can be given (``.name``), valid until :meth:`close`.

    A path whose text is UTF-8 is its own name. Any other (bytes of the file name that are not UTF-8) is reached
    through a symbolic link with an ASCII name in a new private temporary folder: a link to the file itself, or, with
    ``create=True`` (a file OpenCV is to write; its own name, ``path.name``, must then be UTF-8), a link to its
    folder. Where no link can be made, a file to read is reached as ``/proc/self/fd/N`` (Linux); failing that
    :class:`OSError` names the file. ``close`` (also run when the object is collected) removes the link: call it
    once OpenCV has released the file.
    """

    def __init__(self, path: str | os.PathLike, create: bool = False) -> None:
        path = os.fspath(path)
        if isinstance(path, bytes):
            path = os.fsdecode(path)
        self.path, self.name = path, path
        tmpdir, fd = None, None
        if not opencv_safe(path):
            parent, base = os.path.split(os.path.abspath(path))
            if create and not opencv_safe(base):
                raise ValueError(f"{display_name(path)}: a file for OpenCV to write needs a UTF-8 name")
            try:
                tmpdir = tempfile.mkdtemp(prefix="attnfer-opencv-")
                if not opencv_safe(tmpdir):
                    raise OSError(errno.EINVAL, "the temporary folder's name is not UTF-8")
                if create:
                    os.symlink(parent, os.path.join(tmpdir, "dir"), target_is_directory=True)
                    self.name = os.path.join(tmpdir, "dir", base)
                else:
                    suffix = os.path.splitext(base)[1]
                    link = os.path.join(tmpdir, "input" + (suffix if opencv_safe(suffix) else ""))
                    os.symlink(os.path.abspath(path), link)
                    self.name = link
            except OSError as e:
                _cleanup(tmpdir, None)
                tmpdir, why = None, e
                if not create and os.path.isdir("/proc/self/fd"):
                    try:
                        fd = os.open(path, os.O_RDONLY)
                        self.name = f"/proc/self/fd/{fd}"
                    except OSError as e2:
                        why = e2
                if fd is None:
                    raise OSError(
                        f"{display_name(path)}: OpenCV cannot be given this name (not UTF-8) and no link to it could "
                        f"be made ({why.strerror or why}); rename it"
                    ) from why
        self._finalizer = weakref.finalize(self, _cleanup, tmpdir, fd)

    def close(self) -> None:
        self._finalizer()


@dataclass(frozen=True)
class Frame:
    index: int  # position in the video (0-based), counting skipped frames
    timestamp: float  # seconds from the start
    image: np.ndarray  # RGB uint8 (H, W, 3)


class VideoSource:
    """Frames of a video file or a camera (an int index), decoded in a background thread.

    ``stride`` keeps every ``stride``-th frame (the others are grabbed but not converted). ``max_frames`` bounds a
    camera stream. Iterating raises :class:`VideoReadError` when nothing can be decoded; ``truncated`` tells
    afterwards whether a file stopped well before the frame count its header declares. A file whose name is not
    UTF-8 is read through :class:`OpenCVPath`; ``name`` (the rows' ``source``) is the path as given.
    """

    def __init__(self, source: str | Path | int, stride: int = 1, max_frames: int | None = None, buffer: int = 16):
        if stride < 1:
            raise ValueError(f"stride must be >= 1, got {stride}")
        self.camera = isinstance(source, int)
        self.name = f"webcam:{source}" if self.camera else str(source)
        if not self.camera and not Path(source).is_file():
            raise VideoReadError(f"{source}: no such file")
        try:
            self._cv_path = None if self.camera else OpenCVPath(source)
        except OSError as e:
            raise VideoReadError(str(e)) from e
        self.cap = cv2.VideoCapture(source if self._cv_path is None else self._cv_path.name)
        if not self.cap.isOpened():
            self.release()
            what = "camera could not be opened" if self.camera else "not a video OpenCV/FFmpeg can open"
            raise VideoReadError(f"{self.name}: {what} (unsupported codec or container, or a corrupt file)")
        fps = self.cap.get(cv2.CAP_PROP_FPS)
        self.fps = fps if fps and 0 < fps < 1000 else 30.0
        count = int(self.cap.get(cv2.CAP_PROP_FRAME_COUNT))
        self.frame_count = count if count > 0 and not self.camera else None
        self.width = int(self.cap.get(cv2.CAP_PROP_FRAME_WIDTH))
        self.height = int(self.cap.get(cv2.CAP_PROP_FRAME_HEIGHT))
        self.stride, self.max_frames, self.buffer = stride, max_frames, buffer
        self.decoded = 0
        self.truncated = False

    def release(self) -> None:
        """Close the video (iterating to the end, or stopping early, does it)."""
        cap = getattr(self, "cap", None)
        if cap is not None:
            cap.release()
        if self._cv_path is not None:
            self._cv_path.close()

    def __iter__(self) -> Iterator[Frame]:
        q: queue.Queue = queue.Queue(maxsize=self.buffer)
        stop = threading.Event()
        thread = threading.Thread(target=self._read, args=(q, stop), daemon=True, name="attnfer-video-decode")
        thread.start()
        try:
            while (item := q.get()) is not None:
                if isinstance(item, Exception):
                    raise item
                yield item
        finally:
            stop.set()
            while thread.is_alive():  # unblock a reader waiting on a full queue
                try:
                    q.get_nowait()
                except queue.Empty:
                    thread.join(0.05)
            self.release()

    def _read(self, q: queue.Queue, stop: threading.Event) -> None:
        index, kept, start = 0, 0, time.monotonic()
        try:
            while not stop.is_set() and (self.max_frames is None or kept < self.max_frames):
                if index % self.stride:
                    if not self.cap.grab():
                        break
                    index += 1
                    continue
                ok, bgr = self.cap.read()
                if not ok:
                    break
                ts = time.monotonic() - start if self.camera else index / self.fps
                q.put(Frame(index, round(ts, 4), cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)))
                index, kept = index + 1, kept + 1
            self.decoded = index
            if index == 0:
                q.put(VideoReadError(f"{self.name}: no frame could be decoded (unsupported codec or corrupt file)"))
            elif self.frame_count and index < 0.9 * self.frame_count and not stop.is_set():
                self.truncated = True
        except Exception as e:  # surfaced in the consuming thread
            q.put(VideoReadError(f"{self.name}: decoding failed at frame {index} ({e})"))
        finally:
            q.put(None)


class BoxTracker:
    """Moves face boxes from one frame to the next with pyramidal Lucas-Kanade optical flow.

    For each box, up to ``points`` Shi-Tomasi corners inside the box are tracked; the box is shifted by their median
    displacement and scaled by the median ratio of pairwise spreads. A box whose points are lost keeps its place.
    """

    def __init__(self, points: int = 30, max_side: int = 480) -> None:
        self.points, self.max_side = points, max_side
        self.prev: np.ndarray | None = None
        self.scale = 1.0

    def _grey(self, image: np.ndarray) -> np.ndarray:
        h, w = image.shape[:2]
        self.scale = min(1.0, self.max_side / max(h, w))
        if self.scale < 1.0:
            image = cv2.resize(image, (round(w * self.scale), round(h * self.scale)), interpolation=cv2.INTER_AREA)
        return cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)

    def reset(self, image: np.ndarray) -> None:
        """Start from this frame (call on every frame where detection ran)."""
        self.prev = self._grey(image)

    def update(self, image: np.ndarray, faces: list[Face]) -> list[Face]:
        """The faces of the previous frame moved into ``image``."""
        grey = self._grey(image)
        prev, self.prev = self.prev, grey
        if prev is None or prev.shape != grey.shape or not faces:
            return faces
        s, H, W = self.scale, image.shape[0], image.shape[1]
        moved = []
        for f in faces:
            x, y, w, h = (v * s for v in f.box)
            # corners inside the box, searched in the box and a margin around it (the corner measure's window)
            # rather than in the whole frame under a mask: the same corners, a fraction of the work
            m = 8
            x0, y0 = max(0, int(x) - m), max(0, int(y) - m)
            roi = prev[y0 : int(y + h) + m, x0 : int(x + w) + m]
            mask = np.zeros_like(roi)
            mask[int(y) - y0 : int(y + h) - y0, int(x) - x0 : int(x + w) - x0] = 255
            p0 = cv2.goodFeaturesToTrack(roi, self.points, 0.01, max(3.0, min(w, h) / 10), mask=mask)
            if p0 is not None:
                p0 = p0 + np.array([x0, y0], np.float32)  # frame coordinates
            if p0 is None or len(p0) < 4:
                moved.append(f)
                continue
            p1, status, _ = cv2.calcOpticalFlowPyrLK(prev, grey, p0, None, winSize=(15, 15), maxLevel=2)
            good = status.ravel() == 1
            if good.sum() < 4:
                moved.append(f)
                continue
            a, b = p0.reshape(-1, 2)[good], p1.reshape(-1, 2)[good]  # (K, 2) before / after
            dx, dy = np.median(b - a, axis=0)
            spread0 = np.linalg.norm(a - a.mean(0), axis=1)
            spread1 = np.linalg.norm(b - b.mean(0), axis=1)
            zoom = (
                float(np.clip(np.median(spread1[spread0 > 1] / spread0[spread0 > 1]), 0.8, 1.25))
                if (spread0 > 1).sum() >= 4
                else 1.0
            )
            cx, cy = x + w / 2 + dx, y + h / 2 + dy
            w, h = w * zoom, h * zoom
            nx0, ny0 = max(0, round((cx - w / 2) / s)), max(0, round((cy - h / 2) / s))
            nx1, ny1 = min(W, round((cx + w / 2) / s)), min(H, round((cy + h / 2) / s))
            if nx1 - nx0 >= 8 and ny1 - ny0 >= 8:
                kps = None
                if f.keypoints:  # keypoints follow the box: same shift and zoom about its centre
                    ox, oy = (f.box[0] + f.box[2] / 2), (f.box[1] + f.box[3] / 2)
                    kps = tuple(
                        (round(cx / s + (px - ox) * zoom, 1), round(cy / s + (py - oy) * zoom, 1))
                        for px, py in f.keypoints
                    )
                moved.append(Face((nx0, ny0, nx1 - nx0, ny1 - ny0), f.score, kps))
        return moved
