"""What a model looked at: each architecture's own attention, and Grad-CAM for any model.

* FERAtt: the attention map sigmoid(A) and the attention image I_att that its classifier sees;
* SA-FER: the CBAM spatial attention map of every block up to layer3 (``CBAM.record``);
* PAtt-Lite (``attention="tokens"``): the self-attention among its 2x2 patch tokens, shown as the attention each
  patch receives (mean over queries) on the image quadrant it mostly covers (the patch convolutions' receptive
  fields overlap, so the quadrants are an approximation);
* any model: Grad-CAM (Captum's ``LayerGradCam``) on the layer named by the model's ``gradcam_target`` (else the
  last 4-D feature map of at least 7x7 found by a probe forward), for the predicted class.

``explain_face`` returns the panels as arrays; ``render_panels`` writes one PNG per face with matplotlib.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import cv2
import numpy as np
import torch
import torch.nn as nn

from ..models import logits_of

__all__ = ["Panel", "explain_face", "gradcam", "gradcam_layer", "render_panels"]


class Panel:
    """One picture of an explanation: an RGB image (H, W, 3) in [0, 1], or a heat map (H, W) in [0, 1] that is
    drawn over the face crop."""

    def __init__(self, title: str, data: np.ndarray, overlay: bool) -> None:
        self.title, self.data, self.overlay = title, data, overlay


def gradcam_layer(model: nn.Module, input_size: tuple[int, int, int]) -> nn.Module:
    """The model's ``gradcam_target`` module, else the last module (in execution order) whose output is a 4-D map of
    at least 7x7."""
    target = getattr(model, "gradcam_target", None)
    if target:
        return model.get_submodule(target)
    seen: list[nn.Module] = []
    hooks = [
        m.register_forward_hook(
            lambda mod, _, out: (
                seen.append(mod)
                if isinstance(out, torch.Tensor) and out.dim() == 4 and min(out.shape[-2:]) >= 7
                else None
            )
        )
        for m in model.modules()
        if m is not model and not list(m.children())
    ]
    try:
        with torch.no_grad():
            model(torch.zeros(1, *input_size))
    finally:
        for h in hooks:
            h.remove()
    if not seen:
        raise ValueError(f"{type(model).__name__}: no 4-D feature map of at least 7x7 for Grad-CAM")
    return seen[-1]


def gradcam(model: nn.Module, x: torch.Tensor, target: int, layer: nn.Module) -> np.ndarray:
    """Grad-CAM of class ``target`` for one input (1, 3, H, W): (H, W) in [0, 1] at input resolution."""
    from captum.attr import LayerAttribution, LayerGradCam

    cam = LayerGradCam(lambda inp: logits_of(model(inp)), layer)
    with torch.enable_grad():
        attr = cam.attribute(x, target=target, relu_attributions=True)  # (1, 1, h, w)
    up = LayerAttribution.interpolate(attr.detach(), tuple(x.shape[-2:]), interpolate_mode="bilinear")
    m = up[0, 0].float().numpy()
    return m / m.max() if m.max() > 0 else m


@contextmanager
def _recording(model: nn.Module) -> Iterator[list[nn.Module]]:
    """Turn on ``record`` in every module that has it (CBAM, the attention models) for one forward."""
    mods = [m for m in model.modules() if hasattr(m, "record")]
    for m in mods:
        m.record = True
    try:
        yield mods
    finally:
        for m in mods:
            m.record = False


def explain_face(
    model: nn.Module, x: np.ndarray, class_names: list[str], mean: list[float], std: list[float]
) -> tuple[list[Panel], np.ndarray]:
    """Panels for one preprocessed face (3, H, W) and the class probabilities."""
    from ..models.feratt import FERAtt
    from ..models.layers import CBAM
    from ..models.patt_lite import PAttLite

    model.eval()
    xt = torch.from_numpy(x)[None]  # (1, 3, H, W)
    H, W = x.shape[-2:]
    panels: list[Panel] = []
    with _recording(model) as mods, torch.no_grad():
        out = model(xt)
    probs = torch.softmax(logits_of(out).float(), dim=1)[0].numpy()
    top = int(probs.argmax())

    if isinstance(model, FERAtt):
        att = torch.sigmoid(out.attention_map[0]).mean(0).numpy()  # (H, W)
        panels.append(Panel("FERAtt attention map sigmoid(A)", att, True))
        img = out.attention_image[0].permute(1, 2, 0).numpy() * np.asarray(std) + np.asarray(mean)
        panels.append(Panel("FERAtt attention image I_att", np.clip(img, 0, 1), False))
    for i, m in enumerate(k for k in mods if isinstance(k, CBAM) and k.last_spatial_map is not None):
        s = m.last_spatial_map[0, 0].numpy()  # (h, w) in [0, 1] after the sigmoid
        panels.append(Panel(f"CBAM spatial map {i + 1} ({s.shape[0]}x{s.shape[1]})", _resize(s, H, W), True))
    w = getattr(model, "last_attention", None)
    if w is not None and w.shape[-2:] == (4, 4):  # PAtt-Lite (tokens mode), SA-FER: 2x2 patch tokens
        w = w[0]  # (4, 4): rows = queries, columns = keys
        assert torch.allclose(w.sum(-1), torch.ones(4), atol=1e-4)
        received = w.mean(0).reshape(2, 2).numpy()  # (2, 2): attention each patch receives
        grid = cv2.resize(received, (W, H), interpolation=cv2.INTER_NEAREST)
        title = (
            "PAtt-Lite token attention (2x2 patches)"
            if isinstance(model, PAttLite)
            else ("self-attention over 2x2 patch tokens")
        )
        panels.append(Panel(title, grid / max(grid.max(), 1e-8), True))

    layer = gradcam_layer(model, tuple(x.shape))
    cam = gradcam(model, xt.clone().requires_grad_(True), top, layer)
    panels.append(Panel(f"Grad-CAM: {class_names[top]}", cam, True))
    return panels, probs


def _resize(m: np.ndarray, H: int, W: int) -> np.ndarray:
    return cv2.resize(m.astype(np.float32), (W, H), interpolation=cv2.INTER_LINEAR)


def render_panels(
    crop: np.ndarray, panels: list[Panel], probs: np.ndarray, class_names: list[str], path: str | Path, title: str
) -> Path:
    """One PNG: the face crop, each panel (heat maps over the crop), and the class probabilities."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = len(panels) + 2
    cols = min(n, 4)
    rows = (n + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 3.3 * rows), squeeze=False)
    size = panels[0].data.shape[:2] if panels else crop.shape[:2]
    face = cv2.resize(crop, (size[1], size[0]), interpolation=cv2.INTER_AREA).astype(np.float32) / 255.0
    grey = np.repeat(face.mean(-1, keepdims=True), 3, axis=-1)
    axes[0, 0].imshow(face)
    axes[0, 0].set_title("face", fontsize=9)
    for ax, p in zip(axes.flat[1:], panels, strict=False):
        if p.overlay:
            ax.imshow(grey)
            ax.imshow(p.data, cmap="jet", alpha=0.5, vmin=0, vmax=1)  # every heat map is in [0, 1]
        else:
            ax.imshow(p.data)
        ax.set_title(p.title, fontsize=8)
    ax = axes.flat[len(panels) + 1]
    order = np.argsort(probs)
    ax.barh([class_names[i] for i in order], probs[order], color="#3a86ff")
    ax.set_xlim(0, 1)
    ax.set_title("probabilities", fontsize=9)
    ax.tick_params(labelsize=8)
    for a in axes.flat:
        if a is not ax:
            a.axis("off")
    for a in axes.flat[n:]:
        a.set_visible(False)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.part.png")
    fig.savefig(tmp, dpi=100)
    plt.close(fig)
    tmp.replace(path)
    return path
