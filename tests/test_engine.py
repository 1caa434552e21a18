"""Training engine: recipes, exact resume, metrics, batch-invariance reporting, DDP, config errors."""

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file
from typer.testing import CliRunner

from attnfer.cli import app
from attnfer.engine import ConfigError, load_config, resume, train
from attnfer.engine.evaluate import batch_invariance, classification_metrics
from conftest import build

CONFIGS = Path(__file__).parents[1] / "configs"
RECIPES = sorted(p.name for p in CONFIGS.glob("*.yaml"))


@pytest.fixture(scope="module")
def tiny_cache(tmp_path_factory):
    """SynthFER sets used by the engine tests live in a private cache."""
    cache = tmp_path_factory.mktemp("cache")
    old = os.environ.get("ATTNFER_CACHE")
    os.environ["ATTNFER_CACHE"] = str(cache)
    yield cache
    if old is None:
        os.environ.pop("ATTNFER_CACHE", None)
    else:
        os.environ["ATTNFER_CACHE"] = old


@pytest.fixture(autouse=True)
def _fresh_run_dir_env():
    os.environ.pop("ATTNFER_RUN_DIR", None)
    yield
    os.environ.pop("ATTNFER_RUN_DIR", None)


def tiny(tmp_path, n=70, **extra):
    """Overrides that turn any recipe into a seconds-long run on a tiny SynthFER set."""
    o = {
        "output_dir": str(tmp_path),
        "data.name": "synthfer",
        "data.root": None,
        "data.options": {},
        "data.synth_n": n,
        "data.synth_size": 64,
        "data.batch_size": 8,
        "data.eval_batch_size": 32,
        "data.num_workers": 0,
        "model.pretrained": False,
        "trainer.precision": "32-true",  # the recipes' own precision is auto: keep these brief runs in fp32 everywhere
        "trainer.progress_bar": False,
        "trainer.log_every_n_steps": 1,
        "evaluate_batch_invariance": True,
        "report_samples": 2,
    }
    o.update(extra)
    return o


def epoch_losses(run_dir: Path, phase: int = 0) -> list[float]:
    with (run_dir / "logs" / f"phase{phase}" / "metrics.csv").open() as f:
        return [float(r["train/loss_epoch"]) for r in csv.DictReader(f) if r.get("train/loss_epoch")]


@pytest.fixture(scope="module")
def calibrated_mobilenetv1(tiny_cache, tmp_path_factory):
    """Stand-in for ImageNet MobileNetV1 weights offline: random timm weights with BatchNorm statistics
    calibrated on SynthFER images. PAtt-Lite's phase 1 trains only the head on a frozen trunk; on an uncalibrated
    random trunk its features are ~1e-5 and nearly constant, so there would be nothing to learn."""
    import timm

    import attnfer
    from attnfer.data import load_dataset
    from attnfer.engine.data import synthfer_root
    from attnfer.preprocess.torch_ops import build_transform

    ds = load_dataset("synthfer", synthfer_root(70, 64, 0))["train"]
    tf = build_transform(attnfer.create_model("patt_lite").cfg)
    x = torch.stack([tf(ds[i][0]) for i in range(32)])
    net = timm.create_model("mobilenetv1_100")
    for m in net.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.momentum = None  # cumulative average over the calibration batch
            m.reset_running_stats()
    with torch.no_grad():
        net.train()(x)
    path = tmp_path_factory.mktemp("weights") / "mobilenetv1_calibrated.safetensors"
    from safetensors.torch import save_file

    save_file(net.state_dict(), str(path))
    return path


# ------------------------------------------------------------------------------------------------
@pytest.mark.slow
@pytest.mark.parametrize("recipe", RECIPES)
def test_every_recipe_trains_briefly_with_decreasing_loss(recipe, tmp_path, tiny_cache, calibrated_mobilenetv1):
    cfg = load_config(CONFIGS / recipe)
    over = tiny(tmp_path)
    if cfg.model.name == "patt_lite" and cfg.model.kwargs.get("freeze_backbone", True):
        over["model.pretrained"] = str(calibrated_mobilenetv1)
    for k in range(len(cfg.phases)):
        over[f"phases.{k}.epochs"] = 2 if k == 0 else 1
        over[f"phases.{k}.max_minutes"] = None
    if cfg.data.compositing:
        over.update({"data.batch_size": 6, "data.options": {}})  # CPU memory; SynthFER masks feed the compositing
        # composites are redrawn every epoch: ten steps at the recipe's lr (1e-4) move the loss less than new
        # composites do, so this brief run learns faster to show that the losses are wired to the data
        over["phases.0.optim.lr"] = 1e-3
    if cfg.data.name == "ckplus" and cfg.model.name != "feratt":
        over["data.options"] = {}
    cfg = load_config(CONFIGS / recipe, over)
    run = train(cfg)
    losses = epoch_losses(run)
    assert len(losses) == 2 and losses[1] < losses[0], losses
    ev = json.loads((run / "evaluation.json").read_text())
    assert {"best", "last"} <= set(ev["checkpoints"])
    assert (run / "best" / "model.safetensors").is_file() and (run / "report.html").is_file()
    assert json.loads((run / "state.json").read_text())["completed_phases"] == list(range(len(cfg.phases)))


def test_resume_after_interruption_equals_uninterrupted(tmp_path, tiny_cache):
    over = tiny(tmp_path, **{"phases.0.epochs": 3, "phases.0.max_minutes": None, "evaluate_batch_invariance": False})
    full = train(load_config(CONFIGS / "quickstart.yaml", {**over, "trainer.precision": "32-true"}), tmp_path / "full")
    part = train(
        load_config(
            CONFIGS / "quickstart.yaml", {**over, "trainer.precision": "32-true", "trainer.stop_after_epochs": 1}
        ),
        tmp_path / "part",
    )
    assert not (part / "evaluation.json").exists()  # stopped after epoch 1 of 3
    assert json.loads((part / "last" / "metrics.json").read_text())["epoch"] == 0
    resume(part, ["--trainer.stop_after_epochs", "null"])
    a = json.loads((full / "last" / "metrics.json").read_text())
    b = json.loads((part / "last" / "metrics.json").read_text())
    assert a["epoch"] == b["epoch"] == 2
    assert b["val/acc"] == pytest.approx(a["val/acc"], abs=1e-6)
    assert b["val/loss"] == pytest.approx(a["val/loss"], rel=1e-4)
    assert (part / "logs" / "phase0-resume1" / "metrics.csv").is_file()  # the first part's log is kept
    wa, wb = load_file(str(full / "last" / "model.safetensors")), load_file(str(part / "last" / "model.safetensors"))
    for k in wa:
        torch.testing.assert_close(wa[k], wb[k], rtol=1e-4, atol=1e-5, msg=k)


def test_metrics_agree_with_hand_computed_values():
    from sklearn.metrics import f1_score

    y = np.array([0, 0, 1, 1, 2, 2, 2])
    p = np.array([0, 1, 1, 1, 2, 0, 2])
    m = classification_metrics(y, p, ["a", "b", "c"])
    assert m["accuracy"] == pytest.approx(5 / 7)
    assert m["balanced_accuracy"] == pytest.approx((1 / 2 + 1 + 2 / 3) / 3)
    assert m["macro_precision"] == pytest.approx((1 / 2 + 2 / 3 + 1) / 3)
    assert m["macro_recall"] == pytest.approx((1 / 2 + 1 + 2 / 3) / 3)
    assert m["macro_f1"] == pytest.approx(f1_score(y, p, average="macro"))
    assert m["confusion"] == [[1, 1, 0], [0, 2, 0], [1, 0, 2]]
    assert m["per_class"]["b"] == {
        "precision": pytest.approx(2 / 3),
        "recall": 1.0,
        "f1": pytest.approx(0.8),
        "support": 2,
    }
    # torchmetrics (what Lightning logs during validation) agrees with the report's numbers
    from torchmetrics.classification import MulticlassAccuracy

    logits = torch.nn.functional.one_hot(torch.from_numpy(p), 3).float()
    assert MulticlassAccuracy(3, average="micro")(logits, torch.from_numpy(y)).item() == pytest.approx(m["accuracy"])
    assert MulticlassAccuracy(3, average="macro")(logits, torch.from_numpy(y)).item() == pytest.approx(
        m["balanced_accuracy"]
    )


class _Images(torch.utils.data.Dataset):
    def __init__(self, n=40, size=224):
        g = torch.Generator().manual_seed(0)
        self.x = torch.randn(n, 3, size, size, generator=g)
        self.y = torch.randint(0, 7, (n,), generator=g)

    def __len__(self):
        return len(self.y)

    def __getitem__(self, i):
        return self.x[i], int(self.y[i])


def test_batch_invariance_check_flags_batch_attention():
    ds = _Images()
    ok = batch_invariance(build("patt_lite"), ds, large_batch=16)
    assert ok["passed"] and ok["changed_predictions"] == 0
    bad = build("patt_lite", attention="batch")
    with torch.no_grad():  # spread the 32-d features as training does (see test_models)
        h = torch.relu(bad.pre_fc(bad.eval().forward_features(ds.x[:16]).mean((2, 3))))
        bad.pre_bn.eps = 1e-12
        bad.pre_bn.running_mean.copy_(h.mean(0))
        bad.pre_bn.running_var.copy_(h.var(0) + 1e-12)
        bad.pre_bn.weight.fill_(0.3)
        bad.pre_bn.bias.fill_(1.0)
        bad.head.weight.mul_(30)
    res = batch_invariance(bad, ds, large_batch=16)
    assert not res["passed"] and res["changed_predictions"] > 0 and res["max_probability_difference"] > 0.05


@pytest.mark.slow
def test_two_process_cpu_ddp_trains_and_checkpoints(tmp_path, tiny_cache):
    """A real 2-process gloo run with 17 training samples and batch 8: the shards are unequal unless padded (9 and 8
    samples: 2 and 1 steps), which hangs or fails DDP's gradient all-reduce; padded, every rank runs 2 steps."""
    run = tmp_path / "ddp"
    over = tiny(tmp_path, n=24, **{"evaluate_batch_invariance": False, "report_samples": 0})  # 17 train samples
    args = [f"--{k}={json.dumps(v) if not isinstance(v, str) else v}" for k, v in over.items() if v is not None]
    cmd = [
        sys.executable,
        "-m",
        "attnfer",
        "train",
        "-c",
        str(CONFIGS / "quickstart.yaml"),
        "--run-dir",
        str(run),
        *args,
        "--phases.0.epochs=1",
        "--phases.0.max_minutes=null",
        "--trainer.accelerator=cpu",
        "--trainer.devices=2",
        "--trainer.strategy=ddp",
        "--trainer.precision=32-true",
    ]
    env = {**os.environ, "ATTNFER_CACHE": str(tiny_cache)}
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=env)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-3000:]
    assert json.loads((run / "data.json").read_text())["counts"]["train"]["total"] == 17
    assert (run / "best" / "model.safetensors").is_file() and (run / "evaluation.json").is_file()
    log = (run / "train.log").read_text()  # Lightning's messages go to the run's log, not the console
    assert "world_size=2" in log or "distributed_backend=gloo" in log
    assert "Tip:" not in out.stderr + out.stdout and "train epoch 1/1" in out.stderr + out.stdout
    with (run / "logs" / "phase0" / "metrics.csv").open() as f:
        steps = {r["step"] for r in csv.DictReader(f) if r.get("train/loss_step")}
    assert len(steps) == 2  # ceil(ceil(17 / 2) / 8) steps on rank 0, the same as on rank 1 (or DDP would hang)


# ------------------------------------------------------------------------------------------------
def test_bad_configs_fail_with_clear_messages(tmp_path):
    with pytest.raises(ConfigError, match=r"unknown key 'data.batchsize'; did you mean 'data.batch_size'\?"):
        load_config(CONFIGS / "quickstart.yaml", {"data.batchsize": 4})
    with pytest.raises(ConfigError, match=r"phases.0.optim.lr: expected float, got 'fast'"):
        load_config(CONFIGS / "quickstart.yaml", ["--phases.0.optim.lr", "fast"])
    with pytest.raises(ConfigError, match=r"unknown key 'phases.0.optim.learning_rate'"):
        load_config(CONFIGS / "quickstart.yaml", ["--phases.0.optim.learning_rate=1e-3"])
    bad = tmp_path / "bad.yaml"
    bad.write_text("model: {name: patt_lite}\ntrainer:\n  precison: bf16-mixed\n")
    with pytest.raises(ConfigError, match=r"unknown key 'trainer.precison'; did you mean 'trainer.precision'"):
        load_config(bad)
    bad.write_text("model: [oops\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(bad)
    r = CliRunner().invoke(app, ["train", "-c", str(CONFIGS / "quickstart.yaml"), "--data.batchsize", "4"])
    assert r.exit_code == 2 and "did you mean 'data.batch_size'" in r.output
    r = CliRunner().invoke(app, ["train", "-c", str(CONFIGS / "patt_lite_rafdb.yaml"), "--output_dir", str(tmp_path)])
    assert r.exit_code == 2 and "data.root is required for dataset 'rafdb'" in r.output
    assert not any(tmp_path.glob("patt_lite_rafdb-*"))  # no half-made run directory


def test_overrides_reach_nested_and_list_keys():
    cfg = load_config(CONFIGS / "patt_lite_rafdb.yaml", ["--phases.1.optim.lr", "3e-5", "--data.batch_size=16"])
    assert cfg.phases[1].optim.lr == 3e-5 and cfg.data.batch_size == 16
    assert cfg.phases[1].model["unfreeze_last_n"] == 36
    with pytest.raises(ConfigError, match="index 5 out of range"):
        load_config(CONFIGS / "patt_lite_rafdb.yaml", ["--phases.5.epochs", "1"])


def test_evaluate_and_report_commands(tmp_path, tiny_cache):
    over = tiny(tmp_path, **{"phases.0.epochs": 1, "phases.0.max_minutes": None, "trainer.precision": "32-true"})
    run = train(load_config(CONFIGS / "quickstart.yaml", over), tmp_path / "run")
    # training writes everything the report shows
    for name in ("evaluation.json", "confusion_best_test.png", "curves.json", "curves.png", "samples.json"):
        assert (run / name).is_file(), name
    curves = json.loads((run / "curves.json").read_text())
    assert [p["name"] for p in curves["phases"]] == ["train"] and len(curves["series"]["train/loss"]) == 1
    assert curves["series"]["train/loss"][0][1] == pytest.approx(epoch_losses(run)[0])
    samples = json.loads((run / "samples.json").read_text())
    assert len(samples["samples"]) == 2 and samples["checkpoint"] == "best"
    for s in samples["samples"]:
        assert (run / s["file"]).is_file() and s["attention"] and 0 < s["probability"] <= 1
    html = (run / "report.html").read_text()
    assert "Batch invariance (best)" in html and "Confusion matrix" in html and "data:image/png;base64," in html
    assert "Training curves" in html and "Sample test predictions with attention" in html
    (run / "report.html").unlink()
    runner = CliRunner()
    r = runner.invoke(app, ["report", str(run)])
    assert r.exit_code == 0 and (run / "report.html").is_file()
    out = tmp_path / "eval"
    args = ["evaluate", str(run / "best"), "--data", "synthfer", "--root", str(tiny_cache / "synthfer-n70-s64-seed0")]
    r = runner.invoke(app, [*args, "--out", str(out), "--samples", "3"], terminal_width=200)
    assert r.exit_code == 0, r.output
    ev = json.loads((out / "evaluation.json").read_text())
    saved = json.loads((run / "evaluation.json").read_text())["checkpoints"]["best"]
    # the same function evaluated the run: same figures, same files
    assert ev["checkpoints"]["best"]["test"]["accuracy"] == pytest.approx(saved["test"]["accuracy"])
    assert ev["checkpoints"]["best"]["test"]["confusion"] == saved["test"]["confusion"]
    assert ev["checkpoints"]["best"]["batch_invariance"]["passed"]
    for name in ("confusion_best_test.png", "samples.json", "data.json", "environment.json", "report.html"):
        assert (out / name).is_file(), name
    assert len(json.loads((out / "samples.json").read_text())["samples"]) == 3
    (out / "report.html").unlink()
    r = runner.invoke(app, ["report", str(out)])
    assert r.exit_code == 0 and "Per class (best, test)" in (out / "report.html").read_text()
    (tmp_path / "a_file").write_text("x")
    r = runner.invoke(app, [*args, "--out", str(tmp_path / "a_file")])
    assert r.exit_code == 2 and "exists and is not a directory" in r.output
    r = runner.invoke(app, ["evaluate", str(tmp_path / "nope")])
    assert r.exit_code == 2 and "config.json not found" in r.output
