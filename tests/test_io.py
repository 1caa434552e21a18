"""Save/load round trips and the errors a user gets for broken or foreign files."""

import json

import pytest
import torch

import attnfer
from attnfer.models import CheckpointError
from conftest import build

ROUND_TRIP = [
    ("patt_lite", {}, 112),
    ("patt_lite", {"attention": "batch", "unfreeze_last_n": 3}, 112),
    ("feratt", {"layout": "code", "representation_dim": None}, 64),
    ("emonet", {"shortcut_weight": 0.6}, 64),
    ("sa_fer", {}, 112),
    ("preact_resnet18", {"representation_dim": 64}, 32),
    ("resnet18", {}, 64),
]


@pytest.mark.filterwarnings("ignore::attnfer.models.BatchDependentWarning")
@pytest.mark.parametrize("name,kwargs,size", ROUND_TRIP, ids=[r[0] for r in ROUND_TRIP])
def test_save_load_round_trip_gives_identical_outputs(tmp_path, name, kwargs, size):
    m = build(name, num_classes=3, class_names=["anger", "happiness", "neutral"], **kwargs)
    # move BN statistics away from their defaults so that buffers are checked too
    m.train()
    with torch.no_grad():
        m(torch.randn(4, 3, size, size))
    m.eval()
    x = torch.randn(2, 3, size, size)
    with torch.no_grad():
        expected = m(x)
    m.save(tmp_path / "ckpt")
    assert sorted(p.name for p in (tmp_path / "ckpt").iterdir()) == ["config.json", "model.safetensors"]
    config = json.loads((tmp_path / "ckpt" / "config.json").read_text())
    assert config["model"] == name and config["kwargs"] == kwargs
    assert config["config"]["preprocess"]["input_size"] == list(m.cfg.input_size)
    assert config["config"] == m.cfg.to_dict()  # the whole model config travels with the checkpoint
    loaded = attnfer.load_model(tmp_path / "ckpt").eval()
    assert loaded.class_names == ["anger", "happiness", "neutral"]
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), expected, rtol=0, atol=0)


def test_explicit_none_kwarg_survives_the_round_trip(tmp_path):
    m = build("preact_resnet18", representation_dim=None)
    m.save(tmp_path)
    assert attnfer.load_model(tmp_path).embedding is None


@pytest.fixture
def saved(tmp_path):
    build("patt_lite").save(tmp_path / "m")
    return tmp_path / "m"


def test_truncated_weights_fail_with_the_file_name(saved):
    f = saved / "model.safetensors"
    f.write_bytes(f.read_bytes()[: f.stat().st_size // 2])
    with pytest.raises(CheckpointError, match=r"model\.safetensors.*(truncated|readable)"):
        attnfer.load_model(saved)


def test_foreign_weights_fail_and_name_the_mismatch(saved, tmp_path):
    build("emonet").save(tmp_path / "other")
    (saved / "model.safetensors").write_bytes((tmp_path / "other" / "model.safetensors").read_bytes())
    with pytest.raises(CheckpointError, match=r"does not match a 'patt_lite'.*missing"):
        attnfer.load_model(saved)


def test_non_safetensors_file_fails(saved):
    (saved / "model.safetensors").write_bytes(b"PK\x03\x04 this is a zip, maybe a pickle")
    with pytest.raises(CheckpointError, match="model.safetensors"):
        attnfer.load_model(saved)


def test_missing_or_broken_config(saved, tmp_path):
    with pytest.raises(CheckpointError, match="config.json not found"):
        attnfer.load_model(tmp_path)
    (saved / "config.json").write_text('{"model": "patt_lite",\n "num_classes": 7,\n oops}')
    with pytest.raises(CheckpointError, match="line 3"):
        attnfer.load_model(saved)
    (saved / "config.json").write_text('{"model": "nope", "num_classes": 7, "kwargs": {}}')
    with pytest.raises(CheckpointError, match="unknown model 'nope'"):
        attnfer.load_model(saved)


def test_save_leaves_no_temporary_files_and_overwrites(saved):
    build("patt_lite", num_classes=7).save(saved)
    assert sorted(p.name for p in saved.iterdir()) == ["config.json", "model.safetensors"]


def test_only_registry_models_can_be_saved(tmp_path):
    from attnfer.models import EMONet

    with pytest.raises(ValueError, match="create_model"):
        EMONet().save(tmp_path)
