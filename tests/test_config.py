"""Recipes: pydantic validation with key-path errors, ``extends:`` composition, round trips of resolved configs."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from attnfer.engine.config import ConfigError, TrainConfig, load_config, to_dict

CONFIGS = Path(__file__).parents[1] / "src" / "attnfer" / "configs"

# What the flat PAtt-Lite recipes said before they were composed with extends: (shared by the four of them).
PATT_PHASES = [
    {
        "name": "train-head",
        "epochs": 100,
        "optim": {"name": "adam", "lr": 1e-3, "weight_decay": 0.0, "momentum": 0.9, "clip_norm": 3.0},
        "schedule": {"name": "plateau", "monitor": "val/acc", "patience": 3, "factor": 0.1, "min_delta": 0.003},
        "early_stopping": {"monitor": "val/acc", "patience": 5, "min_delta": 0.003, "mode": "max"},
        "class_weights": True,
        "model": {"drop_rate": 0.1, "spatial_drop_rate": 0.0, "attn_drop_rate": 0.0},
    },
    {
        "name": "finetune-backbone",
        "epochs": 500,
        "optim": {"name": "adam", "lr": 1e-5, "clip_norm": 3.0},
        "schedule": {"name": "inverse_time", "decay_epochs": 80.0},
        "early_stopping": {"monitor": "val/acc", "patience": 20, "min_delta": 0.003, "mode": "max"},
        "class_weights": False,
        "model": {"unfreeze_last_n": 36, "drop_rate": 0.2, "spatial_drop_rate": 0.2, "attn_drop_rate": 0.2},
    },
]
PATT = {
    "patt_lite_rafdb.yaml": ("rafdb", {}),
    "patt_lite_fer2013.yaml": ("fer2013", {}),
    "patt_lite_ferplus.yaml": ("ferplus", {"label_mode": "majority", "num_classes": 8}),
    "patt_lite_ckplus.yaml": ("ckplus", {"frames": 3, "first_frame_neutral": True, "num_folds": 10, "fold": 0}),
}


def _contains(actual: dict, expected: dict, where: str = "") -> None:
    for key, value in expected.items():
        if isinstance(value, dict) and key not in ("options", "model", "kwargs"):
            _contains(actual[key], value, f"{where}{key}.")
        else:
            assert actual[key] == value, f"{where}{key}: {actual[key]!r} != {value!r}"


@pytest.mark.parametrize("recipe", sorted(PATT))
def test_patt_recipes_resolve_to_the_former_flat_recipes(recipe):
    raw = yaml.safe_load((CONFIGS / recipe).read_text())
    if recipe != "patt_lite_rafdb.yaml":
        assert raw["extends"] == "patt_lite_rafdb.yaml" and "phases" not in raw  # composed, not copied
    d = to_dict(load_config(CONFIGS / recipe))
    dataset, options = PATT[recipe]
    assert "extends" not in d
    assert d["name"] == recipe.removesuffix(".yaml") and d["seed"] == 0
    _contains(d["data"], {"name": dataset, "root": None, "options": options, "batch_size": 8, "eval_batch_size": 8})
    assert d["data"]["balanced_sampler"] is False and d["data"]["compositing"] is False
    assert d["model"] == {
        "name": "patt_lite",
        "pretrained": True,
        "kwargs": {"attention": "tokens", "freeze_backbone": True, "resize_to": 224},
    }
    _contains(d["augment"], {"hflip": 0.5, "random_contrast": 0.3, "rotation": 0.0, "resized_crop_scale": None})
    assert len(d["phases"]) == 2
    for got, want in zip(d["phases"], PATT_PHASES, strict=True):
        _contains(got, want)
        assert got["augment"] is None and got["max_minutes"] is None
    assert d["phases"][0]["schedule"]["min_lr"] == 1e-6
    assert d["loss"] == {} and d["label_smoothing"] == 0.0


@pytest.mark.parametrize("classes", [7, 8])
def test_affectnet_recipes_resolve_to_the_former_flat_recipes(classes):
    d = to_dict(load_config(CONFIGS / f"emonet_affectnet{classes}.yaml"))
    assert d["name"] == f"emonet_affectnet{classes}" and d["seed"] == 0
    _contains(
        d["data"],
        {
            "name": "affectnet",
            "root": None,
            "options": {"num_classes": classes},
            "batch_size": 16,
            "eval_batch_size": 64,
            "balanced_sampler": True,
        },
    )
    assert d["model"] == {"name": "emonet", "pretrained": True, "kwargs": {"shortcut_weight": 0.6}}
    _contains(d["augment"], {"hflip": 0.5, "resized_crop_scale": [0.08, 1.0], "random_contrast": 0.0})
    assert len(d["phases"]) == 1
    _contains(
        d["phases"][0],
        {
            "name": "train",
            "epochs": 100,
            "optim": {"name": "sgd", "lr": 1e-3, "momentum": 0.9, "weight_decay": 1e-5, "clip_norm": None},
            "schedule": {"name": "none"},
            "early_stopping": None,
        },
    )


def test_extends_merges_mappings_replaces_lists_and_takes_parents_in_order(tmp_path):
    (tmp_path / "base").mkdir()
    (tmp_path / "base" / "a.yaml").write_text(
        "model: {name: net_a, kwargs: {x: 1, y: 2}}\n"
        "data: {name: synthfer, batch_size: 4, options: {k: 1}}\n"
        "augment: {hflip: 0.3, color_jitter: [0.1, 0.1, 0.1, 0.0]}\n"
        "phases: [{name: one, epochs: 3}, {name: two, epochs: 4}]\n"
    )
    (tmp_path / "base" / "b.yaml").write_text("extends: a.yaml\nmodel: {kwargs: {y: 3}}\ndata: {eval_batch_size: 5}\n")
    (tmp_path / "c.yaml").write_text("seed: 9\n")
    child = tmp_path / "child.yaml"
    child.write_text(
        "extends: [base/b.yaml, c.yaml]\nname: child\n"
        "data: {options: {j: 2}}\naugment: {color_jitter: [0.2, 0.2]}\nphases: [{name: only, epochs: 2}]\n"
    )
    cfg = load_config(child)
    assert cfg.name == "child" and cfg.seed == 9
    assert cfg.model.name == "net_a" and cfg.model.kwargs == {"x": 1, "y": 3}
    assert (cfg.data.batch_size, cfg.data.eval_batch_size, cfg.data.options) == (4, 5, {"k": 1, "j": 2})
    assert cfg.augment.hflip == 0.3 and cfg.augment.color_jitter == [0.2, 0.2]  # lists replace
    assert [(p.name, p.epochs) for p in cfg.phases] == [("only", 2)]  # phases replaced whole
    # one phase's key of an inherited recipe: the dotted overrides
    cfg = load_config(tmp_path / "base" / "b.yaml", ["--phases.1.epochs", "7"])
    assert [(p.name, p.epochs) for p in cfg.phases] == [("one", 3), ("two", 7)]


def test_extends_cycle_and_missing_parent_fail(tmp_path):
    (tmp_path / "a.yaml").write_text("extends: b.yaml\nmodel: {name: m}\n")
    (tmp_path / "b.yaml").write_text("extends: a.yaml\n")
    with pytest.raises(ConfigError, match=r"extends cycle: .*a\.yaml -> .*b\.yaml -> .*a\.yaml"):
        load_config(tmp_path / "a.yaml")
    (tmp_path / "self.yaml").write_text("extends: self.yaml\n")
    with pytest.raises(ConfigError, match=r"extends cycle: .*self\.yaml -> .*self\.yaml"):
        load_config(tmp_path / "self.yaml")
    (tmp_path / "orphan.yaml").write_text("extends: nowhere.yaml\nmodel: {name: m}\n")
    with pytest.raises(ConfigError, match=r"nowhere\.yaml not found"):
        load_config(tmp_path / "orphan.yaml")
    (tmp_path / "odd.yaml").write_text("extends: {a: 1}\nmodel: {name: m}\n")
    with pytest.raises(ConfigError, match="extends"):
        load_config(tmp_path / "odd.yaml")


def test_a_recipe_must_name_its_model(tmp_path):
    recipe = tmp_path / "r.yaml"
    recipe.write_text("data: {name: synthfer}\n")
    with pytest.raises(ConfigError, match=r"model\.name: required"):
        load_config(recipe)
    recipe.write_text("model: {pretrained: false}\n")
    with pytest.raises(ConfigError, match=r"model\.name: required"):
        load_config(recipe)
    with pytest.raises(ConfigError, match=r"model\.name: required"):
        load_config(None)
    assert load_config(recipe, {"model.name": "some_net"}).model.name == "some_net"


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ({"phases.0.epochs": -2}, r"phases\.0\.epochs: must be >= 1, got -2"),
        ({"data.batch_size": 0}, r"data\.batch_size: must be >= 1, got 0"),
        ({"data.eval_batch_size": -1}, r"data\.eval_batch_size: must be >= 1"),
        ({"phases.0.optim.lr": -1e-3}, r"phases\.0\.optim\.lr: must be > 0"),
        ({"phases.0.optim.lr": 0}, r"phases\.0\.optim\.lr: must be > 0"),
        ({"phases.0.optim.weight_decay": -1}, r"phases\.0\.optim\.weight_decay: must be >= 0"),
        ({"data.num_workers": -1}, r"data\.num_workers: expected auto or an int >= 0, got -1"),
        ({"augment.hflip": 1.5}, r"augment\.hflip: must be <= 1"),
        ({"phases.0.optim.name": "rmsprop"}, r"phases\.0\.optim\.name: expected one of .*'sgd'.*got 'rmsprop'"),
        ({"phases.0.schedule.name": "step"}, r"phases\.0\.schedule\.name: expected one of .*'onecycle'"),
        ({"phases.0.early_stopping": {"mode": "up"}}, r"phases\.0\.early_stopping\.mode: expected one of"),
        ({"phases.0.epochs": True}, r"phases\.0\.epochs: expected int, got True"),
        ({"phases.0.epochs": 2.5}, r"phases\.0\.epochs: expected int, got 2\.5"),
        ({"data.balanced_sampler": 1}, r"data\.balanced_sampler: expected bool, got 1"),
        ({"data.options": [1, 2]}, r"data\.options: expected a mapping"),
        ({"data": 3}, r"data: expected a mapping"),
        ({"phases": {"name": "x"}}, r"phases: expected a list"),
        ({"model.kwargs.x": 1, "model.pretrained": 3}, r"model\.pretrained: expected bool or str, got 3"),
    ],
)
def test_bad_values_fail_with_the_key_path(override, message):
    with pytest.raises(ConfigError, match=message):
        load_config(CONFIGS / "quickstart.yaml", override)


def test_pyyaml_quirks_and_types(tmp_path):
    recipe = tmp_path / "r.yaml"
    recipe.write_text("model: {name: m}\nphases: [{optim: {lr: 1e-3, weight_decay: 0}}]\ntrainer: {ema_decay: 1}\n")
    cfg = load_config(recipe, ["--phases.0.optim.clip_norm", "5e-1", "--trainer.limit_train_batches", "3"])
    optim = cfg.phases[0].optim
    assert optim.lr == 1e-3 and isinstance(optim.lr, float)  # PyYAML reads 1e-3 (no dot) as a string
    assert optim.weight_decay == 0.0 and isinstance(optim.weight_decay, float)
    assert optim.clip_norm == 0.5 and cfg.trainer.ema_decay == 1.0
    assert cfg.trainer.limit_train_batches == 3 and isinstance(cfg.trainer.limit_train_batches, int)  # a count
    with pytest.raises(ConfigError, match=r"phases\.0\.optim\.lr: expected float, got 'fast'"):
        load_config(recipe, ["--phases.0.optim.lr", "fast"])


def test_several_problems_are_all_reported():
    with pytest.raises(ConfigError) as e:
        load_config(CONFIGS / "quickstart.yaml", {"seed": "x", "data.batchsize": 4, "phases.0.epochs": 0})
    text = str(e.value)
    assert "seed: expected int" in text and "did you mean 'data.batch_size'" in text and "phases.0.epochs" in text


@pytest.mark.parametrize("top", ["- a\n- b\n", "just a string\n", "42\n"])
def test_a_top_level_that_is_not_a_mapping_fails(tmp_path, top):
    recipe = tmp_path / "r.yaml"
    recipe.write_text(top)
    with pytest.raises(ConfigError, match="top level must be a mapping"):
        load_config(recipe)


def test_a_missing_recipe_fails(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "nope.yaml")


@pytest.mark.parametrize("recipe", sorted(p.name for p in CONFIGS.glob("*.yaml")))
def test_resolved_configs_round_trip_through_yaml(recipe, tmp_path):
    cfg = load_config(CONFIGS / recipe)
    d = to_dict(cfg)
    text = yaml.safe_dump(d, sort_keys=False)  # what the engine writes to a run's config.yaml
    assert "extends" not in text and "!!python" not in text
    (tmp_path / "config.yaml").write_text(text)
    again = load_config(tmp_path / "config.yaml")
    assert to_dict(again) == d and again == cfg


def test_configs_built_in_code_are_mutable_and_validated():
    cfg = TrainConfig()  # data-only use (evaluating a saved model): no model section needed
    cfg.data.name, cfg.data.root, cfg.data.options = "folder", "/x", {"a": 1}
    assert (cfg.data.name, cfg.data.root, cfg.data.options) == ("folder", "/x", {"a": 1})
    assert len(cfg.phases) == 1 and cfg.phases[0].optim.name == "adam"
    with pytest.raises(ValueError, match="expected int"):
        cfg.data.batch_size = "big"
    assert isinstance(to_dict(cfg)["phases"], list)


def test_engine_config_names_no_model_family():
    text = (Path(__file__).parents[1] / "src" / "attnfer" / "engine" / "config.py").read_text()
    assert not re.search(r"feratt|patt[-_ ]?lite|emo[-_ ]?net|sa[-_ ]fer", text, re.IGNORECASE)
