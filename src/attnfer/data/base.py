"""The dataset container every loader returns, its errors, and the validation-split protocol."""

from __future__ import annotations

import os
import warnings
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from ..images import ImageReadError, read_rgb

__all__ = [
    "DatasetError",
    "DatasetLayoutError",
    "DatasetSplits",
    "FERDataset",
    "SkipLog",
    "SkippedSampleWarning",
    "carve_validation",
    "read_image",
]


class DatasetError(ValueError):
    """Bad dataset input; the message names the file (and line) and what was expected.

    ``DatasetError(path, message, line)``; the one-argument form ``DatasetError(text)`` is what PyTorch's
    DataLoader builds when a worker process raised one (its text is the worker's whole traceback): the error is
    then the last line of that traceback again, so a bad file met in a worker reads as one line, as in the main
    process.
    """

    def __init__(self, path: str | Path, message: str | None = None, line: int | None = None) -> None:
        if message is None:  # re-raised from a DataLoader worker (or a bare message)
            text = _last_error_line(str(path), type(self).__name__)
            super().__init__(text)
            self.path, self.line = None, None
            return
        where = f"{path}:{line}" if line is not None else str(path)
        super().__init__(f"{where}: {message}")
        self.path, self.line = Path(path), line


def _last_error_line(text: str, name: str) -> str:
    """``text`` itself, or, when it is a formatted traceback, the message of its last ``...Name: message`` line."""
    for line in reversed(text.splitlines()):
        head, sep, rest = line.partition(": ")
        if sep and head.split(".")[-1] == name and rest:
            return rest
    return text


class DatasetLayoutError(DatasetError):
    """The root does not have the dataset format's layout (a required file or folder is missing): a wrong root or
    a wrong format name rather than a problem inside the data."""


@dataclass
class SkipLog:
    """Opt-in skipping of bad samples (a loader's ``skip_bad``): each skipped one is recorded and summarised, never
    silently dropped.

    Two kinds: lines or files a loader skips while reading the labels (:meth:`handle`, in ``entries``), and images
    found undecodable later, while training or evaluating (:meth:`skip_undecodable`). The latter can happen in
    DataLoader worker processes, so they are also appended to a journal file shared by every process that holds a
    copy of this log; :meth:`all_entries` reads both.
    """

    enabled: bool = False
    entries: list[str] = field(default_factory=list)
    journal: str | None = None

    def __post_init__(self) -> None:
        if self.enabled and self.journal is None:  # chosen here, in the process that loads the data
            import tempfile
            import uuid

            self.journal = str(Path(tempfile.gettempdir()) / f"attnfer-skipped-{os.getpid()}-{uuid.uuid4().hex}.txt")
            _remove_at_exit(self.journal)
        self._seen: set[str] = set()

    @classmethod
    def of(cls, skip_bad: bool | SkipLog) -> SkipLog:
        """A loader's log for its ``skip_bad`` option: a bool, or a log to record into (``data inspect`` passes its
        own, so what was recorded survives an error that stops the loader)."""
        return skip_bad if isinstance(skip_bad, SkipLog) else cls(bool(skip_bad))

    def handle(self, error: DatasetError) -> None:
        if not self.enabled:
            raise error
        self.entries.append(_one_line(str(error)))

    def skip_undecodable(self, error: DatasetError) -> bool:
        """Record an image that could not be decoded while it was being used; False when skipping is off (the
        caller raises). The first time a file is met (in any process) it is logged as a warning."""
        if not self.enabled:
            return False
        message = _one_line(str(error))
        if message in self._seen:
            return True
        self._seen.add(message)
        if message in self.undecodable():
            return True
        if self.journal is not None:
            with open(self.journal, "a", encoding="utf-8") as f:
                f.write(message + "\n")  # one short append: whole lines across processes
        warnings.warn(f"skipped (skip_bad): {message}", SkippedSampleWarning, stacklevel=3)
        return True

    def undecodable(self) -> list[str]:
        """Images skipped while in use (every process), each once, in the order they were met."""
        if self.journal is None or not os.path.isfile(self.journal):
            return []
        with open(self.journal, encoding="utf-8", errors="replace") as f:
            return list(dict.fromkeys(line.rstrip("\n") for line in f if line.strip()))

    def all_entries(self) -> list[str]:
        return [*self.entries, *self.undecodable()]

    def summary(self) -> str:
        entries = self.all_entries()
        if not entries:
            return "no samples skipped"
        head = "\n  ".join(entries[:10])
        more = f"\n  ... and {len(entries) - 10} more" if len(entries) > 10 else ""
        return f"{len(entries)} samples skipped:\n  {head}{more}"

    def __getstate__(self) -> dict[str, Any]:
        return {"enabled": self.enabled, "entries": self.entries, "journal": self.journal}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._seen = set()


def _one_line(message: str) -> str:
    """``message`` on one line, with undecodable file-name bytes (lone surrogates) written as ``\\xNN``."""
    from ..images import display_name

    return display_name(message.replace("\n", " "))


class SkippedSampleWarning(UserWarning):
    """A sample skipped because of ``skip_bad`` while training or evaluating."""


_JOURNALS: list[str] = []


def _remove_at_exit(path: str) -> None:
    if not _JOURNALS:
        import atexit

        owner = os.getpid()
        atexit.register(lambda: [os.remove(p) for p in _JOURNALS if os.getpid() == owner and os.path.isfile(p)])
    _JOURNALS.append(path)


def read_image(path: str | Path, box: Sequence[int] | None = None) -> np.ndarray:
    """Decode an image file to RGB uint8 (H, W, 3), optionally cropped to ``box`` = (x, y, w, h)."""
    try:
        return read_rgb(path, box, exif_transpose=False)  # dataset annotations refer to the stored pixels
    except ImageReadError as e:
        raise DatasetError(path, str(e).removeprefix(f"{path}: ")) from e


class FERDataset(Dataset):
    """Images with expression labels in attnfer's label space.

    A sample is either a file (``paths[i]``, optionally cropped by ``boxes[i]``) or a row of an in-memory
    uint8 array ``images`` (N, H, W) or (N, H, W, 3). ``__getitem__`` returns ``(image, target)`` where image
    is a uint8 tensor (3, H, W) passed through ``transform`` and target is the class index, or, for soft-label
    modes, a float distribution over the classes (``target_mode="soft"``) or a class sampled from it
    (``target_mode="sample"``, FERPlus' "probability" mode).

    An image file that cannot be decoded when a sample is drawn raises a :class:`DatasetError` naming the file;
    with ``skip_log`` enabled (the loader's ``skip_bad=True``) it is recorded there instead (a warning the first
    time, counted in the run's ``data.json``) and the next decodable sample of the split is returned in its place,
    so the batch keeps its size and the run its determinism.
    """

    def __init__(
        self,
        *,
        name: str,
        split: str,
        class_names: Sequence[str],
        targets: Sequence[int] | np.ndarray,
        ids: Sequence[str],
        paths: Sequence[Path] | None = None,
        images: np.ndarray | None = None,
        boxes: np.ndarray | None = None,
        soft_targets: np.ndarray | None = None,
        target_mode: str = "hard",
        extras: dict[str, Any] | None = None,
        transform: Callable[[torch.Tensor], Any] | None = None,
        skip_log: SkipLog | None = None,
    ) -> None:
        assert (paths is None) != (images is None), "give either paths or images"
        self.name, self.split = name, split
        self.class_names = list(class_names)
        self.targets = np.asarray(targets, dtype=np.int64)
        self.ids = list(ids)
        self.paths = None if paths is None else [Path(p) for p in paths]
        self.images = images
        self.boxes = boxes
        self.soft_targets = soft_targets
        self.target_mode = target_mode
        self.extras = extras or {}
        self.transform = transform
        self.skip_log = skip_log
        n = len(self.targets)
        assert len(self.ids) == n and (self.paths is None or len(self.paths) == n)
        assert self.images is None or len(self.images) == n
        assert target_mode in ("hard", "soft", "sample")
        if len(self.targets) and (self.targets.min() < 0 or self.targets.max() >= len(self.class_names)):
            raise ValueError(f"{name}/{split}: targets outside 0..{len(self.class_names) - 1}")

    def __len__(self) -> int:
        return len(self.targets)

    def load_image(self, i: int) -> np.ndarray:
        """RGB uint8 (H, W, 3) of sample ``i``."""
        if self.images is not None:
            img = self.images[i]
            return np.repeat(img[..., None], 3, axis=-1) if img.ndim == 2 else np.asarray(img)
        return read_image(self.paths[i], None if self.boxes is None else self.boxes[i])

    def load_sample_image(self, i: int) -> tuple[int, np.ndarray]:
        """``(j, image)``: sample ``i``'s image with ``j == i``; when it cannot be decoded and ``skip_log`` is
        enabled, the next decodable sample's (``j`` its index, the file recorded in the log)."""
        n = len(self)
        for k in range(n):
            j = (i + k) % n
            try:
                return j, self.load_image(j)
            except DatasetError as e:
                if self.skip_log is None or not self.skip_log.skip_undecodable(e):
                    if k == 0 and self.paths is not None:
                        raise DatasetError(
                            self.paths[j],
                            f"{str(e).removeprefix(f'{self.paths[j]}: ')} (the loader option "
                            "skip_bad=true skips undecodable images)",
                        ) from e
                    raise
        raise DatasetError(f"{self.name}/{self.split}", f"none of its {n} images can be decoded")

    def target(self, i: int) -> int | torch.Tensor:
        if self.target_mode == "hard" or self.soft_targets is None:
            return int(self.targets[i])
        p = self.soft_targets[i]
        if self.target_mode == "soft":
            return torch.from_numpy(p.astype(np.float32))
        return int(np.random.choice(len(p), p=p / p.sum()))

    def __getitem__(self, i: int) -> tuple[Any, int | torch.Tensor]:
        i, image = self.load_sample_image(i)
        img = torch.from_numpy(np.array(image)).permute(2, 0, 1)  # (3, H, W) uint8, a writable copy
        if self.transform is not None:
            img = self.transform(img)
        return img, self.target(i)

    # ---- bookkeeping ---------------------------------------------------------------------------
    def class_counts(self) -> dict[str, int]:
        c = Counter(self.targets.tolist())
        return {name: c.get(i, 0) for i, name in enumerate(self.class_names)}

    def subset(self, indices: Sequence[int] | np.ndarray, split: str | None = None) -> FERDataset:
        idx = np.asarray(indices, dtype=np.int64)
        return FERDataset(
            name=self.name,
            split=split or self.split,
            class_names=self.class_names,
            targets=self.targets[idx],
            ids=[self.ids[i] for i in idx],
            paths=None if self.paths is None else [self.paths[i] for i in idx],
            images=None if self.images is None else self.images[idx],
            boxes=None if self.boxes is None else self.boxes[idx],
            soft_targets=None if self.soft_targets is None else self.soft_targets[idx],
            target_mode=self.target_mode,
            extras={k: [v[i] for i in idx] if isinstance(v, list) else v for k, v in self.extras.items()},
            transform=self.transform,
            skip_log=self.skip_log,
        )

    def __repr__(self) -> str:
        return f"FERDataset({self.name}/{self.split}, {len(self)} samples, classes={self.class_names})"


@dataclass
class DatasetSplits:
    """A dataset's splits (always ``train``, ``validation`` and ``test``, plus optional extra evaluation
    splits such as ``occlusion``), its class names and how the validation split was obtained."""

    name: str
    class_names: list[str]
    splits: dict[str, FERDataset]
    validation_source: str
    skipped: SkipLog = field(default_factory=SkipLog)
    notes: list[str] = field(default_factory=list)
    #: (height, width) every face is stored at (a compiled store), or None when faces are read as they are
    stored_size: tuple[int, int] | None = None

    def __getitem__(self, split: str) -> FERDataset:
        if split not in self.splits:
            raise KeyError(f"{self.name} has no split '{split}'; splits: {', '.join(self.splits)}")
        return self.splits[split]

    def counts(self) -> dict[str, dict[str, int]]:
        """Per split: per-class counts and the total."""
        return {s: {**ds.class_counts(), "total": len(ds)} for s, ds in self.splits.items()}

    def summary(self) -> dict[str, Any]:
        return {
            "dataset": self.name,
            "class_names": self.class_names,
            "validation_source": self.validation_source,
            "counts": self.counts(),
            "skipped": len(self.skipped.all_entries()),
            "skipped_samples": self.skipped.all_entries()[:100],
            "notes": self.notes,
        }


def carve_validation(
    train: FERDataset, fraction: float = 0.1, seed: int = 0, groups: Sequence[str] | None = None
) -> tuple[FERDataset, FERDataset, str]:
    """Split a stratified, seeded ``fraction`` of train off as validation.

    With ``groups`` (e.g. CK+ subjects), whole groups move so no group is in both parts.
    Returns (train, validation, a description recorded with the run).
    """
    from sklearn.model_selection import GroupShuffleSplit, train_test_split

    n = len(train)
    if n < 2:
        raise DatasetError(train.name, f"split '{train.split}' has {n} samples; cannot carve a validation split")
    idx = np.arange(n)
    if groups is not None:
        splitter = GroupShuffleSplit(n_splits=1, test_size=fraction, random_state=seed)
        tr, va = next(splitter.split(idx, groups=list(groups)))
        how = f"carved from train: {fraction:.0%} of subjects, seed {seed} (subject-independent)"
    else:
        counts = np.bincount(train.targets)
        present = counts[counts > 0]
        n_val = int(np.ceil(fraction * n))
        can_stratify = present.min() >= 2 and len(present) <= n_val <= n - len(present)
        stratify = train.targets if can_stratify else None
        tr, va = train_test_split(idx, test_size=fraction, random_state=seed, stratify=stratify)
        kind = "stratified" if can_stratify else "not stratified (too few samples per class)"
        how = f"carved from train: {fraction:.0%} {kind}, seed {seed}"
    return train.subset(np.sort(tr), "train"), train.subset(np.sort(va), "validation"), how
