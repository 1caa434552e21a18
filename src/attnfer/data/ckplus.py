"""CK+: ``cohn-kanade-images/Sxxx/yyy/*.png`` + ``Emotion/Sxxx/yyy/*_emotion.txt`` (+ ``Landmarks/``).

Protocol (spec datasets.md 3.6): the last ``frames`` frames (default 3) of each labelled sequence take the
sequence's emotion; with ``first_frame_neutral`` the first frame is added as neutral (8 classes, canonical
order), otherwise the 7 classes are the emotions without neutral. Subjects are assigned to ``num_folds``
folds (default 10) with a seeded shuffle; fold ``fold`` is the test split, and validation subjects are carved
from the remaining ones, so no subject is in two splits. Emotion codes 0-7 (labels.py), stored as floats
such as ``3.0000000e+00``. Landmark files, when present, are listed in ``extras["landmarks"]``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ._common import IMAGE_SUFFIXES, finish, parse_int, read_lines, require_dir
from .base import DatasetError, DatasetSplits, FERDataset, SkipLog
from .labels import CANONICAL, CKPLUS_CODES

__all__ = ["ckplus_folds", "load_ckplus"]


def ckplus_folds(subjects: list[str], num_folds: int = 10, seed: int = 0) -> dict[str, int]:
    """Subject -> fold, by a seeded shuffle dealt round-robin (fold sizes differ by at most one)."""
    uniq = sorted(set(subjects))
    order = np.random.default_rng(seed).permutation(len(uniq))
    return {uniq[j]: k % num_folds for k, j in enumerate(order)}


def load_ckplus(
    root: str | Path,
    frames: int = 3,
    first_frame_neutral: bool = False,
    num_folds: int = 10,
    fold: int = 0,
    seed: int = 0,
    val_fraction: float = 0.1,
    skip_bad: bool = False,
) -> DatasetSplits:
    root = Path(root)
    skipped = SkipLog.of(skip_bad)
    img_root = require_dir(root / "cohn-kanade-images", "CK+ cohn-kanade-images/")
    emo_root = require_dir(root / "Emotion", "CK+ Emotion/")
    if not 0 <= fold < num_folds:
        raise ValueError(f"fold must be in [0, {num_folds}), got {fold}")
    class_names = CANONICAL if first_frame_neutral else tuple(c for c in CANONICAL if c != "neutral")
    index = {c: i for i, c in enumerate(class_names)}
    ids, paths, targets, subjects, landmarks = [], [], [], [], []
    for emo_file in sorted(emo_root.glob("*/*/*_emotion.txt")):
        subject, seq = emo_file.parent.parent.name, emo_file.parent.name
        try:
            tokens = [(n, t) for n, line in read_lines(emo_file, "one emotion code 0-7", skipped) for t in line.split()]
            if len(tokens) != 1:
                got = " ".join(t for _, t in tokens) or "nothing"
                raise DatasetError(emo_file, f"expected one emotion code 0-7 such as 3.0000000e+00, got {got!r}", 1)
            code = parse_int(tokens[0][1], emo_file, tokens[0][0], "emotion")
            if code not in CKPLUS_CODES:
                raise DatasetError(emo_file, f"emotion {code} is not a CK+ code 0-7", tokens[0][0])
            name = CKPLUS_CODES[code]
            if name not in index:
                raise DatasetError(emo_file, f"emotion '{name}' needs first_frame_neutral=True (8 classes)", 1)
            seq_dir = img_root / subject / seq
            frames_all = (
                sorted(p for p in seq_dir.glob("*") if p.suffix.lower() in IMAGE_SUFFIXES) if seq_dir.is_dir() else []
            )
            if len(frames_all) < frames + (1 if first_frame_neutral else 0):
                raise DatasetError(
                    seq_dir, f"labelled sequence has {len(frames_all)} frames, expected at least {frames}"
                )
        except DatasetError as e:
            skipped.handle(e)
            continue
        chosen = [(p, index[name]) for p in frames_all[-frames:]]
        if first_frame_neutral:
            chosen.insert(0, (frames_all[0], index["neutral"]))
        for p, t in chosen:
            lm = root / "Landmarks" / subject / seq / f"{p.stem}_landmarks.txt"
            ids.append(p.stem)
            paths.append(p)
            targets.append(t)
            subjects.append(subject)
            landmarks.append(lm if lm.is_file() else None)
    if not ids:
        raise DatasetError(emo_root, "no labelled sequences found (expected Emotion/Sxxx/yyy/*_emotion.txt)")
    fold_of = ckplus_folds(subjects, num_folds, seed)
    all_ds = FERDataset(
        name="ckplus",
        split="all",
        class_names=class_names,
        targets=targets,
        ids=ids,
        paths=paths,
        extras={"subject": subjects, "landmarks": landmarks},
    )
    is_test = np.array([fold_of[s] == fold for s in subjects])
    train = all_ds.subset(np.flatnonzero(~is_test), "train")
    test = all_ds.subset(np.flatnonzero(is_test), "test")
    notes = [
        f"fold {fold} of {num_folds} (subject-independent, seed {seed}); last {frames} frames per sequence"
        + ("; first frame as neutral" if first_frame_neutral else "")
    ]
    return finish(
        "ckplus",
        class_names,
        {"train": train, "test": test},
        val_fraction=val_fraction,
        seed=seed,
        groups=train.extras["subject"],
        notes=notes,
        skipped=skipped,
    )
