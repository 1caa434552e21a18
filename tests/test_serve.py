"""The web service end to end: `attnfer serve` as a real uvicorn process on loopback, an HTTP client, and the page in
headless Chromium (Debian's package, driven by Selenium) uploading a real photo."""

import io
import json
import os
import shutil
import threading
import time
from pathlib import Path

import httpx
import numpy as np
import pytest
from PIL import Image

from assets import MULTI_FACE, fetch
from attnfer.data import BASIC7
from conftest import detector_cache, free_port, serving

pytestmark = pytest.mark.network
ARTIFACTS = Path(os.environ.get("ATTNFER_TEST_ARTIFACTS", Path(__file__).parents[1] / "test-artifacts"))


@pytest.fixture(scope="module")
def server(tmp_path_factory, checkpoint):
    """`attnfer serve` in a subprocess (ONNX runtime, SSD detector from the cache), 1 MB / 0.7 MP limits."""
    tmp = tmp_path_factory.mktemp("serve")
    detector_cache(tmp / "cache")
    args = ["-m", str(checkpoint / "model.onnx"), "--runtime", "onnx", "--detector", "ssd"]
    with serving(tmp, [*args, "--max-upload-mb", "1", "--max-megapixels", "0.7"]) as url:
        yield url


def test_health_docs_and_prediction(server, checkpoint):
    health = httpx.get(f"{server}/healthz").json()
    assert health["status"] == "ok" and health["detector"] == "ssd" and health["classes"] == list(BASIC7)
    assert health["detector_fallback"] is None and health["family"] == "patt_lite"
    assert health["model"] == "patt_lite (training data not recorded in its config)"  # a bare model: neither
    assert health["training"] is None and health["warning"] is None and health["checkpoint"].endswith("model.onnx")
    info = httpx.get(f"{server}/v1/model").json()  # the model's whole config, as saved with it
    saved = json.loads((checkpoint / "config.json").read_text())
    assert info["config"] == saved["config"] and info["config"]["preprocess"]["input_size"] == [3, 224, 224]
    assert (info["name"], info["runtime"], info["class_names"]) == (saved["model"], "onnx", list(BASIC7))
    assert "/v1/predict" in httpx.get(f"{server}/openapi.json").json()["paths"]
    assert httpx.get(f"{server}/docs").status_code == 200
    photo = fetch(MULTI_FACE).read_bytes()
    r = httpx.post(f"{server}/v1/predict", files={"file": ("group.jpg", photo, "image/jpeg")}, timeout=30)
    assert r.status_code == 200, r.text
    body = r.json()
    assert (body["width"], body["height"]) == (1000, 667) and len(body["faces"]) == 5
    for face in body["faces"]:
        assert set(face) == {"box", "detector_score", "label", "probabilities"}
        assert face["label"] in BASIC7 and sum(face["probabilities"].values()) == pytest.approx(1, abs=1e-3)
        x, y, w, h = face["box"]
        assert x >= 0 and x + w <= 1000 and y >= 0 and y + h <= 667
    raw = httpx.post(f"{server}/v1/predict", content=photo, headers={"content-type": "image/jpeg"}, timeout=30)
    assert raw.json()["faces"] == body["faces"]  # raw body and multipart give the same answer


def test_health_and_page_name_the_model_by_its_config_and_warn_about_synthfer(tmp_path):
    """A checkpoint whose config records SynthFER training: /healthz, /v1/model and the page name the family, the
    training data and the run (not the folder, "best"), and warn that it is not meant for real photos."""
    from conftest import build

    model = build("patt_lite", class_names=list(BASIC7))
    training = {"dataset": "synthfer", "run": "quickstart-20260101-120000", "recipe": "quickstart"}
    model.cfg = model.cfg.replace(extra={**model.cfg.extra, "training": training})
    model.save(tmp_path / "run" / "best")
    with serving(tmp_path, ["-m", str(tmp_path / "run" / "best"), "--detector", "none"]) as url:
        health = httpx.get(f"{url}/healthz").json()
        info = httpx.get(f"{url}/v1/model").json()
        page = httpx.get(f"{url}/").text
    assert health["model"] == "patt_lite trained on synthfer (run quickstart-20260101-120000, recipe quickstart)"
    assert health["family"] == "patt_lite" and health["training"] == training and health["imported"] is None
    assert health["run"] == "quickstart-20260101-120000" and "best" not in health["model"]
    assert "not meant for real photos" in health["warning"] and "attnfer convert" in health["warning"]
    assert info["description"] == health["model"] and info["warning"] == health["warning"]
    assert info["config"]["extra"]["training"] == training
    assert 'id="warning"' in page and "h.warning" in page  # the page shows /healthz's model line and warning


def _png(w: int, h: int) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (w, h), (120, 90, 60)).save(buf, "PNG")
    return buf.getvalue()


@pytest.mark.parametrize(
    ("kwargs", "status", "words"),
    [
        ({"files": {"file": ("a.txt", b"hello", "text/plain")}}, 415, "not accepted"),
        ({"files": {"file": ("bad.jpg", b"\xff\xd8\xff garbage", "image/jpeg")}}, 422, "not a readable image"),
        ({"files": {"file": ("empty.png", b"", "image/png")}}, 400, "empty"),
        ({"files": {"other": ("a.png", b"x", "image/png")}}, 422, "'file'"),
        ({"files": {"file": ("big.png", os.urandom(1_500_000), "image/png")}}, 413, "exceeds the limit"),
        ({"files": {"file": ("huge.png", _png(1000, 1000), "image/png")}}, 413, "more than the limit"),
        ({"content": iter([b"\x89PNG", b"chunked"]), "headers": {"content-type": "image/png"}}, 411, "Content-Length"),
    ],
)
def test_bad_uploads_get_json_errors_and_the_server_keepsserving(server, kwargs, status, words):
    r = httpx.post(f"{server}/v1/predict", timeout=30, **kwargs)
    assert r.status_code == status, r.text
    assert r.json()["error"]["status"] == status and words in r.json()["error"]["message"]
    assert httpx.get(f"{server}/healthz").json()["status"] == "ok"


def test_request_timeout_is_a_504():
    import uvicorn

    from attnfer.inference import Recognizer
    from attnfer.preprocess import PreprocessConfig
    from attnfer.serve import ServeLimits, create_app

    class Slow:  # a runtime that takes 2 s per batch
        def __call__(self, x):
            time.sleep(2)
            return np.zeros((len(x), 7), np.float32)

    rec = Recognizer(Slow(), list(BASIC7), PreprocessConfig(mean=(0.5,) * 3, std=(0.5,) * 3), _Whole())
    port = free_port()
    srv = uvicorn.Server(uvicorn.Config(create_app(rec, ServeLimits(timeout_s=0.3)), port=port, log_level="warning"))
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    while not srv.started:
        time.sleep(0.05)
    try:
        r = httpx.post(f"http://127.0.0.1:{port}/v1/predict", files={"file": ("a.png", _png(64, 64), "image/png")})
        assert r.status_code == 504 and "not processed within 0.3 s" in r.json()["error"]["message"]
    finally:
        srv.should_exit = True
        thread.join(10)


class _Whole:
    name = "none"
    whole_image = True

    def detect(self, image):
        from attnfer.inference.faces import Face

        return [Face((0, 0, image.shape[1], image.shape[0]), 1.0)]


CHROMIUM, CHROMEDRIVER = shutil.which("chromium"), shutil.which("chromedriver")


@pytest.mark.skipif(not (CHROMIUM and CHROMEDRIVER), reason="Debian's chromium and chromium-driver are not installed")
def test_page_in_headless_chromium_shows_boxes_and_labels(server):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run"):
        opts.add_argument(flag)
    opts.add_argument("--disable-background-networking")
    opts.add_argument("--use-fake-device-for-media-stream")  # a synthetic camera for the webcam button
    opts.add_argument("--use-fake-ui-for-media-stream")  # grant the camera without a prompt
    opts.add_argument("--window-size=1200,1400")
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=opts)
    try:
        driver.get(server + "/")
        WebDriverWait(driver, 20).until(lambda d: "ssd face detector" in d.find_element(By.ID, "model").text)
        driver.find_element(By.ID, "file").send_keys(str(fetch(MULTI_FACE)))
        WebDriverWait(driver, 60).until(lambda d: d.find_element(By.ID, "faces").get_attribute("data-count") != "0")
        faces = driver.find_elements(By.CSS_SELECTOR, "#faces li.face")
        assert len(faces) == 5
        labels = [f.find_element(By.CLASS_NAME, "label").text for f in faces]
        assert all(label in BASIC7 for label in labels)
        # the canvas shows the photo at full size with a box drawn in the label's colour on each face's edge
        size = driver.execute_script("const c = document.getElementById('view'); return [c.width, c.height];")
        assert size == [1000, 667]
        result = driver.execute_script("return window.attnfer.lastResult;")
        palette = driver.execute_script("return PALETTE;")
        for face in result["faces"]:
            x, y, w, h = face["box"]
            pixel = driver.execute_script(
                "return Array.from(document.getElementById('view').getContext('2d')"
                f".getImageData({x + w // 2}, {y + h - 1}, 1, 1).data);"
            )
            want = palette[list(BASIC7).index(face["label"]) % len(palette)]
            rgb = [int(want[i : i + 2], 16) for i in (1, 3, 5)]
            assert max(abs(a - b) for a, b in zip(pixel[:3], rgb, strict=True)) < 8, (pixel, want)
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        assert driver.save_screenshot(str(ARTIFACTS / "serve_page.png"))
        # the webcam path, with Chromium's synthetic camera (a moving test pattern, no face in it)
        driver.find_element(By.ID, "camera").click()
        WebDriverWait(driver, 20).until(lambda d: d.find_element(By.ID, "status").text == "Webcam on.")
        driver.find_element(By.ID, "snap").click()
        WebDriverWait(driver, 30).until(lambda d: "face(s)" in d.find_element(By.ID, "status").text)
        frame = driver.execute_script("return window.attnfer.lastResult;")
        assert frame["faces"] == [] and frame["width"] > 0
        assert driver.find_element(By.ID, "faces").get_attribute("data-count") == "0"
    finally:
        driver.quit()
