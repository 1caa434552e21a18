"""What ``attnfer predict`` does: collect inputs (images, videos, folders, a camera), recognise, write rows and
annotated outputs, report progress. Bad inputs become ``error`` rows; the run goes on past them."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..images import IMAGE_SUFFIXES, ImageReadError, read_rgb
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
    annotated: list[str] = field(default_factory=list)

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

        target = annotate_dir / f"{f.stem}.annotated.jpg"
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f".{target.stem}.part.jpg")
        cv2.imwrite(str(tmp), cv2.cvtColor(draw_faces(image, faces), cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 90])
        tmp.replace(target)
        summary.annotated.append(str(target))


def _video(rec, source, writer, summary, annotate_dir, stride, detect_every, max_frames, progress) -> None:
    name = f"webcam:{source}" if isinstance(source, int) else str(source)
    summary.videos += 1
    try:
        src = VideoSource(source, stride=stride, max_frames=max_frames)
    except VideoReadError as e:
        return _error(writer, summary, name, str(e))
    out = None
    if annotate_dir is not None:
        stem = f"webcam{source}" if isinstance(source, int) else Path(source).stem
        out = AnnotatedVideoWriter(annotate_dir / f"{stem}.annotated.mp4", src.fps / stride, (src.width, src.height))
    total = src.frame_count // stride + (src.frame_count % stride > 0) if src.frame_count else None
    task = progress.add_task(Path(name).name, total=total) if progress else None
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
                summary.annotated.append(str(out.path))
        if task is not None:
            progress.remove_task(task)
    if src.truncated:
        _error(writer, summary, name, f"{name}: decoding stopped at frame {src.decoded} of {src.frame_count} declared")
