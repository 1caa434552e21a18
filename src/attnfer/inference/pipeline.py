"""What ``attnfer predict`` does: collect inputs (images, videos, folders, a camera), recognise, write rows and
annotated outputs, report progress. Bad inputs become ``error`` rows; the run goes on past them.

An annotated output is named after its input's stem as :func:`~attnfer.images.display_name` writes it
(``STEM.annotated.jpg`` / ``STEM.annotated.mp4``): an input whose name has bytes that are not UTF-8
(``caf\\xe9.mp4``) gives ``caf\\xe9.annotated.mp4`` (a backslash, x, e, 9), a valid UTF-8 name that is the
rows' ``source`` text. OpenCV is never given a path it cannot take (see :mod:`attnfer.inference.video`)."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..images import IMAGE_SUFFIXES, ImageReadError, display_name, read_rgb
from .annotate import AnnotatedVideoWriter, draw_faces
from .output import PredictionWriter
from .recognizer import Recognizer
from .video import VIDEO_SUFFIXES, VideoReadError, VideoSource

__all__ = ["PredictSummary", "collect_inputs", "run_predict"]


def collect_inputs(inputs: list[str]) -> list[Path]:
    """Files in the given order; folders are searched recursively for images and videos (sorted)."""
    files: list[Path] = []
    for item in inputs:
        p = Path(item)
        if p.is_dir():
            files += sorted(f for f in p.rglob("*") if f.suffix.lower() in IMAGE_SUFFIXES + VIDEO_SUFFIXES)
        else:
            files.append(p)
    return files


@dataclass
class PredictSummary:
    inputs: int = 0
    images: int = 0
    videos: int = 0
    frames: int = 0
    faces: int = 0
    no_face: int = 0
    errors: list[str] = field(default_factory=list)
    seconds: float = 0.0
    annotated: list[str] = field(default_factory=list)  # paths written, as display_name writes them

    def to_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


def run_predict(
    rec: Recognizer,
    files: list[Path],
    writer: PredictionWriter,
    webcam: int | None = None,
    annotate_dir: Path | None = None,
    stride: int = 1,
    detect_every: int = 3,
    max_frames: int | None = None,
    progress: Any = None,
) -> PredictSummary:
    """Recognise every input and write its rows; ``progress`` is a rich Progress (or None)."""
    summary = PredictSummary(inputs=len(files) + (webcam is not None))
    t0 = time.perf_counter()
    task = progress.add_task("inputs", total=len(files)) if progress and files else None
    for f in files:
        if f.suffix.lower() in VIDEO_SUFFIXES:
            _video(rec, f, writer, summary, annotate_dir, stride, detect_every, max_frames, progress)
        else:
            _image(rec, f, writer, summary, annotate_dir)
        if task is not None:
            progress.advance(task)
    if webcam is not None:
        _video(rec, webcam, writer, summary, annotate_dir, stride, detect_every, max_frames, progress)
    summary.seconds = round(time.perf_counter() - t0, 3)
    return summary


def _error(writer: PredictionWriter, summary: PredictSummary, source: str, message: str) -> None:
    summary.errors.append(message)
    writer.write({"source": source, "status": "error", "error": message})


def _image(rec, f: Path, writer, summary: PredictSummary, annotate_dir: Path | None) -> None:
    summary.images += 1
    try:
        image = read_rgb(f)
    except ImageReadError as e:
        return _error(writer, summary, str(f), str(e))
    faces = rec.predict(image, source=str(f))
    if not faces:
        summary.no_face += 1
        writer.write({"source": str(f), "status": "no_face"})
    for r in faces:
        writer.write({**r.to_dict(), "status": "ok"})
    summary.faces += len(faces)
    if annotate_dir is not None:
        import cv2

        from ..files import atomic_write

        target = annotate_dir / f"{display_name(f.stem)}.annotated.jpg"
        target.parent.mkdir(parents=True, exist_ok=True)
        bgr = cv2.cvtColor(draw_faces(image, faces), cv2.COLOR_RGB2BGR)
        ok, jpeg = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, 90])  # encoded in memory: no path to OpenCV
        if not ok:
            raise OSError(f"{display_name(target)}: OpenCV could not encode the annotated image")
        atomic_write(target, jpeg.tobytes())
        summary.annotated.append(display_name(target))


def _video(rec, source, writer, summary, annotate_dir, stride, detect_every, max_frames, progress) -> None:
    name = f"webcam:{source}" if isinstance(source, int) else str(source)
    summary.videos += 1
    try:
        src = VideoSource(source, stride=stride, max_frames=max_frames)
    except VideoReadError as e:
        return _error(writer, summary, name, str(e))
    out = None
    if annotate_dir is not None:
        stem = f"webcam{source}" if isinstance(source, int) else display_name(Path(source).stem)
        try:
            size = (src.width, src.height)
            out = AnnotatedVideoWriter(annotate_dir / f"{stem}.annotated.mp4", src.fps / stride, size)
        except BaseException:
            src.release()
            raise
    total = src.frame_count // stride + (src.frame_count % stride > 0) if src.frame_count else None
    task = progress.add_task(display_name(Path(name).name), total=total) if progress else None
    ok = False
    try:
        for fr in rec.predict_video(src, detect_every=detect_every, keep_images=out is not None):
            summary.frames += 1
            if not fr.faces:
                summary.no_face += 1
                writer.write({"source": name, "status": "no_face", "frame": fr.frame, "timestamp": fr.timestamp})
            for r in fr.faces:
                writer.write({**r.to_dict(), "status": "ok"})
            summary.faces += len(fr.faces)
            if out is not None:
                out.write(draw_faces(fr.image, fr.faces))
            if task is not None:
                progress.advance(task)
        ok = True
    except VideoReadError as e:
        _error(writer, summary, name, str(e))
    except KeyboardInterrupt:  # a camera stream ends with Ctrl-C: keep what was written
        ok = isinstance(source, int)
        if not ok:
            raise
    finally:
        if out is not None:
            out.close(keep=ok)
            if ok and out.frames:
                summary.annotated.append(display_name(out.path))
        if task is not None:
            progress.remove_task(task)
    if src.truncated:
        _error(writer, summary, name, f"{name}: decoding stopped at frame {src.decoded} of {src.frame_count} declared")
