"""The model's bfloat16 pass compiled ahead of time, for the CPU it runs on.

Eager bfloat16 on an AMX Xeon spends most of a pass outside the matrix products: casts between float32
and bfloat16, GELU, residual adds and layer norms, each a separate kernel over the whole activation.
TorchInductor fuses them into generated C++ kernels and packs the weights once for oneDNN ("freezing");
AOTInductor writes the result as a package that loads in ~0.1 s. Measured on the 2-core AMX Xeon against
the same eager bfloat16 pass: 16 chunks of 171 word-pieces 150 -> 101 ms, one window-filling text
20 -> 15 ms, a short query 8.8 -> 3.1 ms, token vectors at a cosine of 0.99999 with eager's.

Building a package takes ~30 s of one core, so it is never done on the caller's path: the first start
on a machine starts a build in a child process (at a lower priority) and its passes run eagerly until the
package is there; every later start loads it. Packages are cached per model, processor (its instruction
set: code built for AMX must not run elsewhere), torch and transformers versions, in
``~/.cache/ragflow/compiled`` (``$RAGFLOW_COMPILED_CACHE`` moves it; empty turns compiling off).

Run as ``python -m ragflow.embedders.compiled --model DIR --window N --out FILE`` to build one package
(what the child process does).
"""

from __future__ import annotations

import argparse
import atexit
import contextlib
import hashlib
import logging
import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ragflow.errors import ConfigError

if TYPE_CHECKING:
    import torch

__all__ = [
    "COMPILE_CHOICES",
    "CompiledPass",
    "PackageBuild",
    "build_package",
    "check_compile",
    "compiled_cache_dir",
    "failed_build",
    "package_path",
    "start_build",
]

logger = logging.getLogger(__name__)

COMPILE_CHOICES = ("auto", "off")
"""``auto``: compile the bfloat16 pass wherever a plan runs bfloat16 on the CPU; ``off``: never."""

# Part of a package's key: raised whenever what is compiled changes in ragflow's own code.
_COMPILED_VERSION = 1

# The largest batch a package accepts; a larger pass runs eagerly.
_MAX_BATCH = 4096

# How long a build may take before it is given up (the child is killed); ~30 s is usual on 2 cores.
_BUILD_TIMEOUT_S = 900.0

_INPUTS = ("input_ids", "attention_mask", "token_type_ids")


def check_compile(value: str) -> str:
    """``value`` if it is a ``compile`` choice, else a ``ConfigError`` that lists them."""
    if value not in COMPILE_CHOICES:
        raise ConfigError(f"unknown compile {value!r}: use one of {', '.join(COMPILE_CHOICES)}")
    return value


def compiled_cache_dir() -> Path | None:
    """``$RAGFLOW_COMPILED_CACHE`` (empty: no packages, so nothing is compiled), else
    ``ragflow/compiled`` under ``$XDG_CACHE_HOME`` or ``~/.cache``."""
    override = os.environ.get("RAGFLOW_COMPILED_CACHE")
    if override is not None:
        return Path(override).expanduser() if override else None
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "ragflow" / "compiled"


def package_path(directory: Path, model_path: Path, window: int) -> Path:
    """Where the package of the model at ``model_path`` lives for this processor and these versions."""
    import torch
    import transformers

    digest = hashlib.sha256()
    for part in (
        _COMPILED_VERSION,
        model_path.resolve(),
        _model_fingerprint(model_path),
        window,
        torch.__version__,
        transformers.__version__,
        _instruction_set(),
    ):
        digest.update(str(part).encode())
        digest.update(b"\0")
    return directory / f"{model_path.name}-{digest.hexdigest()[:24]}.pt2"


def _model_fingerprint(model_path: Path) -> str:
    """The model folder's files by name, size and modification time (new weights: a new package)."""
    parts = []
    for file in sorted(model_path.rglob("*")):
        if file.is_file():
            stat = file.stat()
            parts.append(f"{file.relative_to(model_path)}:{stat.st_size}:{stat.st_mtime_ns}")
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()


def _instruction_set() -> str:
    """The processor's name and flags (``/proc/cpuinfo``), so that code built for one processor's
    instructions is never run on another; elsewhere what ``platform`` and torch know."""
    import platform

    import torch

    name = flags = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace").splitlines():
            if line.startswith("model name") and not name:
                name = line.partition(":")[2].strip()
            elif line.startswith("flags") and not flags:
                flags = line.partition(":")[2].strip()
    capability = getattr(torch.backends.cpu, "get_cpu_capability", lambda: "")()
    return f"{platform.machine()}|{name or platform.processor()}|{capability}|{flags}"


class _ModelContainer:
    """A package's model run through its C interface (``AOTInductorModelContainerRun``) by ``ctypes``,
    which releases the GIL for the call. torch's own loader holds the GIL for the whole pass (15-50 ms
    here), and while it does no other Python thread runs: on a server under load ``/healthz`` took 85 ms
    at p99 instead of 9. ``ValueError`` where the package is not one shared library with its weights
    inside (what ``build_package`` writes); then the loader runs it."""

    def __init__(self, path: Path) -> None:
        import ctypes
        import shutil
        import tempfile
        import zipfile

        import torch._C._aoti as aoti

        with zipfile.ZipFile(path) as archive:
            names = [name for name in archive.namelist() if "/data/aotinductor/" in name]
            libraries = [name for name in names if name.endswith(".so")]
            if len(libraries) != 1 or any(not name.endswith((".so", ".cpp", ".json")) for name in names):
                raise ValueError(f"{path.name} holds {len(libraries)} libraries and {len(names)} files")
            scratch = tempfile.mkdtemp(prefix="ragflow-compiled-")
            try:
                library = ctypes.CDLL(archive.extract(libraries[0], scratch))
            finally:
                shutil.rmtree(scratch, ignore_errors=True)  # mapped: the library stays loaded
        handle = ctypes.c_void_p
        library.AOTInductorModelContainerCreateWithDevice.argtypes = [
            ctypes.POINTER(handle), ctypes.c_size_t, ctypes.c_char_p, ctypes.c_char_p
        ]  # fmt: skip
        library.AOTInductorModelContainerGetNumOutputs.argtypes = [handle, ctypes.POINTER(ctypes.c_size_t)]
        library.AOTInductorModelContainerRun.argtypes = [
            handle, ctypes.POINTER(handle), ctypes.c_size_t, ctypes.POINTER(handle), ctypes.c_size_t,
            handle, handle,
        ]  # fmt: skip
        self._container = handle()
        outputs = ctypes.c_size_t()
        if library.AOTInductorModelContainerCreateWithDevice(ctypes.byref(self._container), 1, b"cpu", None):
            raise ValueError(f"{path.name}: its model could not be created")
        library.AOTInductorModelContainerGetNumOutputs(self._container, ctypes.byref(outputs))
        capsule = ctypes.PyDLL(None)  # the Python API, called with the GIL held (not ctypes.pythonapi:
        # the argument types set below would change it for everyone)
        capsule.PyCapsule_GetPointer.restype = ctypes.c_void_p
        capsule.PyCapsule_GetPointer.argtypes = [ctypes.py_object, ctypes.c_char_p]
        capsule.PyCapsule_New.restype = ctypes.py_object
        capsule.PyCapsule_New.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_void_p]
        self._library, self._capsule, self._aoti = library, capsule, aoti
        self._handle, self._outputs = handle, outputs.value

    def __call__(self, *inputs: torch.Tensor) -> list[torch.Tensor]:
        # handles to new references of the inputs, which the run takes over (and frees)
        given = [
            self._capsule.PyCapsule_GetPointer(c, None)
            for c in self._aoti.unsafe_alloc_void_ptrs_from_tensors(list(inputs))
        ]
        results = (self._handle * self._outputs)()
        failed = self._library.AOTInductorModelContainerRun(
            self._container,
            (self._handle * len(given))(*given),
            len(given),
            results,
            self._outputs,
            None,
            None,
        )
        if failed:
            raise RuntimeError("the compiled model refused the batch (its reason is on stderr)")
        taken = [self._capsule.PyCapsule_New(results[i], None, None) for i in range(self._outputs)]
        tensors: list[torch.Tensor] = self._aoti.alloc_tensors_by_stealing_from_void_ptrs(taken)
        return tensors


class CompiledPass:
    """One loaded package: ``tokens(features)`` gives the model's token vectors for a batch of
    ``model.preprocess`` features, or ``None`` where the package does not take them (then the caller
    runs the pass eagerly). Not safe from two threads at once: the embedder calls it under its lock."""

    def __init__(self, path: Path) -> None:
        import torch._inductor

        self.path = path
        self._runner: Any
        try:
            self._runner = _ModelContainer(path)
            self.releases_gil = True
        except (ImportError, OSError, AttributeError, ValueError) as exc:
            logger.info("running %s through torch's loader, which holds the GIL: %s", path, exc)
            self._runner = torch._inductor.aoti_load_package(str(path))
            self.releases_gil = False
        self.misses = 0
        """Passes the package could not run (run eagerly instead)."""

    def tokens(self, features: dict[str, Any]) -> torch.Tensor | None:
        import torch

        inputs = [value for name in _INPUTS if isinstance(value := features.get(name), torch.Tensor)]
        if len(inputs) < len(_INPUTS) or inputs[0].shape[0] > _MAX_BATCH:
            self.misses += 1
            return None
        try:
            with torch.inference_mode():
                result = self._runner(*inputs)
        except Exception as exc:  # a shape or input the package was not built for: run it eagerly
            self.misses += 1
            if self.misses == 1:
                logger.warning("compiled pass %s refused a batch, running it uncompiled: %s", self.path, exc)
            return None
        return result[0] if isinstance(result, list | tuple) else result


class PackageBuild:
    """A package being built by a child process: ``done`` once it has ended, ``ok`` if the package is
    there."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.error: str | None = None
        self.seconds: float | None = None
        self._done = threading.Event()
        self._process: subprocess.Popen[bytes] | None = None
        self._stopped = False
        self._lock = threading.Lock()

    @property
    def done(self) -> bool:
        return self._done.is_set()

    @property
    def ok(self) -> bool:
        return self.done and self.error is None and self.path.is_file()

    def wait(self, timeout: float | None = None) -> bool:
        """Wait up to ``timeout`` seconds for the build to end; whether the package is there."""
        self._done.wait(timeout)
        return self.ok

    def start(self, model_path: Path, window: int) -> PackageBuild:
        threading.Thread(
            target=self._run, args=(model_path, window), name="ragflow-compile", daemon=True
        ).start()
        return self

    def stop(self) -> None:
        """Kill the child, if it still runs (at exit: a half-built package is never written)."""
        with self._lock:
            process = self._process
            self._stopped = True
        if process is not None and process.poll() is None:
            process.kill()
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(5)

    def _run(self, model_path: Path, window: int) -> None:
        started = time.perf_counter()
        log = self.path.with_suffix(".log")
        command = [
            sys.executable,
            "-m",
            "ragflow.embedders.compiled",
            "--model",
            str(model_path),
            "--window",
            str(window),
            "--out",
            str(self.path),
        ]
        env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with log.open("wb") as output:
                process = subprocess.Popen(
                    command,
                    stdin=subprocess.DEVNULL,
                    stdout=output,
                    stderr=subprocess.STDOUT,
                    env=env,
                    preexec_fn=_lower_priority if os.name == "posix" else None,
                )
                with self._lock:
                    self._process = process
                try:
                    code = process.wait(_BUILD_TIMEOUT_S)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()
                    code = None
            if code != 0 or not self.path.is_file():
                tail = log.read_text(encoding="utf-8", errors="replace").strip().splitlines()[-3:]
                reason = "timed out" if code is None else f"exit status {code}"
                self.error = f"{reason}: {' / '.join(tail) or 'no output'} (full log: {log})"
                with self._lock:
                    stopped = self._stopped
                if not stopped:  # killed at exit is not a failure: the next start builds it again
                    with contextlib.suppress(OSError):
                        self.path.with_suffix(".failed").write_text(self.error + "\n", encoding="utf-8")
        except OSError as exc:
            self.error = str(exc)
        finally:
            self.seconds = time.perf_counter() - started
            if self.error is None:
                logger.info("compiled the bfloat16 pass in %.0f s: %s", self.seconds, self.path)
            else:
                logger.warning("could not compile the bfloat16 pass (it stays uncompiled): %s", self.error)
            self._done.set()


def failed_build(path: Path) -> str | None:
    """Why the package at ``path`` could not be built before, if it could not (a missing C++ compiler,
    say): such a build is not tried again at every start; deleting the ``.failed`` file retries it."""
    try:
        return path.with_suffix(".failed").read_text(encoding="utf-8").strip() or "unknown"
    except OSError:
        return None


def _lower_priority() -> None:
    os.nice(10)


_BUILDS: dict[Path, PackageBuild] = {}
_BUILDS_LOCK = threading.Lock()


def start_build(path: Path, model_path: Path, window: int) -> PackageBuild:
    """The build of ``path`` in this process, started on the first call (one child per package)."""
    with _BUILDS_LOCK:
        build = _BUILDS.get(path)
        if build is None or (build.done and not build.path.is_file()):  # none yet, or its package removed
            build = _BUILDS[path] = PackageBuild(path).start(model_path, window)
        return build


@atexit.register
def _stop_builds() -> None:
    with _BUILDS_LOCK:
        builds = list(_BUILDS.values())
    for build in builds:
        build.stop()


def build_package(model_path: Path, window: int, out: Path) -> Path:
    """Export the model's bfloat16 twin (``bf16_linear_twin``, under autocast) with dynamic batch size
    and length and compile it with AOTInductor into ``out``, written whole or not at all. Another
    process building the same package waits for it instead of building it twice."""
    import fcntl

    import torch
    import torch._inductor
    from sentence_transformers import SentenceTransformer

    from ragflow.embedders.local import bf16_linear_twin

    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out.with_suffix(".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if out.is_file():
            return out
        for stale in out.parent.glob(f"{out.stem}.*.partial.pt2"):  # a build killed part way
            stale.unlink(missing_ok=True)
        model = SentenceTransformer(str(model_path), device="cpu", local_files_only=True).eval()
        encoder = _token_encoder(bf16_linear_twin(model)[0].auto_model).eval()
        features = model.preprocess(["a short text to trace the model with"] * 2)
        example = tuple(features[name] for name in _INPUTS)
        batch = torch.export.Dim("batch", min=1, max=_MAX_BATCH)
        length = torch.export.Dim("length", min=2, max=window)
        dynamic = {name: {0: batch, 1: length} for name in _INPUTS}
        with torch.inference_mode():
            exported = torch.export.export(encoder, example, dynamic_shapes=dynamic, strict=False)
        partial = out.with_name(f"{out.stem}.{os.getpid()}.partial.pt2")
        try:
            torch._inductor.aoti_compile_and_package(
                exported, package_path=str(partial), inductor_configs={"freezing": True}
            )
            os.replace(partial, out)
        finally:
            partial.unlink(missing_ok=True)
    return out


def _token_encoder(auto_model: Any) -> Any:
    """The transformer of a sentence-transformers model under bfloat16 autocast, as a module that takes
    the three token tensors and gives the token vectors (what ``torch.export`` traces)."""
    import torch

    class TokenEncoder(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = auto_model

        def forward(
            self, input_ids: torch.Tensor, attention_mask: torch.Tensor, token_type_ids: torch.Tensor
        ) -> torch.Tensor:
            with torch.autocast("cpu", dtype=torch.bfloat16):
                output = self.model(
                    input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids
                )
            return output.last_hidden_state

    return TokenEncoder()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Build the compiled bfloat16 pass of a local model.")
    parser.add_argument("--model", type=Path, required=True, help="a sentence-transformers model folder")
    parser.add_argument("--window", type=int, required=True, help="the model's window in word-pieces")
    parser.add_argument("--out", type=Path, required=True, help="the package file to write")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    started = time.perf_counter()
    build_package(args.model, args.window, args.out)
    logger.info("built %s in %.1f s", args.out, time.perf_counter() - started)
    return 0


if __name__ == "__main__":
    sys.exit(main())
