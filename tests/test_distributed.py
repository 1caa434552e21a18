"""Distributed data parallel: every rank gets an equal shard, so collective operations never hang.

Real gloo process groups on loopback (2 processes on the CPU), fed by the engine's own training loader.
"""

from __future__ import annotations

import os
import socket

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from attnfer.data import DatasetSplits, FERDataset
from attnfer.engine import load_config
from attnfer.engine.data import EpochShuffleSampler, FERDataModule
from attnfer.preprocess import PreprocessConfig


def _splits(n_train: int) -> DatasetSplits:
    rng = np.random.default_rng(0)

    def split(name: str, n: int) -> FERDataset:
        return FERDataset(
            name="toy",
            split=name,
            class_names=["neutral", "happiness"],
            targets=rng.integers(0, 2, n),
            ids=[f"{name}_{i}" for i in range(n)],
            images=rng.integers(0, 256, (n, 20, 20, 3), dtype=np.uint8),
        )

    return DatasetSplits(
        "toy",
        ["neutral", "happiness"],
        {s: split(s, k) for s, k in [("train", n_train), ("validation", 4), ("test", 4)]},
        "given",
    )


class _Trainer:  # what FERDataModule reads from Lightning's trainer
    def __init__(self, rank: int, world: int) -> None:
        self.global_rank, self.world_size = rank, world


def _worker(rank: int, world: int, port: int, n_train: int, batch: int, out: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world, timeout=__import__("datetime").timedelta(seconds=30))
    try:
        cfg = load_config(overrides={"model.name": "toy", "data.batch_size": batch, "data.num_workers": 0})
        dm = FERDataModule(cfg, _splits(n_train), PreprocessConfig(input_size=(3, 16, 16)))
        dm.trainer = _Trainer(rank, world)
        loader = dm.train_dataloader()
        seen, steps = [], 0
        for epoch in range(2):
            loader.sampler.set_epoch(epoch)
            for x, y in loader:
                grad = x.mean().reshape(1)
                dist.all_reduce(grad)  # what DDP does every step: needs the same number of steps on every rank
                seen.extend(y.tolist())
                steps += 1
        torch.save({"steps": steps, "samples": len(seen)}, f"{out}/rank{rank}.pt")
    finally:
        dist.destroy_process_group()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("n_train", [17])
def test_two_gloo_ranks_get_equal_shards(tmp_path, n_train):
    """17 samples, batch 8, 2 ranks: each rank runs 2 steps per epoch (9 samples each, one padded); before the fix
    rank 0 ran 2 steps and rank 1 one, and gloo failed with "Received data size doesn't match"."""
    # fork: the workers start from this already-initialised interpreter (spawn would re-import torch and lightning)
    mp.start_processes(
        _worker, args=(2, _free_port(), n_train, 8, str(tmp_path)), nprocs=2, join=True, start_method="fork"
    )
    res = [torch.load(tmp_path / f"rank{r}.pt") for r in range(2)]
    per_rank = -(-n_train // 2)  # ceil
    assert [r["steps"] for r in res] == [2 * -(-per_rank // 8)] * 2
    assert [r["samples"] for r in res] == [2 * per_rank] * 2


@pytest.mark.parametrize("n, world", [(17, 2), (5, 3), (2, 4), (16, 2)])
def test_sampler_pads_like_distributed_sampler(n, world):
    shards = [list(EpochShuffleSampler(n, seed=3, rank=r, world=world)) for r in range(world)]
    assert len({len(s) for s in shards}) == 1 and len(shards[0]) == len(EpochShuffleSampler(n, 3, rank=0, world=world))
    covered = sorted({i for s in shards for i in s})
    assert covered == list(range(n))  # every sample is seen; padding repeats some
    assert sum(len(s) for s in shards) - n < world  # at most world - 1 repeats (as DistributedSampler)
    again = [list(EpochShuffleSampler(n, seed=3, rank=r, world=world)) for r in range(world)]
    assert again == shards  # deterministic: a resumed run sees the same shards
