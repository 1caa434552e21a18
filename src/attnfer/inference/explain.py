"""What a model looked at: the model's own attention maps, and Grad-CAM for any model.

* the model's attention maps: ``model.attention_maps(x)`` (:class:`~attnfer.models.AttentionMap`), which each
  model implements for its own attention (none for a plain CNN); the HTML report shows the same maps;
* Grad-CAM (Captum's ``LayerGradCam``) of the predicted class on the layer the model's config names
  (``model.cfg.explain_layer``), else on the last 4-D feature map of at least 7x7 found by a probe forward.

``explain_face`` returns the panels as arrays; ``render_panels`` writes one PNG per face with matplotlib. Everything
runs on the model's device (``attnfer explain --device``: the recognizer's torch runtime puts the model there); the
face is preprocessed on the CPU and the panels come back to the CPU as numpy arrays.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import cv2
import numpy as np
import torch
import torch.nn as nn

from ..files import atomic_write
from ..models import AttentionMap

if TYPE_CHECKING:
    from .recognizer import Recognizer

__all__ = ["ExplainSummary", "Panel", "explain_face", "explain_files", "gradcam", "gradcam_layer", "render_panels"]

#: One picture of an explanation (a heat map drawn over the face, or an image shown as it is).
Panel = AttentionMap


def gradcam_layer(model: nn.Module, input_size: tuple[int, int, int] | None = None) -> nn.Module:
    """The module named by the model's ``cfg.explain_layer``, else the last module (in execution order) whose
    output is a 4-D map of at least 7x7 for an input of ``input_size`` (default: the config's)."""
    cfg = getattr(model, "cfg", None)
    target = getattr(cfg, "explain_layer", None)
    if target:
        return model.get_submodule(target)
    if input_size is None:
        if cfg is None:
            raise ValueError(f"{type(model).__name__}: give the input size for the Grad-CAM layer probe")
        input_size = cfg.input_size
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
    device = next(model.parameters()).device
    try:
        with torch.no_grad():
            model(torch.zeros(1, *input_size, device=device))
    finally:
        for h in hooks:
            h.remove()
    if not seen:
        raise ValueError(f"{type(model).__name__}: no 4-D feature map of at least 7x7 for Grad-CAM")
    return seen[-1]


def gradcam(model: nn.Module, x: torch.Tensor, target: int, layer: nn.Module) -> np.ndarray:
    """Grad-CAM of class ``target`` for one input (1, 3, H, W): (H, W) in [0, 1] at input resolution."""
    from captum.attr import LayerAttribution, LayerGradCam

    cam = LayerGradCam(model, layer)  # forward returns logits
    with torch.enable_grad():
        attr = cam.attribute(x, target=target, relu_attributions=True)  # (1, 1, h, w)
    up = LayerAttribution.interpolate(attr.detach(), tuple(x.shape[-2:]), interpolate_mode="bilinear")
    m = up[0, 0].float().cpu().numpy()
    return m / m.max() if m.max() > 0 else m


def explain_face(
    model: nn.Module, x: np.ndarray, class_names: list[str] | None = None
) -> tuple[list[AttentionMap], np.ndarray]:
    """Panels for one preprocessed face (3, H, W) and the class probabilities (C,).

    The panels are the model's own attention maps (``model.attention_maps``) followed by Grad-CAM of the predicted
    class; ``class_names`` (default: the model's ``output_names``) name the Grad-CAM panel.
    """
    model.eval()
    device = next(model.parameters()).device
    xt = torch.from_numpy(np.ascontiguousarray(x, np.float32))[None].to(device)  # (1, 3, H, W)
    with torch.no_grad():
        probs = torch.softmax(model(xt).float(), dim=1)[0].cpu().numpy()
    top = int(probs.argmax())
    names = list(class_names) if class_names is not None else model.output_names
    panels = list(model.attention_maps(xt))
    cam = gradcam(model, xt.clone().requires_grad_(True), top, gradcam_layer(model, tuple(x.shape)))
    panels.append(AttentionMap(f"Grad-CAM: {names[top]}", cam))
    return panels, probs


def render_panels(
    crop: np.ndarray,
    panels: list[AttentionMap],
    probs: np.ndarray,
    class_names: list[str],
    path: str | Path,
    title: str,
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
    try:
        atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=100, format="png"))
    finally:
        plt.close(fig)
    return path


@dataclass
class ExplainSummary:
    """What :func:`explain_files` did: the PNGs written (with their panel titles), inputs without a face, errors."""

    written: list[tuple[Path, list[str]]] = field(default_factory=list)
    no_face: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


def explain_files(rec: Recognizer, images: list[str | Path], out: str | Path) -> ExplainSummary:
    """One PNG per detected face of every image (``<stem>_face<k>.png`` in ``out``), from a torch-runtime
    :class:`~.recognizer.Recognizer`: the face, the model's own attention maps, Grad-CAM and the probabilities.
    Unreadable images are listed in ``errors`` (the others are still explained)."""
    from ..images import ImageReadError, read_rgb

    model = getattr(rec.runtime, "model", None)
    if model is None:
        raise ValueError("explanations need the torch runtime (a saved model directory), not an ONNX file")
    summary = ExplainSummary()
    for item in images:
        try:
            image = read_rgb(item)
        except ImageReadError as e:
            summary.errors.append(str(e))
            continue
        faces = rec.detector.detect(image)
        if not faces:
            summary.no_face.append(f"{item}: no face found ({rec.detector.name} detector)")
        for k, face in enumerate(faces):
            crop = rec.crop(image, face)
            panels, probs = explain_face(model, rec.preprocess([crop])[0], rec.class_names)
            target = Path(out) / f"{Path(item).stem}_face{k + 1}.png"
            title = f"{Path(item).name} face {k + 1} {list(face.box)}: {rec.class_names[int(probs.argmax())]}"
            render_panels(crop, panels, probs, rec.class_names, target, title)
            summary.written.append((target, [p.title for p in panels]))
    return summary
