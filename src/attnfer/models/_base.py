"""The interface every attnfer model shares: logits, training loss, phase settings, attention maps, config."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from ._cfg import ModelCfg

__all__ = [
    "AttentionMap",
    "FERModel",
    "count_macs",
    "count_parameters",
    "recording",
    "token_attention_map",
]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
INCEPTION_MEAN = (0.5, 0.5, 0.5)  # maps [0, 1] to [-1, 1], as Keras' MobileNet preprocess_input
INCEPTION_STD = (0.5, 0.5, 0.5)
NO_NORM_MEAN = (0.0, 0.0, 0.0)
NO_NORM_STD = (1.0, 1.0, 1.0)


@dataclass
class AttentionMap:
    """One picture of where a model attends, for one input: a heat map (H, W) in [0, 1] drawn over the face
    (``overlay``), or an RGB image (H, W, 3) in [0, 1] shown as it is (e.g. an attention image)."""

    title: str
    data: np.ndarray
    overlay: bool = True


@contextmanager
def recording(model: nn.Module) -> Iterator[list[nn.Module]]:
    """Turn on ``record`` in every module that has it (attention layers keep their last weights) for a forward."""
    mods = [m for m in model.modules() if hasattr(m, "record")]
    for m in mods:
        m.record = True
    try:
        yield mods
    finally:
        for m in mods:
            m.record = False


def token_attention_map(weights: torch.Tensor, size: tuple[int, int]) -> np.ndarray:
    """Self-attention among a 2x2 grid of patch tokens, (1, 4, 4) with rows = queries, as the attention each patch
    receives (mean over queries) on the image quadrant it mostly covers: (H, W) in [0, 1] (divided by its max)."""
    assert weights.shape[-2:] == (4, 4) and weights.shape[0] == 1, tuple(weights.shape)
    w = weights[0].float()  # (4, 4)
    assert torch.allclose(w.sum(-1), torch.ones(4), atol=1e-4), "attention rows must sum to 1"
    received = w.mean(0).reshape(2, 2).cpu().numpy()  # (2, 2)
    H, W = size
    rows = np.minimum(np.arange(H) * 2 // H, 1)
    cols = np.minimum(np.arange(W) * 2 // W, 1)
    grid = received[rows][:, cols]  # (H, W), nearest upsampling of the 2x2 grid
    return (grid / max(float(grid.max()), 1e-8)).astype(np.float32)


def count_parameters(model: nn.Module, include_bn_stats: bool = False, trainable_only: bool = False) -> int:
    """Number of parameter elements.

    ``include_bn_stats=True`` adds BatchNorm running mean/variance, which is how Keras counts
    ("non-trainable params"), so figures can be compared with Keras summaries.
    """
    n = sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)
    if include_bn_stats:
        for m in model.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats:
                n += m.running_mean.numel() + m.running_var.numel()
    return n


@torch.no_grad()
def count_macs(model: nn.Module, input_size: tuple[int, int, int] | None = None, batch_size: int = 2) -> int:
    """Multiply-accumulates of one image's forward pass (convolutions, matmuls, attention).

    Counted with ``torch.utils.flop_counter.FlopCounterMode`` (which reports 2 FLOPs per MAC) in eval
    mode. A batch of 2 is run and halved so batch-level operations are counted realistically.
    """
    from torch.utils.flop_counter import FlopCounterMode

    if input_size is None:
        input_size = model.cfg.input_size
    was_training = model.training
    model.eval()
    try:
        x = torch.zeros(batch_size, *input_size)
        counter = FlopCounterMode(display=False)
        with counter:
            model(x)
    finally:
        model.train(was_training)
    return counter.get_total_flops() // 2 // batch_size


class FERModel(nn.Module):
    """Base class of attnfer models: timm's model interface, Lightning-style ownership of the loss and of the
    per-phase settings, the model's attention maps, and its declarative config.

    Subclasses implement ``forward_features`` and ``forward_head`` and set ``num_classes`` and ``num_features``;
    ``forward`` returns logits for every model. A model whose training needs more than logits (auxiliary outputs,
    extra losses) overrides ``forward_train`` and ``loss``; one with its own attention overrides
    ``attention_maps``. The config (:class:`ModelCfg`) is given at registration and set by ``create_model``.
    """

    #: Attribute path of the final classifier (an ``nn.Linear``), for ``reset_classifier``.
    classifier_attr: str = "head"
    #: Per-phase recipe settings that set a dropout probability -> path of the ``nn.Dropout`` module.
    dropout_settings: ClassVar[dict[str, str]] = {}

    num_classes: int
    num_features: int
    model_name: str = ""
    model_kwargs: dict[str, Any]
    class_names: list[str] | None = None
    cfg: ModelCfg

    def __init__(self) -> None:
        super().__init__()
        self.model_kwargs = {}
        self.class_names = None
        self.cfg = ModelCfg()
        self.loss_options: dict[str, Any] = {}

    # ---- forward -------------------------------------------------------------------------------
    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Image batch (B, 3, H, W) -> logits (B, C)."""
        return self.forward_head(self.forward_features(x))

    def forward_train(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """Everything the loss needs, at least ``{"logits": (B, C)}``."""
        return {"logits": self(x)}

    # ---- loss (the model owns it) ----------------------------------------------------------------
    def configure_loss(self, **options: Any) -> None:
        """Options of this model's loss (a recipe's ``loss:`` mapping); unknown options are an error."""
        if options:
            raise ValueError(
                f"{type(self).__name__} takes no loss options (its loss is cross-entropy), got {', '.join(options)}"
            )

    def loss(
        self,
        outputs: dict[str, torch.Tensor],
        targets: torch.Tensor,
        extras: dict[str, torch.Tensor] | None = None,
        *,
        label_smoothing: float = 0.0,
        class_weight: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """(total loss, named parts) of ``forward_train`` outputs; targets are class indices (B,) or soft (B, C)."""
        return F.cross_entropy(outputs["logits"], targets, weight=class_weight, label_smoothing=label_smoothing), {}

    # ---- phases ----------------------------------------------------------------------------------
    def apply_phase_settings(self, settings: dict[str, Any]) -> None:
        """A recipe phase's model settings: backbone freezing (``freeze_backbone``, ``unfreeze_last_n``) for
        models with ``set_backbone_trainable``, and dropout rates named in ``dropout_settings``."""
        settings = dict(settings)
        if "unfreeze_last_n" in settings or "freeze_backbone" in settings:
            setter = getattr(self, "set_backbone_trainable", None)
            if setter is None:
                raise ValueError(f"{type(self).__name__} has no backbone freezing options")
            setter(
                settings.pop("freeze_backbone", getattr(self, "freeze_backbone", True)),
                settings.pop("unfreeze_last_n", 0),
            )
        for key, value in settings.items():
            path = self.dropout_settings.get(key)
            if path is None:
                known = (
                    ", ".join(
                        ["freeze_backbone", "unfreeze_last_n", *self.dropout_settings]
                        if hasattr(self, "set_backbone_trainable")
                        else self.dropout_settings
                    )
                    or "none"
                )
                raise ValueError(
                    f"phase model setting '{key}' is not a setting of {type(self).__name__} (known: {known})"
                )
            module = self.get_submodule(path)
            assert hasattr(module, "p"), f"{path} is not a dropout"
            module.p = float(value)

    # ---- attention -----------------------------------------------------------------------------
    @torch.no_grad()
    def attention_maps(self, x: torch.Tensor) -> list[AttentionMap]:
        """Where the model attends for one preprocessed input (1, 3, H, W), at input resolution: its own attention
        (none for a plain CNN). Grad-CAM, which works for any model, is in ``attnfer.inference.explain``."""
        return []

    # ---- classifier ----------------------------------------------------------------------------
    def get_classifier(self) -> nn.Module:
        module: nn.Module = self
        for part in self.classifier_attr.split("."):
            module = getattr(module, part)
        return module

    def reset_classifier(self, num_classes: int) -> None:
        """Replace the final linear layer by a freshly initialised one with ``num_classes`` outputs."""
        if num_classes < 1:
            raise ValueError(f"num_classes must be >= 1, got {num_classes}")
        old = self.get_classifier()
        assert isinstance(old, nn.Linear), f"{type(self).__name__}.{self.classifier_attr} is not nn.Linear"
        new = nn.Linear(old.in_features, num_classes).to(old.weight.device, old.weight.dtype)
        self._init_classifier(new)
        parent: nn.Module = self
        *path, last = self.classifier_attr.split(".")
        for part in path:
            parent = getattr(parent, part)
        setattr(parent, last, new)
        self.num_classes = num_classes
        if self.class_names is not None and len(self.class_names) != num_classes:
            self.class_names = None

    def _init_classifier(self, layer: nn.Linear) -> None:
        """Initialise a classifier made by ``reset_classifier``; PyTorch's default unless overridden."""

    # ---- description ----------------------------------------------------------------------------
    @property
    def card(self) -> ModelCfg:
        """The model's config (alias of ``cfg``): input contract, paper, deviations, batch dependence."""
        return self.cfg

    @property
    def output_names(self) -> list[str]:
        """Names of the outputs: the model's class names, else ``class_0``..."""
        return list(self.class_names) if self.class_names else [f"class_{i}" for i in range(self.num_classes)]

    def map_pretrained(self, state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """ImageNet backbone keys -> ours: the config's default prefix mapping (families with other layouts
        override this and may call it after renaming)."""
        src = self.cfg.pretrained
        if src is None:
            return {}
        own = self.state_dict()
        return {
            src.prefix + k: v
            for k, v in state_dict.items()
            if not any(k.startswith(e) for e in src.exclude) and src.prefix + k in own
        }

    def frozen_parameter_names(self) -> list[str]:
        """Parameters that deliberately receive no gradient (e.g. a frozen backbone)."""
        return [n for n, p in self.named_parameters() if not p.requires_grad]

    # ---- persistence ---------------------------------------------------------------------------
    def save(self, directory: str | Path) -> Path:
        """Write ``model.safetensors`` and ``config.json`` into ``directory`` (atomically per file)."""
        from .io import save_model

        return save_model(self, directory)
