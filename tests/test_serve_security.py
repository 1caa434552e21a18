"""The service's access control, upload deadline and pixel limit (issue 18, items 12 and 13): a real `attnfer serve`
on loopback with an API key from the environment, raw sockets for uploads that stall or abort, the page in headless
Chromium asking for the key; the start-up warning and the key comparison in-process."""

import hmac
import shutil
import socket
import struct
import time
import zlib
from pathlib import Path

import httpx
import pytest
from PIL import Image
from typer.testing import CliRunner

from attnfer.cli import app as cli
from attnfer.data import BASIC7
from conftest import build, serving

KEY = "s3cret-key-of-this-test"
ALLOWED = "http://allowed.example:8080"
AUTH = {"Authorization": f"Bearer {KEY}"}


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory) -> Path:
    return build("patt_lite", class_names=list(BASIC7)).save(tmp_path_factory.mktemp("ckpt") / "model")


@pytest.fixture(scope="module")
def server(tmp_path_factory, ckpt):
    """The key from ATTNFER_API_KEY, one allowed origin, 1 s to upload, 0.5 MP; yields (url, log path)."""
    tmp = tmp_path_factory.mktemp("serve")
    args = ["-m", str(ckpt), "--detector", "none", "--cors-origin", ALLOWED, "--upload-timeout", "1"]
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("ATTNFER_API_KEY", KEY)
        with serving(tmp, [*args, "--max-megapixels", "0.5"]) as url:
            yield url, tmp / "server.log"


def _png(w: int, h: int) -> bytes:
    buf = __import__("io").BytesIO()
    Image.new("RGB", (w, h), (120, 90, 60)).save(buf, "PNG")
    return buf.getvalue()


def _png_header(w: int, h: int) -> bytes:
    """A PNG that says it is w x h (tiny file, no real pixels): what a decompression bomb looks like up front."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 16)) + chunk(b"IEND", b"")


def _error(r: httpx.Response, status: int) -> str:
    assert r.status_code == status, r.text
    body = r.json()
    assert body["error"]["status"] == status
    return body["error"]["message"]


# ------------------------------------------------------------------------------------------------ item 13
def test_every_route_but_healthz_and_the_page_needs_the_key(server):
    url, _ = server
    health = httpx.get(f"{url}/healthz")
    assert health.status_code == 200 and health.json()["auth"] is True
    page = httpx.get(f"{url}/")
    assert page.status_code == 200 and 'id="keyForm"' in page.text and "Authorization: `Bearer ${apiKey}`" in page.text
    for path in ("/v1/model", "/openapi.json", "/docs", "/nonexistent"):
        r = httpx.get(f"{url}{path}")
        assert "Authorization: Bearer KEY" in _error(r, 401) and r.headers["www-authenticate"] == "Bearer", path
        assert "wrong key" in _error(httpx.get(f"{url}{path}", headers={"Authorization": "Bearer nope"}), 401)
        _error(httpx.get(f"{url}{path}", headers={"Authorization": f"Basic {KEY}"}), 401)
        _error(httpx.get(f"{url}{path}", headers={"Authorization": f"Bearer {KEY}x"}), 401)
    assert httpx.get(f"{url}/v1/model", headers=AUTH).json()["class_names"] == list(BASIC7)
    assert httpx.get(f"{url}/v1/model", headers={"authorization": f"bearer {KEY}"}).status_code == 200
    assert httpx.get(f"{url}/openapi.json", headers=AUTH).status_code == 200
    photo = {"file": ("a.png", _png(64, 64), "image/png")}
    _error(httpx.post(f"{url}/v1/predict", files=photo), 401)
    r = httpx.post(f"{url}/v1/predict", files=photo, headers=AUTH, timeout=30)
    assert r.status_code == 200 and len(r.json()["faces"]) == 1  # --detector none: the whole image is the face


def _preflight(url: str, origin: str) -> httpx.Response:
    """The browser's CORS preflight for a POST with an Authorization header from ``origin``."""
    headers = {
        "Origin": origin,
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "authorization",
    }
    return httpx.options(f"{url}/v1/predict", headers=headers)


def test_cross_origin_requests_are_refused_unless_named(server):
    url, _ = server
    photo = {"file": ("a.png", _png(64, 64), "image/png")}
    for origin in ("https://evil.example", "null", "http://allowed.example"):  # another port is another origin
        r = httpx.post(f"{url}/v1/predict", files=photo, headers={**AUTH, "Origin": origin})
        assert "--cors-origin" in _error(r, 403) and "access-control-allow-origin" not in r.headers
        pre = _preflight(url, origin)
        assert pre.status_code >= 400 and "access-control-allow-origin" not in pre.headers
    # the page's own origin (same host and port) is not cross-origin
    r = httpx.post(f"{url}/v1/predict", files=photo, headers={**AUTH, "Origin": url}, timeout=30)
    assert r.status_code == 200
    # the named origin: preflight answered, and its requests get the CORS headers (the key still required)
    pre = _preflight(url, ALLOWED)
    assert pre.status_code == 200 and pre.headers["access-control-allow-origin"] == ALLOWED
    assert "authorization" in pre.headers["access-control-allow-headers"].lower()
    r = httpx.post(f"{url}/v1/predict", files=photo, headers={"Origin": ALLOWED})
    _error(r, 401)
    assert r.headers["access-control-allow-origin"] == ALLOWED  # the page there can read why
    r = httpx.post(f"{url}/v1/predict", files=photo, headers={**AUTH, "Origin": ALLOWED}, timeout=30)
    assert r.status_code == 200 and r.headers["access-control-allow-origin"] == ALLOWED


def test_keys_are_compared_in_constant_time(ckpt, monkeypatch):
    from fastapi.testclient import TestClient

    from attnfer.inference import Recognizer
    from attnfer.serve import create_app

    calls = []
    real = hmac.compare_digest

    def spy(a, b):
        calls.append((a, b))
        return real(a, b)

    monkeypatch.setattr(hmac, "compare_digest", spy)
    rec = Recognizer.from_checkpoint(ckpt, detector="none")
    client = TestClient(create_app(rec, api_key=KEY))
    assert client.get("/v1/model", headers={"Authorization": "Bearer guess"}).status_code == 401
    assert client.get("/v1/model", headers=AUTH).status_code == 200
    assert client.get("/v1/model").status_code == 401
    assert calls == [(b"guess", KEY.encode()), (KEY.encode(), KEY.encode()), (b"", KEY.encode())]
    # without a key: everything open, /healthz says so
    client = TestClient(create_app(rec))
    assert client.get("/v1/model").status_code == 200 and client.get("/healthz").json()["auth"] is False


@pytest.mark.parametrize(
    ("host", "env", "warns"),
    [
        ("0.0.0.0", None, True),
        ("192.0.2.7", None, True),
        ("0.0.0.0", KEY, False),
        ("127.0.0.1", None, False),
        ("::1", None, False),
        ("localhost", None, False),
    ],
)
def test_serving_beyond_loopback_without_a_key_warns_at_start(ckpt, monkeypatch, host, env, warns):
    import uvicorn

    started = {}
    monkeypatch.setattr(uvicorn, "run", lambda web, **kw: started.update(app=web, **kw))  # no socket is opened
    if env:
        monkeypatch.setenv("ATTNFER_API_KEY", env)
    else:
        monkeypatch.delenv("ATTNFER_API_KEY", raising=False)
    r = CliRunner().invoke(cli, ["serve", "-m", str(ckpt), "--detector", "none", "--host", host])
    assert r.exit_code == 0, r.output
    assert started["host"] == host
    text = " ".join(r.stderr.split())
    assert ("without an API key" in text and "ATTNFER_API_KEY" in text) == warns, text
    if env:
        from fastapi.testclient import TestClient

        client = TestClient(started["app"])
        assert client.get("/v1/model").status_code == 401 and client.get("/v1/model", headers=AUTH).status_code == 200
        assert KEY not in r.output  # the key is never printed


def test_bad_cors_origins_and_timeouts_are_one_line_errors(ckpt):
    for args, words in (
        (["--cors-origin", "*"], "--cors-origin"),
        (["--cors-origin", "evil.example"], "--cors-origin"),
        (["--upload-timeout", "0"], "--upload-timeout"),
    ):
        r = CliRunner().invoke(cli, ["serve", "-m", str(ckpt), *args])
        lines = r.stderr.strip().splitlines()
        assert r.exit_code == 2 and len(lines) == 1 and words in lines[0], r.output


# ------------------------------------------------------------------------------------------------ item 12
def _partial_upload(url: str, body: bytes, ctype: str = "image/png", length: int = 200_000) -> socket.socket:
    host, port = url.removeprefix("http://").split(":")
    s = socket.create_connection((host, int(port)))
    head = (
        f"POST /v1/predict HTTP/1.1\r\nHost: {host}:{port}\r\nAuthorization: Bearer {KEY}\r\n"
        f"Content-Type: {ctype}\r\nContent-Length: {length}\r\n\r\n"
    )
    s.sendall(head.encode() + body)
    return s


def test_a_stalled_upload_gets_a_408_and_the_connection_closes(server):
    url, _ = server
    t = time.perf_counter()
    with _partial_upload(url, b"\x89PNG" + b"x" * 1000) as s:
        s.settimeout(20)
        answer = b""
        while chunk := s.recv(65536):  # the server closes the connection after answering
            answer += chunk
    took = time.perf_counter() - t
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 408"), answer
    assert b'"status":408' in body and b"did not arrive within 1 s" in body
    assert 0.9 < took < 10
    assert httpx.get(f"{url}/healthz").status_code == 200


def test_aborted_uploads_are_dropped_without_a_traceback(server):
    url, log = server
    multipart = (
        b'--b0undary\r\nContent-Disposition: form-data; name="file"; filename="a.png"\r\n'
        b"Content-Type: image/png\r\n\r\n" + b"x" * 5000
    )
    for body, ctype in ((b"x" * 5000, "image/png"), (multipart, "multipart/form-data; boundary=b0undary")):
        s = _partial_upload(url, body, ctype)
        time.sleep(0.3)
        s.close()
    time.sleep(1.0)
    assert httpx.get(f"{url}/healthz").status_code == 200
    text = log.read_text()
    assert "Traceback" not in text and "Exception in ASGI application" not in text, text[-3000:]


@pytest.mark.parametrize("side", [1000, 8001, 12_000, 20_000, 60_000])
def test_every_image_over_the_pixel_limit_is_a_413(server, side):
    """0.5 MP allowed: 1 MP is refused by attnfer's check, 64 MP+ by Pillow's own bomb check on the header, which
    used to answer 422; every one of them is a 413 naming the limit."""
    url, _ = server
    r = httpx.post(f"{url}/v1/predict", files={"file": ("big.png", _png_header(side, side), "image/png")}, headers=AUTH)
    message = _error(r, 413)
    assert f"{side * side} pixels" in message and "more than the limit of 500000" in message


# ------------------------------------------------------------------------------------------------ the page
CHROMIUM, CHROMEDRIVER = shutil.which("chromium"), shutil.which("chromedriver")


@pytest.mark.skipif(not (CHROMIUM and CHROMEDRIVER), reason="Debian's chromium and chromium-driver are not installed")
def test_the_page_asks_for_the_key_and_sends_it(server, tmp_path):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    url, _ = server
    photo = tmp_path / "face.png"
    photo.write_bytes(_png(80, 60))
    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run"):
        opts.add_argument(flag)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=opts)
    try:
        driver.get(url + "/")
        form = driver.find_element(By.ID, "keyForm")
        WebDriverWait(driver, 20).until(lambda d: form.is_displayed())
        assert "needs an API key" in form.text
        # a wrong key: the upload is refused and the page asks again
        driver.find_element(By.ID, "key").send_keys("wrong")
        driver.find_element(By.CSS_SELECTOR, "#keyForm button").click()
        WebDriverWait(driver, 5).until(lambda d: not form.is_displayed())
        driver.find_element(By.ID, "file").send_keys(str(photo))
        WebDriverWait(driver, 20).until(lambda d: "Error 401" in d.find_element(By.ID, "status").text)
        assert form.is_displayed() and "refused" in form.text
        driver.find_element(By.ID, "key").send_keys(KEY)
        driver.find_element(By.CSS_SELECTOR, "#keyForm button").click()
        driver.execute_script("document.getElementById('file').value = '';")
        driver.find_element(By.ID, "file").send_keys(str(photo))
        WebDriverWait(driver, 30).until(lambda d: d.find_element(By.ID, "faces").get_attribute("data-count") == "1")
        assert driver.execute_script("return window.attnfer.lastResult;")["width"] == 80
    finally:
        driver.quit()
