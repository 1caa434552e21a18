"""Where inference runs: the one reading of ``--device`` (``cpu``, ``cuda``, ``cuda:N``, ``auto``) for the torch
runtime, explanations, evaluation and the service, and the ONNX Runtime execution providers it means.

* ``auto`` (the default everywhere): CUDA when there is one (``torch.cuda.is_available()``; for ONNX Runtime, when
  its ``CUDAExecutionProvider`` is installed), else the CPU: on a machine without a GPU it is exactly ``cpu``.
* ``cuda`` / ``cuda:N``: a GPU or a clear :class:`~attnfer.files.UserError` (``error: ...``, exit code 2 on the
  command line) saying that there is none and what to use instead; never a silent fall-back to the CPU.
* ``cpu``: the CPU.

Nothing here imports torch or onnxruntime at import time: the ONNX path stays torch-free.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from ..files import UserError

if TYPE_CHECKING:
    import torch

__all__ = ["DEVICES", "onnx_device_id", "onnx_providers", "parse_device", "resolve_device"]

#: the values ``--device`` takes, as the errors and the help name them
DEVICES = "cpu, cuda, cuda:N or auto"
CUDA_PROVIDER, CPU_PROVIDER = "CUDAExecutionProvider", "CPUExecutionProvider"


def parse_device(spec: object) -> tuple[str, int | None]:
    """``(kind, index)`` of a device spec: ``("cpu", None)``, ``("auto", None)``, ``("cuda", None)`` or
    ``("cuda", N)``; a :class:`~attnfer.files.UserError` naming the expected values for anything else."""
    text = str(spec).strip().lower()
    if text in ("cpu", "auto", "cuda"):
        return text, None
    m = re.fullmatch(r"cuda:(\d+)", text)
    if m:
        return "cuda", int(m.group(1))
    raise UserError(f"--device must be {DEVICES}, got {str(spec)!r}")


def resolve_device(spec: str | torch.device = "auto") -> torch.device:
    """The torch device ``spec`` means: ``cpu``; ``cuda`` (the current GPU) or ``cuda:N``; ``auto``: CUDA when
    ``torch.cuda.is_available()``, else the CPU. Asking for CUDA where there is none, or for a GPU index beyond
    the ones there are, is a :class:`~attnfer.files.UserError` that says so and suggests ``--device cpu`` or
    ``--device auto``."""
    import torch

    kind, index = parse_device(spec)
    if kind == "cpu":
        return torch.device("cpu")
    available = torch.cuda.is_available()
    if kind == "auto":
        return torch.device("cuda", torch.cuda.current_device()) if available else torch.device("cpu")
    if not available:
        why = (
            f"this torch ({torch.__version__}) is built without CUDA"
            if torch.version.cuda is None
            else "no CUDA GPU or driver was found"
        )
        raise UserError(f"--device {spec}: CUDA is not available here ({why}); use --device cpu or --device auto")
    count = torch.cuda.device_count()
    if index is not None and index >= count:
        raise UserError(
            f"--device {spec}: there {'is' if count == 1 else 'are'} only {count} CUDA device"
            f"{'' if count == 1 else 's'} here (cuda:0 to cuda:{count - 1}); use --device cuda or --device auto"
        )
    return torch.device("cuda", torch.cuda.current_device() if index is None else index)


def onnx_providers(device: str, available: list[str] | None = None) -> list[str]:
    """ONNX Runtime's execution providers for ``device``, best first.

    ``cpu``: ``["CPUExecutionProvider"]``. ``cuda``, ``cuda:N`` and ``auto``: ``["CUDAExecutionProvider",
    "CPUExecutionProvider"]`` when ``CUDAExecutionProvider`` is among ``available`` (default:
    ``onnxruntime.get_available_providers()``), else the CPU alone for ``auto`` and a
    :class:`~attnfer.files.UserError` naming the package ``onnxruntime-gpu`` for ``cuda``. (The CPU provider stays
    last after CUDA: ONNX Runtime runs the few operators CUDA lacks there.)"""
    kind, _ = parse_device(device)
    if kind == "cpu":
        return [CPU_PROVIDER]
    if available is None:
        import onnxruntime as ort

        available = list(ort.get_available_providers())
    if CUDA_PROVIDER in available:
        return [CUDA_PROVIDER, CPU_PROVIDER]
    if kind == "auto":
        return [CPU_PROVIDER]
    raise UserError(
        f"--device {device}: ONNX Runtime has no CUDAExecutionProvider here (it has: "
        f"{', '.join(available) or 'none'}); install the package onnxruntime-gpu in place of onnxruntime (with a "
        "CUDA GPU and its driver), or use --device cpu or --device auto"
    )


def onnx_device_id(device: str) -> int:
    """The GPU index ONNX Runtime's CUDA provider should use for ``device`` (``cuda:N`` -> N, else 0)."""
    _, index = parse_device(device)
    return index or 0
