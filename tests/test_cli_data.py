"""``attnfer data`` commands, run through the real CLI."""

from typer.testing import CliRunner

from attnfer.cli import app

runner = CliRunner()


def test_synth_inspect_compile(tmp_path):
    out = tmp_path / "synth"
    r = runner.invoke(app, ["data", "synth", str(out), "--n", "35", "--size", "48", "--preview"], terminal_width=200)
    assert r.exit_code == 0, r.output
    assert (out / "preview.png").is_file() and "train 28, test 7" in r.output
    r = runner.invoke(app, ["data", "inspect", str(out), "--dataset", "synthfer"], terminal_width=200)
    assert r.exit_code == 0, r.output
    assert "validation split: carved from train" in r.output and "happiness" in r.output
    r = runner.invoke(app, ["data", "compile", "synthfer", str(out), str(tmp_path / "store"), "--size", "32"])
    assert r.exit_code == 0, r.output
    assert "compiled 35 images" in r.output and (tmp_path / "store" / "meta.json").is_file()
    # a store at a model's input size, and the warning when a model's input is larger than the stored faces
    r = runner.invoke(
        app, ["data", "compile", "synthfer", str(out), str(tmp_path / "s64"), "--model", "feratt"], terminal_width=300
    )
    assert r.exit_code == 0 and "at 128x128" in " ".join(r.output.split()), r.output
    _check_store_warning(tmp_path / "store", tmp_path / "s64")


def _check_store_warning(small, exact):
    import warnings

    import numpy as np
    import pytest

    from attnfer.data import load_dataset
    from attnfer.engine import load_config
    from attnfer.engine.data import FERDataModule
    from attnfer.models import get_model_cfg
    from attnfer.preprocess import PreprocessConfig, resize_face

    cfg = load_config(overrides={"model.name": "feratt", "data.num_workers": 0})
    with pytest.warns(UserWarning, match="keeps faces at 32x32 but the model's input is 128x128"):
        FERDataModule(cfg, load_dataset("synthfer", small), get_model_cfg("feratt"))
    data = load_dataset("synthfer", exact)
    assert np.load(exact / "train.images.npy").shape[1:] == (128, 128, 3)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        FERDataModule(cfg, data, get_model_cfg("feratt"))
    # stored with the preprocessing's own resize: the stored face is what the JPEG path gives at that size
    jpeg = load_dataset("synthfer", exact.parent / "synth")["test"]
    i = 0
    ref = resize_face(jpeg.load_image(i), PreprocessConfig(input_size=(3, 128, 128)))
    k = data["test"].ids.index(jpeg.ids[i])
    assert np.array_equal(data["test"].load_image(k), ref)


def test_errors_exit_non_zero_and_name_the_file(tmp_path):
    r = runner.invoke(app, ["data", "inspect", str(tmp_path), "--dataset", "rafdb"], terminal_width=300)
    assert r.exit_code == 2 and "not a RAF-DB root" in r.output
    r = runner.invoke(app, ["data", "compile", "nope", str(tmp_path), str(tmp_path / "o")], terminal_width=300)
    assert r.exit_code == 2 and "unknown dataset 'nope'" in r.output
    assert not (tmp_path / "o").exists()
