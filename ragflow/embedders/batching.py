"""How an embedder cuts texts, sorted by length, into forward passes: at the cuts that make the passes
cheapest on this machine, by a cost model fitted to the calibration's timings.

Every text of a pass is padded to the pass's longest, so mixing short and long texts wastes work; but
every pass also has a fixed cost, and on some paths it dominates (bfloat16 autocast on an AMX Xeon:
~15 ms a pass against ~4 ms per 120-word-piece text, so one padded pass of an edit's 7 chunks took 52 ms
where three passes of similar lengths took 81). Which way to lean is a measurement, not a constant.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from ragflow.embedders.precision import Calibration, Precision

__all__ = ["MAX_PADDING", "PassCost", "cheapest_batch_ends", "fit_pass_costs", "similar_length_end"]

MAX_PADDING = 0.25
"""Without a cost model, how much padding a pass may carry, as a share of its real word-pieces."""


@dataclass(frozen=True, slots=True)
class PassCost:
    """What one forward pass costs in one precision: a fixed part, and a part per padded word-piece."""

    fixed: float
    """Seconds per pass, whatever it holds."""
    per_word_piece: float
    """Seconds per word-piece the pass computes (its texts times its longest, padding included)."""

    def seconds(self, texts: int, longest: int) -> float:
        return self.fixed + self.per_word_piece * texts * longest


def fit_pass_costs(
    calibration: Calibration, chunk_word_pieces: float, query_word_pieces: float
) -> dict[Precision, PassCost]:
    """A ``PassCost`` per precision the calibration timed, fitted by least squares to its passes: a
    batch of ``n`` calibration chunks computes ``n * chunk_word_pieces`` word-pieces, the single query
    ``query_word_pieces``. A precision with fewer than two timed passes gets no model."""
    costs: dict[Precision, PassCost] = {}
    for precision in sorted(calibration.precisions):
        points = [
            (
                query_word_pieces if m.batch_size == 1 else m.batch_size * chunk_word_pieces,
                (1 if m.batch_size == 1 else m.batch_size) / m.texts_per_second,
            )
            for m in calibration.measurements
            if m.precision is precision and m.texts_per_second > 0
        ]
        if len({work for work, _seconds in points}) < 2:
            continue
        work = np.array([p[0] for p in points], dtype=np.float64)
        seconds = np.array([p[1] for p in points], dtype=np.float64)
        slope, intercept = np.polyfit(work, seconds, 1)
        if slope <= 0:  # noise swamped the per-word-piece part: no model rather than a wrong one
            continue
        costs[precision] = PassCost(max(float(intercept), 0.0), float(slope))
    return costs


def cheapest_batch_ends(
    sorted_lengths: npt.NDArray[np.intp], size: int, cost_of: Callable[[int], PassCost]
) -> list[int]:
    """Where the passes over texts sorted by length end (exclusive), at most ``size`` texts each, so
    that the passes' summed cost is least; ``cost_of(n)`` is the cost model of the path a pass of ``n``
    texts takes. Exact (dynamic programming over the cut points), O(len * size)."""
    count = len(sorted_lengths)
    if count == 0:
        return []
    size = max(1, min(size, count))
    texts = np.arange(1, size + 1)
    models = [cost_of(int(n)) for n in texts]
    fixed = np.array([m.fixed for m in models])
    per_text = np.array([m.per_word_piece for m in models]) * texts
    best = np.zeros(count + 1)
    cut = np.zeros(count + 1, dtype=np.intp)
    for end in range(1, count + 1):
        reach = min(size, end)
        # a pass of the last n texts before ``end`` pads them to the longest, sorted_lengths[end - 1]
        candidates = (
            best[end - reach : end][::-1] + fixed[:reach] + per_text[:reach] * sorted_lengths[end - 1]
        )
        n = reach - int(np.argmin(candidates[::-1]))  # on a tie, the larger pass: fewer passes
        best[end] = candidates[n - 1]
        cut[end] = end - n
    ends = []
    end = count
    while end > 0:
        ends.append(end)
        end = int(cut[end])
    return ends[::-1]


def similar_length_end(sorted_lengths: npt.NDArray[np.intp], start: int, size: int) -> int:
    """Without a cost model: where the pass that starts at ``start`` ends, after at most ``size`` texts
    and before padding would exceed ``MAX_PADDING`` of its real word-pieces. On 2 AVX2 cores, cut this
    way an edit's chunks (a dozen to 150 word-pieces) embedded ~20% faster than in one padded pass."""
    end = start + 1
    total = int(sorted_lengths[start])
    while end < min(start + size, len(sorted_lengths)):
        longest = int(sorted_lengths[end])
        if (end - start + 1) * longest > (1 + MAX_PADDING) * (total + longest):
            break
        total += longest
        end += 1
    return end
