"""Pretrained backbones from local files (timm and torchvision layouts) and the offline error path."""

import os
import subprocess
import sys

import pytest
import timm
import torch
import torchvision
from safetensors.torch import save_file

from assets import TORCHVISION_MOBILENET_V2, fetch
from attnfer.models import PretrainedWeightsError
from conftest import build


def _assert_filled(model, mapped_from: dict[str, torch.Tensor], prefix: str, expected: int):
    """Every mapped tensor of ``model`` equals the file's tensor; ``expected`` of them were mapped."""
    own = model.state_dict()
    report = model.pretrained_report
    assert len(report.loaded) == expected, report
    for key in report.loaded:
        src = key[len(prefix) :] if prefix else key
        torch.testing.assert_close(own[key], mapped_from[src], rtol=0, atol=0, msg=key)


@pytest.mark.network
def test_emonet_loads_torchvision_imagenet_mobilenet_v2(tmp_path):
    path = fetch(TORCHVISION_MOBILENET_V2)
    sd = torch.load(path, map_location="cpu", weights_only=True)
    m = build("emonet", pretrained=path)
    # every MobileNetV2 tensor except the ImageNet classifier (312 of 314) lands in EMO-Net's main branch
    _assert_filled(m, sd, "", expected=len(sd) - 2)
    assert m.pretrained_report.unused == ["classifier.1.bias", "classifier.1.weight"]
    assert all(".eca." in k or ".shortcut." in k or k.startswith("classifier.") for k in m.pretrained_report.missing)
    # the plain torchvision MobileNetV2 with this file and EMO-Net with lambda=0 and ECA disabled agree
    tv = torchvision.models.mobilenet_v2()
    tv.load_state_dict(sd)
    assert torch.equal(tv.features[5].conv[1][0].weight, m.features[5].conv[1][0].weight)


def test_emonet_maps_timm_mobilenetv2_layout(tmp_path):
    src = timm.create_model("mobilenetv2_100").state_dict()
    save_file(src, tmp_path / "model.safetensors")
    m = build("emonet", pretrained=tmp_path / "model.safetensors")
    tv_keys = [k for k in torchvision.models.mobilenet_v2().state_dict() if k.startswith("features.")]
    assert sorted(m.pretrained_report.loaded) == sorted(tv_keys)
    assert m.pretrained_report.unused == ["classifier.bias", "classifier.weight"]
    torch.testing.assert_close(m.features[0][0].weight, src["conv_stem.weight"], rtol=0, atol=0)
    torch.testing.assert_close(m.features[2].conv[2].weight, src["blocks.1.0.conv_pwl.weight"], rtol=0, atol=0)
    torch.testing.assert_close(m.features[18][1].running_var, src["bn2.running_var"], rtol=0, atol=0)


def test_patt_lite_loads_a_timm_mobilenetv1_file(tmp_path):
    src = timm.create_model("mobilenetv1_100").state_dict()
    save_file(src, tmp_path / "mobilenetv1.safetensors")
    m = build("patt_lite", pretrained=tmp_path / "mobilenetv1.safetensors")
    n_trunk = len(m.backbone.state_dict())
    _assert_filled(m, src, "backbone.", expected=n_trunk)
    assert "blocks.3.3.conv_pw.weight" in m.pretrained_report.unused  # the cut-off pointwise conv


@pytest.mark.parametrize("layout", ["torchvision", "timm"])
def test_sa_fer_loads_resnet18_files(tmp_path, layout):
    net = torchvision.models.resnet18() if layout == "torchvision" else timm.create_model("resnet18")
    src = net.state_dict()
    torch.save({"state_dict": src, "epoch": 3}, tmp_path / "r18.pth")  # a training-checkpoint wrapper
    m = build("sa_fer", pretrained=tmp_path / "r18.pth")
    expected = [k for k in src if not k.startswith(("layer4.", "fc."))]
    _assert_filled(m, src, "backbone.", expected=len(expected))


def test_feratt_encoder_loads_resnet34(tmp_path):
    src = torchvision.models.resnet34().state_dict()
    torch.save(src, tmp_path / "r34.pth")
    m = build("feratt", pretrained=tmp_path / "r34.pth")
    _assert_filled(m, src, "attention.encoder.", expected=len(src) - 2)  # all but fc.weight/fc.bias


def test_timm_baseline_and_preact_own_layout(tmp_path):
    src = timm.create_model("resnet18").state_dict()
    save_file(src, tmp_path / "r18.safetensors")
    m = build("resnet18", pretrained=tmp_path / "r18.safetensors")
    _assert_filled(m, src, "model.", expected=len(src) - 2)
    p = build("preact_resnet18")
    torch.save(p.state_dict(), tmp_path / "preact.pth")
    q = build("preact_resnet18", pretrained=tmp_path / "preact.pth")
    _assert_filled(q, p.state_dict(), "", expected=len(p.state_dict()) - 2)


def test_foreign_or_broken_files_fail_clearly(tmp_path):
    torch.save(torchvision.models.resnet18().state_dict(), tmp_path / "r18.pth")
    with pytest.raises(PretrainedWeightsError, match=r"backbone.bn1.weight has shape \(64,\).*expects \(32,\)"):
        build("patt_lite", pretrained=tmp_path / "r18.pth")
    save_file({"encoder.proj.weight": torch.zeros(2, 2)}, tmp_path / "vit.safetensors")
    with pytest.raises(PretrainedWeightsError, match="none of its tensors fit PAttLite.*encoder.proj.weight"):
        build("patt_lite", pretrained=tmp_path / "vit.safetensors")
    (tmp_path / "junk.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(PretrainedWeightsError, match="junk.pth"):
        build("emonet", pretrained=tmp_path / "junk.pth")
    with pytest.raises(PretrainedWeightsError, match="not found"):
        build("emonet", pretrained=tmp_path / "missing.pth")
    # a same-named tensor of the wrong shape (resnet34's layer1 vs a resnet50's) is an error, not a skip
    torch.save(torchvision.models.resnet50().state_dict(), tmp_path / "r50.pth")
    with pytest.raises(PretrainedWeightsError, match="shape"):
        build("feratt", pretrained=tmp_path / "r50.pth")


def test_pickled_objects_are_refused(tmp_path):
    torch.save(torchvision.models.resnet18(), tmp_path / "module.pth")  # a whole pickled nn.Module
    with pytest.raises(PretrainedWeightsError, match="weights_only"):
        build("sa_fer", pretrained=tmp_path / "module.pth")


def test_pretrained_true_offline_names_the_file_to_pass(tmp_path):
    code = (
        "import attnfer\n"
        "from attnfer.models import PretrainedWeightsError\n"
        "try:\n"
        "    attnfer.create_model('patt_lite', pretrained=True)\n"
        "except PretrainedWeightsError as e:\n"
        "    print(e)\n"
    )
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf")}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert "mobilenetv1_100" in out.stdout and "model.safetensors" in out.stdout, out.stdout + out.stderr
    assert "pretrained='/path/to/model.safetensors'" in out.stdout
