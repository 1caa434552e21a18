"""What this machine can compute fast, and the precision that follows from it (one rule for every consumer).

:func:`cpu_capabilities` reads the CPU's model name and the instruction-set flags that decide the speed of reduced
precision (AVX2, AVX-512, AVX-512 BF16, AMX, VNNI) and asks oneDNN whether it has native BF16 kernels.
:func:`resolve_precision` turns a recipe's ``precision`` (``auto`` by default) into a Lightning precision string:

* CUDA: ``bf16-mixed`` where the GPU supports BF16, else ``16-mixed``;
* CPU: ``bf16-mixed`` only where the CPU has native BF16 (AVX-512 BF16 or AMX and oneDNN's BF16 path); elsewhere
  ``32-true``. Without native BF16, torch emulates it: measured on a 2-core Zen3 (AVX2), PAtt-Lite trained at
  2.1 images/s in bf16 vs 24.3 in fp32.

An explicit ``bf16-mixed`` on a CPU without native BF16 still runs, with one warning that names the cost. Tests and
users override the detected capabilities with :func:`override_capabilities` (a context manager) or the environment
variable ``ATTNFER_CPU_CAPS`` (a comma list such as ``avx2`` or ``avx2,avx512f,avx512_bf16``; ``ATTNFER_CPU_CAPS=avx2``
also tells a machine with AVX-512 to plan as an AVX2 one, together with ``ATEN_CPU_CAPABILITY=avx2`` and
``ONEDNN_MAX_CPU_ISA=AVX2`` for the kernels themselves).

The same machine facts choose the data loader (:func:`loader_settings`: workers, pinned memory, persistent workers,
prefetch) and the memory format (:func:`use_channels_last`) when a recipe leaves them at ``auto``.
"""

from __future__ import annotations

import os
import platform
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from functools import lru_cache
from typing import Any

__all__ = [
    "CPUCapabilities",
    "cpu_capabilities",
    "describe_machine",
    "loader_settings",
    "on_cuda",
    "override_capabilities",
    "resolve_precision",
    "usable_cpus",
    "use_channels_last",
]

#: the flags that matter for reduced precision, as /proc/cpuinfo spells them
FLAGS = ("avx2", "avx512f", "avx512_bf16", "amx_bf16", "amx_int8", "avx512_vnni", "avx_vnni")
_override: CPUCapabilities | None = None
_warned: set[str] = set()


@dataclass(frozen=True)
class CPUCapabilities:
    """The CPU's model name, its reduced-precision flags, and what follows from them.

    Attributes:
        model: the CPU's model name (``/proc/cpuinfo``, else ``platform.processor()``).
        flags: the subset of :data:`FLAGS` the CPU has.
        native_bf16: BF16 runs in hardware (AVX-512 BF16 or AMX) and oneDNN uses it.
        vnni: INT8 dot products in hardware (AVX-512 VNNI or AVX-VNNI): fast INT8 inference.
        source: ``detected`` or where an override came from.
    """

    model: str
    flags: tuple[str, ...]
    native_bf16: bool
    vnni: bool
    source: str = "detected"

    @property
    def isa(self) -> str:
        """The widest vector ISA: ``AMX``, ``AVX-512``, ``AVX2`` or ``baseline``."""
        if "amx_bf16" in self.flags:
            return "AMX"
        if "avx512f" in self.flags:
            return "AVX-512"
        return "AVX2" if "avx2" in self.flags else "baseline"

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["flags"] = list(self.flags)
        d["isa"] = self.isa
        return d


def _from_flags(model: str, flags: set[str], onednn_bf16: bool, source: str) -> CPUCapabilities:
    have = tuple(f for f in FLAGS if f in flags)
    hw_bf16 = "avx512_bf16" in flags or "amx_bf16" in flags
    return CPUCapabilities(
        model=model,
        flags=have,
        native_bf16=hw_bf16 and onednn_bf16,
        vnni="avx512_vnni" in flags or "avx_vnni" in flags,
        source=source,
    )


@lru_cache(maxsize=1)
def _detected() -> CPUCapabilities:
    model, flags = platform.processor() or platform.machine(), set()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                key, _, value = line.partition(":")
                key = key.strip()
                if key == "model name" and model in ("", platform.processor(), platform.machine()):
                    model = value.strip()
                elif key == "flags" and not flags:
                    flags = set(value.split())
    except OSError:
        pass
    try:
        import torch

        onednn_bf16 = bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except Exception:  # an old or CPU-less build: no oneDNN BF16 path
        onednn_bf16 = False
    return _from_flags(model or "unknown CPU", flags, onednn_bf16, "detected")


def cpu_capabilities() -> CPUCapabilities:
    """The capabilities in force: an :func:`override_capabilities` block, else ``ATTNFER_CPU_CAPS``, else detected."""
    if _override is not None:
        return _override
    env = os.environ.get("ATTNFER_CPU_CAPS")
    if env is not None:
        flags = {f.strip().lower() for f in env.split(",") if f.strip()}
        return _from_flags(_detected().model, flags, True, f"ATTNFER_CPU_CAPS={env}")
    return _detected()


@contextmanager
def override_capabilities(flags: list[str] | tuple[str, ...], model: str = "test CPU") -> Iterator[CPUCapabilities]:
    """Within the block, :func:`cpu_capabilities` reports a CPU with ``flags`` (for tests and what-if planning)."""
    global _override
    previous = _override
    _override = _from_flags(model, set(flags), True, "override")
    try:
        yield _override
    finally:
        _override = previous


def _cuda_bf16() -> bool:
    import torch

    return bool(torch.cuda.is_available() and torch.cuda.is_bf16_supported())


def on_cuda(accelerator: str = "auto") -> bool:
    """Whether a trainer with ``accelerator`` (``auto``, ``cpu``, ``gpu``/``cuda``) trains on CUDA here."""
    import torch

    return accelerator in ("gpu", "cuda") or (accelerator == "auto" and torch.cuda.is_available())


def usable_cpus() -> int:
    """The CPUs this process may run on (its affinity mask, e.g. a container's or a Slurm job's share)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def loader_settings(
    cuda: bool, processes: int = 1, cpus: int | None = None, workers: int | None = None
) -> dict[str, Any]:
    """DataLoader settings for this machine: ``num_workers``, ``pin_memory``, ``persistent_workers``,
    ``prefetch_factor`` (for one of ``processes`` training processes on this node, sharing ``cpus`` CPUs);
    ``workers`` (a recipe's ``data.num_workers``) fixes the number of workers, the rest follows from it.

    * CUDA: the CPUs left after one per process, shared between the processes, at most 12 workers each (decoding
      and copying feed the GPU), pinned memory (asynchronous copies), persistent workers and 2 batches in flight per
      worker (at batch 256 and 224 px a float batch is 154 MB of shared memory: 12 x 2 of them per process is the
      most a node should hold; uint8 batches for augmentation on the device are a quarter of that).
    * CPU only: the model's threads are the bottleneck and workers take cores from them; with 2 CPUs or fewer the
      loading runs in the training process (measured: 2 workers cost a 2-core machine more than they bring), else
      a quarter of the CPUs, at most 4.
    """
    cpus = cpus or usable_cpus()
    processes = max(1, processes)
    if workers is None and cuda:
        workers = max(1, min(12, (cpus - processes) // processes))
    elif workers is None:
        workers = 0 if cpus <= 2 else max(1, min(4, cpus // (4 * processes)))
    settings: dict[str, Any] = {"num_workers": workers, "pin_memory": cuda, "persistent_workers": workers > 0}
    if workers:
        settings["prefetch_factor"] = 2
    return settings


def use_channels_last(setting: bool | str, accelerator: str = "auto") -> bool:
    """The memory format of a recipe's ``channels_last`` (``auto``: on CUDA, where convolutions in channels-last
    layout run on tensor cores without transposes; on CPUs oneDNN reorders either way)."""
    if setting == "auto":
        return on_cuda(accelerator)
    return bool(setting)


def resolve_precision(precision: str | None, accelerator: str = "auto") -> str:
    """A Lightning precision string for ``precision`` on this machine (see the module docstring).

    ``accelerator`` is the trainer's (``auto``, ``cpu``, ``gpu``/``cuda``): ``auto`` means CUDA when present.
    """
    p = str(precision or "auto")
    cuda = on_cuda(accelerator)
    if p == "auto":
        if cuda:
            return "bf16-mixed" if _cuda_bf16() else "16-mixed"
        return "bf16-mixed" if cpu_capabilities().native_bf16 else "32-true"
    if p.startswith("bf16") and not cuda and not cpu_capabilities().native_bf16 and p not in _warned:
        _warned.add(p)
        caps = cpu_capabilities()
        warnings.warn(
            f"precision {p} on a CPU without native BF16 ({caps.model}: {caps.isa}, no AVX-512 BF16/AMX): torch "
            "emulates it, about 10x slower than fp32 (measured 2.1 vs 24.3 images/s training PAtt-Lite on an AVX2 "
            "CPU); use precision: auto (or 32-true)",
            stacklevel=2,
        )
    return p


def describe_machine() -> dict[str, Any]:
    """CPU model, flags, ISA, native BF16 / VNNI, torch's CPU capability and threads, the GPU if any: for every
    benchmark JSON, README figure and run's environment.json."""
    import torch

    caps = cpu_capabilities()
    info: dict[str, Any] = {
        "cpu": caps.model,
        "cpu_flags": list(caps.flags),
        "isa": caps.isa,
        "native_bf16": caps.native_bf16,
        "vnni": caps.vnni,
        "capabilities_source": caps.source,
        "torch_cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "threads": torch.get_num_threads(),
        "cores": os.cpu_count(),
    }
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
        info["gpu_bf16"] = _cuda_bf16()
    return info
