"""Augmentation on the device: the batched path against the per-sample path, and the training loaders that use them.

The per-sample path (torchvision's kernels, one face at a time, in the loader) and the batched path (BatchAugment, a
uint8 batch on the training device, every sample with its own parameters) must produce the same training inputs
for the same seeds: identical where they run the same kernels, within 2/255 (in [0, 1] pixel units) where the
resize kernels differ (PIL or OpenCV vs torch).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

import attnfer
from attnfer.data.compiled import compile_dataset
from attnfer.data.synthfer import generate
from attnfer.engine.config import TrainConfig
from attnfer.engine.data import FERDataModule, HostParams, load_run_data
from attnfer.hardware import loader_settings, use_channels_last
from attnfer.preprocess import as_preprocess, resize_face
from attnfer.preprocess.augment import (
    ANGLE,
    FLIP,
    NUM_PARAMS,
    Augment,
    BatchAugment,
    apply_sample,
    draw_params,
    luma_uint8,
)

MODELS = ("patt_lite", "emonet", "sa_fer", "feratt")
#: every augmentation of the recipes (configs/*.yaml), and all of them at once
AUGMENTS = {
    "flip": Augment(hflip=0.5),
    "patt_lite": Augment(hflip=0.5, random_contrast=0.3),
    "sa_fer": Augment(hflip=0.5, rotation=10, color_jitter=(0.2, 0.2, 0.2, 0.1)),
    "emonet": Augment(hflip=0.5, resized_crop_scale=(0.08, 1.0)),
    "all": Augment(
        hflip=0.5,
        rotation=20,
        color_jitter=(0.4, 0.4, 0.4, 0.2),
        random_contrast=0.3,
        random_erasing=0.5,
        resized_crop_scale=(0.08, 1.0),
    ),
}


@pytest.fixture(scope="module")
def preprocess():
    """The real models' input contracts (FERAtt's grey faces), and the variants other models have: timm's centre
    crop (crop_pct 0.875) with bicubic resizing, OpenCV's resize without antialiasing (Keras-exact PAtt-Lite)."""
    cards = {name: as_preprocess(attnfer.create_model(name, pretrained=False)) for name in MODELS}
    cards["crop_bicubic"] = cards["emonet"].replace(crop_pct=0.875, interpolation="bicubic")
    cards["opencv"] = cards["patt_lite"].replace(antialias=False)
    return cards


def faces(n: int, size: int, seed: int = 0) -> torch.Tensor:
    """uint8 (n, 3, size, size) with smooth regions and hard edges (where kernels differ most)."""
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, 3, max(2, size // 8), max(2, size // 8), generator=g) * 255
    x = torch.nn.functional.interpolate(x, size=(size, size), mode="bicubic").clamp(0, 255).round()
    x[:, :, size // 3 : size // 3 + 4] = 255
    x[:, 1, :, size // 2 : size // 2 + 3] = 0
    return x.to(torch.uint8)


def both_paths(cfg, augment: Augment, src: torch.Tensor, seed: int = 100) -> tuple[torch.Tensor, torch.Tensor]:
    """(per-sample, batched) model inputs for ``src`` (B, 3, S, S), sample i drawn under seed ``seed + i``."""
    params, per = [], []
    for i in range(len(src)):
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed + i)
            p = draw_params(augment, tuple(src.shape[-2:]), cfg.size)
        params.append(p)
        per.append(apply_sample(src[i], p, cfg, augment, resize=lambda f: resize_face(f, cfg)))
    return torch.stack(per), BatchAugment(cfg, augment)(src, torch.stack(params))


def pixel_diff(cfg, a: torch.Tensor, b: torch.Tensor) -> float:
    """Max |a - b| in [0, 1] pixel units (model units divided by the normalisation's scale)."""
    units = torch.tensor(cfg.scale).view(1, 3, 1, 1) * 255.0  # model units per [0, 1] unit
    return ((a - b).abs() / units).max().item()


@pytest.mark.parametrize("model", [*MODELS, "crop_bicubic", "opencv"])
@pytest.mark.parametrize("aug", sorted(AUGMENTS))
def test_batched_equals_per_sample_at_the_source_size(preprocess, model, aug):
    """Faces stored at the model's resize size (a store compiled at it, or image files the loader stretched): the
    same kernels on both paths (torchvision's per sample, ours batched; the random resized crop has one kernel), so
    they agree to float rounding."""
    cfg, augment = preprocess[model], AUGMENTS[aug]
    per, batched = both_paths(cfg, augment, faces(12, cfg.resize_size[0]))
    assert per.shape == batched.shape == (12, *cfg.input_size)
    assert pixel_diff(cfg, per, batched) <= 1e-5


@pytest.mark.parametrize("model", ["emonet", "feratt"])
def test_resized_crop_kernel_is_torchvisions_within_a_level(preprocess, model):
    """The crop-resize both paths share against torchvision's uint8 ``resized_crop``: upscaled boxes (grid_sample)
    and downscaled ones (interpolate), over the boxes RandomResizedCrop draws."""
    from torchvision.transforms import InterpolationMode
    from torchvision.transforms.v2 import functional as TF

    from attnfer.preprocess.augment import CROP_BOX, resized_crop

    cfg = preprocess[model]
    for size in (cfg.size[0], 2 * cfg.size[0]):  # upscales only; mostly downscales
        src = faces(16, size, seed=size)
        boxes = []
        for i in range(16):
            torch.manual_seed(i)
            boxes.append(
                draw_params(Augment(hflip=0, resized_crop_scale=(0.08, 1.0)), (size, size), cfg.size)[CROP_BOX]
            )
        ours = resized_crop(src, torch.stack(boxes), cfg)
        for i, box in enumerate(boxes):
            top, left, h, w = (int(v) for v in box)
            ref = TF.resized_crop(
                src[i], top, left, h, w, list(cfg.size), InterpolationMode.BILINEAR, antialias=cfg.antialias
            )
            assert (ours[i] - ref.float()).abs().max().item() <= 1.0, (size, box)


@pytest.mark.parametrize("model", ["patt_lite", "emonet", "feratt"])
@pytest.mark.parametrize("size", [112, 256])
@pytest.mark.parametrize("aug", ["flip", "patt_lite", "emonet"])
def test_batched_resize_within_two_levels_of_the_cpu_kernels(preprocess, model, size, aug):
    """BatchAugment's own resize of a batch at another size (torch's bilinear ``interpolate``) against the per-sample
    path's PIL (antialiased) or OpenCV resize: at most 2/255 apart. (The training loader does not rely on it: it hands
    the batch path faces at the model's size, above; colour jitter would amplify this one-level difference.)"""
    cfg, augment = preprocess[model], AUGMENTS[aug]
    per, batched = both_paths(cfg, augment, faces(8, size, seed=1))
    assert pixel_diff(cfg, per, batched) <= 2.0 / 255 + 1e-5


def test_parameters_are_drawn_per_sample_and_the_batch_does_not_mix_them(preprocess):
    cfg, augment = preprocess["sa_fer"], AUGMENTS["all"]
    src = faces(16, 224, seed=2)
    params = []
    for i in range(16):
        torch.manual_seed(i)
        params.append(draw_params(augment, (224, 224), cfg.size))
    params = torch.stack(params)
    assert params.shape == (16, NUM_PARAMS)
    assert 0 < params[:, FLIP].sum() < 16  # some flipped, some not: not one draw for the batch
    assert len(set(params[:, ANGLE].tolist())) == 16
    batch = BatchAugment(cfg, augment)(src, params)
    for i in (0, 7, 15):  # a sample augmented alone equals the same sample inside the batch
        alone = BatchAugment(cfg, augment)(src[i : i + 1], params[i : i + 1])
        torch.testing.assert_close(alone[0], batch[i], atol=1e-5, rtol=0)
    again = BatchAugment(cfg, augment)(src, params)  # a pure function of pixels and parameters
    torch.testing.assert_close(again, batch, atol=0, rtol=0)


def test_the_same_seed_draws_the_same_parameters():
    augment = AUGMENTS["all"]
    torch.manual_seed(5)
    a = draw_params(augment, (100, 120), (224, 224))
    torch.manual_seed(5)
    b = draw_params(augment, (100, 120), (224, 224))
    torch.testing.assert_close(a, b, atol=0, rtol=0)
    torch.manual_seed(6)
    assert not torch.equal(a, draw_params(augment, (100, 120), (224, 224)))


def test_grey_luma_is_pils():
    from attnfer.preprocess import to_grayscale

    src = faces(3, 40, seed=3)
    for i in range(3):
        pil = to_grayscale(src[i].permute(1, 2, 0).numpy())
        assert np.array_equal(luma_uint8(src[i]).permute(1, 2, 0).numpy(), pil)


def test_evaluation_without_parameters_is_the_eval_preprocessing(preprocess):
    from attnfer.preprocess.torch_ops import build_transform

    for model in MODELS:
        cfg = preprocess[model]
        src = faces(4, cfg.resize_size[0], seed=4)
        expected = torch.stack([build_transform(cfg)(s) for s in src])
        torch.testing.assert_close(BatchAugment(cfg)(src), expected, atol=1e-5, rtol=0)


def test_bad_batches_are_refused(preprocess):
    with pytest.raises(ValueError, match="uint8"):
        BatchAugment(preprocess["emonet"])(torch.zeros(2, 3, 224, 224))


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """A SynthFER tree compiled at PAtt-Lite's input size (the recommended store for device augmentation)."""
    root = tmp_path_factory.mktemp("synth")
    generate(root / "tree", n=48, size=64, seed=0)
    from attnfer.data import load_dataset

    return compile_dataset(load_dataset("synthfer", root / "tree", val_fraction=0.25), root / "store", size=224)


def first_batches(cfg, where: str, n: int = 2) -> list[torch.Tensor]:
    """The first training batches of the real data module as the model receives them (after the transfer hook)."""
    cfg = cfg.model_copy(update={"data": cfg.data.model_copy(update={"augment_on": where})})
    dm = FERDataModule(cfg, load_run_data(cfg), attnfer.create_model("patt_lite", pretrained=False).cfg)
    loader = dm.train_dataloader()
    out = []
    for k, batch in enumerate(loader):
        if k == n:
            break
        assert (len(batch) == 3 and isinstance(batch[2], HostParams)) == (where == "device")
        out.append(dm.on_after_batch_transfer(batch, 0))
    return out


def test_training_loader_gives_the_same_inputs_on_either_path(store):
    """The contract across consumers: the same recipe and seed give the model the same augmented batches whether
    augmentation runs per sample in the loader or batched on the device (here the CPU stands in for it)."""
    cfg = TrainConfig.model_validate(
        {
            "seed": 3,
            "model": {"name": "patt_lite"},
            "data": {"name": "compiled", "root": str(store), "batch_size": 8, "num_workers": 0},
            "augment": {"hflip": 0.5, "random_contrast": 0.3, "rotation": 10, "random_erasing": 0.3},
        }
    )
    cpu, device = first_batches(cfg, "cpu"), first_batches(cfg, "device")
    plain = first_batches(
        cfg.model_copy(
            update={
                "augment": cfg.augment.model_copy(
                    update={"hflip": 0.0, "random_contrast": 0.0, "rotation": 0.0, "random_erasing": 0.0}
                )
            }
        ),
        "device",
    )
    pre = as_preprocess(attnfer.create_model("patt_lite", pretrained=False))
    for (xc, yc), (xd, yd), (xp, yp) in zip(cpu, device, plain, strict=True):
        assert torch.equal(yc, yd) and torch.equal(yd, yp) and xd.dtype == torch.float32
        assert pixel_diff(pre, xc, xd) <= 1e-5
        assert pixel_diff(pre, xd, xp) > 0.1  # the recipe's augmentation did happen


def test_loader_settings_follow_the_machine():
    gpu = loader_settings(cuda=True, processes=1, cpus=16)
    assert gpu == {"num_workers": 12, "pin_memory": True, "persistent_workers": True, "prefetch_factor": 2}
    assert loader_settings(cuda=True, processes=8, cpus=64)["num_workers"] == 7  # shared between 8 GPU processes
    assert loader_settings(cuda=True, processes=1, cpus=2)["num_workers"] == 1
    small = loader_settings(cuda=False, cpus=2)
    assert small == {"num_workers": 0, "pin_memory": False, "persistent_workers": False}
    assert loader_settings(cuda=False, cpus=32)["num_workers"] == 4
    assert use_channels_last("auto", "cpu") is False and use_channels_last("auto", "gpu") is True
    assert use_channels_last(True, "cpu") is True


def test_recipe_workers_override_the_machine(store):
    base = {"model": {"name": "patt_lite"}, "data": {"name": "compiled", "root": str(store)}}
    for workers, expected in (("auto", loader_settings(cuda=False)["num_workers"]), (0, 0), (3, 3)):
        cfg = TrainConfig.model_validate({**base, "data": {**base["data"], "num_workers": workers}})
        dm = FERDataModule(cfg, load_run_data(cfg), attnfer.create_model("patt_lite", pretrained=False).cfg)
        settings = dm.loader_settings()
        assert settings["num_workers"] == expected
        assert settings["persistent_workers"] == (expected > 0)


def test_training_with_augmentation_on_the_device_runs_end_to_end(tmp_path, monkeypatch):
    """A real (brief) training run whose augmentation runs batched after the transfer hook (the CPU standing in for
    the device), then evaluated: the whole Lightning path, including the datamodule's transfer hook."""
    from attnfer.engine import load_config, train

    monkeypatch.setenv("ATTNFER_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("ATTNFER_RUN_DIR", raising=False)
    cfg = load_config(
        Path(attnfer.__file__).parent / "configs" / "quickstart.yaml",
        {
            "output_dir": str(tmp_path),
            "data.synth_n": 60,
            "data.synth_size": 64,
            "data.batch_size": 8,
            "data.num_workers": 0,
            "data.augment_on": "device",
            "augment.random_erasing": 0.5,
            "phases.0.epochs": 1,
            "phases.0.max_minutes": None,
            "trainer.precision": "32-true",
            "trainer.progress_bar": False,
            "evaluate_batch_invariance": False,
        },
    )
    run = train(cfg)
    assert (run / "best" / "model.safetensors").is_file() and (run / "evaluation.json").is_file()


def _dm(store, workers: int, augment: dict, **extra) -> FERDataModule:
    cfg = TrainConfig.model_validate(
        {
            "seed": 7,
            "model": {"name": "patt_lite"},
            "data": {
                "name": "compiled",
                "root": str(store),
                "batch_size": 6,
                "num_workers": workers,
                "augment_on": "device",
            },
            "augment": augment,
            **extra,
        }
    )
    return FERDataModule(cfg, load_run_data(cfg), attnfer.create_model("patt_lite", pretrained=False).cfg)


def _inputs(dm: FERDataModule, n: int) -> list[torch.Tensor]:
    out = []
    for k, batch in enumerate(dm.train_dataloader()):
        if k == n:
            break
        out.append(dm.on_after_batch_transfer(batch, 0)[0])
    return out


def test_worker_processes_and_resuming_mid_epoch_give_the_same_device_batches(store):
    """Parameters travel through loader worker processes (HostParams) unchanged, and a loader resumed at batch 2 of
    its epoch (a checkpoint taken within an epoch) continues with the same augmented batches."""
    augment = {"hflip": 0.5, "rotation": 10, "random_erasing": 0.5}
    in_process = _inputs(_dm(store, 0, augment), 4)
    with_workers = _inputs(_dm(store, 2, augment), 4)
    for a, b in zip(in_process, with_workers, strict=True):
        torch.testing.assert_close(a, b, atol=0, rtol=0)
    dm = _dm(store, 0, augment)
    dm.load_state_dict({"train_position": {"epoch": 0, "batches": 2, "epoch_batches": 6, "batch_size": 6}})
    resumed = _inputs(dm, 2)
    for a, b in zip(in_process[2:], resumed, strict=True):
        torch.testing.assert_close(a, b, atol=0, rtol=0)


def test_a_phase_augmentation_reaches_the_device_path(store):
    """``set_augment`` (a phase's own augmentation, e.g. SA-FER's second phase) is what the batch path applies."""
    from attnfer.engine.config import AugmentConfig
    from attnfer.engine.data import to_augment

    dm = _dm(store, 0, {"hflip": 0.0})
    plain = _inputs(dm, 1)[0]
    phase = AugmentConfig(hflip=0.5, rotation=10, color_jitter=[0.2, 0.2, 0.2, 0.1])
    dm.set_augment(phase)
    jittered = _inputs(dm, 1)[0]
    assert dm.batch_augment is not None and dm.batch_augment.augment == to_augment(phase)
    assert (plain - jittered).abs().max() > 0.1
