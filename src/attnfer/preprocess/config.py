"""The input contract of a model: how a uint8 RGB face becomes the tensor the model was trained on.

:class:`PreprocessConfig` is plain data (no torch): it travels in a model's ``config.json``, in the ONNX metadata
and in the service's ``/v1/model`` answer, and both preprocessing backends (:mod:`.numpy_ops` for the torch-free
ONNX path, :mod:`.torch_ops` for training and evaluation) are generated from it.

Geometry, decided once for every consumer: the face image (a detected face cropped square with ``crop_margin``
around the box, or a whole image that already is a face crop) is **stretched** to ``input_size / crop_pct`` and,
when ``crop_pct < 1``, centre-cropped to ``input_size`` (timm's ``crop_pct``). Grey models (``grayscale``) see
ITU-R 601-2 luma replicated to three channels, computed on the uint8 face before resizing.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields, replace
from typing import Any

__all__ = ["INTERPOLATIONS", "PreprocessConfig", "as_preprocess"]

INTERPOLATIONS = ("bilinear", "bicubic", "nearest")


@dataclass(frozen=True)
class PreprocessConfig:
    """What a model expects as input (all fields have the defaults of an ImageNet-normalised 224 px model).

    Attributes:
        input_size: (channels, height, width) of the model input.
        interpolation: resize kernel: ``bilinear``, ``bicubic`` or ``nearest``.
        antialias: low-pass filter when shrinking (as PIL and torchvision's ``antialias=True``).
        crop_pct: resize to ``input_size / crop_pct`` then centre-crop ``input_size`` (1.0: plain resize).
        mean, std: per-channel normalisation of pixels scaled to [0, 1]; both ``None`` when the model takes
            pixels as they are (0-255, float) and normalises inside its graph.
        grayscale: feed luma replicated to 3 channels.
        crop_margin: margin around a detected face box, as a fraction of its larger side.
        color_order: channel order of the input (always RGB in attnfer).
    """

    input_size: tuple[int, int, int] = (3, 224, 224)
    interpolation: str = "bilinear"
    antialias: bool = True
    crop_pct: float = 1.0
    mean: tuple[float, ...] | None = (0.485, 0.456, 0.406)
    std: tuple[float, ...] | None = (0.229, 0.224, 0.225)
    grayscale: bool = False
    crop_margin: float = 0.2
    color_order: str = "RGB"

    def __post_init__(self) -> None:
        object.__setattr__(self, "input_size", tuple(int(v) for v in self.input_size))
        if self.mean is not None:
            object.__setattr__(self, "mean", tuple(float(v) for v in self.mean))
        if self.std is not None:
            object.__setattr__(self, "std", tuple(float(v) for v in self.std))
        c, h, w = self.input_size
        if c != 3 or h < 1 or w < 1:
            raise ValueError(f"input_size must be (3, H, W) with H, W >= 1, got {self.input_size}")
        if self.interpolation not in INTERPOLATIONS:
            raise ValueError(f"interpolation must be one of {', '.join(INTERPOLATIONS)}, got {self.interpolation!r}")
        if not 0 < self.crop_pct <= 1:
            raise ValueError(f"crop_pct must be in (0, 1], got {self.crop_pct}")
        if (self.mean is None) != (self.std is None):
            raise ValueError("mean and std must both be given, or both be None (pixels as they are)")
        if self.mean is not None and (len(self.mean) != 3 or len(self.std) != 3 or min(self.std) <= 0):
            raise ValueError(f"mean and std need 3 values each (std > 0), got {self.mean} and {self.std}")
        if self.crop_margin < 0:
            raise ValueError(f"crop_margin must be >= 0, got {self.crop_margin}")
        if self.color_order != "RGB":
            raise ValueError(f"color_order must be RGB, got {self.color_order!r}")

    @property
    def size(self) -> tuple[int, int]:
        """(height, width) of the model input."""
        return self.input_size[1], self.input_size[2]

    @property
    def resize_size(self) -> tuple[int, int]:
        """(height, width) the face is stretched to before the centre crop."""
        h, w = self.size
        return (h, w) if self.crop_pct == 1 else (round(h / self.crop_pct), round(w / self.crop_pct))

    @property
    def scale(self) -> tuple[float, float, float]:
        """Size of one uint8 step in model-input units, per channel (1/(255 std), or 1 for raw pixels)."""
        if self.std is None:
            return (1.0, 1.0, 1.0)
        return tuple(1.0 / (255.0 * s) for s in self.std)  # type: ignore[return-value]

    def replace(self, **changes: Any) -> PreprocessConfig:
        return replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["input_size"] = list(self.input_size)
        d["mean"] = list(self.mean) if self.mean is not None else None
        d["std"] = list(self.std) if self.std is not None else None
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> PreprocessConfig:
        """From :meth:`to_dict` output; unknown keys are an error that names them."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(
                f"unknown preprocessing field(s) {', '.join(unknown)}; expected {', '.join(sorted(known))}"
            )
        return cls(**d)


def as_preprocess(obj: Any) -> PreprocessConfig:
    """The :class:`PreprocessConfig` of a preprocessing config, a model config (``.preprocess``), a built model
    (``.cfg.preprocess``) or their dict forms."""
    if isinstance(obj, PreprocessConfig):
        return obj
    if isinstance(obj, dict):
        return PreprocessConfig.from_dict(obj.get("preprocess", obj))
    for path in (("preprocess",), ("cfg", "preprocess")):
        value = obj
        for part in path:
            value = getattr(value, part, None)
        if isinstance(value, PreprocessConfig):
            return value
    raise TypeError(f"no preprocessing config in {type(obj).__name__}")
