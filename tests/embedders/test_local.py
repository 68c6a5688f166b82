"""Tests for ragflow.embedders.local with the real all-MiniLM-L6-v2 model (the ``model`` marker), and
for what must hold without loading it."""

from __future__ import annotations

import doctest
import importlib
import inspect
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import ragflow.embedders
import ragflow.embedders.hardware
import ragflow.embedders.local
import ragflow.embedders.local_plan
from ragflow.embedders import make_embedder
from ragflow.embedders.local import DEFAULT_MODEL_ID, LocalEmbedder
from ragflow.embedders.precision import COSINE_BOUND, Precision, plan_precision
from ragflow.errors import ConfigError
from ragflow.splitter import TokenSplitter
from ragflow.tokenizer import get_encoding

# Real English technical prose that nobody here wrote: docstrings of the standard library.
PROSE_MODULES = ("argparse", "logging", "subprocess", "json", "shutil", "difflib", "socket", "http.server")


def stdlib_prose() -> str:
    docs = []
    for name in PROSE_MODULES:
        module = importlib.import_module(name)
        for item in [module, *vars(module).values()]:
            own = (inspect.isclass(item) or inspect.isfunction(item)) and item.__module__ == name
            if item is module or own:
                doc = inspect.getdoc(item)
                if doc:
                    docs.append(doc)
    return "\n\n".join(docs)


@pytest.fixture(scope="module")
def embedder() -> Iterator[LocalEmbedder]:
    loaded = LocalEmbedder()
    loaded.load()
    yield loaded


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    return float(a @ b)


# -- without the model ----------------------------------------------------------------------------


def test_bulk_batches_end_before_padding_outgrows_a_quarter_of_their_tokens() -> None:
    end = ragflow.embedders.batching.similar_length_end
    lengths = np.array([10, 11, 12, 40, 41, 42, 43, 150])
    assert end(lengths, 0, 8) == 3  # 40 would pad 10, 11, 12 to four times their length
    assert end(lengths, 3, 8) == 7 and end(lengths, 3, 2) == 5  # similar lengths fill up to the size
    assert end(lengths, 7, 8) == 8  # the last text alone
    uniform = np.full(20, 100)
    assert end(uniform, 0, 8) == 8 and end(uniform, 16, 8) == 20


def test_identity_and_limits_are_known_without_loading_the_model() -> None:
    embedder = LocalEmbedder()
    assert (embedder.model_id, embedder.dim, embedder.max_input_tokens, embedder.max_tokens) == (
        DEFAULT_MODEL_ID,
        384,
        256,
        192,
    )
    assert embedder.embed([]).shape == (0, 384)
    assert not embedder.is_loaded


def test_constructing_an_embedder_does_not_import_sentence_transformers() -> None:
    script = (
        "import sys; from ragflow.embedders import make_embedder;"
        "e = make_embedder('local'); e.dim, e.max_tokens, e.embed([]);"
        "print(sorted({'torch', 'sentence_transformers', 'transformers'} & set(sys.modules)))"
    )
    result = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        check=True,
        cwd=Path(__file__).parents[2],
    )
    assert result.stdout.strip() == "[]"


def test_bad_settings_are_config_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="is not a sentence-transformers model folder"):
        LocalEmbedder(tmp_path)
    with pytest.raises(ConfigError, match="batch_size must be at least 1, got 0"):
        LocalEmbedder(batch_size=0)
    with pytest.raises(ConfigError, match="unknown embedder precision 'half'"):
        LocalEmbedder(precision="half")
    with pytest.raises(ConfigError, match="unknown embedder device 'tpu'"):
        make_embedder("local", device="tpu")


def test_nothing_is_loaded_or_measured_before_first_use() -> None:
    stats = LocalEmbedder().stats()
    assert (stats.device, stats.precision, stats.batch_size, stats.texts_embedded) == (None, None, None, 0)


def test_cuda_on_a_machine_without_a_gpu_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ConfigError, match="torch sees no CUDA GPU"):
        LocalEmbedder(device="cuda").embed(["text"])
    monkeypatch.setenv("RAGFLOW_EMBED_DEVICE", "cuda")
    with pytest.raises(ConfigError, match="torch sees no CUDA GPU"):
        LocalEmbedder(device="cpu").load()
    monkeypatch.setenv("RAGFLOW_EMBED_DEVICE", "auto")
    assert ragflow.embedders.hardware.detect_hardware(LocalEmbedder().device).device == "cpu"


# -- with the model -------------------------------------------------------------------------------


@pytest.mark.model
def test_vectors_are_normalised_float32_rows(embedder: LocalEmbedder) -> None:
    vectors = embedder.embed(["The cat sat on the mat.", "", "日本語のテキスト"])
    assert vectors.dtype == np.float32 and vectors.shape == (3, 384) and vectors.flags.c_contiguous
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1, rtol=1e-5)


@pytest.mark.model
def test_similar_sentences_are_closer_than_unrelated_ones(embedder: LocalEmbedder) -> None:
    query, paraphrase, unrelated = embedder.embed(
        [
            "How do I reset my password?",
            "Steps to recover access to your account when you forgot the password.",
            "The recipe needs two cups of flour and a pinch of salt.",
        ]
    )
    assert cosine(query, paraphrase) > 0.5
    assert cosine(query, paraphrase) > cosine(query, unrelated) + 0.3


@pytest.fixture(scope="module")
def float32_embedder() -> Iterator[LocalEmbedder]:
    loaded = LocalEmbedder(precision="float32", batch_size=4)
    loaded.load()
    yield loaded


@pytest.mark.model
def test_a_text_embeds_the_same_alone_or_in_a_batch(float32_embedder: LocalEmbedder) -> None:
    # In one precision, exactly; across precisions (auto: a batch may run in bf16, one text in float32),
    # within the bound that test_bf16_vectors_match_float32_within_the_bound_on_real_text proves.
    texts = [f"Sentence number {i} about {'rivers' if i % 2 else 'mountains'}." for i in range(6)]
    batched = float32_embedder.embed(texts)
    alone = np.vstack([float32_embedder.embed([text]) for text in texts[:3]])
    np.testing.assert_allclose(batched[:3], alone, atol=1e-5)


@pytest.mark.model
def test_auto_precision_embeds_alone_or_in_a_batch_within_the_bound(embedder: LocalEmbedder) -> None:
    texts = [f"Sentence number {i} about {'rivers' if i % 2 else 'mountains'}." for i in range(40)]
    batched = embedder.embed(texts)
    alone = np.vstack([embedder.embed([text]) for text in texts[:3]])
    assert np.min(np.sum(batched[:3] * alone, axis=1)) >= COSINE_BOUND


@pytest.mark.model
@pytest.mark.timeout(600)  # where bf16 is not native (AVX2 only) torch emulates it: ~140 s of CPU here
def test_bf16_vectors_match_float32_within_the_bound_on_real_text(float32_embedder: LocalEmbedder) -> None:
    prose = stdlib_prose()
    chunks = [c.text for c in TokenSplitter.for_embedder(float32_embedder).split(prose)]  # ~200 at 192 tokens
    chunks += [c.text for c in TokenSplitter(64).split(prose)][: 256 - len(chunks)]  # and short ones
    bf16 = LocalEmbedder(precision="bfloat16", batch_size=16)
    assert len(chunks) == 256 and bf16.model_id == float32_embedder.model_id  # one embedding cache
    cosines = np.sum(float32_embedder.embed(chunks) * bf16.embed(chunks), axis=1)
    assert cosines.min() >= COSINE_BOUND, f"min cosine {cosines.min():.6f}"
    queries = ["how do I parse command line options", "copy a directory tree", "log to a file"]
    assert np.min(np.sum(float32_embedder.embed(queries) * bf16.embed(queries), axis=1)) >= COSINE_BOUND


@pytest.mark.model
def test_the_bf16_twin_gives_autocasts_vectors_with_weights_cast_once(embedder: LocalEmbedder) -> None:
    import torch

    model = embedder.load()
    twin = ragflow.embedders.local.bf16_linear_twin(model)
    linear = [m for m in model.modules() if isinstance(m, torch.nn.Linear)]
    twin_linear = [m for m in twin.modules() if isinstance(m, torch.nn.Linear)]
    assert linear and all(m.weight.dtype == torch.float32 for m in linear)  # the original is untouched
    assert all(m.weight.dtype == torch.bfloat16 for m in twin_linear)
    linear_ids = {id(p) for m in linear for p in m.parameters()}
    others = [p for p in model.parameters() if id(p) not in linear_ids]
    twin_ids = {id(p) for p in twin.parameters()}
    assert others and all(id(p) in twin_ids for p in others)  # embeddings and norms are shared, not copied
    texts = ["copy a directory tree", stdlib_prose()[:600], "log to a file with rotation"]
    features = model.preprocess(texts)
    with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16):
        reference = model(dict(features))["sentence_embedding"].float()
        cast_once = twin(dict(features))["sentence_embedding"].float()
    assert torch.equal(reference, cast_once)


@pytest.mark.model
def test_bf16_passes_are_padded_to_a_multiple_of_word_pieces_without_changing_vectors(
    embedder: LocalEmbedder,
) -> None:
    import torch

    pad = ragflow.embedders.local._padded_to_multiple
    model = embedder.load()
    texts = ["copy a directory tree", stdlib_prose()[:300], "log to a file"]
    features = model.preprocess(texts)
    length = features["attention_mask"].shape[1]
    padded = pad(features, 16, 256)
    assert length % 16 and padded["attention_mask"].shape[1] == length + 16 - length % 16
    assert (
        int(padded["attention_mask"][:, length:].sum()) == 0
        and int(padded["input_ids"][:, length:].sum()) == 0
    )
    twin = ragflow.embedders.local.bf16_linear_twin(model)
    with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16):
        exact = twin(dict(features))["sentence_embedding"].float()
        aligned = twin(dict(padded))["sentence_embedding"].float()
    cosines = torch.nn.functional.cosine_similarity(exact, aligned)
    assert float(cosines.min()) > 0.99999
    # never past the model's window
    long = {
        "attention_mask": torch.ones(2, 250, dtype=torch.long),
        "input_ids": torch.ones(2, 250, dtype=torch.long),
    }
    assert pad(long, 16, 250)["attention_mask"].shape[1] == 250
    assert pad(long, 16, 252)["input_ids"].shape[1] == 252


@pytest.mark.model
def test_forced_precision_and_batch_size_skip_the_calibration(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_calibration(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("a forced precision with a batch size needs no calibration")

    monkeypatch.setattr(ragflow.embedders.local_plan, "calibrate", no_calibration)
    monkeypatch.setenv("RAGFLOW_EMBED_PRECISION", "bfloat16")
    forced = LocalEmbedder(precision="float32", batch_size=3)  # the environment overrides the argument
    assert forced.embed(["one", "two", "three", "four"]).shape == (4, 384)
    plan = forced.plan
    assert (plan.single, plan.bulk, plan.batch_size) == (Precision.BFLOAT16, Precision.BFLOAT16, 3)
    stats = forced.stats()
    assert (stats.device, stats.precision, stats.batch_size, stats.texts_embedded) == (
        "cpu",
        "bfloat16",
        3,
        4,
    )
    assert stats.texts_per_second > 0


@pytest.mark.model
def test_the_auto_plan_follows_this_machines_calibration(embedder: LocalEmbedder) -> None:
    setup = embedder._setup
    assert setup.hardware is not None and setup.hardware.device == "cpu"
    calibration = setup.calibration
    assert calibration is not None
    assert embedder.plan == plan_precision(calibration, native_bf16=setup.hardware.native_bf16)
    assert embedder.stats().as_dict()["precision"] == str(embedder.plan.bulk)
    if not setup.hardware.native_bf16:
        assert Precision.BFLOAT16 not in embedder.plan.precisions
    for precision in embedder.plan.precisions - {Precision.FLOAT32}:
        cosine = calibration.cosine(precision)
        assert cosine is not None and cosine >= COSINE_BOUND


@pytest.mark.model
def test_a_max_tokens_chunk_of_real_prose_fits_the_model_window(embedder: LocalEmbedder) -> None:
    """The default chunk (192 cl100k tokens) can hold more word-pieces than the model reads (dense text
    takes up to 2.6 a token): the splitter the pipeline uses cuts every chunk to the window."""
    text = stdlib_prose()
    splitter = TokenSplitter.for_embedder(embedder)
    assert splitter.max_tokens == embedder.max_tokens == 192
    chunks = [c.text for c in splitter.split(text)]
    # Also windows of exactly max_tokens tokens, cut anywhere (the densest a chunk can be), and the same
    # text made of identifiers, each a run of word-pieces
    tokens = get_encoding().encode_ordinary(text)
    step = embedder.max_tokens
    windows = [get_encoding().decode(tokens[i : i + step]) for i in range(0, len(tokens) - step, step)]
    dense = " ".join(f"xq_{word}_{i}.zv" for i, word in enumerate(text.split()[:3000]))
    cut = [c.text for piece in [*windows, dense] for c in splitter.split(piece)]
    assert max(embedder.count_word_pieces([dense[:2000]])) > embedder.max_input_tokens  # it would overflow
    counts = embedder.count_word_pieces(chunks + cut)
    assert len(chunks) > 100 and len(windows) > 100
    assert max(counts) <= embedder.max_input_tokens, f"{max(counts)} word-pieces"


@pytest.mark.model
def test_a_text_longer_than_the_window_is_not_truncated(embedder: LocalEmbedder) -> None:
    cooking = " ".join(["Knead the bread dough, let it rise, then bake it in a hot oven until golden."] * 14)
    astronomy = " ".join(["The telescope observed distant galaxies, nebulae and the rings of Saturn."] * 14)
    assert embedder.count_word_pieces([cooking]) > [embedder.max_input_tokens]
    full, first, second = embedder.embed([f"{cooking} {astronomy}", cooking, astronomy])
    np.testing.assert_allclose(np.linalg.norm(full), 1, rtol=1e-5)
    # The model alone would only see the cooking part; the embedding must reflect both halves.
    truncated = embedder.load().encode([f"{cooking} {astronomy}"], normalize_embeddings=True)[0]
    assert cosine(truncated, second) < 0.3
    assert cosine(full, second) > cosine(truncated, second) + 0.2
    assert cosine(full, first) > 0.5 and cosine(full, second) > 0.5


@pytest.mark.model
def test_concurrent_first_use_loads_the_model_once(
    monkeypatch: pytest.MonkeyPatch, embedder: LocalEmbedder
) -> None:
    import sentence_transformers

    loads = []
    real = sentence_transformers.SentenceTransformer

    def counting(*args: Any, **kwargs: Any) -> Any:
        loads.append(args)
        return real(*args, **kwargs)

    monkeypatch.setattr(sentence_transformers, "SentenceTransformer", counting)
    fresh = LocalEmbedder()
    results: dict[int, np.ndarray] = {}
    barrier = threading.Barrier(4)

    def work(i: int) -> None:
        barrier.wait()
        results[i] = fresh.embed([f"thread {i % 2}"])

    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(loads) == 1
    np.testing.assert_allclose(results[0], results[2], atol=1e-6)
    np.testing.assert_allclose(results[0], embedder.embed(["thread 0"]), atol=1e-5)


@pytest.mark.model
@pytest.mark.parametrize("module", [ragflow.embedders, ragflow.embedders.local], ids=lambda m: m.__name__)
def test_the_examples_in_the_docstrings_work(module: object) -> None:
    result = doctest.testmod(module)  # type: ignore[arg-type]
    assert result.attempted > 0 and result.failed == 0


@pytest.mark.model
def test_a_replica_embeds_identically_without_sharing_the_lock(embedder: LocalEmbedder) -> None:
    replica = embedder.replica()
    assert replica.model_id == embedder.model_id and replica.dim == embedder.dim
    assert replica._embed_lock is not embedder._embed_lock
    text = ["the replica answers queries while the original indexes"]
    np.testing.assert_allclose(replica.embed(text), embedder.embed(text), atol=1e-5)
    with embedder._embed_lock:  # the original is busy: the replica must not wait for it
        assert replica.embed(text).shape == (1, embedder.dim)


@pytest.mark.model
def test_a_megabyte_query_is_cut_to_the_window_before_it_is_tokenized(
    embedder: LocalEmbedder, monkeypatch: pytest.MonkeyPatch
) -> None:
    sentence = "The harbor lantern is lit at dusk by the keeper and guides ships past the reef. "
    huge = sentence * (1_000_000 // len(sentence))
    assert embedder.query_chars == 16 * embedder.max_input_tokens
    seen: list[int] = []
    tokenizer = embedder.load().tokenizer
    original = type(tokenizer).__call__

    def spy(self: Any, text: Any, *args: Any, **kwargs: Any) -> Any:
        seen.extend(len(t) for t in ([text] if isinstance(text, str) else text))
        return original(self, text, *args, **kwargs)

    monkeypatch.setattr(type(tokenizer), "__call__", spy)
    vector = embedder.embed_queries([huge])
    assert seen and max(seen) <= embedder.query_chars
    # the same vector as the part the model can read: the window, truncated as the model would
    window = embedder.embed_queries([huge[:2000]])  # ~400 word-pieces: more than the window holds
    assert cosine(vector[0], window[0]) > 0.9999
    monkeypatch.undo()
    short = "where is the harbor lantern?"
    assert cosine(embedder.embed_queries([short])[0], embedder.embed([short])[0]) > 0.9999


@pytest.mark.model
def test_queries_of_mixed_lengths_embed_as_they_do_alone(embedder: LocalEmbedder) -> None:
    queries = ["lantern", stdlib_prose()[:3000], "where does the falcon nest?", "ships " * 40]
    together = embedder.embed_queries(queries)
    for i, query in enumerate(queries):
        assert cosine(together[i], embedder.embed_queries([query])[0]) > 0.999


@pytest.mark.model
def test_indexing_serves_waiting_queries_between_its_batches(
    embedder: LocalEmbedder, monkeypatch: pytest.MonkeyPatch
) -> None:
    indexer = LocalEmbedder(batch_size=8)
    indexer.load()
    replica = indexer.replica()
    replica.load()
    assert replica.query_priority is indexer.query_priority
    indexer.query_priority.max_yield = 30.0  # on a busy machine too: wait for every query
    indexer.query_priority.shrink = 4  # off by default; the mechanism is what is tested here
    passes: list[tuple[str, int, float, float]] = []
    forward = LocalEmbedder._forward

    def traced(self: LocalEmbedder, model: Any, texts: list[str], precision: Any) -> Any:
        started = time.monotonic()
        try:
            return forward(self, model, texts, precision)
        finally:
            passes.append(("query" if self is replica else "index", len(texts), started, time.monotonic()))

    monkeypatch.setattr(LocalEmbedder, "_forward", traced)
    chunks = [f"{paragraph} ({i})" for i, paragraph in enumerate(stdlib_prose().split("\n\n")[:64])]
    from ragflow.embedders.query_batching import QueryBatcher

    batcher = QueryBatcher(replica)
    indexing = threading.Thread(target=indexer.embed, args=(chunks,))
    indexing.start()
    while not any(kind == "index" for kind, *_ in passes):
        time.sleep(0.005)
    asked = time.monotonic()
    vectors = batcher.embed(["where is the harbor lantern?", "how do I parse arguments?"])
    answered = time.monotonic()
    indexing.join(120)
    assert vectors.shape == (2, indexer.dim)
    # no indexing batch started between the queries' arrival and their vectors
    assert not [p for p in passes if p[0] == "index" and asked < p[2] < answered], passes
    # and the batch right after the queries was smaller (more may come: they wait for less)
    sizes_after = [n for kind, n, started, _ in passes if kind == "index" and started >= answered]
    assert sizes_after and sizes_after[0] <= indexer.batch_size // indexer.query_priority.shrink, passes
