"""How a local model runs and how fast it has gone: the device and precision plan decided once for an
embedder and its replicas (from a calibration, cached), and the counters behind its statistics."""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from ragflow.embedders.batching import PassCost, fit_pass_costs
from ragflow.embedders.hardware import Hardware, detect_hardware
from ragflow.embedders.precision import (
    Calibration,
    Precision,
    PrecisionPlan,
    calibrate,
    calibration_cache_path,
    calibration_key,
    calibration_texts,
    load_calibration,
    machine_load,
    plan_precision,
    store_calibration,
    worth_recalibrating,
)

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer

    from ragflow.embedders.local import LocalEmbedder

__all__ = ["Counters", "EmbedderStats", "Setup"]

logger = logging.getLogger(__name__)

# Part of the calibration cache's key: raised whenever a path's speed changes in ragflow's own code, so
# that timings measured before are measured again. 2: bfloat16 on weights cast once (bf16_linear_twin);
# 3: bfloat16 passes padded to a multiple of 16 word-pieces.
_PATHS_VERSION = 3


@dataclass(frozen=True, slots=True)
class EmbedderStats:
    """How a local embedder runs and how fast it has gone (``None`` until the model is loaded)."""

    device: str | None
    precision: str | None
    """The precision of a full batch."""
    single_precision: str | None
    """The precision of one text alone (queries, one-chunk edits)."""
    batch_size: int | None
    texts_embedded: int
    embed_seconds: float
    """Wall time spent inside ``embed`` (tokenising included)."""
    compiled: str | None = None
    """The bfloat16 pass: ``compiled``, ``compiling`` (in the background; uncompiled until then) or
    ``uncompiled``; ``None`` where no pass runs in bfloat16."""

    @property
    def texts_per_second(self) -> float:
        return self.texts_embedded / self.embed_seconds if self.embed_seconds > 0 else 0.0

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "texts_per_second": round(self.texts_per_second, 2)}


class Counters:
    """Texts embedded and seconds spent, added by the embedding thread, read by statistics."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._texts = 0
        self._seconds = 0.0

    def add(self, texts: int, seconds: float) -> None:
        with self._lock:
            self._texts += texts
            self._seconds += seconds

    def read(self) -> tuple[int, float]:
        with self._lock:
            return self._texts, self._seconds


class Setup:
    """The device and the precision plan, decided once for an embedder and its replicas."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.hardware: Hardware | None = None
        self.calibration: Calibration | None = None
        self.plan: PrecisionPlan | None = None
        self.pass_costs: dict[Precision, PassCost] = {}
        """What a forward pass costs per precision (from the calibration; empty without one)."""

    def detect(self, requested: str) -> Hardware:
        with self._lock:
            if self.hardware is None:
                self.hardware = detect_hardware(requested)
            return self.hardware

    def decide(self, embedder: LocalEmbedder, model: SentenceTransformer) -> None:
        with self._lock:
            if self.plan is not None:
                return
            hardware = self.hardware
            assert hardware is not None
            calibration = None
            alternatives = hardware.native_bf16 or embedder._onnx is not None
            if (embedder.precision == "auto" and alternatives) or embedder._batch_size is None:
                calibration = _calibration(embedder, model, hardware)
            self.calibration = calibration
            self.plan = plan_precision(
                calibration,
                native_bf16=hardware.native_bf16,
                forced=embedder.precision,
                batch_size=embedder._batch_size,
            )
            if calibration is not None:
                self.pass_costs = _pass_costs(calibration, model)
        logger.info(
            "%s on %s: batches of %d in %s, single texts in %s (%s)",
            embedder.model_id,
            hardware.device,
            self.plan.batch_size,
            self.plan.bulk,
            self.plan.single,
            self.plan.reason,
        )


def _pass_costs(calibration: Calibration, model: SentenceTransformer) -> dict[Precision, PassCost]:
    """The calibration's timings as a cost per pass and per word-piece, for each precision."""
    chunks, query = calibration_texts()
    counted = model.tokenizer([*chunks, query], truncation=True, verbose=False)["input_ids"]
    chunk_word_pieces = sum(len(ids) for ids in counted[:-1]) / len(chunks)
    costs = fit_pass_costs(calibration, chunk_word_pieces, len(counted[-1]))
    logger.debug(
        "cost per pass: %s",
        ", ".join(
            f"{p}: {c.fixed * 1e3:.1f} ms + {c.per_word_piece * 1e6:.1f} us/word-piece"
            for p, c in costs.items()
        ),
    )
    return costs


def _calibration(embedder: LocalEmbedder, model: SentenceTransformer, hardware: Hardware) -> Calibration:
    """The cached calibration for this model on this hardware, or a new one (then cached)."""
    import torch

    key = calibration_key(
        embedder.model_id,
        embedder._path,
        hardware.device,
        hardware.name,
        hardware.threads,
        torch.__version__,
        _PATHS_VERSION,
        "compiled" if embedder._compiled is not None else "eager",
    )
    path = calibration_cache_path()
    cached = load_calibration(path, key)
    wanted = [Precision.FLOAT32]
    if hardware.native_bf16:
        wanted.append(Precision.BFLOAT16)
    if embedder._onnx is not None:
        wanted.append(Precision.FLOAT32_ONNX)
    busy = machine_load()
    complete = cached is not None and all(cached.cosine(precision) is not None for precision in wanted)
    if cached is not None and complete and not worth_recalibrating(cached, busy):
        return cached
    started = time.perf_counter()
    calibration = calibrate(
        # on all cores whichever instance calibrates (a replica's passes run on one thread)
        lambda texts, precision: embedder._forward(model, texts, precision, threads=hardware.threads),
        wanted,
        busy=busy,
    )
    logger.info(
        "calibrated %s on %s in %.1f s (load %.2f per core%s)",
        embedder.model_id,
        hardware.name,
        time.perf_counter() - started,
        busy or 0.0,
        ", measured again when quieter" if calibration.disturbed else "",
    )
    if cached is None or not complete or not calibration.disturbed or (busy or 0) < (cached.busy or 0):
        store_calibration(
            path, key, calibration, model=embedder.model_id, device=hardware.device, processor=hardware.name
        )
    return calibration
