"""SynthFER generation, FERAtt compositing and the card-derived transforms."""

import hashlib

import numpy as np
import pytest
import torch

from attnfer.data import load_dataset
from attnfer.data.compositing import CompositingDataset, composite, landmark_mask
from attnfer.data.synthfer import EXPRESSIONS, contact_sheet, generate, render
from attnfer.preprocess import PreprocessConfig
from attnfer.preprocess.torch_ops import Augment, build_transform


def _digest(root):
    h = hashlib.sha256()
    for p in sorted(root.rglob("*")):
        if p.is_file():
            h.update(p.relative_to(root).as_posix().encode())
            h.update(p.read_bytes())
    return h.hexdigest()


@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    return generate(tmp_path_factory.mktemp("s") / "synthfer", n=70, size=64, seed=3, workers=2)


def test_generation_is_deterministic_across_worker_counts(synth, tmp_path):
    again = generate(tmp_path / "again", n=70, size=64, seed=3, workers=1)
    assert _digest(again) == _digest(synth)
    other = generate(tmp_path / "other", n=70, size=64, seed=4, workers=1)
    assert _digest(other) != _digest(synth)


def test_layout_loads_through_the_rafdb_loader(synth):
    data = load_dataset("synthfer", synth)
    assert data.class_names == list(EXPRESSIONS)
    counts = data.counts()
    assert counts["test"]["total"] == 14 and counts["train"]["total"] + counts["validation"]["total"] == 56
    all_counts = [counts["train"][c] + counts["validation"][c] + counts["test"][c] for c in EXPRESSIONS]
    assert all_counts == [10] * 7  # balanced classes
    img, _ = data["test"][0]
    assert img.shape == (3, 64, 64)
    assert (synth / "Image" / "mask" / "test_00001_mask.png").is_file()
    # the subset lists use the RAN authors' format and select test images
    for name in ("occlusion", "pose_30", "pose_45"):
        lines = (synth / "subsets" / f"{name}_list.txt").read_text().split()
        assert all(t.startswith("test_") for t in lines if not t.isdigit())
        if name in data.splits:
            assert set(data[name].ids) <= set(data["test"].ids)


def test_expression_cues_change_only_the_face_and_render_is_pure():
    a = render(7, 5, size=64, person=2, label="surprise")
    b = render(7, 5, size=64, person=2, label="surprise")
    np.testing.assert_array_equal(a.image, b.image)
    assert a.label == "surprise" and 0.35 <= a.intensity <= 1.0 and a.mask.max() == 255
    c = render(7, 5, size=64, person=2, label="anger")
    diff = np.abs(a.image.astype(int) - c.image.astype(int)).sum(-1) > 30
    assert diff.any() and (diff & (a.mask == 0)).sum() < 0.05 * diff.sum()  # the change is on the face


def test_contact_sheet(synth, tmp_path):
    from PIL import Image

    path = contact_sheet(synth, tmp_path / "sheet.png", per_class=3)
    with Image.open(path) as im:
        assert im.size == (120 + 3 * 112, 7 * 112)


def test_compositing_outputs(synth):
    from attnfer.preprocess import PreprocessConfig

    data = load_dataset("synthfer", synth)
    grey = PreprocessConfig(input_size=(3, 64, 64), grayscale=True)  # a grey model's contract (ImageNet mean/std)
    ds = CompositingDataset(data["train"], grey, train=True)
    x_img, target, extras = ds[0]
    x_org, mask = extras["x_org"], extras["mask"]
    assert x_img.shape == x_org.shape == (3, 64, 64) and mask.shape == (1, 64, 64)
    assert isinstance(target, int) and 0.05 < mask.mean() < 0.95
    black = (0 - torch.tensor([0.485, 0.456, 0.406])) / torch.tensor([0.229, 0.224, 0.225])
    outside = mask[0] == 0
    torch.testing.assert_close(x_org[:, outside], black[:, None].expand(3, int(outside.sum())))
    torch.testing.assert_close(x_img[0], x_img[1] * 0.224 / 0.229 + (0.456 - 0.485) / 0.229, atol=1e-4, rtol=0)  # grey
    colour = CompositingDataset(data["train"], grey.replace(grayscale=False), train=True)[0][0]
    assert not torch.allclose(colour[0], colour[1] * 0.224 / 0.229 + (0.456 - 0.485) / 0.229, atol=1e-2)  # not grey
    ev = CompositingDataset(data["test"], grey, train=False)
    torch.testing.assert_close(ev[1][0], ev[1][0])  # evaluation composites are fixed per index
    ds.set_epoch(1)
    assert not torch.equal(ds[0][0], CompositingDataset(data["train"], grey)[0][0])


def test_composite_with_landmark_mask_and_background():
    rng = np.random.default_rng(0)
    face = np.full((100, 100, 3), 180, np.uint8)
    pts = np.array([[20, 30], [80, 30], [85, 70], [50, 95], [15, 70]], float)
    mask = landmark_mask((100, 100), pts)
    bg = np.zeros((300, 300, 3), np.uint8)
    bg[:, :, 1] = 90
    x_img, x_org, m = composite(face, mask, bg, rng, train=False, size=96)
    assert x_img.shape == (96, 96, 3) and m.dtype == np.uint8
    assert (x_org[m == 0] == 0).all() and (x_org[m > 0] > 0).all()


def test_transform_follows_the_card():
    import attnfer

    card = attnfer.create_model("emonet").card
    t = build_transform(card)
    x = torch.full((3, 50, 70), 255, dtype=torch.uint8)
    y = t(x)
    assert y.shape == (3, 224, 224) and y.dtype == torch.float32
    torch.testing.assert_close(y[:, 0, 0], (1 - torch.tensor(card.mean)) / torch.tensor(card.std))
    feratt = attnfer.create_model("feratt").card  # grey faces
    rgb = torch.zeros((3, 8, 8), dtype=torch.uint8)
    rgb[0] = 255
    g = build_transform(feratt)(rgb)
    assert g.shape == (3, 128, 128)
    torch.testing.assert_close(g[0] * 0.229 + 0.485, g[1] * 0.224 + 0.456)  # same grey in every channel
    aug = build_transform(
        card,
        train=True,
        augment=Augment(
            rotation=10,
            color_jitter=(0.2, 0.2, 0.2, 0.1),
            random_contrast=0.3,
            random_erasing=0.25,
            resized_crop_scale=(0.08, 1.0),
        ),
    )
    assert aug(torch.randint(0, 256, (3, 100, 100), dtype=torch.uint8)).shape == (3, 224, 224)


def test_random_contrast_matches_keras_semantics():
    torch.manual_seed(0)
    card = PreprocessConfig(input_size=(3, 10, 10), mean=None, std=None)
    u8 = (torch.rand(3, 10, 10) * 128 + 64).round().to(torch.uint8)
    x = u8.float() / 255.0
    y = build_transform(card, train=True, augment=Augment(hflip=0.0, random_contrast=0.3))(u8) / 255.0
    mean = x.mean((1, 2), keepdim=True)
    f = ((y - mean) / (x - mean)).flatten()
    assert torch.allclose(f, f[0].expand_as(f), atol=1e-4) and 0.7 <= f[0] <= 1.3
    torch.testing.assert_close(y.mean((1, 2)), x.mean((1, 2)))
