"""BU-3DFE, 2-D frontal images: ``F0001_AN01WH_F2D.bmp`` in ``root/`` or in per-subject folders ``root/F0001/``.

File naming (the distribution's): subject id (``F0001``, ... women; ``M0001``, ... men; 100 subjects), a two-letter
expression code (AN anger, DI disgust, FE fear, HA happiness, NE neutral, SA sadness, SU surprise;
:data:`attnfer.data.labels.BU3DFE_CODES`), a two-digit intensity (01-04 for the six expressions, 00 for the one
neutral face of each subject), a two-letter ethnicity code (WH, BL, AE, AM, IN, LA, ...), then ``_F2D``: the 2-D
frontal texture image. Only image files whose name ends in ``_F2D`` are read; everything else the distribution
holds (the 3-D ``.wrl`` models, the ``_F3D.bmp`` textures of the 3-D models, the ``.bnd`` / ``.pse`` files) is
ignored. An ``_F2D`` image whose name does not follow this pattern is a :class:`DatasetError` naming the
file and the expected pattern (never silently dropped), and so are a file in a subject folder of another subject and
the same image found twice.

Protocol:

* ``min_intensity`` (default 3): expressive images of intensity ``min_intensity``..04 are used, so by default the
  two highest levels, as in the protocol commonly used on BU-3DFE (the analogue of the peak frames ``ckplus`` takes
  with ``frames=3``); ``min_intensity=1`` takes all four levels (2,400 expressive images of the 100 subjects,
  2,500 with the neutral ones). Which levels FERAtt used is not recoverable (its released code reads a
  ``bu3dfe.mat`` that was never published), so this default is a choice, not a reproduction;
* ``neutral`` (default True): each subject's neutral face (intensity 00, whatever ``min_intensity``) is the
  neutral class, giving attnfer's 7 basic classes in canonical order (neutral, happiness, surprise, sadness, anger,
  disgust, fear; no contempt), as FERAtt's 7 BU-3DFE classes; ``neutral=False`` gives the six expressions of the
  common protocol (which also restricts itself to 60 of the subjects; that is not done here). With the defaults a
  subject has 2 x 6 expressive images and 1 neutral one, so neutral is about 1/13 of the data: the recipe uses the
  class-balanced sampler;
* folds exactly as :mod:`attnfer.data.ckplus`: subjects are dealt to ``num_folds`` folds (default 10) by a seeded
  shuffle (:func:`attnfer.data.ckplus.ckplus_folds`); fold ``fold`` is the test split, and the validation split
  (``val_fraction``) is carved from the training subjects by subject, never from the test fold, so no subject is in
  two splits. Report the mean over ``fold=0..num_folds-1``.

The whole frontal image is the sample (BU-3DFE's 2-D images show one frontal face on a uniform background); no face
crop is made here. No face masks come with the images and this loader reads no landmarks, so FERAtt's compositing
path (:mod:`attnfer.data.compositing`, which needs one or the other) cannot run on them and the shipped recipe
``feratt_bu3dfe.yaml`` trains without compositing, on the images as they are: the images FERAtt's "real BU-3DFE"
figures were measured on (the original trained on composites; that part is not reproduced). ``extras`` holds
``subject``, ``intensity`` (0-4) and ``ethnicity`` per image.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from ._common import IMAGE_SUFFIXES, finish, require_dir
from .base import DatasetError, DatasetSplits, FERDataset, SkipLog
from .ckplus import ckplus_folds
from .labels import BASIC7, BU3DFE_CODES

__all__ = ["load_bu3dfe", "parse_bu3dfe_name"]

_F2D = re.compile(r"_F2D$", re.IGNORECASE)
_NAME = re.compile(
    r"^(?P<subject>[FM]\d{4})_(?P<code>[A-Z]{2})(?P<intensity>\d{2})(?P<ethnicity>[A-Z]{2})_F2D$", re.IGNORECASE
)
_SUBJECT_DIR = re.compile(r"^[FM]\d{4}$", re.IGNORECASE)
_EXPECTED = (
    "expected <subject><_><expression><intensity><ethnicity>_F2D such as F0001_AN01WH_F2D.bmp or "
    "M0044_NE00BL_F2D.bmp (subject F/M + 4 digits; expression AN, DI, FE, HA, NE, SA, SU; intensity 01-04, "
    "00 for NE; two-letter ethnicity code)"
)


def parse_bu3dfe_name(path: str | Path) -> tuple[str, str, int, str]:
    """``(subject, expression, intensity, ethnicity)`` of a 2-D BU-3DFE image, e.g. ``F0001_AN01WH_F2D.bmp`` ->
    ``("F0001", "anger", 1, "WH")``; :class:`DatasetError` naming the file if the name is malformed."""
    path = Path(path)
    m = _NAME.match(path.stem)
    if m is None:
        raise DatasetError(path, f"malformed BU-3DFE 2-D image name '{path.name}': {_EXPECTED}")
    code, intensity = m["code"].upper(), int(m["intensity"])
    if code not in BU3DFE_CODES:
        raise DatasetError(
            path, f"unknown expression code '{m['code']}' in '{path.name}': expected one of {', '.join(BU3DFE_CODES)}"
        )
    if code == "NE" and intensity != 0:
        raise DatasetError(path, f"neutral image '{path.name}' has intensity {m['intensity']}, expected 00")
    if code != "NE" and not 1 <= intensity <= 4:
        raise DatasetError(path, f"'{path.name}' has intensity {m['intensity']}, expected 01-04 for {code}")
    return m["subject"].upper(), BU3DFE_CODES[code], intensity, m["ethnicity"].upper()


def _f2d_files(root: Path) -> list[Path]:
    """Image files named ``*_F2D`` in ``root`` and its immediate subfolders (sorted)."""
    candidates = [p for p in root.iterdir() if p.is_file()]
    for d in sorted(p for p in root.iterdir() if p.is_dir()):
        candidates.extend(p for p in d.iterdir() if p.is_file())
    return sorted(p for p in candidates if p.suffix.lower() in IMAGE_SUFFIXES and _F2D.search(p.stem))


def load_bu3dfe(
    root: str | Path,
    min_intensity: int = 3,
    neutral: bool = True,
    num_folds: int = 10,
    fold: int = 0,
    seed: int = 0,
    val_fraction: float = 0.1,
    skip_bad: bool = False,
) -> DatasetSplits:
    skipped = SkipLog.of(skip_bad)
    root = require_dir(Path(root), "a BU-3DFE folder of F0001_AN01WH_F2D.bmp images (or of subject folders F0001/)")
    if not 0 <= fold < num_folds:
        raise ValueError(f"fold must be in [0, {num_folds}), got {fold}")
    if isinstance(min_intensity, bool) or not isinstance(min_intensity, int) or not 1 <= min_intensity <= 4:
        raise ValueError(f"min_intensity must be an intensity level 1-4, got {min_intensity!r}")
    class_names = BASIC7 if neutral else tuple(c for c in BASIC7 if c != "neutral")
    index = {c: i for i, c in enumerate(class_names)}
    ids, paths, targets, subjects, intensities, ethnicities = [], [], [], [], [], []
    seen: dict[str, Path] = {}
    files = _f2d_files(root)
    for p in files:
        try:
            subject, name, intensity, ethnicity = parse_bu3dfe_name(p)
            if p.parent != root and _SUBJECT_DIR.match(p.parent.name) and p.parent.name.upper() != subject:
                raise DatasetError(p, f"image of subject {subject} in the folder of subject {p.parent.name}")
            key = p.stem.upper()
            if key in seen:
                raise DatasetError(p, f"the same image is also at {seen[key]}; keep one copy")
        except DatasetError as e:
            skipped.handle(e)
            continue
        seen[key] = p
        if name not in index or (name != "neutral" and intensity < min_intensity):
            continue
        ids.append(p.stem)
        paths.append(p)
        targets.append(index[name])
        subjects.append(subject)
        intensities.append(intensity)
        ethnicities.append(ethnicity)
    if not files:
        raise DatasetError(
            root, "no BU-3DFE 2-D images found (expected F0001_AN01WH_F2D.bmp in the root or in subject folders F0001/)"
        )
    fold_of = ckplus_folds(subjects, num_folds, seed)
    all_ds = FERDataset(
        name="bu3dfe",
        split="all",
        class_names=class_names,
        targets=targets,
        ids=ids,
        paths=paths,
        extras={"subject": subjects, "intensity": intensities, "ethnicity": ethnicities},
    )
    is_test = np.array([fold_of[s] == fold for s in subjects], dtype=bool)
    train = all_ds.subset(np.flatnonzero(~is_test), "train")
    test = all_ds.subset(np.flatnonzero(is_test), "test")
    levels = f"0{min_intensity}-04" if min_intensity < 4 else "04"
    notes = [
        f"fold {fold} of {num_folds} (subject-independent, seed {seed}, {len(fold_of)} subjects); "
        f"expression intensities {levels}" + ("; neutral faces (00) as neutral" if neutral else "; no neutral class")
    ]
    return finish(
        "bu3dfe",
        class_names,
        {"train": train, "test": test},
        val_fraction=val_fraction,
        seed=seed,
        groups=train.extras["subject"],
        notes=notes,
        skipped=skipped,
    )
