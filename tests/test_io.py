"""Save/load round trips and the errors a user gets for broken or foreign files."""

import contextlib
import json
import os
from pathlib import Path

import pytest
import torch

import attnfer
from attnfer.models import CheckpointError
from conftest import build

CONFIGS = Path(__file__).parents[1] / "configs"

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


# ------------------------------------------------------------------------------------------------ file modes
@contextlib.contextmanager
def umask(mask: int):
    old = os.umask(mask)
    try:
        yield
    finally:
        os.umask(old)


def modes(root: Path) -> dict[str, int]:
    return {str(p.relative_to(root)): p.stat().st_mode & 0o777 for p in root.rglob("*") if p.is_file()}


def test_current_umask_reads_it_without_changing_it():
    from attnfer.files import current_umask

    with umask(0o027):
        assert current_umask() == 0o027 and os.umask(0o027) == 0o027


@pytest.mark.parametrize("mask", [0o022, 0o027, 0o002], ids=["022", "027", "002"])
def test_saved_models_and_written_files_honour_the_umask(tmp_path, mask):
    """Issue 18, item 11: a saved model was 0600 whatever the umask, unreadable by another user or container."""
    from attnfer.files import atomic_write, write_json

    def private_writer(path):  # writes as mkstemp and some libraries do: mode 0600
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        os.write(fd, b"x")
        os.close(fd)

    with umask(mask):
        saved = build("patt_lite", num_classes=7).save(tmp_path / "model")
        atomic_write(tmp_path / "private.bin", private_writer)
        write_json(tmp_path / "out.json", {"a": 1})
    want = 0o666 & ~mask
    assert modes(tmp_path) == {
        "model/model.safetensors": want,
        "model/config.json": want,
        "private.bin": want,
        "out.json": want,
    }
    assert saved == tmp_path / "model"


def test_exports_and_reports_honour_the_umask(tmp_path):
    from attnfer.engine.report import render_report
    from attnfer.inference.onnx_export import export_onnx

    with umask(0o022):
        saved = build("patt_lite", num_classes=7).save(tmp_path / "model")
        export_onnx(saved, tmp_path / "exports" / "model.onnx")
        (tmp_path / "run").mkdir()
        (tmp_path / "run" / "evaluation.json").write_text(json.dumps({"checkpoints": {}, "splits": []}))
        render_report(tmp_path / "run")
    assert (tmp_path / "exports" / "model.onnx").stat().st_mode & 0o777 == 0o644
    assert (tmp_path / "run" / "report.html").stat().st_mode & 0o777 == 0o644
    assert sorted(p.name for p in (tmp_path / "exports").iterdir()) == ["model.onnx"]  # no temporary directory left


def test_atomic_write_refuses_a_directory_and_names_the_file_not_its_temporary(tmp_path):
    from attnfer.files import atomic_write

    (tmp_path / "taken").mkdir()
    with pytest.raises(IsADirectoryError, match="taken"):
        atomic_write(tmp_path / "taken", "x")
    with pytest.raises(FileNotFoundError) as e:
        atomic_write(tmp_path / "missing" / "f.txt", "x")
    assert e.value.filename == str(tmp_path / "missing" / "f.txt")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["taken"]


def test_every_file_a_training_run_writes_honours_the_umask(tmp_path, monkeypatch):
    """Models, Lightning checkpoints, logs, curves, samples, the report: all 0640 under umask 027, none 0600."""
    from attnfer.engine import load_config, train

    monkeypatch.setenv("ATTNFER_CACHE", str(tmp_path / "cache"))
    over = {
        "data.synth_n": 40,
        "data.synth_size": 48,
        "data.batch_size": 8,
        "data.eval_batch_size": 32,
        "data.num_workers": 0,
        "trainer.precision": "32-true",
        "trainer.progress_bar": False,
        "phases.0.epochs": 1,
        "phases.0.max_minutes": None,
        "report_samples": 1,
        "evaluate_batch_invariance": False,
        "output_dir": str(tmp_path / "runs"),
    }
    with umask(0o027):
        run = train(load_config(CONFIGS / "quickstart.yaml", over), tmp_path / "runs" / "tiny")
    found = modes(run)
    for must in ("best/model.safetensors", "last/model.safetensors", "lightning/phase0/last.ckpt", "report.html"):
        assert must in found, must
    assert {name: oct(m) for name, m in found.items() if m != 0o640} == {}
