"""The LightningDataModule: datasets from the config, preprocessing from the model card."""

from __future__ import annotations

import os
import random
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader, Sampler

from ..data import DatasetSplits, load_dataset
from ..data.transforms import Augment, build_transform
from .config import AugmentConfig, TrainConfig

__all__ = ["EpochShuffleSampler", "FERDataModule", "load_run_data", "synthfer_root"]


def synthfer_root(n: int, size: int, seed: int) -> Path:
    """SynthFER in the user cache (generated once per (n, size, seed))."""
    from ..data.synthfer import generate

    cache = Path(os.environ.get("ATTNFER_CACHE", Path.home() / ".cache" / "attnfer"))
    root = cache / f"synthfer-n{n}-s{size}-seed{seed}"
    if not (root / "synthfer.json").is_file():
        generate(root, n=n, size=size, seed=seed)
    return root


def load_run_data(cfg: TrainConfig) -> DatasetSplits:
    d = cfg.data
    root = d.root
    if d.name == "synthfer" and root is None:
        root = str(synthfer_root(d.synth_n, d.synth_size, d.synth_seed))
    if root is None:
        raise ValueError(f"data.root is required for dataset '{d.name}'")
    options = dict(d.options)
    if d.name in ("rafdb", "synthfer", "affectnet", "ckplus", "folder"):
        options.setdefault("val_fraction", d.val_fraction)
    return load_dataset(d.name, root, subsets=d.subsets or None, **options)


def to_augment(a: AugmentConfig) -> Augment:
    return Augment(
        hflip=a.hflip,
        rotation=a.rotation,
        color_jitter=tuple(a.color_jitter) if a.color_jitter else None,
        random_contrast=a.random_contrast,
        random_erasing=a.random_erasing,
        resized_crop_scale=tuple(a.resized_crop_scale) if a.resized_crop_scale else None,
    )


class EpochShuffleSampler(Sampler[int]):
    """Per-epoch seeded order that carries the epoch with each index, so an interrupted run resumes exactly.

    Lightning calls ``set_epoch`` on samplers that have it. The order is a permutation seeded by (seed, epoch);
    each yielded index is ``epoch * n + i`` so that :class:`SeededAugmentation` can seed sample i's augmentation
    from (seed, epoch, i), whatever process or worker draws it. With ``weights`` it draws with replacement
    proportionally to them (the class-balanced sampler). Under DDP each rank takes every world_size-th index.
    """

    def __init__(self, n: int, seed: int, weights: torch.Tensor | None = None, rank: int = 0, world: int = 1) -> None:
        self.n, self.seed, self.weights, self.rank, self.world = n, seed, weights, rank, world
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self):
        g = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
        if self.weights is not None:
            order = torch.multinomial(self.weights, self.n, replacement=True, generator=g)
        else:
            order = torch.randperm(self.n, generator=g)
        return iter((order[self.rank :: self.world] + self.epoch * self.n).tolist())

    def __len__(self) -> int:
        return len(range(self.rank, self.n, self.world))


class SeededAugmentation(torch.utils.data.Dataset):
    """Training samples whose random augmentation is a pure function of (seed, epoch, index).

    Indices come from :class:`EpochShuffleSampler` as ``epoch * n + i``. Each draw runs under a forked RNG seeded
    from (seed, epoch, i): results do not depend on the number of DataLoader workers nor on what ran before, which
    is what makes resuming exact.
    """

    def __init__(self, dataset: Any, seed: int) -> None:
        self.dataset, self.seed, self.n = dataset, seed, len(dataset)

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, k: int):
        epoch, i = divmod(int(k), self.n)
        sample_seed = (self.seed * 1_000_003 + epoch * 100_003 + i) % (2**63)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(sample_seed)
            random.seed(sample_seed)
            return self.dataset[i]


class FERDataModule(L.LightningDataModule):
    def __init__(self, cfg: TrainConfig, data: DatasetSplits, card: Any) -> None:
        super().__init__()
        self.cfg, self.data, self.card = cfg, data, card
        self.augment = to_augment(cfg.augment)

    def set_augment(self, augment: AugmentConfig | None) -> None:
        self.augment = to_augment(augment or self.cfg.augment)

    def dataset(self, split: str, train: bool):
        """Split ``split`` with the card's preprocessing (and the augmentation when ``train``)."""
        ds = self.data[split]
        if self.cfg.data.compositing:
            from ..data.compositing import CompositingDataset

            size = self.card.input_size[-1]
            return CompositingDataset(
                ds,
                self.cfg.data.backgrounds,
                size=size,
                train=train,
                seed=self.cfg.seed,
                mean=tuple(self.card.mean),
                std=tuple(self.card.std),
            )
        ds = ds.subset(np.arange(len(ds)))  # own copy: transforms differ between loaders
        ds.transform = build_transform(self.card, train=train, augment=self.augment)
        return ds

    def _loader(self, ds, batch_size: int, sampler=None) -> DataLoader:
        workers = self.cfg.data.num_workers
        return DataLoader(
            ds,
            batch_size=batch_size,
            sampler=sampler,
            num_workers=workers,
            persistent_workers=False,
            pin_memory=torch.cuda.is_available(),
            drop_last=False,
        )

    def train_dataloader(self) -> DataLoader:
        ds = self.dataset("train", train=True)
        weights = None
        if self.cfg.data.balanced_sampler:
            from ..data.sampling import class_weights

            weights = class_weights(self.data["train"])[torch.from_numpy(self.data["train"].targets)].double()
        trainer = self.trainer
        rank, world = (trainer.global_rank, trainer.world_size) if trainer is not None else (0, 1)
        sampler = EpochShuffleSampler(len(ds), self.cfg.seed, weights, rank, world)
        return self._loader(SeededAugmentation(ds, self.cfg.seed), self.cfg.data.batch_size, sampler)

    def val_dataloader(self) -> DataLoader:
        return self._loader(self.dataset("validation", train=False), self.cfg.data.eval_batch_size)

    def eval_loader(self, split: str, batch_size: int | None = None, shuffle_seed: int | None = None) -> DataLoader:
        """Loader for evaluation; ``shuffle_seed`` gives shuffled fixed batches (batch-dependent models)."""
        ds = self.dataset(split, train=False)
        sampler = None
        if shuffle_seed is not None:
            g = torch.Generator().manual_seed(shuffle_seed)
            sampler = torch.randperm(len(ds), generator=g).tolist()
        return self._loader(ds, batch_size or self.cfg.data.eval_batch_size, sampler)
