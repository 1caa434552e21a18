"""FERAtt's synthetic-data path: masked faces composited on backgrounds (spec architectures.md 2(c)).

Per sample: the face (on black, with its mask) is padded, randomly scaled (1 +/- 0.2), flipped, rotated,
translated and warped (train: 30 deg, 0.2, 0.1; eval: 45 deg, 0.3, 0.2); a random window of a background image
(or of a procedural clutter texture when no folder is given) of the same size is cut; the face's lightness
is matched to the background in Lab space (L scaled by mean background L / mean face L under the mask, the
factor clipped to [0.5, 1.5], L clipped to [10, 90]); the mask is cleaned by a 7x7 closing, an erosion and
hole filling. Outputs: the RGB composite ``x_img``, the target ``x_org`` (the face on black, for the
attention-reconstruction loss) and the ``mask``. The dataset then feeds both images through the model's own
preprocessing (:mod:`attnfer.preprocess`: grey only when the model is, the model's normalisation): compositing is
a choice of training data, not part of the input contract.

Face masks come from the dataset: SynthFER's ``Image/mask/*_mask.png``, or the convex hull of 68 landmarks
(CK+ ``Landmarks/``).
"""

from __future__ import annotations

import math
from pathlib import Path

import cv2
import numpy as np
import torch
from torch.utils.data import Dataset

from ..preprocess import PreprocessConfig
from ..preprocess.torch_ops import build_transform
from ._common import IMAGE_SUFFIXES
from .base import DatasetError, FERDataset, read_image

__all__ = ["CompositingDataset", "composite", "landmark_mask"]

_TRAIN_RANGE = {"angle": 30.0, "translation": 0.2, "warp": 0.1}
_EVAL_RANGE = {"angle": 45.0, "translation": 0.3, "warp": 0.2}


def landmark_mask(shape: tuple[int, int], landmarks: np.ndarray) -> np.ndarray:
    """Face mask (uint8 0/255) from the convex hull of (N, 2) landmark points."""
    mask = np.zeros(shape, np.uint8)
    hull = cv2.convexHull(np.round(landmarks).astype(np.int32))
    cv2.fillConvexPoly(mask, hull, 255)
    return mask


def _clean_mask(mask: np.ndarray) -> np.ndarray:
    k = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (7, 7))
    m = cv2.morphologyEx(mask, cv2.MORPH_CLOSE, k)
    m = cv2.erode(m, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (3, 3)))
    # hole filling: flood the background from the border; what is not reached is inside the face
    flood = m.copy()
    h, w = m.shape
    ff = np.zeros((h + 2, w + 2), np.uint8)
    cv2.floodFill(flood, ff, (0, 0), 255)
    return m | cv2.bitwise_not(flood)


def _match_lightness(face: np.ndarray, bg: np.ndarray, mask: np.ndarray) -> np.ndarray:
    lab_f = cv2.cvtColor(face.astype(np.float32) / 255.0, cv2.COLOR_RGB2LAB)  # L in [0, 100]
    lab_b = cv2.cvtColor(bg.astype(np.float32) / 255.0, cv2.COLOR_RGB2LAB)
    m = mask > 0
    if not m.any():
        return face
    factor = float(np.clip(lab_b[..., 0].mean() / max(lab_f[..., 0][m].mean(), 1e-3), 0.5, 1.5))
    lab_f[..., 0] = np.clip(lab_f[..., 0] * factor, 10, 90)
    return np.clip(cv2.cvtColor(lab_f, cv2.COLOR_LAB2RGB) * 255.0, 0, 255).astype(np.uint8)


def composite(
    face: np.ndarray,
    mask: np.ndarray,
    background: np.ndarray,
    rng: np.random.Generator,
    train: bool = True,
    size: int = 128,
    pad: int = 10,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Composite one face. Returns RGB (x_img, x_org, mask) as uint8 (size, size, 3), (size, size, 3), (size, size).

    The face is scaled into the ``size`` canvas as part of the random placement (the composite's geometry), with
    OpenCV's area kernel; the result is then preprocessed like any face by the dataset."""
    ranges = _TRAIN_RANGE if train else _EVAL_RANGE
    face = cv2.resize(face, (size - 2 * pad, size - 2 * pad), interpolation=cv2.INTER_AREA)
    mask = cv2.resize(mask, (size - 2 * pad, size - 2 * pad), interpolation=cv2.INTER_NEAREST)
    face = cv2.copyMakeBorder(face, pad, pad, pad, pad, cv2.BORDER_CONSTANT, value=0)
    mask = cv2.copyMakeBorder(mask, pad, pad, pad, pad, cv2.BORDER_CONSTANT, value=0)
    face = face * (mask[..., None] > 0)  # the face on black
    # random affine: scale, flip, rotation, translation, warp (shear-like perturbation of the corners)
    s = 1.0 + rng.uniform(-0.2, 0.2)
    ang = math.radians(rng.uniform(-ranges["angle"], ranges["angle"]))
    flip = -1.0 if rng.random() < 0.5 else 1.0
    A = np.array([[s * math.cos(ang) * flip, -s * math.sin(ang)], [s * math.sin(ang) * flip, s * math.cos(ang)]])
    A = A + rng.uniform(-ranges["warp"], ranges["warp"], (2, 2)) * 0.5
    c = np.array([size / 2, size / 2])
    t = c - A @ c + rng.uniform(-ranges["translation"], ranges["translation"], 2) * size
    M = np.hstack([A, t[:, None]]).astype(np.float32)
    face = cv2.warpAffine(face, M, (size, size), flags=cv2.INTER_LINEAR)
    mask = cv2.warpAffine(mask, M, (size, size), flags=cv2.INTER_NEAREST)
    mask = _clean_mask(mask)
    # background window (widened by 0-50 px, resized back)
    bh, bw = background.shape[:2]
    win = min(bh, bw, size + int(rng.integers(0, 51)))
    y0, x0 = int(rng.integers(0, bh - win + 1)), int(rng.integers(0, bw - win + 1))
    bg = cv2.resize(background[y0 : y0 + win, x0 : x0 + win], (size, size), interpolation=cv2.INTER_AREA)
    face = _match_lightness(face, bg, mask)
    m = (mask > 0)[..., None]
    x_img = np.where(m, face, bg).astype(np.uint8)
    x_org = np.where(m, face, 0).astype(np.uint8)
    return x_img, x_org, mask


class CompositingDataset(Dataset):
    """Wrap a dataset whose faces have masks into FERAtt's composited samples.

    ``__getitem__`` returns ``(x_img, target, {"x_org": ..., "mask": ...})``: x_img and x_org are the composite and
    the face on black, preprocessed as ``preprocess`` says (the model's config: size, grey, normalisation); mask is a
    float tensor (1, h, w) in {0, 1}. Masks are ``Image/mask/<id>_mask.png`` beside SynthFER's images, or the
    landmark hull (``extras["landmarks"]``). ``backgrounds`` is a folder of images; without one, procedural clutter
    textures are drawn. Training composites differ per epoch (:meth:`set_epoch`, called by the engine's loader for
    every sample it draws); evaluation composites are fixed per index.
    """

    def __init__(
        self,
        base: FERDataset,
        preprocess: PreprocessConfig,
        backgrounds: str | Path | None = None,
        train: bool = True,
        seed: int = 0,
    ) -> None:
        if base.paths is None:
            raise DatasetError(base.name, "compositing needs file-based samples with masks or landmarks")
        h, w = preprocess.size
        if h != w:
            raise ValueError(f"compositing needs a square model input, got {h}x{w}")
        self.base, self.preprocess, self.size, self.train, self.seed = base, preprocess, h, train, seed
        self.transform = build_transform(preprocess)  # the model's input contract, no augmentation
        self.backgrounds: list[Path] = []
        if backgrounds is not None:
            self.backgrounds = sorted(p for p in Path(backgrounds).rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
            if not self.backgrounds:
                raise DatasetError(backgrounds, "no background images found")
        self.epoch = 0

    def __len__(self) -> int:
        return len(self.base)

    def _mask(self, i: int, shape: tuple[int, int]) -> np.ndarray:
        lms = self.base.extras.get("landmarks")
        if lms is not None and lms[i] is not None:
            pts = np.loadtxt(lms[i]).reshape(-1, 2)
            return landmark_mask(shape, pts)
        p = self.base.paths[i]
        mask_path = p.parent.parent / "mask" / f"{self.base.ids[i]}_mask.png"
        if not mask_path.is_file():
            raise DatasetError(mask_path, "missing: compositing needs a face mask or landmarks for every image")
        m = cv2.imread(str(mask_path), cv2.IMREAD_GRAYSCALE)
        return cv2.resize(m, (shape[1], shape[0]), interpolation=cv2.INTER_NEAREST)

    def _background(self, rng: np.random.Generator) -> np.ndarray:
        if self.backgrounds:
            return read_image(self.backgrounds[int(rng.integers(len(self.backgrounds)))])
        from .synthfer import clutter_background

        return clutter_background(rng, 2 * self.size)

    def composite(self, i: int, face: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The uint8 (x_img, x_org, mask) of sample ``i`` in the current epoch (before preprocessing)."""
        rng = np.random.default_rng([self.seed, self.epoch if self.train else 0, i])
        face = self.base.load_image(i) if face is None else face
        return composite(face, self._mask(i, face.shape[:2]), self._background(rng), rng, self.train, self.size)

    def __getitem__(self, i: int):
        i, face = self.base.load_sample_image(i)  # an undecodable image: skipped under skip_bad, else an error
        x_img, x_org, mask = self.composite(i, face)
        extras = {"x_org": self.transform(x_org), "mask": torch.from_numpy(mask > 0).float()[None]}
        return self.transform(x_img), self.base.target(i), extras

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch
