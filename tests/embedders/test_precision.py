"""Tests for ragflow.embedders.precision and ragflow.embedders.hardware: the precision and batch size follow
injected measurements, forced choices win, a CPU or GPU without bf16 keeps float32, and the calibration
cache survives (or ignores) what is on disk. No model is loaded here."""

from __future__ import annotations

import doctest
import json
from pathlib import Path

import numpy as np
import pytest

import ragflow.embedders.hardware
import ragflow.embedders.precision
from ragflow.embedders.hardware import resolve_device
from ragflow.embedders.precision import (
    COSINE_BOUND,
    Calibration,
    Measurement,
    Precision,
    calibrate,
    calibration_cache_path,
    load_calibration,
    plan_precision,
    store_calibration,
    worth_recalibrating,
)
from ragflow.errors import ConfigError

F32, BF16 = Precision.FLOAT32, Precision.BFLOAT16

# What this machine measured (2 Xeon cores with AMX): bf16 3x faster in batches, slower for one query.
XEON = {
    (1, F32): 120.0,
    (1, BF16): 70.0,
    (4, F32): 40.0,
    (4, BF16): 95.0,
    (8, F32): 42.0,
    (8, BF16): 110.0,
    (16, F32): 41.0,
    (16, BF16): 125.0,
    (32, F32): 38.0,
    (32, BF16): 127.0,
}


def measured(rates: dict[tuple[int, Precision], float], min_cosine: float | None = 0.99998) -> Calibration:
    return Calibration(tuple(Measurement(s, p, r) for (s, p), r in rates.items()), min_cosine)


def float32_only(rates: dict[tuple[int, Precision], float]) -> dict[tuple[int, Precision], float]:
    return {key: rate for key, rate in rates.items() if key[1] is F32}


def test_bf16_is_chosen_per_batch_size_where_measured_faster() -> None:
    plan = plan_precision(measured(XEON), native_bf16=True)
    assert plan.single is F32  # a query alone is faster in float32
    assert [plan.for_batch(n) for n in (2, 3, 4, 7, 8, 100)] == [F32, F32, BF16, BF16, BF16, BF16]
    # 32 is only 1.6% faster than 16: the smaller batch wins (same throughput, less latency)
    assert (plan.batch_size, plan.bulk) == (16, BF16)


def test_a_cpu_without_bf16_keeps_float32_whatever_was_measured() -> None:
    plan = plan_precision(measured(XEON), native_bf16=False)
    assert {plan.for_batch(n) for n in (1, 4, 8, 32)} == {F32}
    assert plan.batch_size == 4  # within 5% of the fastest float32 rate (8: 42/s), and smaller
    assert "no native bfloat16" in plan.reason


def test_without_bf16_nothing_gets_slower_than_today() -> None:
    # An old CPU where bf16 is emulated: each bf16 rate is far below float32's.
    emulated = {(s, p): (30.0 if p is F32 else 3.0) for s, p in XEON}
    for native in (False, True):
        plan = plan_precision(measured(emulated), native_bf16=native)
        assert {plan.for_batch(n) for n in (1, 4, 8, 16, 32)} == {F32}


def test_bf16_within_noise_of_float32_is_not_taken() -> None:
    close = {(s, p): (100.0 if p is F32 else 105.0) for s, p in XEON}
    assert plan_precision(measured(close), native_bf16=True).bulk is F32


def test_bf16_vectors_that_stray_below_the_bound_keep_float32() -> None:
    plan = plan_precision(measured(XEON, min_cosine=COSINE_BOUND - 1e-5), native_bf16=True)
    assert plan.bulk is F32 and "strayed" in plan.reason
    assert plan_precision(measured(XEON, min_cosine=None), native_bf16=True).bulk is F32


def test_forced_precision_and_batch_size_win_over_the_measurements() -> None:
    assert plan_precision(measured(XEON), native_bf16=True, forced="float32").for_batch(32) is F32
    forced = plan_precision(measured(XEON), native_bf16=False, forced="bfloat16")
    assert (forced.single, forced.bulk, forced.batch_size) == (BF16, BF16, 16)
    assert plan_precision(measured(XEON), native_bf16=True, batch_size=5).batch_size == 5
    assert plan_precision(None, native_bf16=True, forced="float32", batch_size=3).batch_size == 3
    with pytest.raises(
        ConfigError, match="unknown embedder precision 'fp8'; allowed: auto, float32, bfloat16"
    ):
        plan_precision(None, native_bf16=True, forced="fp8")


def test_without_a_calibration_float32_in_batches_of_8() -> None:
    plan = plan_precision(None, native_bf16=True)
    assert (plan.bulk, plan.single, plan.batch_size) == (F32, F32, 8)
    float32_measured = plan_precision(measured(float32_only(XEON), None), native_bf16=True)
    assert float32_measured.bulk is F32 and "not measured" in float32_measured.reason


ONNX = Precision.FLOAT32_ONNX

# What an AMD EPYC with AVX2 only measured (2 cores): onnxruntime's float32 graph far faster for one
# query, less so in batches; no native bf16.
EPYC = {
    (1, F32): 80.0,
    (1, ONNX): 250.0,
    (4, F32): 30.0,
    (4, ONNX): 42.0,
    (8, F32): 31.0,
    (8, ONNX): 44.0,
    (16, F32): 31.0,
    (16, ONNX): 33.0,
}


def with_onnx(rates: dict[tuple[int, Precision], float], cosine: float | None = 0.9999999) -> Calibration:
    return Calibration(tuple(Measurement(s, p, r) for (s, p), r in rates.items()), None, None, cosine)


def test_onnx_is_chosen_per_batch_size_where_measured_faster() -> None:
    plan = plan_precision(with_onnx(EPYC), native_bf16=False)
    # 4 runs within 5% of 8's rate (42 against 44/s): the smaller batch, less latency, same throughput
    assert (plan.single, plan.batch_size, plan.bulk) == (ONNX, 4, ONNX)
    assert plan.for_batch(16) is F32  # 33 against 31: within noise, torch's float32 stays
    assert "no native bfloat16" in plan.reason and plan.reason.startswith("measured")


def test_onnx_vectors_that_stray_or_were_not_measured_keep_float32() -> None:
    strayed = plan_precision(with_onnx(EPYC, COSINE_BOUND - 1e-5), native_bf16=False)
    assert strayed.precisions == {F32} and "float32-onnx vectors strayed" in strayed.reason
    unmeasured = plan_precision(with_onnx(float32_only(EPYC)), native_bf16=False)
    assert unmeasured.precisions == {F32} and "float32-onnx not measured" in unmeasured.reason


def test_the_fastest_trusted_path_wins_between_bf16_and_onnx() -> None:
    rates = {**XEON, **{(s, ONNX): XEON[s, F32] * 1.5 for s, _ in XEON}}
    plan = plan_precision(
        Calibration(tuple(Measurement(s, p, r) for (s, p), r in rates.items()), 0.99998, None, 0.9999999),
        native_bf16=True,
    )
    assert plan.single is ONNX  # bf16 is slower than float32 for one query, onnx 1.5x faster
    assert plan.bulk is BF16  # bf16 ~3x in batches beats onnx's 1.5x
    assert plan_precision(with_onnx(EPYC), native_bf16=True, forced="float32-onnx").precisions == {ONNX}


def test_a_calibration_with_onnx_round_trips_through_the_cache(tmp_path: Path) -> None:
    calibration = with_onnx(EPYC)
    store_calibration(tmp_path / "c.json", "k", calibration)
    assert load_calibration(tmp_path / "c.json", "k") == calibration


def test_calibrate_alternates_precisions_and_keeps_each_cells_best_round() -> None:
    calls: list[tuple[int, Precision]] = []
    # On the fake clock a text takes 30 ms in float32 and 10 ms in bf16; the second round is disturbed
    # (ten times slower, as if another process took the cores) and must not count.
    seconds_per_text = {F32: 0.03, BF16: 0.01}
    elapsed = {"now": 0.0}

    def encode(texts: list[str], precision: Precision) -> np.ndarray:
        calls.append((len(texts), precision))
        slow = 10 if len(calls) > 6 else 1  # after the two warm-ups and the first round's four calls
        elapsed["now"] += seconds_per_text[precision] * len(texts) * slow
        return np.ones((len(texts), 4), dtype=np.float32) / 2

    calibration = calibrate(encode, [F32, BF16], sizes=(1, 8), rounds=2, clock=lambda: elapsed["now"])
    warmups, first, second = calls[:2], calls[2:6], calls[6:]
    assert [p for _, p in warmups] == [F32, BF16]
    assert first == [(1, F32), (1, BF16), (8, F32), (8, BF16)]
    assert second == [(1, BF16), (1, F32), (8, BF16), (8, F32)]  # the order alternates each round
    assert calibration.rate(8, F32) == pytest.approx(1 / 0.03)
    assert calibration.rate(8, BF16) == pytest.approx(1 / 0.01)
    assert calibration.min_cosine == pytest.approx(1.0)


def test_the_calibration_cache_round_trips_and_tolerates_damage(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "calibration.json"
    calibration = measured(XEON)
    store_calibration(path, "key-a", calibration, model="m")
    store_calibration(path, "key-b", measured(float32_only(XEON), None))
    assert load_calibration(path, "key-a") == calibration
    assert json.loads(path.read_text())["key-a"]["model"] == "m"
    assert load_calibration(path, "key-c") is None
    path.write_text("{not json")
    assert load_calibration(path, "key-a") is None
    store_calibration(path, "key-a", calibration)  # a damaged file is replaced, not fatal
    assert load_calibration(path, "key-a") == calibration
    assert load_calibration(None, "key-a") is None and load_calibration(tmp_path / "none", "k") is None


def test_the_cache_path_follows_the_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("RAGFLOW_CALIBRATION_CACHE", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert calibration_cache_path() == tmp_path / "ragflow" / "calibration.json"
    monkeypatch.setenv("RAGFLOW_CALIBRATION_CACHE", str(tmp_path / "c.json"))
    assert calibration_cache_path() == tmp_path / "c.json"
    monkeypatch.setenv("RAGFLOW_CALIBRATION_CACHE", "")
    assert calibration_cache_path() is None


def test_auto_device_uses_a_gpu_only_when_there_is_one() -> None:
    assert resolve_device("auto", cuda_available=False) == "cpu"
    assert resolve_device("auto", cuda_available=True) == "cuda"
    assert resolve_device("cpu", cuda_available=True) == "cpu"
    assert resolve_device("cuda:1", cuda_available=True) == "cuda:1"


def test_asking_for_cuda_without_a_gpu_says_so() -> None:
    with pytest.raises(ConfigError, match="'cuda' asked for, but torch sees no CUDA GPU"):
        resolve_device("cuda", cuda_available=False)
    with pytest.raises(ConfigError, match="unknown embedder device 'gpu'; allowed: auto, cpu, cuda"):
        resolve_device("gpu", cuda_available=True)


@pytest.mark.parametrize(
    "module", [ragflow.embedders.precision, ragflow.embedders.hardware], ids=lambda m: m.__name__
)
def test_the_examples_in_the_docstrings_work(module: object) -> None:
    result = doctest.testmod(module)  # type: ignore[arg-type]
    assert result.attempted > 0 and result.failed == 0


def test_a_calibration_made_on_a_busy_machine_is_measured_again_when_quieter() -> None:
    busy = measured(XEON)
    busy = Calibration(busy.measurements, busy.min_cosine, busy=3.5)
    quiet = Calibration(busy.measurements, busy.min_cosine, busy=0.4)
    assert busy.disturbed and not quiet.disturbed
    assert worth_recalibrating(busy, busy_now=0.5)
    assert not worth_recalibrating(busy, busy_now=4.0)  # no quieter than then: keep it
    assert not worth_recalibrating(quiet, busy_now=0.1)
    assert Calibration.from_dict(busy.to_dict()) == busy


def test_calibrate_stops_after_its_budget_on_a_slow_machine() -> None:
    elapsed = {"now": 0.0}
    calls = []

    def encode(texts: list[str], precision: Precision) -> np.ndarray:
        calls.append(precision)
        elapsed["now"] += 10.0  # every call takes 10 s: the machine is swamped
        return np.ones((len(texts), 4), dtype=np.float32) / 2

    calibration = calibrate(
        encode, [F32, BF16], sizes=(1, 8), rounds=3, budget_seconds=15, clock=lambda: elapsed["now"], busy=6.0
    )
    assert len(calls) == 2 + 4  # warm-ups and one round: the first round is always complete
    assert calibration.rate(8, BF16) == pytest.approx(0.8) and calibration.busy == 6.0


def test_within_noise_of_the_fastest_the_smaller_sizes_path_stays() -> None:
    def plan_for(bf16_at_8: float) -> tuple[Precision, ...]:
        rates = {
            (1, F32): 120.0, (1, ONNX): 200.0, (1, BF16): 70.0,
            (4, F32): 40.0, (4, ONNX): 100.0, (4, BF16): 90.0,
            (8, F32): 42.0, (8, ONNX): 104.0, (8, BF16): bf16_at_8,
            (16, F32): 41.0, (16, ONNX): 100.0, (16, BF16): 125.0,
        }  # fmt: skip
        calibration = Calibration(
            tuple(Measurement(s, p, r) for (s, p), r in rates.items()), 0.99998, None, 1.0
        )
        plan = plan_precision(calibration, native_bf16=True)
        return tuple(plan.for_batch(n) for n in (1, 4, 8, 16))

    # bf16 at 8 measured 2% or 4% faster than onnx from one start to the next: the plan is the same
    assert plan_for(106.0) == plan_for(108.0) == (ONNX, ONNX, ONNX, BF16)
    assert plan_for(120.0) == (ONNX, ONNX, BF16, BF16)  # clearly faster: taken
