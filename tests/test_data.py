"""Loaders on small fixture trees written here in each dataset's real format, including its label-order traps."""

import csv
import json

import numpy as np
import pytest
import torch
from PIL import Image

from attnfer.data import BASIC7, CANONICAL, DatasetError, load_dataset
from attnfer.data.ferplus import ferplus_target


def _img(path, value=128, size=(16, 16)):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((*size, 3), value, np.uint8)).save(path)


def _label(data, split, image_id):
    ds = data[split]
    return ds.class_names[ds.targets[ds.ids.index(image_id)]]


# ------------------------------------------------------------------------------------------------
# RAF-DB: labels 1-7 start at Surprise; split from the name prefix; aligned names add _aligned
# ------------------------------------------------------------------------------------------------
@pytest.fixture
def rafdb(tmp_path):
    root = tmp_path / "RAF-DB" / "basic"
    lines = []
    for i in range(1, 36):  # 5 per class in train
        lines.append(f"train_{i:05d}.jpg {(i - 1) % 7 + 1}")
    for i in range(1, 8):
        lines.append(f"test_{i:04d}.jpg {i}")
    (root / "EmoLabel").mkdir(parents=True)
    (root / "EmoLabel" / "list_patition_label.txt").write_text("\n".join(lines) + "\n")
    for line in lines:
        stem = line.split()[0][:-4]
        _img(root / "Image" / "aligned" / f"{stem}_aligned.jpg")
        _img(root / "Image" / "original" / f"{stem}.jpg")
    return root


def test_rafdb_labels_counts_and_validation(rafdb):
    data = load_dataset("rafdb", rafdb.parent)  # the dataset root above basic/ works too
    assert data.class_names == list(BASIC7)
    assert _label(data, "test", "test_0001") == "surprise"  # code 1
    assert _label(data, "test", "test_0004") == "happiness"  # code 4
    assert _label(data, "test", "test_0007") == "neutral"  # code 7
    c = data.counts()
    assert c["test"]["total"] == 7 and c["train"]["total"] + c["validation"]["total"] == 35
    assert c["validation"]["total"] == 4  # 10% (rounded up by scikit-learn), stratified, seeded
    assert "carved from train" in data.validation_source
    assert not set(data["train"].ids) & set(data["validation"].ids)
    assert data["train"].paths[0].name.endswith("_aligned.jpg")
    img, target = data["test"][0]
    assert img.shape == (3, 16, 16) and img.dtype == torch.uint8 and target == CANONICAL.index("surprise")
    original = load_dataset("rafdb", rafdb, aligned=False)
    assert original["test"].paths[0].name == "test_0001.jpg"


def test_rafdb_bad_input_names_file_and_line(rafdb):
    label_file = rafdb / "EmoLabel" / "list_patition_label.txt"
    label_file.write_text(label_file.read_text() + "test_0008.jpg 9\n")
    with pytest.raises(DatasetError, match=r"list_patition_label.txt:43: label 9 .* not a RAF-DB code 1-7"):
        load_dataset("rafdb", rafdb)
    label_file.write_text(label_file.read_text().replace("test_0008.jpg 9", "test_0008.jpg 2"))
    with pytest.raises(DatasetError, match=r"test_0008_aligned.jpg: image listed at list_patition_label.txt:43"):
        load_dataset("rafdb", rafdb)
    data = load_dataset("rafdb", rafdb, skip_bad=True)  # opt-in skipping, counted
    assert len(data.skipped.entries) == 1 and "1 samples skipped" in data.skipped.summary()


def test_rafdb_subsets_and_corrupt_image(rafdb, tmp_path):
    lst = tmp_path / "occl.txt"
    lst.write_text("test_0002_aligned.jpg 2 1\ntest_0005_aligned.jpg 5 1\ntest_0002_aligned.jpg 2 1\n")
    data = load_dataset("rafdb", rafdb, subsets={"occlusion": lst})
    assert data["occlusion"].ids == ["test_0002", "test_0005"]
    assert _label(data, "occlusion", "test_0002") == "fear"
    bad = tmp_path / "bad.txt"
    bad.write_text("fer0032200.png\n")
    with pytest.raises(DatasetError, match="1 of 1 names are not in rafdb/test"):
        load_dataset("rafdb", rafdb, subsets={"pose": bad})
    (rafdb / "Image" / "aligned" / "test_0003_aligned.jpg").write_bytes(b"\xff\xd8 truncated")
    with pytest.raises(DatasetError, match="test_0003_aligned.jpg: not a readable image"):
        data["test"][2]


# ------------------------------------------------------------------------------------------------
# FER2013: emotion 0-6 starts at Angry; Usage -> train / validation / test
# ------------------------------------------------------------------------------------------------
def _fer_rows(n_per_usage=7):
    rows = []
    for usage in ("Training", "PublicTest", "PrivateTest"):
        for e in range(n_per_usage):
            rows.append((e, " ".join(str((e * 31 + k) % 256) for k in range(2304)), usage))
    return rows


def _write_fer(path, rows):
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["emotion", "pixels", "Usage"])
        w.writerows(rows)


def test_fer2013_labels_splits_and_pixels(tmp_path):
    _write_fer(tmp_path / "fer2013.csv", _fer_rows())
    data = load_dataset("fer2013", tmp_path)
    assert data.validation_source == "dataset"
    assert {s: c["total"] for s, c in data.counts().items()} == {"train": 7, "validation": 7, "test": 7}
    assert _label(data, "train", "fer0000000") == "anger"  # code 0
    assert _label(data, "train", "fer0000003") == "happiness"  # code 3
    assert _label(data, "test", "fer0000020") == "neutral"  # row 20, code 6
    img, _ = data["train"][1]
    assert img.shape == (3, 48, 48) and img[0, 0, 1].item() == 32 and img[1, 47, 47].item() == (31 + 2303) % 256


@pytest.mark.parametrize(
    "row,message",
    [
        ((7, "0 " * 2303 + "0", "Training"), r":2: emotion '7' is not a FER2013 code 0-6"),
        ((1, "0 " * 2302 + "0", "Training"), r":2: pixels has 2303 values, expected 2304"),
        ((1, "0 " * 2303 + "256", "Training"), r":2: pixel values must be integers 0-255"),
        ((1, "0 " * 2303 + "x", "Training"), r":2: pixel values must be integers 0-255"),
        ((1, "0 " * 2303 + "0", "Train"), r":2: Usage 'Train' is not one of"),
    ],
)
def test_fer2013_bad_rows(tmp_path, row, message):
    _write_fer(tmp_path / "fer2013.csv", [row, *_fer_rows(1)])
    with pytest.raises(DatasetError, match=message):
        load_dataset("fer2013", tmp_path)


# ------------------------------------------------------------------------------------------------
# FERPlus: votes with outlier removal, ties, unknown / NF
# ------------------------------------------------------------------------------------------------
def test_ferplus_label_modes_on_crafted_votes():
    # columns: neutral happiness surprise sadness anger disgust fear contempt unknown NF
    v = np.array([6, 3, 0, 0, 0, 0, 0, 0, 1, 0])  # the single 'unknown' vote is an outlier
    assert np.argmax(ferplus_target(v, "majority")) == 0
    tie = np.array([4, 4, 0, 0, 0, 0, 0, 0, 0, 2])
    assert ferplus_target(tie, "majority") is None  # no class above half
    p = ferplus_target(tie, "probability")
    np.testing.assert_allclose(p, [0.5, 0.5, 0, 0, 0, 0, 0, 0, 0, 0])  # ties enter together; 80% >= 75%: stop
    assert ferplus_target(np.array([0, 0, 0, 0, 0, 0, 0, 0, 2, 8]), "majority")[9] == 1  # NF wins -> dropped later
    spread = np.array([4, 3, 2, 1, 0, 0, 0, 0, 0, 0])  # the single sadness vote is removed: 9 votes left
    assert ferplus_target(spread, "majority") is None  # 4 is not more than half of 9
    np.testing.assert_allclose(ferplus_target(spread, "crossentropy")[:3], [4 / 7, 3 / 7, 0])  # 7/9 >= 75%
    np.testing.assert_allclose(ferplus_target(spread, "multi_target")[:3], [4 / 7, 3 / 7, 0])  # >= 30% each
    assert ferplus_target(np.array([3, 3, 2, 2, 0, 0, 0, 0, 0, 0]), "probability") is None  # needs 4 classes
    assert ferplus_target(np.array([1, 1, 1, 1, 1, 1, 1, 1, 1, 1]), "majority") is None  # all outliers


def _votes_table():
    # (votes, expected majority label or None)
    return [
        ([8, 2, 0, 0, 0, 0, 0, 0, 0, 0], "neutral"),
        ([0, 9, 1, 0, 0, 0, 0, 0, 0, 0], "happiness"),
        ([0, 0, 0, 0, 0, 0, 0, 7, 3, 0], "contempt"),
        ([0, 0, 0, 0, 0, 0, 0, 0, 2, 8], None),  # NF
        ([0, 0, 0, 0, 0, 0, 6, 0, 4, 0], "fear"),
        ([5, 5, 0, 0, 0, 0, 0, 0, 0, 0], None),  # tie: no majority
    ]


def test_ferplus_joined_csv(tmp_path):
    table = _votes_table()
    fer_rows, new_rows = [], []
    for usage in ("Training", "PublicTest", "PrivateTest"):
        for j, (votes, _) in enumerate([*table, ([0, 0, 10, 0, 0, 0, 0, 0, 0, 0], "surprise")]):
            fer_rows.append((j % 7, " ".join(["7"] * 2304), usage))
            name = "" if j == 6 else f"fer{len(new_rows):07d}.png"  # the last one was removed by FERPlus
            new_rows.append([usage, name, *votes])
    _write_fer(tmp_path / "fer2013.csv", fer_rows)
    with (tmp_path / "fer2013new.csv").open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(
            [
                "Usage",
                "Image name",
                "neutral",
                "happiness",
                "surprise",
                "sadness",
                "anger",
                "disgust",
                "fear",
                "contempt",
                "unknown",
                "NF",
            ]
        )
        w.writerows(new_rows)
    data = load_dataset("ferplus", tmp_path)
    assert data.class_names == list(CANONICAL)
    assert data["train"].ids == ["fer0000000", "fer0000001", "fer0000002", "fer0000004"]
    assert [_label(data, "train", i) for i in data["train"].ids] == [
        "neutral",
        "happiness",
        "contempt",
        "fear",
    ]
    assert any("no image name" in n for n in data.notes) and any("unknown/NF" in n for n in data.notes)
    soft = load_dataset("ferplus", tmp_path, label_mode="crossentropy")
    assert len(soft["train"]) == 5  # the 5/5 tie survives as a soft target
    _, t = soft["train"][soft["train"].ids.index("fer0000005")]
    np.testing.assert_allclose(t[:2].numpy(), [0.5, 0.5])
    assert len(soft["test"]) == 4  # test is always majority
    seven = load_dataset("ferplus", tmp_path, num_classes=7)
    assert "fer0000002" not in seven["train"].ids


def test_ferplus_generated_folders(tmp_path):
    for folder in ("FER2013Train", "FER2013Valid", "FER2013Test"):
        rows = []
        for j, (votes, _) in enumerate(_votes_table()):
            name = f"fer{j:07d}.png"
            _img(tmp_path / folder / name, size=(48, 48))
            rows.append([name, "(0, 0, 48, 48)", *votes])
        with (tmp_path / folder / "label.csv").open("w", newline="") as f:
            csv.writer(f).writerows(rows)
    data = load_dataset("ferplus", tmp_path)
    assert data.validation_source == "dataset"
    assert [_label(data, "test", i) for i in data["test"].ids] == ["neutral", "happiness", "contempt", "fear"]
    with (tmp_path / "FER2013Test" / "label.csv").open("a") as f:
        f.write("fer0000009.png,(0, 0, 48, 48),1,2,3\n")
    with pytest.raises(DatasetError, match=r"label.csv:7: expected 'file, box, 10 votes'"):
        load_dataset("ferplus", tmp_path)


# ------------------------------------------------------------------------------------------------
# AffectNet: expression 0-10 starts at Neutral; 8-10 dropped; crop by face box; two layouts
# ------------------------------------------------------------------------------------------------
def test_affectnet_original_csv_layout(tmp_path):
    header = [
        "subDirectory_filePath",
        "face_x",
        "face_y",
        "face_width",
        "face_height",
        "facial_landmarks",
        "expression",
        "valence",
        "arousal",
    ]
    for fname, n in (("training.csv", 3), ("validation.csv", 1)):
        rows = []
        for rep in range(n):
            for code in range(11):
                rel = f"{rep}/{fname[:3]}_{code}.png"  # lossless, so the crop can be checked exactly
                img = np.zeros((40, 40, 3), np.uint8)
                img[10:30, 5:25] = 200  # the face box
                (tmp_path / "Manually_Annotated_Images" / str(rep)).mkdir(parents=True, exist_ok=True)
                Image.fromarray(img).save(tmp_path / "Manually_Annotated_Images" / rel)
                rows.append([rel, 5, 10, 20, 20, "1;2;3", code, 0.1, 0.2])
        (tmp_path / "Manually_Annotated_file_lists").mkdir(exist_ok=True)
        with (tmp_path / "Manually_Annotated_file_lists" / fname).open("w", newline="") as f:
            w = csv.writer(f)
            w.writerow(header)
            w.writerows(rows)
    data = load_dataset("affectnet", tmp_path)
    assert data["test"].ids == [f"val_{c}" for c in range(8)]
    assert [_label(data, "test", f"val_{c}") for c in (0, 2, 6, 7)] == [
        "neutral",
        "sadness",
        "anger",
        "contempt",
    ]
    img, _ = data["test"][0]
    assert img.shape == (3, 20, 20) and int(img.min()) == 200  # cropped by the face box
    assert any("expression 9 (uncertain)" in n for n in data.notes)
    an7 = load_dataset("affectnet", tmp_path, num_classes=7)
    assert "val_7" not in an7["test"].ids and an7.class_names == list(BASIC7)
    assert len(an7["train"]) + len(an7["validation"]) == 21


def test_affectnet_npy_layout_and_balanced_sampler(tmp_path):
    from attnfer.data.sampling import balanced_sampler

    for folder, codes in (("train_set", [1] * 12 + [0, 0, 3, 3, 10]), ("val_set", [0, 3, 6, 7, 8])):
        for k, code in enumerate(codes):
            _img(tmp_path / folder / "images" / f"{k}.jpg")
            (tmp_path / folder / "annotations").mkdir(parents=True, exist_ok=True)
            np.save(tmp_path / folder / "annotations" / f"{k}_exp.npy", np.array(str(code)).astype(np.int64))
    data = load_dataset("affectnet", tmp_path, val_fraction=0.2)
    assert [_label(data, "test", i) for i in data["test"].ids] == ["neutral", "surprise", "anger", "contempt"]
    train = data["train"]
    drawn = np.bincount(train.targets[list(balanced_sampler(train, num_samples=3000))], minlength=8)
    present = drawn[drawn > 0]
    assert len(present) == 3 and present.min() > 800  # happiness no longer dominates


# ------------------------------------------------------------------------------------------------
# CK+: codes 0-7 with contempt; last N frames; subject-independent folds
# ------------------------------------------------------------------------------------------------
@pytest.fixture
def ckplus(tmp_path):
    for s in range(12):
        for q in range(2):
            subject, seq = f"S{100 + s:03d}", f"{q + 1:03d}"
            for f in range(1, 6):
                _img(tmp_path / "cohn-kanade-images" / subject / seq / f"{subject}_{seq}_{f:08d}.png", f * 20)
            code = (s + q) % 7 + 1
            emo = tmp_path / "Emotion" / subject / seq / f"{subject}_{seq}_00000005_emotion.txt"
            emo.parent.mkdir(parents=True)
            emo.write_text(f"   {code:.7e}\n")
    return tmp_path


def test_ckplus_frames_labels_and_folds(ckplus):
    data = load_dataset("ckplus", ckplus, frames=3, num_folds=4, fold=1)
    assert "neutral" not in data.class_names and "contempt" in data.class_names
    all_ids = [i for s in ("train", "validation", "test") for i in data[s].ids]
    assert len(all_ids) == 12 * 2 * 3 and "S100_001_00000001" not in all_ids
    assert _label(data, data_split(data, "S100_001_00000005"), "S100_001_00000005") == "anger"  # code 1
    assert _label(data, data_split(data, "S101_001_00000004"), "S101_001_00000004") == "contempt"  # code 2
    subjects = {s: set(data[s].extras["subject"]) for s in ("train", "validation", "test")}
    assert not subjects["train"] & subjects["test"] and not subjects["train"] & subjects["validation"]
    assert not subjects["validation"] & subjects["test"]
    # across all folds, every subject is tested exactly once
    tested = [
        sorted(set(load_dataset("ckplus", ckplus, num_folds=4, fold=k)["test"].extras["subject"])) for k in range(4)
    ]
    flat = [s for t in tested for s in t]
    assert sorted(flat) == sorted({f"S{100 + s:03d}" for s in range(12)})
    neutral = load_dataset("ckplus", ckplus, first_frame_neutral=True, num_folds=4)
    assert neutral.class_names == list(CANONICAL)
    assert _label(neutral, data_split(neutral, "S100_001_00000001"), "S100_001_00000001") == "neutral"


def data_split(data, image_id):
    return next(s for s, ds in data.splits.items() if image_id in ds.ids)


def test_ckplus_bad_emotion_file(ckplus):
    (ckplus / "Emotion" / "S100" / "001" / "S100_001_00000005_emotion.txt").write_text("9.0\n")
    with pytest.raises(DatasetError, match="S100_001_00000005_emotion.txt:1: emotion 9 is not a CK\\+ code"):
        load_dataset("ckplus", ckplus)


# ------------------------------------------------------------------------------------------------
# Class folders
# ------------------------------------------------------------------------------------------------
def test_class_folders_with_presets_and_names(tmp_path):
    for split in ("train", "test"):
        for folder in range(1, 8):
            for k in range(3):
                _img(tmp_path / "kaggle" / split / str(folder) / f"{split}_{folder}_{k}.jpg")
    data = load_dataset("folder", tmp_path / "kaggle", class_names="rafdb")
    assert _label(data, "test", "test_1_0") == "surprise" and _label(data, "test", "test_7_0") == "neutral"
    effic = load_dataset("folder", tmp_path / "kaggle", class_names="affectnet")  # 0-6 AffectNet order
    assert _label(effic, "test", "test_1_0") == "happiness"
    for split in ("train", "valid", "test"):
        for name in ("Happy", "Surprise", "angry"):
            _img(tmp_path / "named" / split / name / f"{split}_{name}.png")
    named = load_dataset("folder", tmp_path / "named")
    assert named.validation_source == "dataset" and named.class_names == ["happiness", "surprise", "anger"]
    with pytest.raises(DatasetError, match="pass class_names"):
        _img(tmp_path / "named" / "test" / "blurry" / "x.png")
        load_dataset("folder", tmp_path / "named")


def test_compiled_store_round_trip(rafdb, tmp_path):
    from attnfer.data.compiled import compile_dataset

    data = load_dataset("rafdb", rafdb)
    out = compile_dataset(data, tmp_path / "store", size=24)
    assert json.loads((out / "meta.json").read_text())["splits"]["test"]["count"] == 7
    again = load_dataset("rafdb", out)  # a compiled store is read whatever the name says
    assert again["test"].ids == data["test"].ids
    np.testing.assert_array_equal(again["test"].targets, data["test"].targets)
    img, _ = again["test"][0]
    assert img.shape == (3, 24, 24) and not (tmp_path / "store.partial").exists()
