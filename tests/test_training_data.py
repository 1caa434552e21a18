"""The engine's training data: per-epoch composites reach every sample, and a resumed run sees the same data."""

from __future__ import annotations

import pytest
import torch

from attnfer.data import load_dataset
from attnfer.data.synthfer import generate
from attnfer.engine import load_config
from attnfer.engine.data import FERDataModule
from attnfer.models import get_model_cfg


@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    return generate(tmp_path_factory.mktemp("s") / "synthfer", n=40, size=64, seed=5, workers=1)


def _epoch_images(synth, epoch: int) -> dict[int, torch.Tensor]:
    """Composited training inputs of one epoch by dataset index, from a freshly built data module (as a new or a
    resumed process builds it), through the engine's training loader."""
    cfg = load_config(
        overrides={
            "model.name": "feratt",
            "model.kwargs": {"layout": "code"},
            "data.compositing": True,
            "data.batch_size": 8,
            "data.num_workers": 0,
            "seed": 1,
        }
    )
    dm = FERDataModule(cfg, load_dataset("synthfer", synth), get_model_cfg("feratt", layout="code"))
    loader = dm.train_dataloader()
    loader.sampler.set_epoch(epoch)  # what Lightning does at the start of every epoch, resumed ones included
    n = len(loader.dataset)
    order = [k - epoch * n for k in loader.sampler]
    images = torch.cat([batch[0] for batch in loader])
    assert images.shape[1:] == (3, 64, 64) and len(images) == len(order)
    return dict(zip(order, images, strict=True))


def test_composites_change_every_epoch_and_resume_identically(synth):
    first = _epoch_images(synth, 0)
    second = _epoch_images(synth, 1)
    assert set(first) == set(second)
    changed = [i for i in first if not torch.equal(first[i], second[i])]
    assert len(changed) == len(first), "every composite must be redrawn in a new epoch"
    resumed = _epoch_images(synth, 1)  # an interrupted run, resumed in epoch 1 by a new process
    assert all(torch.equal(resumed[i], second[i]) for i in second)
