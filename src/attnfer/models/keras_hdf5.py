"""Keras legacy HDF5 files (``model.save('x.h5')``, ``model.save_weights('x.h5')``) read with h5py, no TensorFlow.

Layout (Keras 2 ``legacy_h5_format``): a full-model file keeps the architecture JSON in the root attribute
``model_config`` and the weights under the group ``model_weights``; a weights-only file keeps the weights at the
root. Either way the weight group's attribute ``layer_names`` lists the layers in order, each layer's group lists
its tensors, in Keras' order, in the attribute ``weight_names`` (``conv1/kernel:0``, ``conv1_bn/gamma:0``, ...), and
tensor ``w`` of layer ``L`` is the dataset ``L/w``. h5py lists a group's members alphabetically, so the order is
always taken from ``weight_names``, never from the listing. A nested model (a ``Functional`` backbone inside the
model) is one layer whose weight names carry the inner layer names.

Conversions to PyTorch layouts: Conv2D kernel (kh, kw, in, out) -> (out, in, kh, kw); DepthwiseConv2D kernel
(kh, kw, C, 1) -> (C, 1, kh, kw); Dense kernel (in, out) -> (out, in); BatchNormalization gamma, beta,
moving_mean, moving_variance -> weight, bias, running_mean, running_var.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch

__all__ = ["KerasH5", "KerasH5Error", "bn_params", "conv_kernel", "dense_kernel", "depthwise_kernel"]


class KerasH5Error(ValueError):
    """Not a Keras HDF5 file, or not the layout expected; the message names the file and what is missing."""


def _text(value: Any) -> str:
    return value.decode("utf-8") if isinstance(value, bytes) else str(value)


class KerasH5:
    """The weights (and, for a full-model file, the architecture) of a Keras legacy HDF5 file.

    Attributes:
        path: the file.
        config: the parsed ``model_config`` JSON (full-model files), else None.
        layers: ``{layer name: [(weight name, array), ...]}`` in the file's order, layers without weights omitted.
    """

    def __init__(self, path: str | Path) -> None:
        import h5py

        self.path = Path(path)
        if not self.path.is_file():
            raise KerasH5Error(f"{self.path}: file not found")
        try:
            f = h5py.File(self.path, "r")
        except OSError as e:
            raise KerasH5Error(f"{self.path}: not an HDF5 file (truncated or another format?): {e}") from e
        with f:
            root = f.get("model_weights", f)
            if "layer_names" not in root.attrs:
                raise KerasH5Error(
                    f"{self.path}: no Keras layer list (attribute 'layer_names' of "
                    f"{'/model_weights' if root is not f else 'the root'}); not a file written by Keras' "
                    "model.save(...h5) or save_weights(...h5)"
                )
            cfg = f.attrs.get("model_config")
            self.config: dict[str, Any] | None = json.loads(_text(cfg)) if cfg is not None else None
            self.keras_version = _text(f.attrs.get("keras_version", root.attrs.get("keras_version", "")))
            self.layers: dict[str, list[tuple[str, np.ndarray]]] = {}
            for raw in root.attrs["layer_names"]:
                name = _text(raw)
                group = root[name]
                names = [_text(w) for w in group.attrs.get("weight_names", [])]
                try:
                    weights = [(w, np.asarray(group[w], dtype=np.float32)) for w in names]
                except (KeyError, OSError) as e:
                    raise KerasH5Error(f"{self.path}: layer '{name}' lists a weight it does not hold ({e})") from e
                if weights:
                    self.layers[name] = weights

    def weights(self, layer: str) -> list[tuple[str, np.ndarray]]:
        """The weights of one layer, in Keras' order."""
        if layer not in self.layers:
            raise KerasH5Error(f"{self.path}: no layer '{layer}' with weights (layers: {', '.join(self.layers)})")
        return self.layers[layer]

    def by_name(self) -> dict[str, np.ndarray]:
        """Every tensor under its weight name (``conv1/kernel:0``); nested models' inner names included."""
        out: dict[str, np.ndarray] = {}
        for weights in self.layers.values():
            out.update(weights)
        return out

    def layer_configs(self) -> list[dict[str, Any]]:
        """The top-level layers of ``model_config`` (class name, name, config), in graph order."""
        if self.config is None:
            raise KerasH5Error(f"{self.path}: no 'model_config' attribute: a weights-only file, not a saved model")
        return list(self.config.get("config", {}).get("layers", []))


def conv_kernel(k: np.ndarray) -> torch.Tensor:
    """Conv2D (kh, kw, in, out) -> (out, in, kh, kw)."""
    assert k.ndim == 4, k.shape
    return torch.from_numpy(np.ascontiguousarray(k.transpose(3, 2, 0, 1)))


def depthwise_kernel(k: np.ndarray) -> torch.Tensor:
    """DepthwiseConv2D (kh, kw, C, 1) -> (C, 1, kh, kw)."""
    assert k.ndim == 4 and k.shape[3] == 1, k.shape
    return torch.from_numpy(np.ascontiguousarray(k.transpose(2, 3, 0, 1)))


def dense_kernel(k: np.ndarray) -> torch.Tensor:
    """Dense (in, out) -> (out, in)."""
    assert k.ndim == 2, k.shape
    return torch.from_numpy(np.ascontiguousarray(k.T))


def bn_params(gamma: np.ndarray, beta: np.ndarray, mean: np.ndarray, var: np.ndarray) -> dict[str, torch.Tensor]:
    """BatchNormalization tensors under PyTorch's names (``num_batches_tracked`` 0)."""
    return {
        "weight": torch.from_numpy(gamma.copy()),
        "bias": torch.from_numpy(beta.copy()),
        "running_mean": torch.from_numpy(mean.copy()),
        "running_var": torch.from_numpy(var.copy()),
        "num_batches_tracked": torch.tensor(0),
    }
