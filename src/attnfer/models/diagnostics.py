"""Checks of model behaviour that the field's published numbers have got wrong."""

from __future__ import annotations

import copy

import torch
import torch.nn as nn

__all__ = ["batch_dependence"]


@torch.no_grad()
def batch_dependence(
    model: nn.Module, x: torch.Tensor, seed: int = 0, dtype: torch.dtype | None = torch.float64
) -> float:
    """Largest change of any sample's logits caused by its batch-mates, in eval mode.

    Each sample of ``x`` (B >= 2) is scored alone, inside the whole batch, inside the batch shuffled, and
    next to unrelated random batch-mates. By default a float64 copy of the model is used so that kernel
    choices that differ between batch sizes do not show up as float32 rounding noise (up to ~1e-4 on
    randomly initialised deep nets): a model that treats samples independently then returns ~1e-12,
    PAtt-Lite's original batch attention differences of order 0.1-1. ``dtype=None`` checks the model as is.
    """

    assert x.shape[0] >= 2, "need at least two samples"
    if dtype is not None:
        model = copy.deepcopy(model).to(dtype)
        x = x.to(dtype)
    was_training = model.training
    model.eval()
    try:
        g = torch.Generator().manual_seed(seed)
        alone = torch.cat([model(x[i : i + 1]) for i in range(x.shape[0])])  # (B, C)
        together = model(x)  # (B, C)
        perm = torch.randperm(x.shape[0], generator=g)
        shuffled = model(x[perm])[torch.argsort(perm)]  # (B, C), back in x's order
        strangers = torch.randn((3, *x.shape[1:]), generator=g, dtype=x.dtype) * x.std() + x.mean()
        with_strangers = model(torch.cat([x[:1], strangers]))[:1]  # (1, C)
    finally:
        model.train(was_training)
    return max(
        (alone - together).abs().max().item(),
        (alone - shuffled).abs().max().item(),
        (alone[:1] - with_strangers).abs().max().item(),
    )
