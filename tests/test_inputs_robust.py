"""Inputs that must never cost a result (issue 18, items 6-9), on real files written here in the real formats.

6. non-UTF-8 file names in `attnfer predict` output (CSV and JSON);
7. one `Recognizer` shared by threads (the Haar cascade);
8. label files: `3.7` labels, UTF-8 BOMs, non-UTF-8 files, FER2013 whitespace;
9. `attnfer data inspect` (every problem, exit codes, `--check-images all`) and `skip_bad` while training.
"""

import csv
import io
import json
import os
import threading
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from attnfer.cli import app
from attnfer.data import BASIC7, DatasetError, load_dataset

runner = CliRunner()


def _jpeg(path, seed=0, size=(24, 24)):
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 255, (*size, 3), np.uint8)).save(path, quality=90)
    return path


def _corrupt(path):
    """A truncated JPEG: the header is there, the image data is not."""
    data = Path(path).read_bytes()
    Path(path).write_bytes(data[:60])


def _rafdb(root, n_train=28, n_test=7, extra_lines=(), skip_images=()):
    """A RAF-DB tree (basic/EmoLabel/list_patition_label.txt + Image/aligned) of small real JPEGs."""
    base = root / "basic"
    lines = [f"train_{i:05d}.jpg {(i - 1) % 7 + 1}" for i in range(1, n_train + 1)]
    lines += [f"test_{i:04d}.jpg {(i - 1) % 7 + 1}" for i in range(1, n_test + 1)]
    for k, line in enumerate(lines):
        stem = line.split()[0][:-4]
        if stem not in skip_images:
            _jpeg(base / "Image" / "aligned" / f"{stem}_aligned.jpg", seed=k)
    label_file = base / "EmoLabel" / "list_patition_label.txt"
    label_file.parent.mkdir(parents=True, exist_ok=True)
    label_file.write_bytes(("\n".join(lines) + "\n").encode() + b"".join(extra_lines))
    return base


# ------------------------------------------------------------------------------------------------
# 6. non-UTF-8 file names in the predict output
# ------------------------------------------------------------------------------------------------
def test_predict_keeps_every_row_for_non_utf8_names_in_csv_and_json(checkpoint, tmp_path):
    folder = tmp_path / "photos"
    folder.mkdir()
    raw = os.fsencode(folder)
    _jpeg(folder / "plain.jpg", seed=1, size=(64, 64))
    _jpeg(os.fsdecode(raw + b"/caf\xe9.jpg"), seed=2, size=(64, 64))  # Latin-1 bytes: not UTF-8
    bad = os.fsdecode(raw + b"/broken-\xff.jpg")
    Path(bad).write_bytes(b"\xff\xd8\xff not a JPEG")  # an error row that names a non-UTF-8 file
    expected = {
        f"{folder}/plain.jpg": "ok",
        f"{folder}/caf\\xe9.jpg": "ok",  # a backslash, x, e, 9: Python's backslashreplace
        f"{folder}/broken-\\xff.jpg": "error",
    }
    model = str(checkpoint / "model.onnx")
    sources = {}
    for fmt in ("csv", "json"):
        out = tmp_path / fmt
        args = ["predict", str(folder), "-m", model, "--runtime", "onnx", "--detector", "none", "--format", fmt]
        r = runner.invoke(app, [*args, "--out", str(out)], terminal_width=300)
        assert r.exit_code == 1, r.output  # the broken file is an error row; every other row is there
        assert r.exception is None or isinstance(r.exception, SystemExit), r.exception
        text = (out / f"predictions.{fmt}").read_bytes().decode("utf-8")  # strict UTF-8: no lone surrogates
        if fmt == "csv":
            rows = list(csv.DictReader(io.StringIO(text)))
        else:
            doc = json.loads(text)
            rows = doc["rows"]
            assert doc["summary"]["errors"] == 1 and "\\udc" not in text
        sources[fmt] = {row["source"]: row["status"] for row in rows}
        assert sources[fmt] == expected, sources[fmt]
        error = next(row["error"] for row in rows if row["status"] == "error")
        assert "broken-\\xff.jpg" in error
        assert "broken-\\xff.jpg" in " ".join(r.output.split())  # the console names it the same way
    assert sources["csv"] == sources["json"]


def test_prediction_writer_escapes_lone_surrogates(tmp_path):
    from attnfer.inference.output import PredictionWriter

    name = os.fsdecode(b"/photos/\xe9t\xe9.jpg")
    for fmt in ("csv", "json"):
        target = tmp_path / f"p.{fmt}"
        w = PredictionWriter(fmt, list(BASIC7), {"detector": "none"}, target)
        w.write({"source": name, "status": "error", "error": f"{name}: not a readable image"})
        w.write({"source": "/photos/ok-é.jpg", "status": "no_face"})
        w.close({"errors": 1})
        text = target.read_bytes().decode("utf-8")
        rows = list(csv.DictReader(io.StringIO(text))) if fmt == "csv" else json.loads(text)["rows"]
        assert [r["source"] for r in rows] == ["/photos/\\xe9t\\xe9.jpg", "/photos/ok-é.jpg"]
        assert rows[0]["error"] == "/photos/\\xe9t\\xe9.jpg: not a readable image"


# ------------------------------------------------------------------------------------------------
# 7. one Recognizer shared by threads
# ------------------------------------------------------------------------------------------------
@pytest.mark.network
def test_threads_sharing_a_recognizer_with_the_haar_detector_get_the_results_of_sequential_calls(checkpoint):
    from assets import MULTI_FACE, POSED_PORTRAITS, SINGLE_FACE, fetch
    from attnfer.inference import Recognizer, read_rgb

    rec = Recognizer.from_checkpoint(checkpoint / "model.onnx", detector="haar", runtime="onnx")
    images = [read_rgb(fetch(a)) for a in (MULTI_FACE, SINGLE_FACE, *POSED_PORTRAITS)]
    reference = [[(f.box, f.label) for f in rec.predict(im)] for im in images]
    assert sum(map(len, reference)) >= 6
    errors, wrong = [], []

    def work(t):
        for k in range(15):
            i = (t + k) % len(images)
            try:
                got = [(f.box, f.label) for f in rec.predict(images[i])]
            except Exception as e:  # cv2.error from a shared cascade
                errors.append(repr(e))
                continue
            if got != reference[i]:
                wrong.append((i, got))

    threads = [threading.Thread(target=work, args=(t,)) for t in range(4)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert not errors and not wrong, (errors[:3], len(wrong))


def test_a_detector_and_runtime_of_your_own_are_called_one_thread_at_a_time_unless_thread_safe():
    import time

    from attnfer.inference import Recognizer
    from attnfer.inference.faces import Face, FaceDetector
    from attnfer.preprocess import PreprocessConfig

    class Counting:
        def __init__(self):
            self.inside, self.most, self.lock = 0, 0, threading.Lock()

        def enter(self):
            with self.lock:
                self.inside += 1
                self.most = max(self.most, self.inside)
            time.sleep(0.01)
            with self.lock:
                self.inside -= 1

    class Detector(FaceDetector, Counting):
        name = "mine"

        def __init__(self):
            Counting.__init__(self)

        def detect(self, image):
            self.enter()
            return [Face((0, 0, 8, 8), 1.0)]

    class Runtime(Counting):
        def __call__(self, x):
            self.enter()
            return np.zeros((len(x), 7), np.float32)

    det, rt = Detector(), Runtime()
    rec = Recognizer(rt, list(BASIC7), PreprocessConfig(input_size=(3, 16, 16)), det)
    image = np.zeros((32, 32, 3), np.uint8)
    threads = [threading.Thread(target=lambda: [rec.predict(image) for _ in range(5)]) for _ in range(4)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert det.most == 1 and rt.most == 1  # serialised: they do not say they are thread-safe
    det.thread_safe = rt.thread_safe = True
    det.most = rt.most = 0
    threads = [threading.Thread(target=lambda: [rec.predict(image) for _ in range(5)]) for _ in range(4)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert det.most > 1  # thread-safe parts run in parallel


# ------------------------------------------------------------------------------------------------
# 8. label files: 3.7, BOM, non-UTF-8, FER2013 whitespace
# ------------------------------------------------------------------------------------------------
def test_rafdb_fractional_label_is_an_error_and_a_whole_float_is_accepted(tmp_path):
    base = _rafdb(tmp_path, extra_lines=[b"test_0008.jpg 3.7\n"], skip_images=())
    _jpeg(base / "Image" / "aligned" / "test_0008_aligned.jpg")
    with pytest.raises(DatasetError, match=r"list_patition_label\.txt:36: label '3\.7' is not a whole number"):
        load_dataset("rafdb", base)
    label_file = base / "EmoLabel" / "list_patition_label.txt"
    label_file.write_text(label_file.read_text().replace("3.7", "3.0"))
    data = load_dataset("rafdb", base)  # 3.0 (a spreadsheet's export) is 3: disgust in RAF-DB's order
    test = data["test"]
    assert test.class_names[test.targets[test.ids.index("test_0008")]] == "disgust"


def test_utf8_bom_is_accepted_in_rafdb_list_and_fer2013_csv(tmp_path):
    base = _rafdb(tmp_path / "raf")
    label_file = base / "EmoLabel" / "list_patition_label.txt"
    label_file.write_bytes(b"\xef\xbb\xbf" + label_file.read_bytes())  # Excel / Notepad "UTF-8 with BOM"
    data = load_dataset("rafdb", base)
    train = data["train"] if "train_00001" in data["train"].ids else data["validation"]
    assert train.class_names[train.targets[train.ids.index("train_00001")]] == "surprise"  # the first line, code 1
    fer = tmp_path / "fer2013.csv"
    rows = [f"{e},{' '.join(['9'] * 2304)},{u}" for u in ("Training", "PublicTest", "PrivateTest") for e in range(7)]
    fer.write_bytes(b"\xef\xbb\xbf" + ("emotion,pixels,Usage\n" + "\n".join(rows) + "\n").encode())
    data = load_dataset("fer2013", fer)
    assert data.counts()["test"]["total"] == 7


def test_non_utf8_label_file_names_the_file_line_and_what_was_expected(tmp_path):
    base = _rafdb(tmp_path, extra_lines=[b"test_caf\xe9.jpg 1\n"])
    with pytest.raises(DatasetError) as err:
        load_dataset("rafdb", base)
    message = str(err.value)
    assert message.startswith(f"{base / 'EmoLabel' / 'list_patition_label.txt'}:36: byte 0xe9 at column 9")
    assert "is not UTF-8: expected '<image name> <label 1-7>' lines as UTF-8 text" in message


def test_fer2013_pixels_separated_by_any_whitespace_and_the_real_count(tmp_path):
    values = [str((7 * k) % 256) for k in range(2304)]
    good = " ".join(values)
    rows = [(3, good, "Training"), (3, good, "PublicTest"), (3, good, "PrivateTest")]
    spaced = good.replace(" ", "  ", 5).replace(" ", "\t", 1)  # double spaces and a tab
    path = tmp_path / "fer2013.csv"
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["emotion", "pixels", "Usage"])
        w.writerows([(3, spaced, "Training"), *rows])
    data = load_dataset("fer2013", path)
    train = data["train"]
    np.testing.assert_array_equal(train.load_image(0), train.load_image(1))  # the same pixels as the plain row
    short = " ".join(values[:2303]).replace(" ", "  ", 1)  # 2303 values, one double space
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["emotion", "pixels", "Usage"])
        w.writerows([(3, short, "Training"), *rows])
    with pytest.raises(DatasetError, match=r"fer2013\.csv:2: pixels has 2303 values, expected 2304"):
        load_dataset("fer2013", path)


# ------------------------------------------------------------------------------------------------
# 9. data inspect, and skip_bad while training
# ------------------------------------------------------------------------------------------------
def _inspect(*args):
    r = runner.invoke(app, ["data", "inspect", *map(str, args)], terminal_width=400)
    return r.exit_code, " ".join(r.output.split())


def test_inspect_lists_every_label_problem_with_file_and_line_and_exits_1(tmp_path):
    base = _rafdb(
        tmp_path,
        extra_lines=[b"train_00029.jpg 3.7\n", b"test_0008.jpg 9\n", b"test_0009.jpg 2\n", b"test_\xe9.jpg 1\n"],
    )
    code, out = _inspect(base)
    assert code == 1, out
    assert "list_patition_label.txt:36: label '3.7' is not a whole number" in out
    assert "list_patition_label.txt:37: label 9 for 'test_0008.jpg' is not a RAF-DB code 1-7" in out
    assert "test_0009_aligned.jpg: image listed at list_patition_label.txt:38 is missing" in out
    assert "list_patition_label.txt:39: byte 0xe9 at column 6 is not UTF-8" in out
    assert "4 problems found" in out and "no problems found" not in out


def test_inspect_checks_every_image_with_all_and_exits_1_on_corrupt_jpegs(tmp_path):
    base = _rafdb(tmp_path, n_train=70, n_test=7)
    for stem in ("train_00005", "train_00042"):
        _corrupt(base / "Image" / "aligned" / f"{stem}_aligned.jpg")
    code, out = _inspect(base, "--check-images", "5")
    if code == 0:  # the sample missed them: it must say it decoded a sample, not that the data is fine
        assert "no problems found in the labels and the" in out and "--check-images all" in out
    code, out = _inspect(base, "--check-images", "all")
    assert code == 1, out
    assert "train_00005_aligned.jpg: not a readable image" in out and "train_00042_aligned.jpg" in out
    assert "images decoded: all of 77" in out and "2 problems found" in out


def test_inspect_exit_codes_imbalance_is_a_warning_and_usage_errors_are_2(tmp_path):
    lines = [f"train_{i:05d}.jpg {4 if i > 7 else i}" for i in range(1, 120)]  # happiness 100x the others
    lines += [f"test_{i:04d}.jpg {i}" for i in range(1, 8)]
    base = tmp_path / "basic"
    for k, line in enumerate(lines):
        _jpeg(base / "Image" / "aligned" / f"{line.split()[0][:-4]}_aligned.jpg", seed=k, size=(8, 8))
    (base / "EmoLabel").mkdir()
    (base / "EmoLabel" / "list_patition_label.txt").write_text("\n".join(lines) + "\n")
    code, out = _inspect(base, "--check-images", "all")
    assert code == 0, out
    assert "warning: train: imbalance" in out and "no problems found" in out and "problem:" not in out
    assert _inspect(tmp_path / "nope")[0] == 2
    assert _inspect(base, "--dataset", "nope")[0] == 2
    (tmp_path / "empty").mkdir()
    assert _inspect(tmp_path / "empty", "--dataset", "rafdb")[0] == 2  # not a RAF-DB root
    assert _inspect(base, "--check-images", "some")[0] == 2
    assert _inspect(base, "-o", "colour=1")[0] == 2


def test_skip_bad_skips_an_undecodable_image_in_dataloader_workers_and_counts_it(tmp_path):
    from attnfer.data.base import SkippedSampleWarning

    base = _rafdb(tmp_path)
    bad = base / "Image" / "aligned" / "test_0003_aligned.jpg"
    _corrupt(bad)
    data = load_dataset("rafdb", base, skip_bad=True)
    loader = torch.utils.data.DataLoader(data["test"], batch_size=4, num_workers=2)
    batches = list(loader)  # the workers warn on their stderr; the journal brings the record back
    assert sum(len(t) for _, t in batches) == 7  # the batch keeps its size: the next sample takes its place
    assert data.skipped.undecodable() == [f"{bad}: not a readable image (OSError: Truncated File Read)"]
    summary = data.summary()
    assert summary["skipped"] == 1 and "test_0003_aligned.jpg" in summary["skipped_samples"][0]
    fresh = load_dataset("rafdb", base, skip_bad=True)
    with pytest.warns(SkippedSampleWarning, match="skipped \\(skip_bad\\): .*test_0003_aligned.jpg"):
        image, target = fresh["test"][2]  # in this process: a warning, and sample 3's image and label instead
    assert torch.equal(image, fresh["test"][3][0]) and target == fresh["test"][3][1]
    strict = load_dataset("rafdb", base)
    with pytest.raises(DatasetError) as err:  # from a worker process: still a DatasetError, on one line
        list(torch.utils.data.DataLoader(strict["test"], batch_size=4, num_workers=2))
    assert str(err.value).startswith(f"{bad}: not a readable image") and "\n" not in str(err.value)
    assert "skip_bad=true" in str(err.value)


def test_train_with_skip_bad_skips_an_undecodable_jpeg_and_records_it_in_the_run(tmp_path):
    base = _rafdb(tmp_path / "raf")
    bad = base / "Image" / "aligned" / "train_00003_aligned.jpg"
    _corrupt(bad)
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(
        f"name: skipbad\noutput_dir: {tmp_path / 'runs'}\n"
        f"data: {{name: rafdb, root: {base}, batch_size: 8, eval_batch_size: 16, num_workers: 2}}\n"
        "model: {name: preact_resnet18, pretrained: false}\n"
        "phases: [{name: train, epochs: 1, optim: {name: adamw, lr: 1.0e-3}}]\n"
        "trainer: {precision: 32-true, progress_bar: false}\n"
        "report_samples: 0\nevaluate_batch_invariance: false\n"
    )
    os.environ.pop("ATTNFER_RUN_DIR", None)
    try:
        r = runner.invoke(app, ["train", "-c", str(recipe), "--data.options.skip_bad", "true"], terminal_width=400)
        assert r.exit_code == 0, (r.output, r.exception)
        run = next((tmp_path / "runs").iterdir())
        data = json.loads((run / "data.json").read_text())
        assert data["skipped"] == 1 and data["skipped_samples"][0].startswith(f"{bad}: not a readable image")
        assert (run / "best" / "model.safetensors").is_file()
        os.environ.pop("ATTNFER_RUN_DIR", None)
        r = runner.invoke(app, ["train", "-c", str(recipe), "--run-dir", str(tmp_path / "strict")], terminal_width=400)
        assert r.exit_code == 2, (r.output, r.exception)
        lines = [line for line in r.output.splitlines() if line.strip()]
        assert lines[-1].startswith(f"error: {bad}: not a readable image") and "skip_bad=true" in lines[-1]
        assert "Traceback" not in r.output
    finally:
        os.environ.pop("ATTNFER_RUN_DIR", None)
