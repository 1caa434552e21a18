"""ImageNet backbone weights: download (timm / torchvision / Keras applications, cached and checked) or a local file.

A model opts in through its config's ``pretrained`` source (:class:`~._cfg.PretrainedSource`): ``timm`` (a timm
model name; timm downloads from the Hugging Face hub into its cache and the hub verifies the file), ``url`` (a
torchvision URL whose file name carries the sha256 prefix, checked by ``torch.hub``; or a Keras ``.h5`` release
file, cached under attnfer's cache directory and checked against ``sha256``), and the source's default prefix
mapping of keys (``model.map_pretrained``, which a family overrides for another layout). Local files may be in the
timm, torchvision or Keras layout; the model's ``map_pretrained`` accepts each where it applies.

Third-party files are read with ``safetensors``, ``torch.load(weights_only=True)`` or h5py: never unpickled.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn as nn

__all__ = [
    "PretrainedLoadReport",
    "PretrainedWeightsError",
    "fetch_weight_file",
    "load_pretrained",
    "read_state_dict",
]


class PretrainedWeightsError(RuntimeError):
    """Weights could not be fetched, read or mapped; the message says which file is needed."""


@dataclass
class PretrainedLoadReport:
    """What a pretrained load did: which of our tensors were filled and which file keys were unused."""

    source: str
    loaded: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)  # our tensors left at their initialisation
    unused: list[str] = field(default_factory=list)  # file tensors with no place in our model

    def __str__(self) -> str:
        return (
            f"loaded {len(self.loaded)} tensors from {self.source}; {len(self.missing)} of ours kept their "
            f"initialisation; {len(self.unused)} of the file's were not used"
        )


_CONTAINER_KEYS = ("state_dict", "model", "model_state_dict", "net", "state_dict_ema")


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Read a weight file without unpickling: ``.safetensors`` or a ``torch.save`` state dict."""
    path = Path(path)
    if not path.is_file():
        raise PretrainedWeightsError(f"pretrained weight file not found: {path}")
    if path.suffix.lower() in (".h5", ".hdf5", ".keras"):
        return _read_keras(path)
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            sd = load_file(str(path))
        else:
            sd = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise PretrainedWeightsError(
            f"could not read {path} as a weight file (.safetensors, or a torch.save state dict loadable "
            f"with weights_only=True): {type(e).__name__}: {e}"
        ) from e
    for key in _CONTAINER_KEYS:  # unwrap training checkpoints {"state_dict": {...}, "epoch": ...}
        if isinstance(sd, dict) and isinstance(sd.get(key), dict):
            sd = sd[key]
            break
    if not isinstance(sd, dict) or not all(isinstance(v, torch.Tensor) for v in sd.values()):
        raise PretrainedWeightsError(f"{path} does not hold a state dict of tensors")
    prefix = "module."  # DataParallel / DDP wrappers
    if sd and all(k.startswith(prefix) for k in sd):
        sd = {k[len(prefix) :]: v for k, v in sd.items()}
    return sd


def _read_keras(path: Path) -> dict[str, torch.Tensor]:
    """A Keras HDF5 file's tensors under their Keras weight names (``conv1/kernel:0``), in Keras' layouts."""
    from .keras_hdf5 import KerasH5, KerasH5Error

    try:
        return {k: torch.from_numpy(v) for k, v in KerasH5(path).by_name().items()}
    except KerasH5Error as e:
        raise PretrainedWeightsError(str(e)) from e


def fetch_weight_file(url: str, sha256: str | None) -> Path:
    """Download ``url`` once into ``<cache>/pretrained/`` (atomically) and check it.

    With a published ``sha256`` the file is checked against it after the download and on every use. Without one,
    the sha256 of the first download is recorded beside the file (``NAME.sha256``) and checked on every later use,
    so a file changed in the cache is noticed; the caller checks the layout.
    """
    from ..files import atomic_write, cache_dir, sha256_file

    fname = url.rsplit("/", 1)[-1]
    folder = cache_dir("pretrained")
    path = folder / fname
    record = folder / f"{fname}.sha256"
    if not path.is_file():
        folder.mkdir(parents=True, exist_ok=True)
        try:
            atomic_write(path, lambda p: torch.hub.download_url_to_file(url, str(p), progress=False))
        except Exception as e:
            raise PretrainedWeightsError(
                f"could not download {fname} from {url} ({type(e).__name__}: {e}). Offline? Get that file and "
                f"pass pretrained='/path/to/{fname}', or put it at {path}."
            ) from e
        if sha256 is None:
            atomic_write(record, sha256_file(path) + "\n")
    expected = sha256 or (record.read_text().strip() if record.is_file() else None)
    if expected is not None:
        got = sha256_file(path)
        if got != expected:
            raise PretrainedWeightsError(
                f"{path}: sha256 {got} differs from the {'published' if sha256 else 'recorded'} {expected}; "
                "delete the file to download it again"
            )
    return path


def _download(model: nn.Module) -> tuple[dict[str, torch.Tensor], str]:
    src = getattr(getattr(model, "cfg", None), "pretrained", None)
    url = src.url if src is not None else None
    timm_name = src.timm if src is not None else None
    if url and url.endswith(".h5"):
        return _read_keras(fetch_weight_file(url, src.sha256)), url
    if url:
        fname = url.rsplit("/", 1)[-1]
        try:
            sd = torch.hub.load_state_dict_from_url(
                url, map_location="cpu", check_hash=True, progress=False, weights_only=True
            )
        except Exception as e:
            raise PretrainedWeightsError(
                f"could not download ImageNet weights {fname} from {url} ({type(e).__name__}: {e}). "
                f"Offline? Get that file and pass pretrained='/path/to/{fname}'."
            ) from e
        return sd, url
    if timm_name:
        import timm

        cfg = timm.models.get_pretrained_cfg(timm_name)
        hub_id = getattr(cfg, "hf_hub_id", None) or timm_name
        try:
            sd = timm.create_model(timm_name, pretrained=True).state_dict()
        except Exception as e:
            raise PretrainedWeightsError(
                f"could not download timm's ImageNet weights for '{timm_name}' (Hugging Face hub "
                f"'{hub_id}', file model.safetensors; {type(e).__name__}: {e}). Offline? Get "
                f"https://huggingface.co/{hub_id}/resolve/main/model.safetensors and pass "
                f"pretrained='/path/to/model.safetensors'."
            ) from e
        return sd, f"timm:{hub_id}"
    raise PretrainedWeightsError(
        f"{type(model).__name__} has no published ImageNet weights; pass pretrained=PATH to a state dict "
        "saved from this architecture."
    )


def load_pretrained(model: nn.Module, source: bool | str | Path) -> PretrainedLoadReport:
    """Fill ``model`` from ImageNet weights (``source=True``) or a local file (``source=PATH``)."""
    src = getattr(getattr(model, "cfg", None), "pretrained", None)
    if not hasattr(model, "map_pretrained") or (src is None and source is True):
        raise PretrainedWeightsError(
            f"{type(model).__name__} has no published ImageNet weights; pass pretrained=PATH to a state dict "
            "saved from this architecture."
        )
    if source is True:
        raw, origin = _download(model)
    else:
        raw, origin = read_state_dict(source), str(source)
    mapped = model.map_pretrained(raw)
    own = model.state_dict()
    if not mapped:
        example = ", ".join(list(raw)[:3])
        raise PretrainedWeightsError(
            f"{origin}: none of its tensors fit {type(model).__name__} (file keys start {example}); "
            f"expected the layout of {(src.layout or src.timm) if src is not None else 'this architecture'}"
        )
    for k, v in mapped.items():
        if k not in own:
            raise PretrainedWeightsError(f"{origin}: mapped key {k} does not exist in the model")
        if own[k].shape != v.shape:
            raise PretrainedWeightsError(
                f"{origin}: tensor for {k} has shape {tuple(v.shape)}, the model expects {tuple(own[k].shape)}"
            )
    model.load_state_dict(mapped, strict=False)
    # a file tensor is used when a mapped tensor is it or a view of it (a transposed Keras kernel)
    used = {v.untyped_storage().data_ptr() for v in mapped.values()}
    return PretrainedLoadReport(
        source=origin,
        loaded=sorted(mapped),
        missing=sorted(k for k in own if k not in mapped),
        unused=sorted(k for k, v in raw.items() if v.untyped_storage().data_ptr() not in used),
    )
