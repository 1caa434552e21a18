"""Samplers."""

from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import WeightedRandomSampler

from .base import FERDataset

__all__ = ["balanced_sampler", "class_weights"]


def class_weights(ds: FERDataset) -> torch.Tensor:
    """scikit-learn's 'balanced' weights n / (k * count_c) (PAtt-Lite's phase 1); 0 for absent classes."""
    counts = np.bincount(ds.targets, minlength=len(ds.class_names)).astype(np.float64)
    present = counts > 0
    w = np.zeros_like(counts)
    w[present] = counts.sum() / (present.sum() * counts[present])
    return torch.tensor(w, dtype=torch.float32)


def balanced_sampler(ds: FERDataset, num_samples: int | None = None, seed: int = 0) -> WeightedRandomSampler:
    """Draw every class equally often (with replacement), as AffectNet training usually does."""
    per_sample = class_weights(ds)[torch.from_numpy(ds.targets)]
    g = torch.Generator().manual_seed(seed)
    return WeightedRandomSampler(per_sample.double(), num_samples or len(ds), replacement=True, generator=g)
