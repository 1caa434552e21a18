"""The model zoo against the spec (../shared/spec/architectures.md): counts, shapes, behaviour."""

import warnings

import pytest
import torch
import torch.nn as nn

import attnfer
from attnfer.models import (
    BatchDependentWarning,
    batch_dependence,
    count_macs,
    count_parameters,
    get_model_cfg,
)
from conftest import build

# (model, kwargs) for every registered model and every mode that changes the computation.
VARIANTS = [
    ("patt_lite", {}),
    ("patt_lite", {"freeze_backbone": False}),
    ("patt_lite", {"unfreeze_last_n": 6}),
    ("patt_lite", {"resize_to": 224}),
    ("feratt", {}),
    ("feratt", {"layout": "code"}),
    ("feratt", {"representation_dim": None}),
    ("emonet", {}),
    ("sa_fer", {}),
    ("preact_resnet18", {}),
    ("preact_resnet18", {"representation_dim": 64}),
    ("mobilenetv2_100", {}),
    ("resnet18", {}),
]
SMALL_SIZE = {
    "patt_lite": 112,
    "feratt": 64,
    "emonet": 64,
    "sa_fer": 112,
    "preact_resnet18": 32,
    "mobilenetv2_100": 64,
    "resnet18": 64,
}


def variant_id(v):
    name, kw = v
    return name + "".join(f"-{k}={val}" for k, val in kw.items())


def test_registry_lists_the_four_families_and_baselines():
    expected = {"patt_lite", "feratt", "emonet", "sa_fer", "preact_resnet18", "mobilenetv2_100", "resnet18"}
    assert set(attnfer.list_models()) == expected
    assert attnfer.list_models("patt*") == ["patt_lite"]
    assert "resnet18" not in attnfer.list_models(exclude_filters="res*")


def test_unknown_model_suggests_the_closest_name():
    with pytest.raises(ValueError, match="did you mean 'patt_lite'"):
        attnfer.create_model("pattlite")


# ------------------------------------------------------------------------------------------------
# Parameter counts (spec numbers are acceptance criteria)
# ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "name,kwargs,c7,c8",
    [
        ("patt_lite", {}, 1_093_000, 1_093_033),
        ("patt_lite", {"attention": "batch"}, 1_093_000, 1_093_033),
        ("emonet", {}, 2_310_738, 2_312_019),
        ("sa_fer", {}, 3_273_363, 3_273_363 + 257),
        ("preact_resnet18", {}, 11_169_607, 11_170_120),
        ("preact_resnet18", {"representation_dim": 64}, 11_199_303, 11_199_303 + 65),
        # FERAtt HEAD totals 46,302,059 (C=7) / 46,305,737 (C=8) minus the unused ResNet34 fc (513,000).
        ("feratt", {"layout": "code", "representation_dim": None}, 45_789_059, 45_792_737),
        ("feratt", {"layout": "code", "representation_dim": 32}, 46_315_115 - 513_000, None),
        # Paper-era layout with the 64-d representation (our documented count; see README).
        ("feratt", {}, 47_408_075, 47_408_140),
        ("mobilenetv2_100", {}, 2_232_839, 2_234_120),
        ("resnet18", {}, 11_176_512 + 513 * 7, None),
    ],
)
def test_parameter_counts(name, kwargs, c7, c8):
    assert count_parameters(build(name, num_classes=7, **kwargs)) == c7
    if c8 is not None:
        assert count_parameters(build(name, num_classes=8, **kwargs)) == c8


def test_patt_lite_keras_style_counts_and_parts():
    m = build("patt_lite")
    assert count_parameters(m, include_bn_stats=True) == 1_102_664  # the published Keras summary
    assert count_parameters(build("patt_lite", num_classes=8), include_bn_stats=True) == 1_102_697
    assert count_parameters(m.backbone) == 812_352
    assert count_parameters(m.backbone, include_bn_stats=True) - count_parameters(m.backbone) == 9_600
    assert count_parameters(m.patches) == 139_520 + 66_816 + 65_792
    assert m.attention.scale.numel() == 1 and m.attention.scale.item() == 1.0
    # Phase-1 graph: only the head trains (Keras "trainable params" minus the head BN moving stats).
    assert count_parameters(m, trainable_only=True) == 280_648


def test_feratt_module_counts_match_spec():
    code = build("feratt", layout="code", representation_dim=None)
    dec = code.attention
    names = ("center", "dec5", "dec4", "dec3", "dec2", "dec1")
    assert [count_parameters(getattr(dec, n)) for n in names] == [
        3_539_712,
        4_719_360,
        3_539_712,
        1_032_512,
        295_168,
        184_480,
    ]
    assert count_parameters(dec.head) == 9_479
    assert count_parameters(dec.encoder) == 21_797_672 - 513_000  # ResNet34 without fc
    assert count_parameters(code.features) == 9_324
    assert count_parameters(code.reconstruction) == 5_033
    assert count_parameters(code.classifier) == 11_169_607


def test_sa_fer_and_emonet_parts():
    m = build("sa_fer")
    cbam = sum(count_parameters(mod) for n, mod in m.named_modules() if n.endswith(".cbam"))
    assert cbam == 22_092
    assert count_parameters(m.backbone) - cbam == 2_782_784
    assert count_parameters(m.patches) == 203_008
    assert count_parameters(m.attention.attn) == 263_168
    e = build("emonet")
    assert sum(mod.kernel_size for n, mod in e.named_modules() if n.endswith(".eca")) == 59  # ECA params
    ks = {n: mod.kernel_size for n, mod in e.named_modules() if n.endswith(".eca")}
    assert ks["features.1.eca"] == 3 and ks["features.14.eca"] == 5 and ks["features.17.eca"] == 5


# ------------------------------------------------------------------------------------------------
# Shapes
# ------------------------------------------------------------------------------------------------
def test_patt_lite_intermediate_shapes():
    m = build("patt_lite").eval()
    x = torch.randn(2, 3, 224, 224)
    trunk = m.backbone(x)
    assert trunk.shape == (2, 512, 14, 14)
    assert m.patches(trunk).shape == (2, 256, 2, 2)
    assert m.forward_features(x).shape == (2, 256, 2, 2)
    assert m.forward_head(m.forward_features(x), pre_logits=True).shape == (2, 32)
    m.record = True
    m(x)
    assert m.last_attention.shape == (2, 4, 4)
    torch.testing.assert_close(m.last_attention.sum(-1), torch.ones(2, 4))


def test_patt_lite_rejects_too_small_inputs_with_advice():
    with pytest.raises(ValueError, match="resize_to=224"):
        build("patt_lite")(torch.randn(1, 3, 48, 48))


def test_patt_lite_resize_inside_model():
    m = build("patt_lite", resize_to=224).eval()
    assert m.backbone(torch.randn(1, 3, 224, 224)).shape[-1] == 14
    assert m.forward_features(torch.randn(1, 3, 48, 48)).shape == (1, 256, 2, 2)  # FER2013-size input


def test_sa_fer_emonet_feratt_intermediate_shapes():
    x = torch.randn(2, 3, 224, 224)
    s = build("sa_fer").eval()
    assert s.backbone(x).shape == (2, 256, 14, 14)
    assert s.patches(s.backbone(x)).shape == (2, 256, 2, 2)
    e = build("emonet").eval()
    assert e.forward_features(x).shape == (2, 1280, 7, 7)
    f = build("feratt").eval()
    x = torch.randn(2, 3, 128, 128)
    out = f.forward_train(x)
    assert out["attention_map"].shape == (2, 1, 128, 128)
    assert out["features"].shape == (2, 32, 128, 128)
    assert out["attention_image"].shape == (2, 3, 128, 128)
    assert out["embedding"].shape == (2, 64)
    with torch.no_grad():
        torch.testing.assert_close(f(x), out["logits"])  # forward returns the same logits, alone
    assert f.forward_features(torch.randn(2, 3, 128, 128)).shape == (2, 512, 4, 4)  # G_rep sees 32x32
    c = build("feratt", layout="code", num_classes=8).eval()
    out = c.forward_train(torch.randn(2, 3, 64, 64))
    assert out["attention_map"].shape == (2, 8, 64, 64) and out["features"].shape == (2, 8, 64, 64)
    assert out["logits"].shape == (2, 8) and "embedding" not in build("feratt", representation_dim=None).forward_train(
        torch.randn(1, 3, 128, 128)
    )


@pytest.mark.parametrize("num_classes", [3, 7, 8])
@pytest.mark.parametrize("variant", VARIANTS, ids=variant_id)
def test_output_shapes(variant, num_classes):
    name, kw = variant
    m = build(name, num_classes=num_classes, **kw).eval()
    default = m.card.input_size[-1]
    sizes = {default, SMALL_SIZE[name]}
    with torch.no_grad():
        for size in sizes:
            out = m(torch.randn(2, 3, size, size))
            assert out.shape == (2, num_classes), (size, out.shape)
            assert torch.isfinite(out).all()


# ------------------------------------------------------------------------------------------------
# Batch independence: a sample's prediction must not depend on its batch-mates
# ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("variant", VARIANTS, ids=variant_id)
def test_batch_independence(variant):
    name, kw = variant
    m = build(name, **kw)
    x = torch.randn(5, 3, SMALL_SIZE[name], SMALL_SIZE[name])
    assert batch_dependence(m, x) < 1e-5


def test_batch_independence_check_catches_patt_lite_batch_attention():
    with pytest.warns(BatchDependentWarning, match="batch"):
        m = attnfer.create_model("patt_lite", attention="batch")
    assert m.card.batch_dependent
    x = torch.randn(5, 3, 112, 112)
    assert batch_dependence(m, x) > 1e-5  # the check fails even at random initialisation...
    # ...and badly once the 32-d features spread out the way trained ones do (non-negative, unit-scale
    # differences; a random frozen trunk makes them nearly identical across samples): calibrate the BN.
    with torch.no_grad():
        h = torch.relu(m.pre_fc(m.forward_features(x).mean((2, 3))))  # (B, 32) pre-BN features
        m.pre_bn.eps = 1e-12
        m.pre_bn.running_mean.copy_(h.mean(0))
        m.pre_bn.running_var.copy_(h.var(0) + 1e-12)
        m.pre_bn.weight.fill_(0.3)
        m.pre_bn.bias.fill_(1.0)
    assert batch_dependence(m, x) > 0.5
    # and a batch of one makes the original's attention the identity
    m.eval()
    with torch.no_grad():
        t = m.pre_bn(torch.relu(m.pre_fc(m.forward_features(x[:1]).mean((2, 3)))))
        torch.testing.assert_close(m.forward_head(m.forward_features(x[:1]), pre_logits=True), t)


def test_tokens_mode_gives_no_warning():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        m = attnfer.create_model("patt_lite")
    assert not m.card.batch_dependent


# ------------------------------------------------------------------------------------------------
# Gradients: no dead parameters; frozen ones are declared
# ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("variant", [*VARIANTS, ("patt_lite", {"attention": "batch"})], ids=variant_id)
def test_every_trainable_parameter_gets_a_gradient(variant):
    name, kw = variant
    m = build(name, num_classes=5, **kw).train()
    size = SMALL_SIZE[name] if name != "patt_lite" else 224
    x = torch.randn(4, 3, size, size)
    opt = torch.optim.SGD([p for p in m.parameters() if p.requires_grad], lr=0.01)
    # Two steps: timm's resnet18 zero-initialises each block's last BN scale (zero_init_last), which
    # legitimately blocks its branch's gradients until the first update.
    for _ in range(2):
        opt.zero_grad(set_to_none=True)
        out = m.forward_train(x)
        loss, _ = m.loss(out, torch.tensor([0, 1, 2, 3]))  # the model's own loss (all its terms)
        if "attention_image" in out:  # the attention-reconstruction term needs the face-on-black target
            loss = loss + out["attention_image"].pow(2).mean()
        loss.backward()
        opt.step()
    frozen = set(m.frozen_parameter_names())
    dead = [n for n, p in m.named_parameters() if p.requires_grad and (p.grad is None or not p.grad.any())]
    assert not dead, f"parameters without gradient: {dead[:5]}"
    leaked = [n for n, p in m.named_parameters() if n in frozen and p.grad is not None]
    assert not leaked


def test_patt_lite_freezing_is_declared_and_keeps_bn_in_eval():
    m = build("patt_lite")
    backbone = {f"backbone.{n}" for n, _ in m.backbone.named_parameters()}
    assert set(m.frozen_parameter_names()) == backbone
    m.train()
    assert not any(mod.training for mod in m.backbone.modules())
    assert m.pre_bn.training
    stats = m.backbone.bn1.running_mean.clone()
    m(torch.randn(2, 3, 112, 112))
    torch.testing.assert_close(m.backbone.bn1.running_mean, stats)  # frozen statistics


def test_patt_lite_unfreeze_last_n_really_unfreezes():
    m = build("patt_lite", unfreeze_last_n=4)
    trainable = [n for n, p in m.backbone.named_parameters() if p.requires_grad]
    # last 4 weighted layers: blocks.3.2.conv_pw, blocks.3.2.bn2, blocks.3.3.conv_dw, blocks.3.3.bn1
    assert trainable == [
        "blocks.3.2.conv_pw.weight",
        "blocks.3.2.bn2.weight",
        "blocks.3.2.bn2.bias",
        "blocks.3.3.conv_dw.weight",
        "blocks.3.3.bn1.weight",
        "blocks.3.3.bn1.bias",
    ]
    m.set_backbone_trainable(True, len(m.backbone.weighted_layers()))
    assert not m.frozen_parameter_names()
    with pytest.raises(ValueError, match="unfreeze_last_n"):
        m.set_backbone_trainable(True, 99)
    full = build("patt_lite", freeze_backbone=False).train()
    assert full.backbone.training and not full.frozen_parameter_names()


# ------------------------------------------------------------------------------------------------
# Interface
# ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", attnfer.list_models())
def test_interface_card_and_reset_classifier(name):
    m = build(name)
    card = m.card
    assert card is m.cfg and m.model_name == name
    assert card == get_model_cfg(name)  # readable without building the model
    assert len(card.mean) == 3 and len(card.std) == 3 and card.color_order == "RGB"
    assert card.paper
    assert m.num_classes == 7 and isinstance(m.get_classifier(), nn.Linear)
    m.reset_classifier(4)
    assert m.num_classes == 4 and m.get_classifier().out_features == 4
    size = card.input_size[-1]
    with torch.no_grad():
        assert m.eval()(torch.randn(2, 3, size, size)).shape == (2, 4)


def test_macs_of_patt_lite_match_measured_flops():
    # assets.md: a PAtt-Lite-sized model is 0.67 GFLOPs (= 0.34 GMACs) at 224x224
    assert 0.33e9 < count_macs(build("patt_lite")) < 0.34e9
    assert 0.30e9 < count_macs(build("emonet")) < 0.35e9  # README: 0.34 G


def test_feratt_losses():
    from attnfer.models import FERAttLoss, attention_loss, gmm_loss

    x = torch.rand(2, 3, 8, 8)
    assert attention_loss(x, x).item() == 0.0
    torch.testing.assert_close(attention_loss(x, x + 1.0), torch.tensor(5 * torch.tanh(torch.tensor(3.0)).item()))
    # well-separated classes give a small representation loss, collapsed ones a large one
    z = torch.tensor([[0.0, 0.0], [0.1, 0.0], [5.0, 5.0], [5.1, 5.0]])
    y = torch.tensor([0, 0, 1, 1])
    assert gmm_loss(z, y, 2, mixup=False) < 1e-6
    assert gmm_loss(torch.zeros(4, 2), y, 2, mixup=False) == pytest.approx(0.5)
    assert torch.isfinite(gmm_loss(z, y, 2, mixup=True))
    m = build("feratt", layout="code", num_classes=3)
    out = m.forward_train(torch.rand(2, 3, 64, 64))
    x_org = torch.rand(2, 3, 64, 64)
    parts = FERAttLoss(3, mixup=False)(out, torch.tensor([0, 2]), x_org=x_org)
    assert set(parts) == {"ce", "attention", "representation", "loss"}
    # the model owns its loss: the same three terms, weighted by the recipe's options
    m.configure_loss(ce=1.0, attention=0.5, representation=2.0, mixup=False)
    total, named = m.loss(out, torch.tensor([0, 2]), {"x_org": x_org})
    expected = parts["ce"] + 0.5 * parts["attention"] + 2.0 * parts["representation"]
    torch.testing.assert_close(total, expected)
    assert set(named) == {"ce", "attention", "representation"}
    with pytest.raises(ValueError, match="attn"):
        m.configure_loss(attn=1.0)
    with pytest.raises(ValueError, match="no loss options"):
        build("emonet").configure_loss(ce=1.0)
    total.backward()
    assert m.attention.head[1].weight.grad is not None


def test_config_is_declared_per_model_and_follows_the_options():
    assert get_model_cfg("feratt").preprocess.grayscale and get_model_cfg("feratt").input_size == (3, 128, 128)
    assert get_model_cfg("feratt", layout="code").input_size == (3, 64, 64)
    assert get_model_cfg("resnet18").interpolation == "bicubic"  # timm's own config
    assert get_model_cfg("patt_lite", attention="batch").batch_dependent
    assert get_model_cfg("patt_lite", resize_to=160).input_size == (3, 160, 160)
    assert get_model_cfg("sa_fer").mean == (0.0, 0.0, 0.0)
    assert get_model_cfg("sa_fer", imagenet_norm=True).mean == (0.485, 0.456, 0.406)
    for name in attnfer.list_models():
        cfg = get_model_cfg(name)
        assert type(cfg).from_dict(cfg.to_dict()) == cfg
        m = build(name)
        if cfg.explain_layer:
            m.get_submodule(cfg.explain_layer)  # the layer explanations hook exists
        assert m.class_names == list(cfg.class_names)  # default output names
    with pytest.raises(ValueError, match="did you mean 'emonet'"):
        get_model_cfg("emonett")


def test_phase_settings_belong_to_the_model():
    m = build("patt_lite")
    m.apply_phase_settings({"unfreeze_last_n": 2, "drop_rate": 0.3, "attn_drop_rate": 0.0})
    assert m.drop.p == 0.3 and m.attn_drop.p == 0.0 and m.unfreeze_last_n == 2
    e = build("emonet")
    e.apply_phase_settings({"drop_rate": 0.4})
    assert e.classifier[0].p == 0.4
    with pytest.raises(ValueError, match="'dropout' is not a setting of EMONet"):
        e.apply_phase_settings({"dropout": 0.1})
    with pytest.raises(ValueError, match="no backbone freezing"):
        e.apply_phase_settings({"unfreeze_last_n": 3})


@pytest.mark.parametrize("name", ["patt_lite", "sa_fer", "feratt", "emonet"])
def test_attention_maps_are_per_image_and_in_range(name):
    m = build(name).eval()
    size = m.cfg.input_size[-1]
    maps = m.attention_maps(torch.randn(1, 3, size, size))
    assert (len(maps) > 0) == (name != "emonet")
    for a in maps:
        assert a.data.shape[:2] == (size, size) and a.data.min() >= 0 and a.data.max() <= 1 + 1e-6
