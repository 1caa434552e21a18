"""One preprocessing definition (:class:`PreprocessConfig`) with two backends.

* :mod:`attnfer.preprocess.numpy_ops`: numpy/PIL/OpenCV, no torch (ONNX runtime, predict, serve);
* :mod:`attnfer.preprocess.torch_ops`: torch tensors for training (with the recipes' augmentations), evaluation
  and compositing; it resizes through the same :func:`~attnfer.preprocess.numpy_ops.resize_face`.

This package must stay importable without torch: import ``torch_ops`` explicitly.
"""

from .config import INTERPOLATIONS, PreprocessConfig, as_preprocess
from .numpy_ops import normalize, preprocess, preprocess_batch, resize_face, to_grayscale

__all__ = [
    "INTERPOLATIONS",
    "PreprocessConfig",
    "as_preprocess",
    "normalize",
    "preprocess",
    "preprocess_batch",
    "resize_face",
    "to_grayscale",
]
