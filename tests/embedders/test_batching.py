"""Passes cut by a cost model fitted to the calibration: the fit, the cuts, and the embedder using them."""

from __future__ import annotations

import itertools
from collections.abc import Iterator

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ragflow.embedders.batching import PassCost, cheapest_batch_ends, fit_pass_costs
from ragflow.embedders.local import LocalEmbedder
from ragflow.embedders.precision import Calibration, Measurement, Precision


def calibration_from(costs: dict[Precision, PassCost], chunk: int, query: int) -> Calibration:
    """The rates a calibration would measure on a machine whose passes cost exactly ``costs``."""
    measurements = []
    for precision, cost in costs.items():
        for size in (1, 4, 8, 16, 32):
            seconds = cost.seconds(1, query) if size == 1 else cost.seconds(size, chunk)
            measurements.append(Measurement(size, precision, (1 if size == 1 else size) / seconds))
    return Calibration(tuple(measurements), 1.0, 0.1, 1.0)


def test_the_fit_recovers_each_precisions_fixed_and_per_word_piece_cost() -> None:
    truth = {
        Precision.BFLOAT16: PassCost(0.015, 3.5e-5),
        Precision.FLOAT32_ONNX: PassCost(0.002, 1e-4),
    }
    fitted = fit_pass_costs(calibration_from(truth, chunk=120, query=12), 120, 12)
    assert set(fitted) == set(truth)
    for precision, cost in truth.items():
        assert fitted[precision].fixed == pytest.approx(cost.fixed, rel=1e-6)
        assert fitted[precision].per_word_piece == pytest.approx(cost.per_word_piece, rel=1e-6)


def test_a_precision_timed_at_one_size_only_gets_no_model() -> None:
    calibration = Calibration((Measurement(8, Precision.FLOAT32, 80.0),), None, 0.1, None)
    assert fit_pass_costs(calibration, 120, 12) == {}


def test_a_large_fixed_cost_makes_one_padded_pass_and_none_makes_passes_of_equal_length() -> None:
    lengths = np.array([17, 84, 108, 121, 137, 157, 164])
    assert cheapest_batch_ends(lengths, 32, lambda n: PassCost(0.015, 3.5e-5)) == [7]
    assert cheapest_batch_ends(lengths, 32, lambda n: PassCost(0.0, 1e-4)) == [1, 2, 3, 4, 5, 6, 7]
    uniform = np.full(10, 100)
    ends = cheapest_batch_ends(uniform, 4, lambda n: PassCost(0.0, 1e-4))
    assert ends[-1] == 10 and all(b - a <= 4 for a, b in zip([0, *ends], ends, strict=False))
    assert len(cheapest_batch_ends(uniform, 4, lambda n: PassCost(0.01, 1e-4))) == 3
    assert cheapest_batch_ends(np.array([], dtype=np.intp), 8, lambda n: PassCost(0, 1)) == []


def test_each_pass_costs_what_its_own_size_costs() -> None:
    # one text alone goes down a path with no fixed cost, a batch down one with a large fixed cost
    def cost_of(n: int) -> PassCost:
        return PassCost(0.0, 1e-4) if n == 1 else PassCost(0.05, 1e-5)

    assert cheapest_batch_ends(np.array([10, 100]), 8, cost_of) == [1, 2]


def brute_force(lengths: list[int], size: int, cost_of: object) -> float:
    best = float("inf")
    for cuts in itertools.product((False, True), repeat=len(lengths) - 1):
        ends = [i + 1 for i, cut in enumerate(cuts) if cut] + [len(lengths)]
        starts = [0, *ends[:-1]]
        if any(end - start > size for start, end in zip(starts, ends, strict=True)):
            continue
        total = sum(
            cost_of(end - start).seconds(end - start, lengths[end - 1])  # type: ignore[operator]
            for start, end in zip(starts, ends, strict=True)
        )
        best = min(best, total)
    return best


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.integers(1, 256), min_size=1, max_size=9),
    st.integers(1, 6),
    st.floats(0.0, 0.05),
    st.floats(1e-6, 1e-3),
)
def test_the_cuts_cost_no_more_than_the_best_of_every_possible_cut(
    lengths: list[int], size: int, fixed: float, per_word_piece: float
) -> None:
    lengths.sort()

    def cost_of(n: int) -> PassCost:
        return PassCost(fixed * (2 if n == 1 else 1), per_word_piece)

    ends = cheapest_batch_ends(np.array(lengths), size, cost_of)
    assert ends[-1] == len(lengths) and ends == sorted(set(ends))
    starts = [0, *ends[:-1]]
    assert all(0 < end - start <= size for start, end in zip(starts, ends, strict=True))
    total = sum(
        cost_of(end - start).seconds(end - start, lengths[end - 1])
        for start, end in zip(starts, ends, strict=True)
    )
    assert total == pytest.approx(brute_force(lengths, size, cost_of), rel=1e-9)


# -- with the real model --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def embedder() -> Iterator[LocalEmbedder]:
    loaded = LocalEmbedder()
    loaded.load()
    yield loaded


def test_the_embedder_cuts_its_passes_where_the_cost_model_says(
    embedder: LocalEmbedder, monkeypatch: pytest.MonkeyPatch
) -> None:
    words = "the server reads its configuration file and restarts the workers one at a time".split()
    texts = [" ".join(words[: 3 + (i * 7) % len(words)] * (1 + i)) for i in range(7)]
    passes: list[int] = []
    forward = embedder._forward

    def recording(model: object, batch: list[str], precision: Precision) -> np.ndarray:
        passes.append(len(batch))
        return forward(model, batch, precision)  # type: ignore[arg-type]

    monkeypatch.setattr(embedder, "_forward", recording)
    plan = embedder.plan
    monkeypatch.setattr(embedder._setup, "pass_costs", {p: PassCost(1.0, 1e-9) for p in plan.precisions})
    one_pass = embedder.embed(texts)
    assert passes == [7]
    passes.clear()
    monkeypatch.setattr(embedder._setup, "pass_costs", {p: PassCost(0.0, 1e-3) for p in plan.precisions})
    separate = embedder.embed(texts)
    assert passes == [1] * 7  # every text a different length: padding is all the cost there is
    passes.clear()
    monkeypatch.setattr(embedder._setup, "pass_costs", {})
    embedder.embed(texts)
    assert 1 < len(passes) < 7  # no cost model: passes end where padding grows past a quarter
    # the cuts change the padding, not the vectors
    assert float(np.min(np.sum(one_pass * separate, axis=1))) > 0.9999
