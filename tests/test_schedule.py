"""Time-budgeted schedules (``max_minutes``) and the precision rule, with an injected clock and injected CPU flags."""

from __future__ import annotations

import json
import os
import warnings

import pytest
import torch

from attnfer.engine import load_config, resume, train
from attnfer.engine.schedule import SchedulePlan, lr_factor
from attnfer.hardware import cpu_capabilities, override_capabilities, resolve_precision
from test_engine import CONFIGS, tiny

pytest_plugins = ["test_engine"]  # its tiny_cache fixture


class FakeClock:
    """Seconds that advance by ``tick`` at every reading: the first epoch 'takes' two ticks (start of training,
    start of validation, end of validation)."""

    def __init__(self, tick: float) -> None:
        self.t, self.tick = 0.0, tick

    def __call__(self) -> float:
        self.t += self.tick
        return self.t


def test_onecycle_factor_is_torchs_curve():
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.5, momentum=0.9)
    ref = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=0.5, total_steps=40, pct_start=0.15, cycle_momentum=False)
    for step in range(40):
        assert opt.param_groups[0]["lr"] == pytest.approx(0.5 * lr_factor("onecycle", step, 40, 0.15), rel=1e-9)
        opt.step()
        ref.step()
    assert lr_factor("cosine", 0, 10) == 1.0 and lr_factor("cosine", 9, 10, min_factor=0.1) == pytest.approx(0.1)


def _budget_run(tmp_path, name: str, **extra):
    over = tiny(
        tmp_path,
        **{
            "phases.0.epochs": 10,
            "phases.0.max_minutes": 1.0,  # 60 s of fake clock; the first epoch 'takes' 20 s
            "trainer.precision": "32-true",
            "evaluate_batch_invariance": False,
            **extra,
        },
    )
    return load_config(CONFIGS / "quickstart.yaml", over), tmp_path / name


def test_budget_plans_whole_epochs_and_the_anneal_ends_inside(tmp_path, tiny_cache, monkeypatch):
    monkeypatch.setattr("attnfer.engine.schedule.CLOCK", FakeClock(10.0))
    cfg, run = _budget_run(tmp_path, "run")
    train(cfg, run)
    plan = json.loads((run / "schedule_phase0.json").read_text())
    assert plan["planned"] and plan["epochs"] == 3  # 60 s // 20 s per epoch, instead of the recipe's 10
    assert plan["measured"]["first_epoch_seconds"] == pytest.approx(20.0)
    assert json.loads((run / "last" / "metrics.json").read_text())["epoch"] == 2  # trained exactly 3 epochs
    ckpt = torch.load(run / "lightning" / "phase0" / "last.ckpt", map_location="cpu", weights_only=True)
    assert ckpt["global_step"] == plan["total_steps"] == 3 * plan["steps_per_epoch"]
    (sched,) = ckpt["lr_schedulers"]
    lr, base = sched["_last_lr"][0], sched["base_lrs"][0]
    assert lr < base * 1e-3  # annealed to the end of the one-cycle curve within the planned steps
    assert "Schedule" in (run / "report.html").read_text() and "3 epochs" in (run / "report.html").read_text()


def test_a_resumed_run_keeps_its_recorded_plan(tmp_path, tiny_cache, monkeypatch):
    monkeypatch.setattr("attnfer.engine.schedule.CLOCK", FakeClock(10.0))
    cfg, run = _budget_run(tmp_path, "part", **{"trainer.stop_after_epochs": 1})
    train(cfg, run)
    first = json.loads((run / "schedule_phase0.json").read_text())
    assert first["epochs"] == 3 and not (run / "evaluation.json").exists()
    monkeypatch.setattr("attnfer.engine.schedule.CLOCK", FakeClock(1.0))  # a faster clock would plan 30 epochs
    resume(run, ["--trainer.stop_after_epochs", "null"])
    assert json.loads((run / "schedule_phase0.json").read_text()) == first
    assert json.loads((run / "last" / "metrics.json").read_text())["epoch"] == 2


def test_schedule_plan_total_steps():
    plan = SchedulePlan(epochs=4, steps_per_epoch=25, budget_minutes=7)
    assert plan.total_steps == 100 and plan.to_dict()["total_steps"] == 100


# ------------------------------------------------------------------------------------------------
# precision: auto follows the CPU's native BF16 (injected)
# ------------------------------------------------------------------------------------------------
@pytest.mark.skipif(torch.cuda.is_available(), reason="the CPU rule; a GPU takes the CUDA branch")
def test_precision_auto_follows_native_bf16():
    with override_capabilities(["avx2"]):
        assert not cpu_capabilities().native_bf16 and cpu_capabilities().isa == "AVX2"
        assert resolve_precision("auto") == "32-true"
    with override_capabilities(["avx2", "avx512f", "avx512_bf16", "avx512_vnni"]):
        assert cpu_capabilities().native_bf16 and cpu_capabilities().vnni
        assert resolve_precision("auto") == "bf16-mixed"
    with override_capabilities(["avx2", "avx512f", "amx_bf16"]):
        assert resolve_precision("auto") == "bf16-mixed" and cpu_capabilities().isa == "AMX"
    assert resolve_precision("32-true") == "32-true"


@pytest.mark.skipif(torch.cuda.is_available(), reason="the CPU rule")
def test_explicit_bf16_without_native_bf16_runs_with_one_warning():
    import attnfer.hardware as hw

    hw._warned.clear()
    with override_capabilities(["avx2"], model="Zen3 test CPU"), warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert resolve_precision("bf16-mixed") == "bf16-mixed"
        assert resolve_precision("bf16-mixed") == "bf16-mixed"
    msgs = [str(w.message) for w in caught]
    assert len(msgs) == 1 and "Zen3 test CPU" in msgs[0] and "slower than fp32" in msgs[0]


def test_environment_variable_overrides_the_flags(monkeypatch):
    monkeypatch.setenv("ATTNFER_CPU_CAPS", "avx2")
    caps = cpu_capabilities()
    assert caps.flags == ("avx2",) and not caps.native_bf16 and caps.source.startswith("ATTNFER_CPU_CAPS")
    assert os.environ["ATTNFER_CPU_CAPS"] == "avx2"


def test_early_estimate_sizes_a_long_first_epoch():
    """A first epoch that takes most of the budget runs on the right schedule: the plan is made from a few steps."""
    from types import SimpleNamespace

    from attnfer.engine.schedule import SKIP_STEPS, TIMED_STEPS, TimeBudget

    for budget, expected in ((7.0, 1), (30.0, 4)):
        times = iter([0.0, 5.0, 5.0 + 1.6 * TIMED_STEPS])  # train start, after the skipped steps, after the timed ones
        plan = SchedulePlan(epochs=12, steps_per_epoch=225, budget_minutes=budget)
        cb = TimeBudget(plan, "unused", 0, clock=lambda times=times: next(times))
        trainer = SimpleNamespace(current_epoch=0, fit_loop=SimpleNamespace(max_epochs=12), is_global_zero=True)
        cb.on_train_start(trainer, None)
        for i in range(SKIP_STEPS + TIMED_STEPS):
            cb.on_train_batch_end(trainer, None, None, None, i)
        # 1.6 s a step, 225 steps, 10% for validation: 396 s an epoch; the first ends at about 394 s
        assert plan.epochs == expected == trainer.fit_loop.max_epochs and not plan.planned
        assert plan.measured["early_step_seconds"] == pytest.approx(1.6)
