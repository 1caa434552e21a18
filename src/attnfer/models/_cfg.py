"""The declarative config of a registered model (timm's ``pretrained_cfg`` plus the input contract).

Every entrypoint is registered with a :class:`ModelCfg`; :func:`attnfer.models.get_model_cfg` returns it, adapted
to the constructor options, without building the model. A built model carries its own copy (``model.cfg``), a
saved checkpoint stores it whole in ``config.json``, and the ONNX export and the web service carry it too, so every
consumer preprocesses from the same declaration (:mod:`attnfer.preprocess`).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any

from ..preprocess import PreprocessConfig

__all__ = ["DEFAULT_CLASS_NAMES", "ModelCfg", "PretrainedSource"]

#: The 7 basic expressions in attnfer's canonical (FERPlus) order: the default output names of a 7-class model.
DEFAULT_CLASS_NAMES: tuple[str, ...] = ("neutral", "happiness", "surprise", "sadness", "anger", "disgust", "fear")


@dataclass(frozen=True)
class PretrainedSource:
    """Where a model's ImageNet backbone weights come from and how their keys map onto ours.

    Attributes:
        timm: a timm model name whose ImageNet weights timm downloads (Hugging Face hub, verified by the hub).
        url: a torchvision URL whose file name carries the sha256 prefix (checked by ``torch.hub``), or the URL of
            a Keras HDF5 weight file (``.h5``: downloaded into attnfer's cache and read with h5py).
        sha256: the file's published sha256, checked after download and on every later use (None: the publisher
            lists none; the file is then checked by its layout, and its sha256 recorded at the first download is
            checked from then on).
        prefix: the default key mapping: file key ``k`` -> our key ``prefix + k`` (keys we do not have are
            ignored, so a truncated backbone takes what it has).
        exclude: file key prefixes never loaded (e.g. an ImageNet classifier).
        layout: the key layout local files must have (shown in error messages).
    """

    timm: str | None = None
    url: str | None = None
    sha256: str | None = None
    prefix: str = ""
    exclude: tuple[str, ...] = ()
    layout: str = ""

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["exclude"] = list(self.exclude)
        return d


@dataclass(frozen=True)
class ModelCfg:
    """Input/output contract and description of a model.

    Attributes:
        paper: the paper or origin of the model.
        preprocess: the input contract (size, resize, normalisation, grey, crop margin).
        class_names: default output names (used when a model is built without names and the count matches).
        pretrained: the ImageNet backbone source, or None when none is published.
        explain_layer: module whose output Grad-CAM explains (``model.get_submodule`` path).
        batch_dependent: outputs depend on the other samples of the batch (classify one face per forward pass).
        deviations: deliberate deviations from the original implementation.
        extra: family-specific facts (e.g. an attention mode or a layout).
    """

    paper: str = ""
    preprocess: PreprocessConfig = field(default_factory=PreprocessConfig)
    class_names: tuple[str, ...] | None = DEFAULT_CLASS_NAMES
    pretrained: PretrainedSource | None = None
    explain_layer: str | None = None
    batch_dependent: bool = False
    deviations: tuple[str, ...] = ()
    extra: dict[str, Any] = field(default_factory=dict)

    # the input contract, readable directly (``cfg.input_size``), as timm's pretrained_cfg
    @property
    def input_size(self) -> tuple[int, int, int]:
        return self.preprocess.input_size

    @property
    def mean(self) -> tuple[float, ...] | None:
        return self.preprocess.mean

    @property
    def std(self) -> tuple[float, ...] | None:
        return self.preprocess.std

    @property
    def interpolation(self) -> str:
        return self.preprocess.interpolation

    @property
    def color_order(self) -> str:
        return self.preprocess.color_order

    def replace(self, **changes: Any) -> ModelCfg:
        """A copy with ``changes``; keys of :class:`PreprocessConfig` update ``preprocess``."""
        pre_keys = {f.name for f in fields(PreprocessConfig)}
        pre = {k: changes.pop(k) for k in list(changes) if k in pre_keys}
        if pre:
            changes["preprocess"] = changes.get("preprocess", self.preprocess).replace(**pre)
        return replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        return {
            "paper": self.paper,
            "preprocess": self.preprocess.to_dict(),
            "class_names": list(self.class_names) if self.class_names is not None else None,
            "pretrained": self.pretrained.to_dict() if self.pretrained is not None else None,
            "explain_layer": self.explain_layer,
            "batch_dependent": self.batch_dependent,
            "deviations": list(self.deviations),
            "extra": dict(self.extra),
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ModelCfg:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"unknown model config field(s) {', '.join(unknown)}; expected {', '.join(sorted(known))}")
        d = dict(d)
        if "preprocess" in d:
            d["preprocess"] = PreprocessConfig.from_dict(d["preprocess"])
        if d.get("pretrained") is not None:
            p = dict(d["pretrained"])
            p["exclude"] = tuple(p.get("exclude", ()))
            d["pretrained"] = PretrainedSource(**p)
        for key in ("class_names", "deviations"):
            if d.get(key) is not None:
                d[key] = tuple(d[key])
        return cls(**d)
