"""What the machine offers a local model: the torch device to run on (``auto`` picks CUDA when torch sees a
GPU) and whether that device computes bfloat16 natively (AVX-512 BF16 or AMX on a CPU)."""

from __future__ import annotations

import functools
import os
import platform
import queue
import threading
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, TypeVar

from ragflow.errors import ConfigError

__all__ = [
    "DEVICE_CHOICES",
    "Hardware",
    "PassThread",
    "check_device",
    "cpu_name",
    "detect_hardware",
    "pass_thread",
    "resolve_device",
    "use_openmp_threads",
]

_T = TypeVar("_T")

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
    return Hardware(device, cpu_name(), native, _torch_threads())


def _torch_threads() -> int:
    """torch's intra-op threads as a new thread sees them: the calling thread's own may have been lowered by
    a replica's pass run on it (``use_openmp_threads``), which is not what the machine offers."""
    import torch

    seen: list[int] = []
    thread = threading.Thread(target=lambda: seen.append(torch.get_num_threads()), name="ragflow-threads")
    thread.start()
    thread.join()
    return seen[0] if seen else torch.get_num_threads()


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


def use_openmp_threads(count: int) -> bool:
    """Make the calling thread's torch passes use ``count`` OpenMP threads, and only this thread's: OpenMP
    keeps the setting per thread (``torch.set_num_threads`` changes it for every thread that starts later).
    Whether the setting could be made (``False``: torch runs on no OpenMP runtime that ragflow can find).

    Why it matters: every thread that runs a parallel torch pass keeps a team of OpenMP threads. Once a
    process's teams hold more threads than it has cores, GNU OpenMP stops letting idle team threads spin
    between the many short parallel regions of a forward pass and puts them to sleep instead, for every
    team: each region then pays a wake-up. On the 2-core AMX Xeon a second thread that had run one query
    made every pass in the process about twice as slow (a short query 7.5 -> 15 ms in float32, 3.9 -> 10.7
    ms compiled bfloat16). A thread that runs its passes on one OpenMP thread makes no team.
    """
    setter = _omp_set_num_threads()
    if setter is None:
        return False
    setter(count)
    return True


@functools.cache
def _omp_set_num_threads() -> Callable[[int], None] | None:
    """``omp_set_num_threads`` of the OpenMP runtime torch was loaded with (its own copy in ``torch/lib``
    on Linux wheels), else of one already in the process; ``None`` without one."""
    import ctypes

    import torch

    libraries = Path(torch.__file__).parent / "lib"
    candidates = [str(path) for pattern in _OPENMP_LIBRARIES for path in sorted(libraries.glob(pattern))]
    for candidate in [*candidates, None]:
        try:
            function = ctypes.CDLL(candidate).omp_set_num_threads
        except (OSError, AttributeError):
            continue
        function.argtypes = [ctypes.c_int]
        function.restype = None
        return function
    return None


_OPENMP_LIBRARIES = ("libgomp*.so*", "libiomp5*", "libomp*")


class PassThread:
    """One long-lived thread that runs the process's torch passes on more than one OpenMP thread, whichever
    thread asks: a thread that runs a parallel pass keeps its team of OpenMP threads for as long as it
    lives, so a model loaded (and calibrated) on one thread and fed by another would otherwise leave two
    teams, and slow every pass (``use_openmp_threads``). On the 2-core AMX Xeon, an edit's pass after a
    load on another thread: ~2x slower before. Costs a hand-off per pass (~0.05 ms).

    Example:
        >>> pass_thread().run(lambda: threading.current_thread().name)
        'ragflow-torch'
    """

    def __init__(self) -> None:
        self._jobs: queue.SimpleQueue[tuple[Callable[[], Any], Future[Any]]] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._serve, name="ragflow-torch", daemon=True)
        self._thread.start()

    def run(self, job: Callable[[], _T]) -> _T:
        """``job()``, run on the pass thread (directly when called from it); its exception is raised here."""
        if threading.current_thread() is self._thread:
            return job()
        future: Future[_T] = Future()
        self._jobs.put((job, future))
        return future.result()

    def _serve(self) -> None:
        while True:
            job, future = self._jobs.get()
            try:
                future.set_result(job())
            except BaseException as exc:  # handed to the caller, who raises it
                future.set_exception(exc)


@functools.cache
def pass_thread() -> PassThread:
    """The process's pass thread, started on first use."""
    return PassThread()
