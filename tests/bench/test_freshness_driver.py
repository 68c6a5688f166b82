"""The freshness driver measured against a server whose visibility delay is known exactly."""

from __future__ import annotations

import pytest

from ragflow.bench import ALL_KINDS, FreshnessOptions, FreshnessResult, FreshnessRun
from tests.bench.delayed_server import DelayedServer, DelayedTarget


def measure(server: DelayedServer, **options: object) -> FreshnessResult:
    with server as url:
        settings = FreshnessOptions(
            url=url, docs=8, changes=3, burst=5, gap=(0.0, 0.02), poll_interval=0.005, timeout=5.0
        )
        for name, value in options.items():
            setattr(settings, name, value)
        return FreshnessRun(settings, target=DelayedTarget(server)).run()


@pytest.mark.parametrize("delay", [0.05, 0.15])
def test_measured_freshness_is_the_delay_within_the_polling_resolution(delay: float) -> None:
    result = measure(DelayedServer(delay))
    singles = [r for r in result.records if r.phase == "single"]
    assert {r.kind for r in singles} == {str(k) for k in ALL_KINDS}
    for record in singles:
        assert record.status == "visible" and record.fresh_s is not None and record.lower_s is not None
        # never reported visible before it is; the last miss was asked before it became visible
        assert record.fresh_s >= delay - 0.001, record
        assert record.lower_s <= delay, record
        assert record.resolution_s is not None and record.fresh_s - delay <= record.resolution_s + 0.001
    # polls 5 ms apart: the gap between the deciding polls is a few of them (a loose bound, the machine
    # running the tests may be loaded)
    assert result.resolution() < 0.5


def test_an_edit_is_not_fresh_while_the_old_text_is_still_served() -> None:
    delay, linger = 0.05, 0.2
    result = measure(DelayedServer(delay, linger=linger), kinds=["edit", "rewrite"], burst=0)
    assert len(result.records) == 6
    for record in result.records:
        assert record.fresh_s is not None and record.fresh_s >= delay + linger - 0.001, record


def test_a_change_that_never_shows_is_a_timeout_not_a_number() -> None:
    result = measure(DelayedServer(0.5), kinds=["delete"], changes=2, burst=0, timeout=0.2, docs=3)
    assert [r.status for r in result.records] == ["timeout", "timeout"]
    assert all(r.fresh_s is None for r in result.records)
    assert result.timeouts("delete") == 2


def test_a_burst_is_timed_until_its_last_change_shows() -> None:
    result = measure(DelayedServer(0.1), changes=1, kinds=["edit"], burst=6)
    (burst,) = result.bursts
    assert burst["size"] == 6 and burst["visible"] == 6
    assert burst["seconds"] >= 0.1 - 0.001
    assert all(r.fresh_s and r.fresh_s >= 0.1 - 0.001 for r in result.records if r.phase == "burst")
    assert result.initial["visible"] == 8 and result.initial["seconds"] >= 0.1 - 0.001


def test_the_drivers_own_cost_is_reported() -> None:
    result = measure(DelayedServer(0.05), kinds=["create"], burst=0)
    assert result.driver["requests"] > 0 and result.driver["cpu_s"] > 0
    assert result.queries["idle"] and result.queries["polling"]


def test_a_poll_the_server_does_not_answer_in_time_is_a_miss_not_a_crash() -> None:
    result = measure(
        DelayedServer(0.05, stall=0.5), kinds=["edit"], changes=2, burst=0, request_timeout=0.2, docs=3
    )
    assert [r.status for r in result.records] == ["visible", "visible"]
    assert result.driver["failed_polls"] >= 2
    assert all(r.fresh_s is not None and r.fresh_s >= 0.05 for r in result.records)
