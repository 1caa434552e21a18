"""Media files whose names are not UTF-8 never reach OpenCV as such (its Python bindings crash the interpreter,
SIGSEGV, on a path with lone surrogates): `attnfer predict` reads such a video, annotates such an image and video
(also into such a folder), and `attnfer data compile` honours the loader's `skip_bad` for an undecodable JPEG.

Every `predict` run is a subprocess: before the fix, OpenCV killed it (exit -11) with no output at all."""

import csv
import io
import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import cv2
import numpy as np
from PIL import Image
from typer.testing import CliRunner

from attnfer.cli import app

FRAMES = 9


def _video(path, frames=FRAMES, size=(96, 72)):
    """A real mp4v video of ``frames`` synthetic frames at ``path`` (any name: written under an ASCII name, then
    renamed by Python)."""
    path = os.fsdecode(path)
    tmp = Path(os.path.dirname(path)) / "writing.mp4"
    w = cv2.VideoWriter(str(tmp), cv2.VideoWriter_fourcc(*"mp4v"), 10.0, size)
    assert w.isOpened()
    rng = np.random.default_rng(0)
    for k in range(frames):
        frame = np.full((size[1], size[0], 3), 20 * k, np.uint8)
        frame[10:60, 20:70] = rng.integers(0, 255, (50, 50, 3), np.uint8)
        w.write(frame)
    w.release()
    os.replace(tmp, path)
    return path


def _jpeg(path, seed=0, size=(64, 64)):
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 255, (*size[::-1], 3), np.uint8)).save(os.fsdecode(path), format="JPEG")
    return path


def _predict(args, tmp_path):
    """`attnfer predict ARGS` in a subprocess with its own temporary folder (checked empty afterwards)."""
    env = {**os.environ, "TMPDIR": str(tmp_path / "tmpdir"), "PYTHONIOENCODING": "utf-8"}
    (tmp_path / "tmpdir").mkdir(exist_ok=True)
    r = subprocess.run([sys.executable, "-m", "attnfer", "predict", *args], env=env, capture_output=True, timeout=600)
    leftovers = [p.name for p in (tmp_path / "tmpdir").iterdir() if p.name.startswith("attnfer-opencv")]
    return r, leftovers


def _frames(path, tmp_path):
    """Frame count and first frame's shape of a video, read through a copy with an ASCII path."""
    copy = tmp_path / "check-copy.mp4"
    shutil.copyfile(os.fsdecode(path), copy)
    cap = cv2.VideoCapture(str(copy))
    n = 0
    shape = None
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        shape = shape or frame.shape
        n += 1
    cap.release()
    copy.unlink()
    return n, shape


def test_predict_reads_a_video_with_a_non_utf8_name_in_csv_and_json(checkpoint, tmp_path):
    folder = tmp_path / "clips"
    folder.mkdir()
    raw = os.fsencode(folder)
    _video(raw + b"/caf\xe9.mp4")  # Latin-1 bytes: not UTF-8
    _video(folder / "plain.mp4", frames=4)
    model = str(checkpoint / "model.onnx")
    sources = {}
    for fmt in ("csv", "json"):
        out = tmp_path / fmt
        args = [str(folder), "-m", model, "--runtime", "onnx", "--detector", "none", "--format", fmt, "--out", str(out)]
        r, leftovers = _predict(args, tmp_path)
        assert r.returncode == 0, (r.returncode, r.stderr.decode(errors="replace")[-3000:])
        assert not leftovers
        text = (out / f"predictions.{fmt}").read_bytes().decode("utf-8")  # strict: no lone surrogates
        if fmt == "csv":
            rows = list(csv.DictReader(io.StringIO(text)))
        else:
            doc = json.loads(text)
            rows = doc["rows"]
            assert "\\udc" not in text and doc["summary"]["frames"] == FRAMES + 4 and doc["summary"]["errors"] == 0
        by_source = {}
        for row in rows:
            assert row["status"] == "ok", row
            by_source.setdefault(row["source"], []).append(int(row["frame"]))
        sources[fmt] = by_source
        assert by_source == {
            f"{folder}/caf\\xe9.mp4": list(range(FRAMES)),  # a backslash, x, e, 9: Python's backslashreplace
            f"{folder}/plain.mp4": list(range(4)),
        }
    assert sources["csv"] == sources["json"]


def test_predict_annotates_non_utf8_named_video_and_image_into_a_non_utf8_folder(checkpoint, tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    raw = os.fsencode(folder)
    _video(raw + b"/\xe9t\xe9.mp4")
    _jpeg(raw + b"/caf\xe9.jpg", seed=1)
    out_raw = os.fsencode(tmp_path) + b"/out-\xff"  # the output folder's name is not UTF-8 either
    args = [str(folder), "-m", str(checkpoint / "model.onnx"), "--runtime", "onnx", "--detector", "none"]
    r, leftovers = _predict([*args, "--annotate", "--out", os.fsdecode(out_raw)], tmp_path)
    assert r.returncode == 0, (r.returncode, r.stderr.decode(errors="replace")[-3000:])
    assert not leftovers
    doc = json.loads(Path(os.fsdecode(out_raw + b"/predictions.json")).read_bytes().decode("utf-8"))
    rows = doc["rows"]
    video_rows = [r for r in rows if r["source"] == f"{folder}/\\xe9t\\xe9.mp4"]
    assert [r["frame"] for r in video_rows] == list(range(FRAMES)) and all(r["status"] == "ok" for r in video_rows)
    assert [r["status"] for r in rows if r["source"] == f"{folder}/caf\\xe9.jpg"] == ["ok"]
    # annotated outputs are named from the escaped stem (valid UTF-8), inside the non-UTF-8 folder
    written = sorted(os.listdir(out_raw))
    assert written == [b"\\xe9t\\xe9.annotated.mp4", b"caf\\xe9.annotated.jpg", b"predictions.json"], written
    n, shape = _frames(out_raw + b"/\\xe9t\\xe9.annotated.mp4", tmp_path)
    assert n == FRAMES and shape == (72, 96, 3)
    with Image.open(os.fsdecode(out_raw + b"/caf\\xe9.annotated.jpg")) as im:
        assert im.size == (64, 64) and im.format == "JPEG"
    listed = doc["summary"]["annotated"]
    assert len(listed) == 2 and all("\\udc" not in a for a in listed)
    assert listed[0].endswith("/caf\\xe9.annotated.jpg") and listed[1].endswith("/\\xe9t\\xe9.annotated.mp4")


def test_a_non_utf8_video_is_read_through_proc_fd_where_no_link_can_be_made(tmp_path):
    path = _video(os.fsencode(tmp_path) + b"/clip-\xe9.mp4")
    code = textwrap.dedent(
        """
        import json, os, sys
        def no_links(*args, **kwargs):
            raise PermissionError(1, "Operation not permitted")
        os.symlink = no_links
        from attnfer.inference.video import VideoSource
        fds = len(os.listdir("/proc/self/fd"))
        src = VideoSource(sys.argv[1], stride=2)
        frames = [f.index for f in src]
        fds = len(os.listdir("/proc/self/fd")) - fds
        print(json.dumps({"frames": frames, "size": [src.width, src.height], "fds": fds}))
        """
    )
    env = {**os.environ, "TMPDIR": str(tmp_path)}
    r = subprocess.run([sys.executable, "-c", code, os.fsencode(path)], env=env, capture_output=True, timeout=300)
    assert r.returncode == 0, (r.returncode, r.stderr.decode(errors="replace")[-3000:])
    assert json.loads(r.stdout) == {"frames": list(range(0, FRAMES, 2)), "size": [96, 72], "fds": 0}
    assert not [p for p in tmp_path.iterdir() if p.name.startswith("attnfer-opencv")]


def _folder_dataset(root):
    """A folder dataset (train/ and test/ of class folders) of small real JPEGs; returns the corrupt one's path (a
    truncated JPEG whose name is not UTF-8)."""
    k = 0
    for split, n in (("train", 6), ("test", 3)):
        for cls in ("happy", "sad"):
            (root / split / cls).mkdir(parents=True)
            for i in range(n):
                _jpeg(root / split / cls / f"{split}_{cls}_{i}.jpg", seed=k, size=(24, 24))
                k += 1
    bad = os.fsdecode(os.fsencode(root) + b"/test/sad/broken-\xe9.jpg")
    data = _jpeg(root / "good.jpg", seed=99, size=(24, 24)).read_bytes()
    Path(bad).write_bytes(data[:60])  # the header is there, the image data is not
    (root / "good.jpg").unlink()
    return bad


def test_compile_with_skip_bad_leaves_an_undecodable_jpeg_out_and_records_it(tmp_path):
    from attnfer.data import load_dataset

    root = tmp_path / "faces"
    _folder_dataset(root)
    out = tmp_path / "store"
    r = CliRunner().invoke(
        app, ["data", "compile", "folder", str(root), str(out), "--size", "16", "-o", "skip_bad=true"]
    )
    assert r.exit_code == 0, r.output
    meta = json.loads((out / "meta.json").read_text(encoding="utf-8"))
    assert meta["splits"]["test"]["count"] == 6 and meta["splits"]["test"]["skipped"] == 1
    assert len(meta["skipped"]) == 1 and f"{root}/test/sad/broken-\\xe9.jpg: not a readable image" in meta["skipped"][0]
    ids = json.loads((out / "test.ids.json").read_text())
    assert len(ids) == 6 and not any(i.startswith("broken") for i in ids)
    assert np.load(out / "test.images.npy", mmap_mode="r").shape == (6, 16, 16, 3)
    assert np.load(out / "test.targets.npy").tolist() == [0, 0, 0, 1, 1, 1]
    store = load_dataset("folder", out)  # the store's own log lists what it left out
    assert store.summary()["skipped"] == 1 and store["test"].ids == ids
    img, target = store["test"][5]
    assert img.shape == (3, 16, 16) and target == 1
    assert not (tmp_path / "store.partial").exists() and not list(out.glob("*.kept.npy"))


def test_compile_without_skip_bad_stops_with_one_line_naming_the_file(tmp_path):
    root = tmp_path / "faces"
    _folder_dataset(root)
    out = tmp_path / "store"
    r = CliRunner().invoke(app, ["data", "compile", "folder", str(root), str(out), "--size", "16"], terminal_width=400)
    assert r.exit_code == 2, r.output
    text = r.output.strip()
    assert len(text.splitlines()) == 1, text
    assert text.startswith("error: ") and "/test/sad/broken-\\xe9.jpg: not a readable image" in text
    assert "skip_bad=true" in text
    assert not out.exists() and not (tmp_path / "store.partial").exists()
