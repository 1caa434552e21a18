"""The LightningDataModule: datasets from the recipe, preprocessing from the model's config.

Every split goes through :mod:`attnfer.preprocess` built from the model's :class:`~attnfer.preprocess.PreprocessConfig`
(the same definition inference uses); training adds the recipe's augmentations. Training order and augmentation are
pure functions of (seed, epoch, index), so a resumed run continues exactly, and under DDP every rank gets an equal
shard (padded as ``torch.utils.data.DistributedSampler`` pads). The training loader's place in its epoch is part of
Lightning's checkpoint (:class:`ResumableLoader`), so a run resumed from a checkpoint taken within an epoch continues
with the next batch of that epoch.

Where training augmentation runs (``data.augment_on``): on the CPU, per sample in the loader (the default off CUDA),
or on the training device (the default on CUDA): the loader then only reads the uint8 face at its source size
(:meth:`FERDataModule.source_size`: for a random resized crop the compiled store's faces as they are, else the
model's resize size, which a store compiled at the model's size already has; anything else is stretched with the
preprocessing's own resize) and draws the sample's augmentation parameters from the per-sample seed; the uint8 batch
travels to the device (a quarter of the bytes of a float batch) and :class:`~attnfer.preprocess.augment.BatchAugment`
crops, augments and normalises it there, in :meth:`FERDataModule.on_after_batch_transfer`. Loader settings
(workers, pinned memory, persistent workers, prefetch) come from the machine (:func:`attnfer.hardware.loader_settings`)
unless the recipe sets ``data.num_workers``.
"""

from __future__ import annotations

import math
import random
import warnings
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader, Sampler

from ..data import DatasetSplits, load_dataset
from ..files import cache_dir
from ..hardware import loader_settings, use_channels_last
from ..preprocess import PreprocessConfig, as_preprocess, resize_face
from ..preprocess.augment import Augment, BatchAugment, draw_params
from ..preprocess.torch_ops import build_transform
from .config import AugmentConfig, TrainConfig

__all__ = [
    "AugmentSource",
    "EpochShuffleSampler",
    "FERDataModule",
    "ResumableLoader",
    "load_run_data",
    "resume_sampler",
    "synthfer_root",
]


def synthfer_root(n: int, size: int, seed: int) -> Path:
    """SynthFER in the user cache (generated once per (n, size, seed))."""
    from ..data.synthfer import generate

    root = cache_dir(f"synthfer-n{n}-s{size}-seed{seed}")
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
    if d.name in ("rafdb", "synthfer", "affectnet", "ckplus", "bu3dfe", "folder"):
        options.setdefault("val_fraction", d.val_fraction)
    return load_dataset(d.name, root, subsets=d.subsets or None, **options)


def to_augment(a: AugmentConfig) -> Augment:
    """The preprocessing's :class:`~attnfer.preprocess.augment.Augment` of a recipe's ``augment`` section."""
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
    proportionally to them (the class-balanced sampler). Under DDP the order is padded by repeating its head to a
    multiple of the world size, as ``DistributedSampler`` does, and each rank takes every world-th index: every
    rank runs the same number of steps (unequal shards hang collective operations).
    """

    def __init__(self, n: int, seed: int, weights: torch.Tensor | None = None, rank: int = 0, world: int = 1) -> None:
        if not 0 <= rank < world:
            raise ValueError(f"rank {rank} outside a world of {world}")
        self.n, self.seed, self.weights, self.rank, self.world = n, seed, weights, rank, world
        self.epoch = 0
        self._resume: tuple[int, int] | None = None

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def resume_at(self, epoch: int, start: int) -> None:
        """The next iteration is of ``epoch`` and starts at its ``start``-th index (on this rank): the samples before
        it were trained on before a checkpoint. Later iterations are whole epochs again."""
        self.epoch = epoch
        self._resume = (epoch, start)

    def __iter__(self):
        g = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
        if self.weights is not None:
            order = torch.multinomial(self.weights, self.n, replacement=True, generator=g)
        else:
            order = torch.randperm(self.n, generator=g)
        total = len(self) * self.world
        if total > self.n:  # pad with the head of the order (repeated if the world exceeds n)
            order = torch.cat([order, order.repeat(math.ceil(total / self.n))[: total - self.n]])
        assert len(order) == total
        start = 0
        if self._resume is not None:
            epoch, skip = self._resume
            self._resume = None
            if epoch == self.epoch:
                start = skip
        return iter((order[self.rank : total : self.world] + self.epoch * self.n)[start:].tolist())

    def __len__(self) -> int:
        return math.ceil(self.n / self.world)


def resume_sampler(sampler: EpochShuffleSampler, position: dict[str, int]) -> None:
    """Set ``sampler`` to continue after ``position`` (:meth:`FERDataModule.train_position`): within its epoch, after
    the samples of the batches already trained on, or, when that epoch was complete, at the start of the next."""
    epoch, done = int(position["epoch"]), int(position["batches"])
    if done >= int(position["epoch_batches"]):
        sampler.set_epoch(epoch + 1)
    else:
        sampler.resume_at(epoch, done * int(position["batch_size"]))


class ResumableLoader(DataLoader):
    """The training loader, resumable within an epoch (Lightning's ``state_dict`` / ``load_state_dict`` protocol
    for loaders: the state is saved with the fit loop's and given back when Lightning restarts an epoch).

    :class:`FERDataModule` keeps the same position in its own checkpoint state, which Lightning restores before the
    loader is made (Lightning may build the loader before it restores the loops, to count the steps of a schedule,
    and then never hands the loader its state)."""

    position: Any = None  # () -> FERDataModule.train_position()

    def state_dict(self) -> dict[str, int]:
        return self.position() if self.position is not None else {}

    def load_state_dict(self, state: dict[str, int]) -> None:
        if state:
            resume_sampler(self.sampler, state)


class SeededAugmentation(torch.utils.data.Dataset):
    """Training samples whose random augmentation is a pure function of (seed, epoch, index).

    Indices come from :class:`EpochShuffleSampler` as ``epoch * n + i``. Each draw runs under a forked RNG seeded
    from (seed, epoch, i): results do not depend on the number of DataLoader workers nor on what ran before, which
    is what makes resuming exact. A dataset that varies by epoch itself (``set_epoch``, e.g. composited training
    data) is told the epoch of every sample it is asked for.
    """

    def __init__(self, dataset: Any, seed: int) -> None:
        self.dataset, self.seed, self.n = dataset, seed, len(dataset)

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, k: int):
        epoch, i = divmod(int(k), self.n)
        sample_seed = (self.seed * 1_000_003 + epoch * 100_003 + i) % (2**63)
        set_epoch = getattr(self.dataset, "set_epoch", None)
        if set_epoch is not None:
            set_epoch(epoch)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(sample_seed)
            random.seed(sample_seed)
            return self.dataset[i]


class AugmentSource:
    """A training sample for augmentation on the device: the uint8 face at the source size and its parameters
    (:func:`~attnfer.preprocess.augment.draw_params`), made in the loader by :class:`SourceTransform`."""

    __slots__ = ("image", "params")

    def __init__(self, image: torch.Tensor, params: torch.Tensor) -> None:
        self.image, self.params = image, params


class HostParams:
    """A batch's augmentation parameters, kept on the host when Lightning moves the batch to the device (an opaque
    object: Lightning moves tensors and objects with ``.to``, the loader pins tensors; neither touches this)."""

    __slots__ = ("params",)

    def __init__(self, params: torch.Tensor) -> None:
        self.params = params


class SourceTransform:
    """The loader's part of augmentation on the device: the face stretched to ``source_hw`` (a no-op for a compiled
    store's faces, which are stored at that size) and the sample's parameters drawn from the per-sample seed."""

    def __init__(self, cfg: PreprocessConfig, augment: Augment, source_hw: tuple[int, int]) -> None:
        self.cfg, self.augment, self.source_hw = cfg, augment, tuple(source_hw)
        self.stretch = cfg.replace(input_size=(3, *self.source_hw), crop_pct=1.0)

    def __call__(self, image: torch.Tensor) -> AugmentSource:
        if tuple(image.shape[-2:]) != self.source_hw:
            face = resize_face(image.permute(1, 2, 0).numpy(), self.stretch, grayscale=False)  # (S, S', 3) colour
            image = torch.from_numpy(face if face.flags.writeable else face.copy()).permute(2, 0, 1)
        return AugmentSource(image.contiguous(), draw_params(self.augment, self.source_hw, self.cfg.size))


def collate_sources(batch: list) -> list:
    """``[(AugmentSource, target), ...]`` -> ``[uint8 (B, 3, S, S'), targets, HostParams (B, NUM_PARAMS)]``."""
    sources, targets = zip(*batch, strict=True)
    images = torch.stack([s.image for s in sources])
    params = torch.stack([s.params for s in sources])
    return [images, torch.utils.data.default_collate(list(targets)), HostParams(params)]


class FERDataModule(L.LightningDataModule):
    """Loaders of a recipe's dataset for a model whose preprocessing is ``preprocess`` (a
    :class:`~attnfer.preprocess.PreprocessConfig`, or a model / model config that has one)."""

    def __init__(self, cfg: TrainConfig, data: DatasetSplits, preprocess: Any) -> None:
        super().__init__()
        self.cfg, self.data = cfg, data
        self.preprocess: PreprocessConfig = as_preprocess(preprocess)
        self.augment = to_augment(cfg.augment)
        self._train_sampler: EpochShuffleSampler | None = None
        self._resume_position: dict[str, int] | None = None
        self.batch_augment: BatchAugment | None = None  # augmentation on the device, when the loader is made
        stored = data.stored_size
        h, w = self.preprocess.size
        if stored is not None and (h > stored[0] or w > stored[1]):
            warnings.warn(
                f"the compiled store keeps faces at {stored[0]}x{stored[1]} but the model's input is {h}x{w}: faces "
                f"are upsampled from the stored size (compile the store with --size {max(h, w)} to avoid it)",
                stacklevel=2,
            )

    def teardown(self, stage: str) -> None:
        """After fit / validate / test: images skipped while in use (``skip_bad``) are counted in the run's
        data.json."""
        trainer = self.trainer
        run_json = Path(trainer.default_root_dir) / "data.json" if trainer is not None else None
        if run_json is not None and run_json.is_file() and trainer.is_global_zero and self.data.skipped.undecodable():
            from ..files import write_json

            write_json(run_json, self.data.summary())

    def set_augment(self, augment: AugmentConfig | None) -> None:
        self.augment = to_augment(augment or self.cfg.augment)

    def _device(self) -> torch.device:
        device = getattr(getattr(self.trainer, "strategy", None), "root_device", None)  # None before a Trainer
        return device if isinstance(device, torch.device) else torch.device("cpu")

    def augment_on_device(self) -> bool:
        """Whether training augmentation runs on the training device (``data.augment_on``; ``auto``: on CUDA)."""
        where = self.cfg.data.augment_on
        if where == "auto":
            return self._device().type == "cuda" and not self.cfg.data.compositing
        return where == "device"

    def source_size(self) -> tuple[int, int]:
        """The size of the uint8 faces the device augmentation starts from. With a random resized crop: the
        compiled store's (the crop is cut from the stored face, as on the CPU path), else the model's resize size.
        Otherwise the model's resize size: the loader stretches a face of another size with the preprocessing's own
        resize (PIL / OpenCV, as the CPU path, evaluation and inference do) and the device only centre-crops, so both
        paths see the same pixels; a store compiled at the model's size leaves the loader nothing but a copy."""
        if self.augment.resized_crop_scale and self.data.stored_size:
            return tuple(self.data.stored_size)  # type: ignore[return-value]
        return self.preprocess.resize_size

    def dataset(self, split: str, train: bool, on_device: bool = False):
        """Split ``split`` with the model's preprocessing (and the augmentation when ``train``); ``on_device``:
        the loader's part of the augmentation on the device only (:class:`SourceTransform`)."""
        ds = self.data[split]
        if self.cfg.data.compositing:
            from ..data.compositing import CompositingDataset

            return CompositingDataset(ds, self.preprocess, self.cfg.data.backgrounds, train=train, seed=self.cfg.seed)
        ds = ds.subset(np.arange(len(ds)))  # own copy: transforms differ between loaders
        if on_device:  # training only: evaluation is preprocessed in the loader
            ds.transform = SourceTransform(self.preprocess, self.augment, self.source_size())
        else:
            ds.transform = build_transform(self.preprocess, train=train, augment=self.augment)
        return ds

    def loader_settings(self) -> dict[str, Any]:
        """DataLoader settings: the machine's (:func:`attnfer.hardware.loader_settings`), ``data.num_workers`` if
        the recipe sets it."""
        trainer = self.trainer
        processes = int(getattr(trainer, "num_devices", 1) or 1) if trainer is not None else 1
        workers = self.cfg.data.num_workers
        return loader_settings(self._device().type == "cuda", processes, workers=None if workers == "auto" else workers)

    def _loader(self, ds, batch_size: int, sampler=None, cls: type[DataLoader] = DataLoader, **kw) -> DataLoader:
        settings = {**self.loader_settings(), **kw}
        return cls(ds, batch_size=batch_size, sampler=sampler, drop_last=False, **settings)

    def on_after_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        """Training batches made for augmentation on the device (:func:`collate_sources`): the uint8 faces, now on
        the device, are resized, augmented and normalised there with their parameters (still on the host)."""
        if isinstance(batch, list) and len(batch) == 3 and isinstance(batch[2], HostParams):
            if self.batch_augment is None:
                raise RuntimeError("a batch for augmentation on the device, but no BatchAugment was made")
            x, y, host = batch
            x = self.batch_augment(x, host.params)
            if self.trainer is not None:  # what Lightning did to the uint8 batch before the hook (e.g. bf16-true)
                x = self.trainer.precision_plugin.convert_input(x)
            return [x, y]
        return batch

    def train_dataloader(self) -> DataLoader:
        on_device = self.augment_on_device()
        ds = self.dataset("train", train=True, on_device=on_device)
        weights = None
        if self.cfg.data.balanced_sampler:
            from ..data.sampling import class_weights

            weights = class_weights(self.data["train"])[torch.from_numpy(self.data["train"].targets)].double()
        trainer = self.trainer
        rank, world = (trainer.global_rank, trainer.world_size) if trainer is not None else (0, 1)
        sampler = EpochShuffleSampler(len(ds), self.cfg.seed, weights, rank, world)
        if trainer is not None:
            # start at the epoch a resumed run continues (loader workers draw indices as soon as the loader is
            # iterated, which can be before Lightning's set_epoch)
            sampler.set_epoch(getattr(trainer, "current_epoch", 0))
        if self._resume_position is not None:  # restored from a checkpoint (load_state_dict)
            resume_sampler(sampler, self._resume_position)
            self._resume_position = None
        self._train_sampler = sampler
        kw: dict[str, Any] = {}
        if on_device:
            t = self.cfg.trainer
            last = use_channels_last(t.channels_last, t.accelerator)
            layout = torch.channels_last if last else torch.contiguous_format
            self.batch_augment = BatchAugment(self.preprocess, self.augment, memory_format=layout)
            kw["collate_fn"] = collate_sources
        loader = self._loader(
            SeededAugmentation(ds, self.cfg.seed), self.cfg.data.batch_size, sampler, ResumableLoader, **kw
        )
        if trainer is not None:
            loader.position = self.train_position
        return loader

    def train_position(self) -> dict[str, int]:
        """Where training is in its epoch: the epoch, the batches of it trained on (Lightning's count, not the
        batches fetched ahead), the batches in an epoch and the batch size. Empty before training."""
        trainer, sampler = self.trainer, self._train_sampler
        if trainer is None or sampler is None or not hasattr(trainer, "fit_loop"):
            return {}
        return {
            "epoch": sampler.epoch,
            "batches": trainer.fit_loop.epoch_loop.batch_progress.current.processed,
            "epoch_batches": int(trainer.num_training_batches),
            "batch_size": self.cfg.data.batch_size,
        }

    def state_dict(self) -> dict[str, Any]:
        """Kept in Lightning's checkpoints: the training loader's place in its epoch (:meth:`train_position`)."""
        position = self.train_position()
        return {"train_position": position} if position else {}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """From a checkpoint, before the training loader is made: it starts where the checkpoint left off."""
        self._resume_position = state_dict.get("train_position")

    def val_dataloader(self) -> DataLoader:
        return self._loader(self.dataset("validation", train=False), self.cfg.data.eval_batch_size)

    def eval_loader(self, split: str, batch_size: int | None = None, shuffle_seed: int | None = None) -> DataLoader:
        """Loader for evaluation; ``shuffle_seed`` gives shuffled fixed batches (batch-dependent models)."""
        ds = self.dataset(split, train=False)
        sampler = None
        if shuffle_seed is not None:
            g = torch.Generator().manual_seed(shuffle_seed)
            sampler = torch.randperm(len(ds), generator=g).tolist()
        # a one-shot loader: no workers kept alive after it
        return self._loader(ds, batch_size or self.cfg.data.eval_batch_size, sampler, persistent_workers=False)
