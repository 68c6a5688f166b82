"""What the machine offers a local model: the torch device to run on (``auto`` picks CUDA when torch sees a
GPU) and whether that device computes bfloat16 natively (AVX-512 BF16 or AMX on a CPU)."""

from __future__ import annotations

import os
import platform
from dataclasses import dataclass
from typing import Literal

from ragflow.errors import ConfigError

__all__ = ["DEVICE_CHOICES", "Hardware", "check_device", "cpu_name", "detect_hardware", "resolve_device"]

DEVICE_CHOICES = ("auto", "cpu", "cuda")
"""What ``device`` may say; ``cuda:N`` names one GPU among several."""


@dataclass(frozen=True, slots=True)
class Hardware:
    """The device a model runs on and what it does well."""

    device: str
    """The torch device: ``cpu``, ``cuda`` or ``cuda:N``."""
    name: str
    """The processor's or GPU's model name, part of the calibration cache key."""
    native_bf16: bool
    """Whether bfloat16 runs in hardware (AVX-512 BF16 or AMX; a GPU that supports it)."""
    threads: int
    """torch's intra-op threads (CPU), a calibration measured with other threads does not apply."""

    @property
    def kind(self) -> Literal["cpu", "cuda"]:
        return "cuda" if self.device.startswith("cuda") else "cpu"


def check_device(device: str) -> str:
    """``device`` if it is a choice ragflow knows (``auto``, ``cpu``, ``cuda``, ``cuda:N``), else a
    ``ConfigError`` that lists them."""
    if device in DEVICE_CHOICES or (device.startswith("cuda:") and device[5:].isdigit()):
        return device
    raise ConfigError(f"unknown embedder device {device!r}; allowed: {', '.join(DEVICE_CHOICES)} or cuda:N")


def resolve_device(requested: str, cuda_available: bool) -> str:
    """The device to load on: ``auto`` means CUDA when there is a GPU, else the CPU; asking for CUDA on a
    machine without one is an error that says so, never a silent fall back.

    Example:
        >>> resolve_device("auto", cuda_available=False)
        'cpu'
    """
    check_device(requested)
    if requested == "auto":
        return "cuda" if cuda_available else "cpu"
    if requested.startswith("cuda") and not cuda_available:
        raise ConfigError(
            f"embedder device {requested!r} asked for, but torch sees no CUDA GPU on this machine "
            "(a CPU-only torch build, or no driver); use device: auto or cpu"
        )
    return requested


def detect_hardware(requested: str) -> Hardware:
    """Resolve ``requested`` against this machine (imports torch)."""
    import torch

    device = resolve_device(requested, torch.cuda.is_available())
    if device.startswith("cuda"):
        index = torch.device(device).index or 0
        return Hardware(device, torch.cuda.get_device_name(index), torch.cuda.is_bf16_supported(), 1)
    native = _cpu_has_native_bf16(torch)
    return Hardware(device, cpu_name(), native, torch.get_num_threads())


def _cpu_has_native_bf16(torch: object) -> bool:
    cpu = getattr(torch, "cpu", None)
    checks = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    return any(bool(getattr(cpu, name, lambda: False)()) for name in checks)


def cpu_name() -> str:
    """The CPU's model name (``/proc/cpuinfo`` on Linux), else what ``platform`` knows."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    return line.partition(":")[2].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or f"unknown cpu ({os.cpu_count()} cores)"
