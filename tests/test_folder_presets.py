"""Class-folder presets: the two 0..6 layouts (AffectNet order, EMO-Net's RAF-DB order) must never be confused."""

import numpy as np
import pytest
from PIL import Image

from attnfer.data import DatasetError, load_dataset
from attnfer.data.folder import PRESETS

EMONET_ORDER = ["surprise", "fear", "disgust", "happiness", "sadness", "anger", "neutral"]


def _tree(root, folders):
    for split in ("train", "test"):
        for f in folders:
            for k in range(2):
                path = root / split / f / f"{split}_{f}_{k}.jpg"
                path.parent.mkdir(parents=True, exist_ok=True)
                Image.fromarray(np.full((8, 8, 3), 10 * int(f), np.uint8)).save(path)
    return root


def test_emonet_rafdb_preset_is_rafdb_order_minus_one():
    assert PRESETS["emonet_rafdb"] == {str(i): c for i, c in enumerate(EMONET_ORDER)}
    assert PRESETS["emonet_rafdb"] == {str(int(k) - 1): v for k, v in PRESETS["rafdb"].items()}


def test_the_two_0_to_6_presets_differ():
    assert set(PRESETS["affectnet"]) >= set(PRESETS["emonet_rafdb"])  # same folder names 0..6 ...
    assert PRESETS["affectnet"]["0"] == "neutral" and PRESETS["emonet_rafdb"]["0"] == "surprise"  # ... other classes
    assert sum(PRESETS["affectnet"][k] != v for k, v in PRESETS["emonet_rafdb"].items()) >= 6


def test_emonet_layout_loads_by_name(tmp_path):
    root = _tree(tmp_path / "rafdb", [str(i) for i in range(7)])
    data = load_dataset("folder", root, class_names="emonet_rafdb")
    assert data.class_names == ["neutral", "happiness", "surprise", "sadness", "anger", "disgust", "fear"]
    ds = data["test"]
    for i, image_id in enumerate(ds.ids):
        folder = image_id.split("_")[1]
        assert ds.class_names[ds.targets[i]] == EMONET_ORDER[int(folder)]
    # the same tree read with the AffectNet preset gives other labels for the same files
    other = load_dataset("folder", root, class_names="affectnet")["test"]
    k = other.ids.index("test_0_0")
    assert other.class_names[other.targets[k]] == "neutral"
    assert ds.class_names[ds.targets[ds.ids.index("test_0_0")]] == "surprise"


def test_emonet_preset_rejects_a_1_to_7_tree(tmp_path):
    root = _tree(tmp_path / "kaggle", [str(i) for i in range(1, 8)])  # Kaggle's RAF-DB repack needs "rafdb"
    with pytest.raises(DatasetError, match="7: class folder has no entry in class_names"):
        load_dataset("folder", root, class_names="emonet_rafdb")
    with pytest.raises(ValueError, match="emonet_rafdb"):
        load_dataset("folder", root, class_names="emonet")
