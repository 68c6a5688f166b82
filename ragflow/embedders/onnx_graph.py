"""The local model as an ONNX graph run by onnxruntime: the same weights and float32 arithmetic as torch,
with less overhead per forward pass (measured on 2 AVX2 cores: a short query 4 ms against torch's 12 ms,
a one-chunk edit about 1.7x faster), so the calibration can choose it per batch size.

The graph is exported once from the model folder, in a child process (the exporter changes torch's global
state, and the serving process should not hold a second copy of the weights), and cached under
``~/.cache/ragflow/onnx`` keyed by the model's files and the torch and onnx versions. Its vectors are
held to the same cosine bound against torch's float32 ones as bfloat16's are, by the calibration.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import subprocess
import sys
import tempfile
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

__all__ = ["EXPORT_VERSION", "OnnxModel", "exported_graph", "graph_cache_dir", "load_graph", "onnx_available"]

logger = logging.getLogger(__name__)

EXPORT_VERSION = 1
"""Part of the cache key: bump it when the export below changes what the graph computes."""

_EXPORT_TIMEOUT_S = 300
_OUTPUT = "sentence_embedding"
_failed: set[Path] = set()
_export_lock = threading.Lock()


def onnx_available() -> bool:
    """Whether onnxruntime (to run a graph) and onnx (to export one) can be imported."""
    try:
        import onnx  # noqa: F401
        import onnxruntime  # noqa: F401
    except ImportError:
        return False
    return True


def graph_cache_dir() -> Path | None:
    """``$RAGFLOW_ONNX_CACHE`` (empty: no cache, each process exports its own graph), else
    ``ragflow/onnx`` under ``$XDG_CACHE_HOME`` or ``~/.cache``."""
    override = os.environ.get("RAGFLOW_ONNX_CACHE")
    if override is not None:
        return Path(override).expanduser() if override else None
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "ragflow" / "onnx"


def exported_graph(model_path: Path) -> Path | None:
    """The ONNX graph of the sentence-transformers model in ``model_path``: from the cache, or exported
    now (a few seconds, once per model and machine). ``None``, with a warning, where it cannot be had
    (onnx missing, an architecture the exporter does not take): the model then runs in torch only."""
    if not onnx_available():
        return None
    directory = graph_cache_dir()
    if directory is None:
        directory = Path(tempfile.mkdtemp(prefix="ragflow-onnx-"))
    target = directory / f"{_graph_key(model_path)}.onnx"
    with _export_lock:
        if target in _failed:
            return None
        if target.is_file():
            return target
        try:
            _export_in_child(model_path, target)
        except (OSError, subprocess.SubprocessError) as exc:
            _failed.add(target)
            logger.warning(
                "cannot export %s to ONNX (%s); it runs in torch only, which is slower on most CPUs",
                model_path,
                exc,
            )
            return None
    return target


class OnnxModel:
    """An onnxruntime session over an exported graph. ``encode`` takes the features the model's own
    tokenizer made (``SentenceTransformer.preprocess``) and returns its sentence embeddings, float32."""

    def __init__(self, path: Path, threads: int) -> None:
        import onnxruntime

        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = max(1, threads)
        options.inter_op_num_threads = 1
        options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL
        # onnxruntime's pool threads spin between passes by default: with an indexing session and a
        # query replica's session in one process (and other processes on 2 cores) they take turns
        # burning the cores each other needs.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self.path = path
        self._session = onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        self._inputs = [item.name for item in self._session.get_inputs()]

    def encode(self, features: Mapping[str, Any]) -> npt.NDArray[np.float32]:
        feed = {name: np.asarray(features[name], dtype=np.int64) for name in self._inputs}
        (vectors,) = self._session.run([_OUTPUT], feed)
        return np.asarray(vectors, dtype=np.float32)


def load_graph(model_path: Path, threads: int) -> OnnxModel | None:
    """An ``OnnxModel`` of the model in ``model_path``, or ``None`` where none can be had. A cached graph
    that onnxruntime cannot open (a damaged file) is exported again, once."""
    for attempt in range(2):
        path = exported_graph(model_path)
        if path is None:
            return None
        try:
            return OnnxModel(path, threads)
        except Exception as exc:  # onnxruntime raises its own untyped errors for a bad file
            logger.warning("the ONNX graph %s cannot be opened (%s); exporting it again", path, exc)
            path.unlink(missing_ok=True)
            if attempt:
                with _export_lock:
                    _failed.add(path)
    return None


def _graph_key(model_path: Path) -> str:
    import onnx
    import torch

    files = sorted(
        (str(p.relative_to(model_path)), p.stat().st_size, p.stat().st_mtime_ns)
        for p in model_path.rglob("*")
        if p.is_file()
    )
    about = [str(model_path), files, torch.__version__, onnx.__version__, EXPORT_VERSION]
    return hashlib.sha256(json.dumps(about).encode()).hexdigest()[:32]


def _export_in_child(model_path: Path, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    temporary = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    logger.info("exporting %s to an ONNX graph (once per model and machine)", model_path)
    result = subprocess.run(
        [sys.executable, "-m", "ragflow.embedders.onnx_graph", str(model_path), str(temporary)],
        capture_output=True,
        text=True,
        timeout=_EXPORT_TIMEOUT_S,
        env={**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"},
    )
    if result.returncode != 0 or not temporary.is_file():
        temporary.unlink(missing_ok=True)
        last = (result.stderr.strip().splitlines() or ["no output"])[-1]
        raise subprocess.SubprocessError(f"the exporter exited with {result.returncode}: {last}")
    os.replace(temporary, target)


def _export(model_path: Path, target: Path) -> None:
    """Export the whole sentence-transformers pipeline (transformer, pooling, normalisation) with dynamic
    batch and sequence axes. Eager attention: the fused kernel's mask handling does not trace faithfully."""
    import torch
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(
        str(model_path),
        device="cpu",
        local_files_only=True,
        model_kwargs={"attn_implementation": "eager"},
    ).eval()
    sample = model.preprocess(["a short text", "a slightly longer text than the first one"])
    names = [name for name, value in sample.items() if isinstance(value, torch.Tensor)]
    constants = {name: value for name, value in sample.items() if not isinstance(value, torch.Tensor)}

    class Pipeline(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = model

        def forward(self, *tensors: torch.Tensor) -> torch.Tensor:
            features = {**constants, **dict(zip(names, tensors, strict=True))}
            return self.model(features)[_OUTPUT]

    axes = {name: {0: "batch", 1: "sequence"} for name in names}
    with torch.inference_mode(False), torch.no_grad():
        torch.onnx.export(
            Pipeline(),
            tuple(sample[name] for name in names),
            str(target),
            input_names=names,
            output_names=[_OUTPUT],
            dynamic_axes={**axes, _OUTPUT: {0: "batch"}},
            opset_version=17,
            dynamo=False,
        )


if __name__ == "__main__":
    import warnings

    warnings.simplefilter("ignore")
    _export(Path(sys.argv[1]), Path(sys.argv[2]))
