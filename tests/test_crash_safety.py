"""Crash safety of training (issue 18): kill -9, SIGTERM / SIGINT (also under DDP), a damaged checkpoint, a kill at
any step of a checkpoint swap, a resumed pretrained run, and no run directory for a bad input.

The runs are tiny: PAtt-Lite at 96 px on 28 SynthFER training images, 3 epochs of 4 steps (batch 8). Kills and
signals hit real subprocesses (``python DRIVER attnfer-arguments``): the driver runs the ``attnfer`` command line in
its own process and, at the start of a chosen training step, sends the signal to itself with ``os.kill``, exactly
what ``kill -9 PID`` / ``kill PID`` from a scheduler does, at a reproducible moment.
"""

from __future__ import annotations

import importlib
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import load_file
from typer.testing import CliRunner

from attnfer.cli import app
from attnfer.engine import load_config, resume, train
from attnfer.engine.callbacks import (
    AtomicCheckpointIO,
    StopSignals,
    TrainingInterrupted,
    previous_checkpoint,
    recover_model_dir,
    save_model_dir,
)
from attnfer.engine.config import ConfigError, to_dict
from attnfer.engine.module import FERModule, _mean
from attnfer.engine.train import ResumeError, checkpoint_interval, resume_checkpoint
from test_engine import CONFIGS, tiny

pytest_plugins = ["test_engine"]  # its tiny_cache fixture and the ATTNFER_RUN_DIR clean-up

train_module = importlib.import_module("attnfer.engine.train")  # the module (attnfer.engine.train is the function)

RECIPE = CONFIGS / "quickstart.yaml"
STEPS_PER_EPOCH = 4  # 28 training images, batch 8
ENV_KEYS = ("ATTNFER_RUN_DIR", "ATTNFER_CHECKPOINT_EVERY_N_STEPS", "ATTNFER_CHECKPOINT_EVERY_MINUTES")

DRIVER = """
import os, signal, sys
from attnfer.engine.module import FERModule

kill_at, name = int(os.environ.get("KILL_AT", "-1")), os.environ.get("KILL_SIGNAL", "SIGKILL")
start = FERModule.on_train_batch_start

def on_train_batch_start(self, batch, batch_idx):
    if self.global_step == kill_at and self.global_rank == 0 and not os.environ.get("KILL_SENT"):
        os.environ["KILL_SENT"] = "1"
        os.kill(os.getpid(), getattr(signal, name))
    return start(self, batch, batch_idx)

FERModule.on_train_batch_start = on_train_batch_start
from attnfer.cli import app
app(sys.argv[1:], prog_name="attnfer")
"""


def overrides(tmp_path: Path, **extra) -> dict:
    return tiny(
        tmp_path,
        n=40,
        **{
            "phases.0.epochs": 3,
            "phases.0.max_minutes": None,
            "model.kwargs.resize_to": 96,  # PAtt-Lite's smallest input: 5x faster than 224 on a CPU
            "evaluate_batch_invariance": False,
            "report_samples": 0,
            **extra,
        },
    )


def cli_args(over: dict) -> list[str]:
    return [f"--{k}={json.dumps(v) if not isinstance(v, str) else v}" for k, v in over.items() if v is not None]


def attnfer(
    cache: Path, args: list[str], kill_at: int | None = None, sig: str = "SIGKILL", env: dict | None = None
) -> subprocess.CompletedProcess:
    """``attnfer ARGS`` in a subprocess; with ``kill_at``, ``sig`` arrives at the start of that global step."""
    driver = cache / "crash_driver.py"
    driver.write_text(DRIVER)
    full_env = {k: v for k, v in os.environ.items() if k not in ENV_KEYS}
    full_env.update(ATTNFER_CACHE=str(cache), KILL_AT=str(kill_at if kill_at is not None else -1), KILL_SIGNAL=sig)
    full_env.update(env or {})
    return subprocess.run(
        [sys.executable, str(driver), *args], capture_output=True, text=True, timeout=900, env=full_env
    )


def ckpt_of(run: Path, name: str = "last.ckpt") -> dict:
    return torch.load(run / "lightning" / "phase0" / name, map_location="cpu", weights_only=True)


def assert_same_run(a: Path, b: Path) -> None:
    """Same final weights (within 1e-5), same validation metrics, same test evaluation, same training curves."""
    wa, wb = load_file(str(a / "last" / "model.safetensors")), load_file(str(b / "last" / "model.safetensors"))
    assert wa.keys() == wb.keys()
    for k in wa:
        torch.testing.assert_close(wa[k], wb[k], rtol=0, atol=1e-5, msg=k)
    for which in ("last", "best"):
        ma, mb = (json.loads((r / which / "metrics.json").read_text()) for r in (a, b))
        assert ma.keys() == mb.keys() and ma == pytest.approx(mb, abs=1e-6), which
    ea, eb = (json.loads((r / "evaluation.json").read_text())["checkpoints"] for r in (a, b))
    for which in ("best", "last"):
        for key in ("accuracy", "balanced_accuracy", "macro_f1", "confusion"):
            assert ea[which]["test"][key] == eb[which]["test"][key], (which, key)
    ca, cb = (json.loads((r / "curves.json").read_text())["series"] for r in (a, b))
    assert ca.keys() == cb.keys()
    for name in ca:  # the epoch an interruption cut in two reports the same training loss and accuracy
        assert [e for e, _ in ca[name]] == [e for e, _ in cb[name]], name
        assert [v for _, v in ca[name]] == pytest.approx([v for _, v in cb[name]], abs=1e-6), name


@pytest.fixture(scope="module")
def reference(tiny_cache, tmp_path_factory) -> Path:
    """The uninterrupted tiny run every interrupted one must end equal to."""
    tmp = tmp_path_factory.mktemp("reference")
    run = train(load_config(RECIPE, overrides(tmp)), tmp / "run")
    os.environ.pop("ATTNFER_RUN_DIR", None)
    return run


def resume_with_printed_command(stderr: str, run: Path):
    """Run the command the one-line message printed (``attnfer train --resume RUN``), in this process (the
    resumed part needs no kill; this saves a second start of torch and Lightning)."""
    line = [ln for ln in stderr.splitlines() if ln.strip()][-1]
    command = shlex.split(line.split("continue with: ", 1)[1])
    assert command == ["attnfer", "train", "--resume", str(run)]
    return CliRunner().invoke(app, command[1:])


# ------------------------------------------------------------------------------------------------
# 1. kill -9 in epoch 2 of 3: --resume continues from within one checkpoint interval, ends equal
# ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "every_n_steps, kill_at, checkpointed_at",
    [
        (2, 7, 6),  # killed before the last step of epoch 2; the checkpoint after step 6 (2 steps into epoch 2)
        (None, 6, 4),  # the default interval: the checkpoint of epoch 1's end
    ],
    ids=["every-2-steps", "default-every-epoch"],
)
def test_kill_9_in_epoch_2_resumes_within_one_interval_and_ends_equal(
    tmp_path, tiny_cache, reference, every_n_steps, kill_at, checkpointed_at
):
    run = tmp_path / "run"
    env = {"ATTNFER_CHECKPOINT_EVERY_N_STEPS": str(every_n_steps)} if every_n_steps else {}
    r = attnfer(tiny_cache, ["train", "-c", str(RECIPE), "--run-dir", str(run), *cli_args(overrides(tmp_path))],
                kill_at=kill_at, env=env)  # fmt: skip
    assert r.returncode == -signal.SIGKILL, r.stderr[-3000:]
    assert not (run / "evaluation.json").exists()
    ckpt = ckpt_of(run)  # before the fix: no checkpoint before the phase's end, --resume started again at epoch 0
    assert ckpt["global_step"] == checkpointed_at
    assert kill_at - ckpt["global_step"] <= (every_n_steps or STEPS_PER_EPOCH)
    assert ckpt["epoch"] == 1 or checkpointed_at == STEPS_PER_EPOCH
    if every_n_steps:  # a checkpoint within the epoch carries the sampler's place in it
        position = ckpt["FERDataModule"]["train_position"]
        assert position == {"epoch": 1, "batches": 2, "epoch_batches": STEPS_PER_EPOCH, "batch_size": 8}
    resume(run)  # what `attnfer train --resume RUN` runs (in this process: no second start of torch)
    assert_same_run(reference, run)


# ------------------------------------------------------------------------------------------------
# 2. a resumed pretrained run equals the uninterrupted one
# ------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def backbone_weights(tmp_path_factory) -> Path:
    """Stand-in ImageNet weights offline: a seeded random timm mobilenetv1_100 (PAtt-Lite's trunk layout)."""
    import timm
    from safetensors.torch import save_file

    torch.manual_seed(1234)
    path = tmp_path_factory.mktemp("weights") / "mobilenetv1_100.safetensors"
    save_file(timm.create_model("mobilenetv1_100").state_dict(), str(path))
    return path


def test_resumed_pretrained_run_equals_the_uninterrupted_one(tmp_path, tiny_cache, backbone_weights, monkeypatch):
    over = overrides(tmp_path, **{"model.pretrained": str(backbone_weights), "phases.0.epochs": 2})
    full = train(load_config(RECIPE, over), tmp_path / "full")
    start = FERModule.on_train_batch_start

    def crash(self, batch, batch_idx):
        if self.global_step == 2:  # in epoch 1, before any checkpoint
            raise RuntimeError("simulated crash")
        return start(self, batch, batch_idx)

    monkeypatch.setattr(FERModule, "on_train_batch_start", crash)
    with pytest.raises(RuntimeError, match="simulated crash"):
        train(load_config(RECIPE, over), tmp_path / "part")
    monkeypatch.undo()
    assert not (tmp_path / "part" / "lightning" / "phase0" / "last.ckpt").exists()
    resume(tmp_path / "part")  # before the fix: random weights (107 of PAtt-Lite's 126 tensors differed)
    assert_same_run(full, tmp_path / "part")


# ------------------------------------------------------------------------------------------------
# 3. no kill timing leaves a run that cannot be resumed: every step of the swaps
# ------------------------------------------------------------------------------------------------
class Killed(BaseException):
    """What a kill -9 does to the code after it: nothing more runs."""


class FolderModel:
    """Stands in for a model: ``save`` writes a folder whose files say which version it is."""

    def __init__(self, tag: str, die_midway: bool = False) -> None:
        self.tag, self.die_midway = tag, die_midway

    def save(self, path: Path) -> None:
        path.mkdir(parents=True)
        (path / "model.safetensors").write_text(self.tag)
        if self.die_midway:
            raise Killed
        (path / "config.json").write_text(self.tag)


def folder_version(directory: Path) -> str:
    """The complete folder's version; fails on a half-written or missing one."""
    files = {p.name: p.read_text() for p in directory.iterdir()}
    assert set(files) == {"model.safetensors", "config.json", "metrics.json"}, files.keys()
    assert files["model.safetensors"] == files["config.json"]
    return files["model.safetensors"]


SWAP_STEPS = ["writing the new folder", "after last -> last.old", "after last.tmp -> last", "removing last.old"]


@pytest.mark.parametrize("step", SWAP_STEPS)
def test_a_kill_at_any_step_of_the_model_folder_swap_leaves_a_complete_folder(tmp_path, monkeypatch, step):
    last = tmp_path / "last"
    save_model_dir(FolderModel("old"), last, {"epoch": 0})
    real_replace, real_rmtree = os.replace, shutil.rmtree

    def replace(src, dst):
        real_replace(src, dst)
        names = (Path(src).name, Path(dst).name)
        if (step, names) in ((SWAP_STEPS[1], ("last", "last.old")), (SWAP_STEPS[2], ("last.tmp", "last"))):
            raise Killed

    def rmtree(path, *a, **k):
        if step == SWAP_STEPS[3] and Path(path).name == "last.old" and Path(path).exists():
            (Path(path) / "config.json").unlink()  # partly removed
            raise Killed
        real_rmtree(path, *a, **k)

    monkeypatch.setattr("attnfer.engine.callbacks.os.replace", replace)
    monkeypatch.setattr("attnfer.engine.callbacks.shutil.rmtree", rmtree)
    with pytest.raises(Killed):
        save_model_dir(FolderModel("new", die_midway=step == SWAP_STEPS[0]), last, {"epoch": 1})
    monkeypatch.undo()
    # what a resume finds: before the fix, last.old made every later swap fail (Directory not empty), or no last/
    recover_model_dir(last)
    expected = {SWAP_STEPS[0]: "old", SWAP_STEPS[1]: "old", SWAP_STEPS[2]: "new", SWAP_STEPS[3]: "new"}[step]
    assert folder_version(last) == expected
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last"]
    save_model_dir(FolderModel("newer"), last, {"epoch": 2})  # the next validation's swap works
    assert folder_version(last) == "newer"


CKPT_STEPS = ["keeping the previous", "after keeping the previous", "writing the new", "after the new is in place"]


@pytest.mark.parametrize("step", CKPT_STEPS)
def test_a_kill_at_any_step_of_a_checkpoint_write_leaves_a_complete_checkpoint(tmp_path, monkeypatch, step):
    path = tmp_path / "lightning" / "phase0" / "last.ckpt"

    def ckpt(step_: int) -> dict:
        return {"state_dict": {"w": torch.full((3,), float(step_))}, "loops": {}, "epoch": 0, "global_step": step_}

    io = AtomicCheckpointIO()
    io.save_checkpoint(ckpt(1), path)
    io.save_checkpoint(ckpt(2), path)
    real_replace, real_save = os.replace, train_module.torch.save
    import attnfer.engine.callbacks as cb

    def replace(src, dst):
        if step == CKPT_STEPS[0] and Path(dst) == previous_checkpoint(path):
            raise Killed  # the link to the previous one is made, not yet renamed
        real_replace(src, dst)
        if step == CKPT_STEPS[1] and Path(dst) == previous_checkpoint(path):
            raise Killed
        if step == CKPT_STEPS[3] and Path(dst) == path:
            raise Killed

    def save(obj, f):
        if step == CKPT_STEPS[2]:
            f.write(b"PK\x03\x04 half a checkpoint")
            raise Killed
        real_save(obj, f)

    monkeypatch.setattr(cb.os, "replace", replace)
    monkeypatch.setattr(cb.torch, "save", save)
    with pytest.raises(Killed):
        io.save_checkpoint(ckpt(3), path)
    monkeypatch.undo()
    train_module._recover(tmp_path)  # a resume removes the temporary files a kill left
    assert not [p for p in path.parent.iterdir() if p.name.endswith(".tmp")]
    found = resume_checkpoint(tmp_path, 0)
    loaded = torch.load(found, weights_only=True)
    assert loaded["global_step"] == (3 if step == CKPT_STEPS[3] else 2)
    prev = torch.load(previous_checkpoint(path), weights_only=True)
    assert prev["global_step"] in (1, 2)


def test_a_run_killed_during_the_swap_resumes(tmp_path, tiny_cache, reference):
    """The issue's case: last.old left beside last/ made every --resume fail with 'Directory not empty'."""
    run = tmp_path / "run"
    train(load_config(RECIPE, overrides(tmp_path, **{"trainer.stop_after_epochs": 2})), run)
    shutil.copytree(run / "last", run / "last.old")  # killed after the new last/ was in, before the old was removed
    (run / "last.old" / "config.json").unlink()  # and in the middle of removing it
    resume(run, ["--trainer.stop_after_epochs", "null"])
    assert not (run / "last.old").exists()
    assert_same_run(reference, run)


# ------------------------------------------------------------------------------------------------
# 4. SIGTERM and SIGINT write a checkpoint, print how to resume, exit 143 / 130 (under DDP: every rank)
# ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "sig, code, kill_at, checkpointed_at",
    [
        ("SIGTERM", 143, 6, 7),  # in the middle of epoch 2: the step finishes, then the checkpoint
        ("SIGINT", 130, 7, 8),  # at epoch 2's last step: its validation runs first, the checkpoint is the epoch's end
    ],
)
def test_a_signal_writes_a_checkpoint_prints_how_to_resume_and_exits_nonzero(
    tmp_path, tiny_cache, reference, sig, code, kill_at, checkpointed_at
):
    run = tmp_path / "run"
    args = ["train", "-c", str(RECIPE), "--run-dir", str(run), *cli_args(overrides(tmp_path))]
    r = attnfer(tiny_cache, args, kill_at=kill_at, sig=sig)
    assert r.returncode == code, r.stderr[-3000:]  # before the fix: SIGTERM exited 0, SIGINT 1, no checkpoint
    line = [ln for ln in r.stderr.splitlines() if ln.strip()][-1]
    pattern = rf"stopped by {sig}: checkpoint written: {re.escape(str(run))}/lightning/phase0/last\.ckpt \(phase 0 "
    pattern += (
        rf"'train', .*global step {checkpointed_at}\); continue with: attnfer train --resume {re.escape(str(run))}"
    )
    assert re.fullmatch(pattern, line), line
    assert ckpt_of(run)["global_step"] == checkpointed_at
    assert not (run / "evaluation.json").exists()
    r = resume_with_printed_command(r.stderr, run)
    assert r.exit_code == 0, r.output[-3000:]
    assert_same_run(reference, run)


@pytest.mark.slow
def test_sigterm_under_ddp_stops_every_rank_with_one_checkpoint(tmp_path, tiny_cache):
    """Two gloo ranks on the CPU; SIGTERM reaches rank 0 only (a scheduler signalling the launched process): rank 1
    stops at the same step, one checkpoint is written, both exit 143, and the run resumes under DDP."""
    run = tmp_path / "run"
    ddp = ["--trainer.accelerator=cpu", "--trainer.devices=2", "--trainer.strategy=ddp"]
    args = ["train", "-c", str(RECIPE), "--run-dir", str(run), *cli_args(overrides(tmp_path)), *ddp]
    r = attnfer(tiny_cache, args, kill_at=2, sig="SIGTERM")  # 14 images a rank: 2 steps an epoch
    assert r.returncode == 143, r.stderr[-3000:]
    stops = [ln for ln in r.stderr.splitlines() if ln.startswith("stopped by")]
    assert len(stops) == 1, r.stderr[-3000:]  # rank 0 says it, once
    assert "global step 3; the other ranks stopped too: rank 1 exit 143)" in stops[0]
    assert sorted(p.name for p in (run / "lightning" / "phase0").iterdir()) == ["last.ckpt", "last.previous.ckpt"]
    ckpt = ckpt_of(run)
    assert ckpt["global_step"] == 3 and ckpt["FERDataModule"]["train_position"]["batches"] == 1
    r = attnfer(tiny_cache, ["train", "--resume", str(run), *ddp])
    assert r.returncode == 0, r.stderr[-3000:]
    assert json.loads((run / "last" / "metrics.json").read_text())["epoch"] == 2
    assert (run / "evaluation.json").is_file()


def test_stop_signals_outside_a_step_and_a_second_ctrl_c(tmp_path):
    (tmp_path / "config.yaml").write_text("{}")
    signals = StopSignals(tmp_path)
    with pytest.raises(TrainingInterrupted) as e:  # no training step running: stop at once
        signals.handle(signal.SIGTERM, None)
    assert e.value.exit_code == 143 and "the run's checkpoints are complete" in str(e.value)
    assert str(e.value).endswith(f"continue with: attnfer train --resume {tmp_path}")
    signals.fitting = True
    signals.handle(signal.SIGINT, None)  # recorded: the step finishes, then the checkpoint
    assert signals.requested == signal.SIGINT
    with pytest.raises(TrainingInterrupted) as e:  # Ctrl+C again: at once
        signals.handle(signal.SIGINT, None)
    assert e.value.exit_code == 130 and "no checkpoint of the current step" in str(e.value)
    assert "nothing to resume" in str(TrainingInterrupted(signal.SIGTERM, tmp_path / "not-started"))


# ------------------------------------------------------------------------------------------------
# 5. a damaged last.ckpt: a clear message and the previous checkpoint
# ------------------------------------------------------------------------------------------------
def test_a_truncated_checkpoint_falls_back_to_the_previous_one(tmp_path, tiny_cache, reference):
    run = tmp_path / "run"
    train(load_config(RECIPE, overrides(tmp_path, **{"trainer.stop_after_epochs": 2})), run)
    last = run / "lightning" / "phase0" / "last.ckpt"
    assert ckpt_of(run)["global_step"] == 2 * STEPS_PER_EPOCH
    assert ckpt_of(run, "last.previous.ckpt")["global_step"] == STEPS_PER_EPOCH  # kept until the new one was whole
    last.write_bytes(last.read_bytes()[: last.stat().st_size // 2])  # a disk that filled up, a copy cut short
    with pytest.warns(UserWarning, match=r"last\.ckpt is damaged \(.+\); resuming from the previous checkpoint, "
                      r"last\.previous\.ckpt \(epoch 0, global step 4\)"):  # fmt: skip
        resume(run, ["--trainer.stop_after_epochs", "null"])
    assert (run / "lightning" / "phase0" / "last.ckpt.damaged").is_file()
    assert_same_run(reference, run)


def test_no_complete_checkpoint_is_one_clear_error(tmp_path, tiny_cache):
    run = tmp_path / "run"
    ckpt_dir = run / "lightning" / "phase0"
    ckpt_dir.mkdir(parents=True)
    (run / "config.yaml").write_text(yaml.safe_dump(to_dict(load_config(RECIPE, overrides(tmp_path)))))
    (ckpt_dir / "last.ckpt").write_bytes(b"PK\x03\x04 truncated")
    (ckpt_dir / "last.previous.ckpt").write_bytes(b"")
    with pytest.raises(ResumeError, match="no complete checkpoint of phase 0"):
        resume_checkpoint(run, 0)
    r = CliRunner().invoke(app, ["train", "--resume", str(run)], env={"ATTNFER_CACHE": str(tiny_cache)})
    assert r.exit_code == 2, r.output
    assert "Traceback" not in r.output and r.output.count("\n") <= 2, r.output  # before the fix: 185 lines
    assert "error: cannot resume" in r.output and "last.ckpt: " in r.output and "remove that folder" in r.output


# ------------------------------------------------------------------------------------------------
# item 10: nothing is written for a bad input; the checkpoint interval's settings
# ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "override, message",
    [
        (["--model.name", "patt_lites"], "unknown model 'patt_lites'"),
        (["--model.pretrained", "/nonexistent/weights.safetensors"], "not found"),
        (["--phases.0.optim.lr", "-1"], "phases.0.optim.lr: must be > 0"),
        (["--data.batch_size", "-1"], "data.batch_size: must be >= 1"),
        (["--phases.0.optim.name", "lion"], "phases.0.optim.name: expected one of"),
    ],
)
def test_a_bad_input_leaves_no_run_directory(tmp_path, tiny_cache, override, message):
    out = tmp_path / "runs"
    over = cli_args(overrides(tmp_path, output_dir=str(out)))
    r = CliRunner().invoke(app, ["train", "-c", str(RECIPE), *over, *override], env={"ATTNFER_CACHE": str(tiny_cache)})
    assert r.exit_code == 2 and message in r.output, r.output
    assert not out.exists() or not any(out.iterdir())  # before the fix: an empty run directory for a bad model


def test_checkpoint_interval_settings(monkeypatch):
    cfg = load_config(RECIPE)
    for key in ENV_KEYS[1:]:
        monkeypatch.delenv(key, raising=False)
    assert checkpoint_interval(cfg) == (None, 30.0)  # every epoch end, and every 30 minutes within an epoch
    monkeypatch.setenv("ATTNFER_CHECKPOINT_EVERY_N_STEPS", "50")
    assert checkpoint_interval(cfg) == (50, None)
    monkeypatch.setenv("ATTNFER_CHECKPOINT_EVERY_MINUTES", "5")
    assert checkpoint_interval(cfg) == (50, 5.0)
    monkeypatch.setenv("ATTNFER_CHECKPOINT_EVERY_MINUTES", "soon")
    with pytest.raises(ValueError, match="ATTNFER_CHECKPOINT_EVERY_MINUTES: expected a number, got 'soon'"):
        checkpoint_interval(cfg)
    # the recipe's keys take precedence over the environment; 0 turns one off
    keyed = load_config(RECIPE, {"trainer.checkpoint_every_n_steps": 7, "trainer.checkpoint_every_minutes": 0})
    assert checkpoint_interval(keyed) == (7, None)
    with pytest.raises(ConfigError, match="checkpoint_every_n_steps"):
        load_config(RECIPE, {"trainer.checkpoint_every_n_steps": -1})


def test_the_epochs_training_metrics_travel_in_the_checkpoint():
    """Mid-epoch: the running means (loss, accuracy, each part of the model's loss) are saved and restored, also in
    a checkpoint whose state dict is EMA's averaged copy; at an epoch's end the next epoch starts them afresh."""
    from types import SimpleNamespace

    import attnfer

    cfg = load_config(RECIPE, {"model.kwargs.resize_to": 96})

    def module_at(processed: int):
        m = FERModule(attnfer.create_model("patt_lite", **cfg.model.kwargs), cfg)
        progress = SimpleNamespace(current=SimpleNamespace(processed=processed))
        m._trainer = SimpleNamespace(
            fit_loop=SimpleNamespace(epoch_loop=SimpleNamespace(batch_progress=progress)),
            num_training_batches=4,
            callback_metrics={"train/loss_epoch": torch.tensor(1.5), "val/acc": torch.tensor(0.5)},
        )
        return m

    for processed, kept in ((2, True), (4, False)):
        m = module_at(processed)
        m.train_loss.update(torch.tensor(2.0), weight=8)
        m.train_parts["ce"] = _mean(persistent=False)
        m.train_parts["ce"].update(torch.tensor(3.0), weight=8)
        ckpt = {"state_dict": m.state_dict()}
        ckpt["current_model_state"] = dict(ckpt["state_dict"])  # as EMAWeightAveraging saves
        m.on_save_checkpoint(ckpt)
        assert ckpt["attnfer_train_metrics"] == {"train/loss_epoch": torch.tensor(1.5)}
        fresh = module_at(processed)
        fresh.on_load_checkpoint(ckpt)
        for key in ("state_dict", "current_model_state"):
            fresh.load_state_dict(ckpt[key])  # strict: the same keys before and after the first step
        loss, part = fresh.train_loss, fresh.train_parts["ce"]
        if kept:
            assert (loss.mean_value / loss.weight, part.mean_value / part.weight) == (2.0, 3.0)
        else:
            assert loss.weight == 0 and part.weight == 0
